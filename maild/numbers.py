"""Date-based ticket numbers: YYYYMMDD in sla.timezone, then a per-day counter (5+ digits).

On SQLite the counter advances in the caller's transaction (there is one writer at a time, so
nobody waits for it, and a rollback leaves no gap). On PostgreSQL it advances in a transaction
of its own, committed at once: the counter row's lock is held for one statement, not for the
rest of a worker's batch, so parallel workers never queue behind each other's numbers. A number
given out to a transaction that then rolls back is a gap, never a duplicate (SPEC §5 asks for
unique numbers, not consecutive ones)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel import Session

from maild.rows import rows_of

COUNTER_DIGITS = 5


def next_number(session: Session, now: datetime, zone: ZoneInfo) -> str:
    """Allocate the next number."""
    day = now.astimezone(zone).strftime("%Y%m%d")
    rows = rows_of(session)
    if rows.dialect == "sqlite":
        value = rows.value(_ADVANCE, day=day)  # straight to the driver: once per new ticket
    else:
        with session.connection().engine.connect().execution_options(
                isolation_level="AUTOCOMMIT") as own:
            value = own.execute(text(_ADVANCE), {"day": day}).scalar_one()
    return f"{day}{value:0{COUNTER_DIGITS}d}"


_ADVANCE = ("INSERT INTO ticket_counter (day, value) VALUES (:day, 1) "
            "ON CONFLICT (day) DO UPDATE SET value = ticket_counter.value + 1 "
            "RETURNING value")
