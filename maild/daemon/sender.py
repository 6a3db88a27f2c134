"""The sender process of `maild run` (see `maild.daemon`): delivers the outbox, in a loop the
worker wakes when it has committed mail that is owed, and every few seconds for the retries
that come due.

Delivery is a process of its own for two reasons. A relay that is slow or gone (a connect
timeout is `outbound.smtp_timeout`) holds up only the mail waiting for it, never the threading
of new mail and its acknowledgement numbers. And on a machine with a second core, writing out
and recording the mail runs beside the threading of the next, not after it (bench/README.md,
issue #12's tenth part). It imports no SQLAlchemy, ORM or templates: what it holds is the
transport, DB-API connections (`maild.outbound.deliver`) and the rows in hand.
"""

from __future__ import annotations

import sys

from maild import config
from maild.app import make_transport
from maild.clock import SystemClock
from maild.daemon.shared import Outage, Shared, become_child, child_arguments
from maild.dbapi import Pool
from maild.errors import StorageUnavailable
from maild.outbound.deliver import Deliverer

IDLE_SLEEP_SECONDS = 5.0  # the longest a retry that came due waits for its attempt
DATABASE_RETRY_SECONDS = 2.0
SENDER_NICENESS = 10


def main(argv: list[str]) -> None:
    """Entry point of the sender process (`maild.daemon.shared.start_daemon_child`)."""
    config_path, shared, parent, level = child_arguments(argv)
    become_child(shared, level, SENDER_NICENESS)
    settings = config.load(config_path)
    deliverer = Deliverer(Pool(settings.database), make_transport(settings.outbound),
                          settings.outbound)
    try:
        send_until_stopped(deliverer, shared, parent)
    finally:
        deliverer.close()


def send_until_stopped(deliverer: Deliverer, shared: Shared, parent: int) -> None:
    """Deliver due batches until none is left, then sleep until the worker rings (or the
    idle time is up); until the intake stops, or is gone."""
    clock = SystemClock()
    bell = shared.sender_bell

    def stopping() -> bool:
        return shared.orphaned_or_stopped(parent)

    outage = Outage()
    while not stopping():
        bell.forget()
        try:
            report = deliverer.deliver_due(clock, should_stop=stopping,
                                            record_with_next_claim=True)
        except StorageUnavailable as exc:
            outage.began(exc)
            shared.sleep(bell, DATABASE_RETRY_SECONDS)
            continue
        outage.over()
        if not report:  # nothing due: what comes due next is a retry, or the worker rings
            bell.wait(IDLE_SLEEP_SECONDS)


if __name__ == "__main__":
    main(sys.argv[1:])
