"""`maild run`: the long-running service.

One process. The main thread runs a loop in the shape of Mailman's runners: thread a bounded
batch of stored inbound mail, deliver a bounded batch of due outbox rows, run the timers that
are due (`schedule`), and sleep only when a pass did no work — until the SMTP listener or an
IMAP poller stores something and wakes it. The SMTP listener runs on aiosmtpd's own thread; each
IMAP mailbox has a poller thread. They only ever insert into `inbound`.

SIGTERM and SIGINT set a stop flag: the loop finishes the item in hand, the listener and pollers
stop, and the process exits 0. Every step is a committed state change, so a crash or `kill -9`
loses nothing: at the next start `new` inbound rows, due outbox rows and the claims of the dead
process are simply picked up again.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import timedelta
from types import FrameType

import schedule
from sqlalchemy import func
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from maild.app import App, secret
from maild.db import init as init_database
from maild.db import transaction
from maild.errors import StorageUnavailable
from maild.ingest import Accepted, accept
from maild.ingest.imap import ImapPoller
from maild.ingest.smtp import SmtpListener, StoringHandler
from maild.models import Inbound, Outbox
from maild.threading import process_pending

log = logging.getLogger("maild.daemon")
IDLE_SLEEP_SECONDS = 5.0
BATCH = 100
DATABASE_RETRY_SECONDS = 2.0
INTAKE_PRIORITY_SECONDS = 0.05
STATS_EVERY = timedelta(minutes=10)


class Daemon:
    def __init__(self, app: App) -> None:
        self.app = app
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.listener: SmtpListener | None = None
        self.pollers: list[ImapPoller] = []
        self.scheduler = schedule.Scheduler()
        self.intake = threading.Condition()
        self.receiving = 0  # messages the listener or pollers are storing right now

    def store(self, raw: bytes, source: str, envelope_from: str | None = None) -> Accepted:
        with self.intake:
            self.receiving += 1
        try:
            return accept(self.app.engine, raw, source=source, now=self.app.clock.now(),
                          envelope_from=envelope_from)
        finally:
            with self.intake:
                self.receiving -= 1
                self.intake.notify_all()

    def yield_to_intake(self) -> None:
        """Let messages being received right now commit first (a client waits for its 250);
        bounded, so threading and delivery still move under a steady stream of mail."""
        with self.intake:
            self.intake.wait_for(lambda: self.receiving == 0, timeout=INTAKE_PRIORITY_SECONDS)

    def notify(self) -> None:
        self.wake.set()

    def start(self) -> None:
        settings = self.app.settings
        # Threading mail is CPU work on the main thread; a shorter GIL switch interval keeps
        # the listener's thread from waiting 5 ms at a time to answer a client.
        sys.setswitchinterval(0.001)
        init_database(self.app.engine, settings)
        if settings.smtp is not None:
            handler = StoringHandler(lambda raw, sender: self.store(raw, "smtp", sender),
                                     settings.mail.accept, self.notify)
            self.listener = SmtpListener(settings.smtp, handler)
            self.listener.start()
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
        self.scheduler.every(int(STATS_EVERY.total_seconds())).seconds.do(self.log_stats)
        log.info("maild running: database %s, outbound %s", settings.database.url,
                 settings.outbound.transport)

    def loop(self) -> None:
        deliverer = self.app.deliverer()
        self.log_stats()
        blocked: str | None = None  # the database error of the current outage, logged once
        while not self.stop.is_set():
            self.wake.clear()
            try:
                settled = process_pending(self.app.engine, self.app.settings,
                                          self.app.templates, self.app.clock, BATCH,
                                          should_stop=self.stop.is_set,
                                          pause=self.yield_to_intake)
                report = deliverer.deliver_due(self.app.clock, limit=BATCH,
                                               should_stop=self.stop.is_set,
                                               pause=self.yield_to_intake)
                self.scheduler.run_pending()
            except (StorageUnavailable, OperationalError) as exc:
                if blocked is None:
                    log.warning("database unavailable, will retry: %s", exc)
                blocked = str(exc)
                self.stop.wait(DATABASE_RETRY_SECONDS)
                continue
            if blocked is not None:
                log.info("database available again")
                blocked = None
            if not settled and not report:
                self.wake.wait(IDLE_SLEEP_SECONDS)

    def shutdown(self) -> None:
        self.stop.set()
        if self.listener is not None:
            self.listener.stop()
        for poller in self.pollers:
            poller.join(timeout=10)
        log.info("maild stopped")

    def log_stats(self) -> None:
        with transaction(self.app.engine, readonly=True) as session:
            inbound = dict(session.exec(select(Inbound.state, func.count()).group_by(
                Inbound.state)).all())
            outbox = dict(session.exec(select(Outbox.state, func.count()).group_by(
                Outbox.state)).all())
        log.info("queues: inbound %s; outbox %s",
                 ", ".join(f"{k} {v}" for k, v in sorted(inbound.items())) or "empty",
                 ", ".join(f"{k} {v}" for k, v in sorted(outbox.items())) or "empty")


def run(app: App) -> int:
    daemon = Daemon(app)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping after the item in hand", signal.Signals(signum).name)
        daemon.stop.set()
        daemon.wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        daemon.start()
        daemon.loop()
    finally:
        daemon.shutdown()
    return 0
