"""The intake process of `maild run` (see `maild.daemon`): the SMTP/LMTP listener, the IMAP
pollers, the web channel and the hand-off socket store mail and wake the worker; the intake
supervises that worker (`maild.daemon.worker`), restarting it when it dies or hangs, and the
sender (`maild.daemon.sender`), restarting it when it dies.

It touches the database only over DB-API (`maild.dbapi.Pool`) and imports no SQLAlchemy, ORM
or Alembic: they would double what it holds in memory, for good. `maild init`, which the daemon
runs first, runs in a process of its own that ends when it is done (`initialise`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from maild.app import App, secret
from maild.claims import interrupted
from maild.daemon.shared import Shared, start_child, start_daemon_child
from maild.daemon.systemd import notify as tell_service_manager
from maild.dbapi import Pool
from maild.errors import MaildError, StorageUnavailable
from maild.ingest.accept import Accepted, accept_on
from maild.ingest.handoff import HandoffListener
from maild.ingest.imap import ImapPoller
from maild.ingest.smtp import SmtpListener, StoringHandler
from maild.ingest.spool import Spool

if TYPE_CHECKING:
    from maild.web import WebServer

log = logging.getLogger("maild.daemon")
RESTART_MAX_SECONDS = 60.0  # the longest back-off before a child that died is started again
# How long a stop waits for each child to finish what it has in hand (the message it threads;
# the mail it is handing the relay, which waits at most outbound.smtp_timeout per reply), all
# within systemd's TimeoutStopSec=60 (systemd/maild.service).
STOP_GRACE_SECONDS = {"worker": 45.0, "sender": 10.0}


class Restarts:
    """When a child that died is started again, the worker's and the sender's alike: after a
    back-off that doubles while it keeps dying, from 1 s up to `RESTART_MAX_SECONDS`, and
    starts afresh once a child has run that long. Asked on each turn of the supervisor's
    loop, so a child waiting for its restart holds up neither the other's nor a stop."""

    def __init__(self) -> None:
        self.backoff = 1.0
        self.due: float | None = None  # it died: when to start it again

    def running(self, started: float, now: float) -> None:
        if now - started > RESTART_MAX_SECONDS:
            self.backoff = 1.0  # it has run fine for a while: a new crash starts afresh

    def died(self, now: float) -> float:
        """The back-off before the restart (once per death: `due` is set until `started`)."""
        delay, self.due = self.backoff, now + self.backoff
        self.backoff = min(self.backoff * 2, RESTART_MAX_SECONDS)
        return delay

    def ready(self, now: float) -> bool:
        return self.due is not None and now >= self.due

    def started(self) -> None:
        self.due = None


class Intake:
    def __init__(self, app: App) -> None:
        self.app = app
        self.shared = Shared()
        # The intake's connections: its commits answer clients, so they leave WAL checkpoints
        # to the worker's.
        self.readers = Pool(app.settings.database, checkpoints=False)
        self.stop = threading.Event()
        self.listener: SmtpListener | None = None
        self.web: WebServer | None = None
        self.pollers: list[ImapPoller] = []
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_started = 0.0
        self.worker_restarts = Restarts()
        self.sender: subprocess.Popen[bytes] | None = None
        self.sender_started = 0.0
        self.sender_restarts = Restarts()
        self.announced = False  # READY=1 sent to systemd
        self.spool: Spool | None = None
        self.handoff: HandoffListener | None = None

    def store(self, raw: bytes, source: str, envelope_from: str | None = None) -> Accepted:
        if self.spool is not None:
            return self.spool.store(raw, source=source, now=self.app.clock.now(),
                                    envelope_from=envelope_from)
        with self.readers.reader() as writer:
            return accept_on(writer, raw, source=source, now=self.app.clock.now(),
                             envelope_from=envelope_from)

    def store_now(self, raw: bytes, envelope_from: str | None) -> Accepted | None:
        """`store` from the SMTP listener's event loop: into the spool if nobody else writes to
        it this instant (`Spool.try_store`), else None — then `store` it on a thread."""
        if self.spool is None:
            return None
        return self.spool.try_store(raw, source="smtp", now=self.app.clock.now(),
                                    envelope_from=envelope_from)

    def notify(self) -> None:
        self.shared.wake()

    def notified(self, accepted: Accepted) -> Accepted:
        """Stored: the worker has something to do."""
        self.notify()
        return accepted

    def start(self) -> None:
        settings = self.app.settings
        initialise(settings.path)
        self.spool = self.app.spool()
        self.start_worker()
        self.start_sender()
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
                                     settings.mail.accept, self.notify, self.store_now)
            self.listener = SmtpListener(settings.smtp, handler)
            self.listener.start()
        if settings.web is not None:
            from maild.web import WebServer, make_app  # Starlette and uvicorn only when wanted

            self.web = WebServer(settings.web, make_app(
                settings, self.readers, lambda raw, source: self.notified(
                    self.store(raw, source))))
            self.web.start()
            log.info("web channel on %s (%s)", settings.web.listen, settings.web.base_url)
        for mailbox in settings.imap:
            password = secret(mailbox.password_env, mailbox.password_file,
                              f"{mailbox.name}.password")
            poller = ImapPoller(mailbox, password, self.readers,
                                lambda raw, source: self.store(raw, source), self.notify,
                                self.stop)
            poller.start()
            self.pollers.append(poller)
            log.info("IMAP poller %s: %s@%s:%s %s (%s)", mailbox.name, mailbox.username,
                     mailbox.host, mailbox.port, mailbox.folder,
                     "IDLE" if mailbox.idle else f"every {mailbox.poll_seconds}s")
        log.info("maild running: database %s, outbound %s", settings.database.shown_url,
                 settings.outbound.transport)

    def start_worker(self) -> None:
        self.shared.in_hand.value = 0
        self.shared.worker_ready.value = 0
        self.worker = start_daemon_child("maild.daemon.worker", self.app.settings.path,
                                         self.shared, os.getpid(), logging.getLogger().level)
        self.worker_started = time.monotonic()
        self.worker_restarts.started()

    def start_sender(self) -> None:
        self.sender = start_daemon_child("maild.daemon.sender", self.app.settings.path,
                                         self.shared, os.getpid(), logging.getLogger().level)
        self.sender_started = time.monotonic()
        self.sender_restarts.started()
        self.shared.sender_bell.ring()  # what a sender that died left due

    def supervise(self) -> None:
        """Wait for a stop request; restart the worker whenever it dies on its own, and stop
        and restart it when one message holds it longer than `mail.processing_timeout`;
        restart the sender when it dies (its claims are taken back by the next one:
        `maild.outbound.deliver`)."""
        while not self.stop.wait(0.5):
            self.announce_ready()
            self.supervise_worker(time.monotonic())
            self.supervise_sender(time.monotonic())

    def supervise_worker(self, now: float) -> None:
        assert self.worker is not None
        if self.worker.poll() is None:
            if self.hung():
                self.stop_hung_worker()
                self.start_worker()  # at once: the message's attempts are counted
            else:
                self.worker_restarts.running(self.worker_started, now)
        elif self.worker_restarts.due is None:
            self.worker_died()
            log.error("worker exited with %s; restarting it in %.0f s",
                      _exit_status(self.worker.returncode), self.worker_restarts.died(now))
        elif self.worker_restarts.ready(now):
            self.start_worker()

    def supervise_sender(self, now: float) -> None:
        assert self.sender is not None
        if self.sender.poll() is None:
            self.sender_restarts.running(self.sender_started, now)
        elif self.sender_restarts.due is None:
            log.error("sender exited with %s; restarting it in %.0f s",
                      _exit_status(self.sender.returncode), self.sender_restarts.died(now))
        elif self.sender_restarts.ready(now):
            self.start_sender()

    def announce_ready(self) -> None:
        """READY=1 to systemd (`Type=notify`), once: the listeners are up and the first worker
        has its imports and templates loaded, so the first mail is threaded at once — or that
        worker died, and then the intake is up all the same, storing mail while it restarts
        the worker: better than systemd stopping the service for a start that never ends."""
        assert self.worker is not None
        if self.announced or not (self.shared.worker_ready.value
                                  or self.worker.poll() is not None):
            return
        self.announced = True
        tell_service_manager("READY=1", f"STATUS=maild running: database "
                             f"{self.app.settings.database.shown_url}, outbound "
                             f"{self.app.settings.outbound.transport}")
        log.info("ready: the worker has loaded its imports and templates")

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
        assert self.worker is not None
        self.worker.kill()
        self.worker.wait()
        self.record_interruption(inbound_id, f"threading took longer than "
                                 f"mail.processing_timeout ({limit})")

    def worker_died(self) -> None:
        inbound_id = self.shared.in_hand.value
        if inbound_id and self.worker is not None:
            self.record_interruption(inbound_id, "the worker died while threading it ("
                                     f"{_exit_status(self.worker.returncode)})")

    def record_interruption(self, inbound_id: int, what: str) -> None:
        self.shared.in_hand.value = 0
        try:
            with self.readers.reader() as writer:
                interrupted(writer, inbound_id, what)
        except StorageUnavailable as exc:  # the attempt is counted: only the reason is lost
            log.warning("inbound %s: could not record why threading stopped: %s",
                        inbound_id, exc)

    def shutdown(self) -> None:
        self.stop.set()
        tell_service_manager("STOPPING=1")
        if self.handoff is not None:  # first: a pipe from now on threads its mail itself
            self.handoff.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.web is not None:
            self.web.stop()
        for poller in self.pollers:
            poller.join(timeout=10)
        self.shared.stop()
        asked = time.monotonic()
        for name, child in (("worker", self.worker), ("sender", self.sender)):
            if child is None:
                continue
            grace = STOP_GRACE_SECONDS[name]
            try:
                child.wait(timeout=max(0.0, asked + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                # SIGKILL: its SIGTERM only asks it to stop, which it has been asked. Safe:
                # what it had claimed is taken back at the next start.
                log.warning("%s did not stop within %.0f s; killing it", name, grace)
                child.kill()
                child.wait()
                if name == "worker":
                    self.worker_died()
        if self.spool is not None:
            self.spool.close()
        self.readers.close()
        log.info("maild stopped")


def initialise(config_path: str) -> None:
    """`maild init` — the database, the keys, the schema, the queues and staff — as a command
    of its own, which says what it did or what went wrong: what it imports (SQLAlchemy, the
    ORM, Alembic) goes when it ends. Raises MaildError when it failed."""
    verbose = ["--verbose"] if logging.getLogger().level <= logging.DEBUG else []
    child = start_child(["-m", "maild", "--config", config_path, *verbose, "init"])
    if child.wait() != 0:
        raise MaildError(f"maild init failed ({_exit_status(child.returncode)})")


def run(app: App) -> int:
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


def _exit_status(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
