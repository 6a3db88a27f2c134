"""`maild run`: the long-running service — an intake process and a worker process.

Postfix keeps `smtpd` apart from the queue manager; maild does the same, for one measured
reason: the GIL. Threading a message is CPU work in Python, and with it in the same process an
SMTP client waited for its 250 behind the interpreter lock (p99 860 ms at 200 msg/s, see
bench/README.md).

- The **intake** (this process, the one systemd starts) runs the SMTP/LMTP listener on its own
  thread and one poller thread per `[[imap]]` mailbox. They only ever store mail — into the
  intake spool on SQLite (`maild.ingest.spool`: a file of its own, so a 250 never waits for
  the worker's write lock), straight into `inbound` on PostgreSQL — then wake the worker. It
  also listens on the hand-off socket (`maild.ingest.handoff`): `maild ingest` stores its mail
  into `inbound` itself and knocks there, and the worker is woken to thread it at once. The
  intake also supervises: it restarts a worker that dies, and stops (SIGKILL) and restarts one
  that has spent longer than `mail.processing_timeout` on one message. The worker counts each
  attempt before the work (`maild.threading.worker`), so a message that crashes or hangs it
  is failed after three and never holds up the mail behind it for longer (SPEC §9).
- The **worker** (a child process) runs the loop in the shape of Mailman's runners: move
  spooled mail into `inbound`, thread a bounded batch of stored mail, deliver a bounded batch of
  due outbox rows, run the due timers (`schedule`), and sleep when a pass did no work until the
  intake wakes it. It runs niced, so on a busy machine the CPU goes first to the client waiting
  for its 250.

SIGTERM or SIGINT: the intake stops accepting, the worker finishes the batch in hand, both exit,
status 0. A crash or `kill -9` of either loses nothing: every step is a committed state change,
the worker exits when its parent is gone, and the next start picks up `new` inbound rows, due
outbox rows and the claims of the dead process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from types import FrameType
from typing import Any

import schedule
from sqlalchemy.exc import OperationalError

from maild import config
from maild.app import App, secret
from maild.db import init as init_database
from maild.db import transaction
from maild.dbapi import reader_of
from maild.errors import StorageUnavailable
from maild.ingest.accept import Accepted, accept
from maild.ingest.handoff import HandoffListener
from maild.ingest.imap import ImapPoller
from maild.ingest.smtp import SmtpListener, StoringHandler
from maild.ingest.spool import Spool, SpoolBacklog, backlog_at
from maild.models import InboundState, OutboxState
from maild.sla.duties import run_duties
from maild.status import status
from maild.threading import interrupted, process_pending
from maild.web import WebServer, make_app

log = logging.getLogger("maild.daemon")
IDLE_SLEEP_SECONDS = 5.0
BATCH = 100
DATABASE_RETRY_SECONDS = 2.0
STATS_EVERY = timedelta(minutes=10)
DUTIES_EVERY = timedelta(seconds=30)
WORKER_RESTART_MAX_SECONDS = 60.0
WORKER_NICENESS = 10
_SPAWN = multiprocessing.get_context("spawn")


class Shared:
    """What the intake and the worker share: a wake-up call, a stop flag, and which inbound
    message the worker is threading since when (the intake's watch for a hang)."""

    def __init__(self) -> None:
        self.wake = _SPAWN.Event()
        self.stop = _SPAWN.Event()
        self.in_hand = _SPAWN.RawValue("q", 0)          # inbound id; 0: none
        self.in_hand_since = _SPAWN.RawValue("d", 0.0)  # time.monotonic() when it was taken


# --- the intake -------------------------------------------------------------------------------


class Intake:
    def __init__(self, app: App) -> None:
        self.app = app
        self.shared = Shared()
        self.stop = threading.Event()
        self.listener: SmtpListener | None = None
        self.web: WebServer | None = None
        self.pollers: list[ImapPoller] = []
        self.worker: Any = None
        self.worker_started = 0.0
        self.spool: Spool | None = None
        self.handoff: HandoffListener | None = None

    def store(self, raw: bytes, source: str, envelope_from: str | None = None) -> Accepted:
        if self.spool is not None:
            return self.spool.store(raw, source=source, now=self.app.clock.now(),
                                    envelope_from=envelope_from)
        return accept(self.app.engine, raw, source=source, now=self.app.clock.now(),
                      envelope_from=envelope_from)

    def notify(self) -> None:
        self.shared.wake.set()

    def notified(self, accepted: Accepted) -> Accepted:
        """Stored: the worker has something to do."""
        self.notify()
        return accepted

    def start(self) -> None:
        settings = self.app.settings
        init_database(self.app.engine, settings)
        self.spool = self.app.spool()
        self.start_worker()
        handoff = self.app.handoff_path()
        if handoff is not None:
            listener = HandoffListener(handoff, self.notify)
            try:
                listener.start()
                self.handoff = listener
            except OSError as exc:  # the pipe then threads its mail itself, as without a daemon
                log.error("cannot listen on the hand-off socket %s: %s", handoff, exc)
        if settings.smtp is not None:
            handler = StoringHandler(lambda raw, sender: self.store(raw, "smtp", sender),
                                     settings.mail.accept, self.notify)
            self.listener = SmtpListener(settings.smtp, handler)
            self.listener.start()
        if settings.web is not None:
            self.web = WebServer(settings.web, make_app(
                settings, self.app.engine, lambda raw, source: self.notified(
                    self.store(raw, source))))
            self.web.start()
            log.info("web channel on %s (%s)", settings.web.listen, settings.web.base_url)
        for mailbox in settings.imap:
            password = secret(mailbox.password_env, mailbox.password_file,
                              f"{mailbox.name}.password")
            poller = ImapPoller(mailbox, password, self.app.engine,
                                lambda raw, source: self.store(raw, source), self.notify,
                                self.stop)
            poller.start()
            self.pollers.append(poller)
            log.info("IMAP poller %s: %s@%s:%s %s (%s)", mailbox.name, mailbox.username,
                     mailbox.host, mailbox.port, mailbox.folder,
                     "IDLE" if mailbox.idle else f"every {mailbox.poll_seconds}s")
        log.info("maild running: database %s, outbound %s", settings.database.url,
                 settings.outbound.transport)

    def start_worker(self) -> None:
        self.shared.in_hand.value = 0
        self.worker = _SPAWN.Process(
            target=worker_main, name="maild-worker",
            args=(self.app.settings.path, self.shared, os.getpid(),
                  logging.getLogger().level))
        self.worker.start()
        self.worker_started = time.monotonic()

    def supervise(self) -> None:
        """Wait for a stop request; restart the worker whenever it dies on its own, and stop
        and restart it when one message holds it longer than `mail.processing_timeout`."""
        backoff = 1.0
        while not self.stop.wait(0.5):
            if self.worker.is_alive():
                if self.hung():
                    self.stop_hung_worker()
                    self.start_worker()  # at once: the message's attempts are counted
                elif time.monotonic() - self.worker_started > WORKER_RESTART_MAX_SECONDS:
                    backoff = 1.0  # it has run fine for a while: a new crash starts afresh
                continue
            self.worker_died()
            log.error("worker exited with %s; restarting it in %.0f s",
                      _exit_status(self.worker.exitcode), backoff)
            if self.stop.wait(backoff):
                break
            backoff = min(backoff * 2, WORKER_RESTART_MAX_SECONDS)
            self.start_worker()

    def hung(self) -> bool:
        since = self.shared.in_hand_since.value
        limit = self.app.settings.mail.processing_timeout.total_seconds()
        return bool(self.shared.in_hand.value) and time.monotonic() - since > limit

    def stop_hung_worker(self) -> None:
        """SIGKILL, not SIGTERM: a worker stuck inside one message does not get to the point
        where it would look at a stop request."""
        inbound_id = self.shared.in_hand.value
        limit = f"{self.app.settings.mail.processing_timeout.total_seconds():g}s"
        log.error("worker has been threading inbound %s for longer than "
                  "mail.processing_timeout (%s): stopping it", inbound_id, limit)
        self.worker.kill()
        self.worker.join()
        self.record_interruption(inbound_id, f"threading took longer than "
                                 f"mail.processing_timeout ({limit})")

    def worker_died(self) -> None:
        inbound_id = self.shared.in_hand.value
        if inbound_id:
            self.record_interruption(inbound_id, "the worker died while threading it ("
                                     f"{_exit_status(self.worker.exitcode)})")

    def record_interruption(self, inbound_id: int, what: str) -> None:
        self.shared.in_hand.value = 0
        try:
            interrupted(self.app.engine, inbound_id, what)
        except StorageUnavailable as exc:  # the attempt is counted: only the reason is lost
            log.warning("inbound %s: could not record why threading stopped: %s",
                        inbound_id, exc)

    def shutdown(self) -> None:
        self.stop.set()
        if self.handoff is not None:  # first: a pipe from now on threads its mail itself
            self.handoff.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.web is not None:
            self.web.stop()
        for poller in self.pollers:
            poller.join(timeout=10)
        self.shared.stop.set()
        self.shared.wake.set()
        if self.worker is not None:
            self.worker.join(timeout=60)
            if self.worker.is_alive():
                log.warning("worker did not stop in time; terminating it")
                self.worker.terminate()
                self.worker.join()
        if self.spool is not None:
            self.spool.close()
        log.info("maild stopped")


def run(app: App) -> int:
    app.checkpoints = False  # the worker checkpoints the WAL; the intake only answers clients
    intake = Intake(app)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping after the item in hand", signal.Signals(signum).name)
        intake.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        intake.start()
        intake.supervise()
    finally:
        intake.shutdown()
    return 0


# --- the worker -------------------------------------------------------------------------------


def worker_main(config_path: str, shared: Shared, parent: int, level: int) -> None:
    """Entry point of the worker process."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="maild %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _die_with_parent()
    # Threading can wait; a client waiting for its 250 cannot. On a busy machine the kernel
    # should give the intake the CPU first.
    os.nice(WORKER_NICENESS)
    # The intake decides when to stop; a Ctrl-C on the terminal reaches it too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: shared.stop.set())
    worker = Worker(App(config.load(config_path)), shared, parent)
    try:
        worker.loop()
    finally:
        worker.close()


class Worker:
    def __init__(self, app: App, shared: Shared, parent: int) -> None:
        self.app = app
        self.shared = shared
        self.parent = parent
        self.spool = app.spool(mover=True)
        self.scheduler = schedule.Scheduler()
        self.scheduler.every(int(STATS_EVERY.total_seconds())).seconds.do(self.log_stats)
        self.scheduler.every(int(DUTIES_EVERY.total_seconds())).seconds.do(self.run_duties)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
        self.app.close()

    def run_duties(self) -> None:
        """Escalations, breaches, close requests, auto-close: what `maild tick` does."""
        report = run_duties(self.app.engine, self.app.settings, self.app.templates,
                            self.app.clock)
        if report.examined:
            log.info("timer duties: %s", report.summary())

    def stopping(self) -> bool:
        return self.shared.stop.is_set() or os.getppid() != self.parent

    def loop(self) -> None:
        deliverer = self.app.deliverer()
        started = False  # the timers run once at start, then on schedule
        blocked: str | None = None  # the database error of the current outage, logged once
        while not self.stopping():
            self.shared.wake.clear()
            try:
                moved = self.spool.move_into(self.app.engine, BATCH) if self.spool else 0
                settled = process_pending(self.app.engine, self.app.settings,
                                          self.app.templates, self.app.clock, BATCH,
                                          should_stop=self.stopping, in_hand=self.in_hand)
                report = deliverer.deliver_due(self.app.clock, limit=BATCH,
                                               should_stop=self.stopping)
                if started:
                    self.scheduler.run_pending()
                else:
                    self.scheduler.run_all()
                    started = True
            except (StorageUnavailable, OperationalError) as exc:
                if blocked is None:
                    log.warning("database unavailable, will retry: %s", exc)
                blocked = str(exc)
                self.shared.stop.wait(DATABASE_RETRY_SECONDS)
                continue
            if blocked is not None:
                log.info("database available again")
                blocked = None
            # A reply waiting for its original to be threaded is not progress: don't spin on it.
            progressed = moved or any(s.state != InboundState.NEW for s in settled)
            if not progressed and not report:
                self.shared.wake.wait(IDLE_SLEEP_SECONDS if not settled else 0.05)

    def in_hand(self, inbound_id: int | None) -> None:
        """Tell the intake which message this worker is threading, and since when."""
        self.shared.in_hand_since.value = time.monotonic()
        self.shared.in_hand.value = inbound_id or 0

    def log_stats(self) -> None:
        """The queue sizes, and what `maild status` says needs attention, as warnings: the
        journal of a daemon nobody watches still says what is wrong, every 10 minutes."""
        spool = backlog_at(self.spool.path) if self.spool else SpoolBacklog()
        with transaction(self.app.engine, readonly=True) as session:
            report = status(reader_of(session), self.app.clock.now(), spool,
                            self.app.settings.sla.zone)
        log.info("queues: spool %s; inbound %s; outbox %s", spool.waiting,
                 _nonzero(report["inbound"], InboundState), _nonzero(report["outbox"], OutboxState))
        for problem in report["attention"]:
            log.warning("attention: %s", problem)


def _nonzero(counts: dict[str, Any], states: Iterable[str]) -> str:
    return ", ".join(f"{state} {counts[state]}" for state in states if counts[state]) or "empty"


def _exit_status(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies (`kill -9` of the
    intake); elsewhere the loop notices the new parent pid instead."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
