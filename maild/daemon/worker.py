"""The worker process of `maild run` (see `maild.daemon`): moves the intake spool into `inbound`,
threads stored mail and runs the timer duties, in a loop the intake wakes; it wakes the sender
(`maild.daemon.sender`) for the mail that work owes.

It is spawned, so this module is all it imports of the daemon, with what the intake shares with
it (`maild.daemon.shared`); nothing here imports a listener, a poller or the web channel.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import schedule

from maild import config
from maild.app import App
from maild.daemon.shared import Outage, Shared, become_child, child_arguments
from maild.errors import StorageUnavailable
from maild.ingest.backlog import SpoolBacklog, backlog_at
from maild.sla.duties import run_duties
from maild.states import InboundState, OutboxState
from maild.status import status
from maild.threading import process_pending

log = logging.getLogger("maild.daemon")
IDLE_SLEEP_SECONDS = 5.0
BATCH = 100
DATABASE_RETRY_SECONDS = 2.0
STATS_EVERY = timedelta(minutes=10)
DUTIES_EVERY = timedelta(seconds=30)
WORKER_NICENESS = 10


def main(argv: list[str]) -> None:
    """Entry point of the worker process (`maild.daemon.shared.start_daemon_child`)."""
    worker_main(*child_arguments(argv))


def worker_main(config_path: str, shared: Shared, parent: int, level: int) -> None:
    become_child(shared, level, WORKER_NICENESS)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    worker = Worker(App(config.load(config_path)), shared, parent)
    worker.app.templates.load_all()  # before "ready": the first mail should not wait for them
    shared.worker_ready.value = 1
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
        report = run_duties(self.app.pool, self.app.settings, self.app.templates,
                            self.app.clock)
        if report.examined:
            log.info("timer duties: %s", report.summary())
            self.shared.sender_bell.ring()  # the notices and requests they owe

    def stopping(self) -> bool:
        return self.shared.orphaned_or_stopped(self.parent)

    def loop(self) -> None:
        started = False  # the timers run once at start, then on schedule
        outage = Outage()
        bell = self.shared.worker_bell
        while not self.stopping():
            bell.forget()
            try:
                moved = self.spool.move_into(self.app.pool, BATCH) if self.spool else 0
                settled = process_pending(self.app.pool, self.app.settings,
                                          self.app.templates, self.app.clock, BATCH,
                                          should_stop=self.stopping, in_hand=self.in_hand)
                if settled:  # committed: what they owe is in the outbox
                    self.shared.sender_bell.ring()
                if started:
                    self.scheduler.run_pending()
                else:
                    self.scheduler.run_all()
                    started = True
            except StorageUnavailable as exc:
                outage.began(exc)
                self.shared.sleep(bell, DATABASE_RETRY_SECONDS)
                continue
            outage.over()
            # A reply waiting for its original to be threaded is not progress: don't spin on it.
            progressed = moved or any(s.state != InboundState.NEW for s in settled)
            if not progressed:
                bell.wait(IDLE_SLEEP_SECONDS if not settled else 0.05)

    def in_hand(self, inbound_id: int | None) -> None:
        """Tell the intake which message this worker is threading, and since when."""
        self.shared.in_hand_since.value = time.monotonic()
        self.shared.in_hand.value = inbound_id or 0

    def log_stats(self) -> None:
        """The queue sizes, and what `maild status` says needs attention, as warnings: the
        journal of a daemon nobody watches still says what is wrong, every 10 minutes."""
        spool = backlog_at(self.spool.path) if self.spool else SpoolBacklog()
        with self.app.pool.reader() as reader, reader.snapshot():
            report = status(reader, self.app.clock.now(), spool, self.app.settings.sla.zone)
        log.info("queues: spool %s; inbound %s; outbox %s", spool.waiting,
                 _nonzero(report["inbound"], InboundState), _nonzero(report["outbox"], OutboxState))
        for problem in report["attention"]:
            log.warning("attention: %s", problem)


def _nonzero(counts: dict[str, Any], states: Iterable[str]) -> str:
    return ", ".join(f"{state} {counts[state]}" for state in states if counts[state]) or "empty"


if __name__ == "__main__":
    main(sys.argv[1:])
