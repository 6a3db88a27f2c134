"""A ticket's history entry as the `event` table holds it, written once for every writer: the
operations of `maild.tickets` and the outbox insert `event_values` (`maild.schema.EVENT`), the
delivery worker and the operator's requeue `record_event`.

Events are only ever inserted.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from maild.states import EventType

if TYPE_CHECKING:
    from maild.dbapi import Reader

EVENT_COLUMNS = ("ticket_id", "at", "type", "actor", "detail")
"""The columns of `event` but its id (tests/test_events.py checks them against the model)."""

_INSERT = (f"INSERT INTO event ({', '.join(EVENT_COLUMNS)}) "
           f"VALUES ({', '.join(':' + name for name in EVENT_COLUMNS)})")


def event_values(ticket_id: int, at: datetime, type_: EventType, actor: str,
                 detail: str) -> dict[str, Any]:
    """The one way an event is made — a known type, the detail cut to a sane length — as the
    column values of its row."""
    return {"ticket_id": ticket_id, "at": at, "type": str(EventType(type_)),
            "actor": str(actor), "detail": detail[:2000]}


def record_event(db: Reader, ticket_id: int, at: datetime, type_: EventType, actor: str,
                 detail: str) -> None:
    """Insert one event, in the transaction `db` is in."""
    db.execute(_INSERT, **event_values(ticket_id, at, type_, actor, detail))
