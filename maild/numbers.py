"""Date-based ticket numbers: YYYYMMDD in sla.timezone, then a per-day counter (5+ digits)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel import Session

COUNTER_DIGITS = 5


def next_number(session: Session, now: datetime, zone: ZoneInfo) -> str:
    """Allocate the next number; the upsert holds the counter row's lock until commit."""
    day = now.astimezone(zone).strftime("%Y%m%d")
    value = session.connection().execute(
        text("INSERT INTO ticket_counter (day, value) VALUES (:day, 1) "
             "ON CONFLICT (day) DO UPDATE SET value = ticket_counter.value + 1 "
             "RETURNING value"),
        {"day": day},
    ).scalar_one()
    return f"{day}{value:0{COUNTER_DIGITS}d}"
