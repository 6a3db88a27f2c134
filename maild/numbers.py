"""Date-based ticket numbers: YYYYMMDD in sla.timezone, then a per-day counter (5+ digits).

On SQLite the counter advances in the caller's transaction (there is one writer at a time, so
nobody waits for it, and a rollback leaves no gap). On PostgreSQL it advances on a connection
apart from it, in autocommit (`maild.tracked.Tracker.apart`): the counter row's lock is held for
one statement, not for the rest of a worker's batch, so parallel workers never queue behind
each other's numbers. A number given out to a transaction that then rolls back is a gap, never
a duplicate (SPEC §5 asks for unique numbers, not consecutive ones)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from maild.tracked import Tracker

COUNTER_DIGITS = 5


def next_number(db: Tracker, now: datetime, zone: ZoneInfo) -> str:
    """Allocate the next number."""
    day = now.astimezone(zone).strftime("%Y%m%d")
    if db.sql.dialect == "sqlite":
        value = db.sql.value(_ADVANCE, day=day)
    else:
        # A connection the server closed (a restart) is dropped by the pool that lent it, and
        # the error goes up as the database's: the number lost with it is a gap.
        with db.apart() as apart:
            value = apart.value(_ADVANCE, day=day)
    return f"{day}{value:0{COUNTER_DIGITS}d}"


_ADVANCE = ("INSERT INTO ticket_counter (day, value) VALUES (:day, 1) "
            "ON CONFLICT (day) DO UPDATE SET value = ticket_counter.value + 1 "
            "RETURNING value")
