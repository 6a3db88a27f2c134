"""`maild run`: the long-running service loop.

One process, one main loop in the shape of Mailman's runners: thread a bounded batch of stored
inbound mail, deliver a bounded batch of due outbox rows, sleep only when a pass did no work.
SIGTERM and SIGINT set a stop flag; the loop finishes the item in hand and exits 0. Because
every step is a committed state change, a crash or `kill -9` loses nothing: at the next start
the `new` inbound rows and due (or stale-claimed) outbox rows are simply picked up again.

Not yet here (issue #3): the SMTP listener and the IMAP pollers. Until then mail enters through
`maild ingest` (the MTA pipe) and this loop threads and delivers it.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from maild.app import App
from maild.db import init as init_database
from maild.threading import process_pending

log = logging.getLogger("maild.daemon")
IDLE_SLEEP_SECONDS = 1.0
BATCH = 100


def run(app: App) -> int:
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping after the item in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    init_database(app.engine, app.settings)
    deliverer = app.deliverer()
    log.info("maild running: database %s, outbound %s", app.settings.database.url,
             app.settings.outbound.transport)
    log.warning("the SMTP listener and IMAP pollers are not implemented yet (issue #3): "
                "this loop threads mail stored by `maild ingest` and delivers the outbox")
    while not stop.is_set():
        settled = process_pending(app.engine, app.settings, app.templates, app.clock, BATCH)
        report = deliverer.deliver_due(app.clock, limit=BATCH)
        if not settled and not report:
            stop.wait(IDLE_SLEEP_SECONDS)
    log.info("maild stopped")
    return 0
