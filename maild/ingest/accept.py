"""`accept`: commit a raw message to `inbound`, once per message (`maild.dedupe`), and say
where it is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from maild.db import core_transaction, storage_errors
from maild.dedupe import Identity, identify
from maild.models import Inbound, InboundState

# Built once: constructing a statement costs more CPU than executing it (the SMTP hot path).
_FIND = select(col(Inbound.id)).where(col(Inbound.dedupe_key) == bindparam("key"))
_INSERT = insert(Inbound)


@dataclass(frozen=True)
class Accepted:
    row_id: int
    duplicate: bool     # the same message was stored before; nothing new was written
    table: str          # where the bytes are: `inbound`, or the daemon's intake `spool`
    identity: Identity  # what a log line can be traced by

    def __str__(self) -> str:
        return f"{self.table} {self.row_id}"

    @property
    def trace(self) -> str:
        """`message-id=<...> key=mid:…` for log lines."""
        return f"message-id=<{self.identity.message_id or '-'}> key={self.identity.key[:20]}"


def accept(
    engine: Engine,
    raw: bytes,
    *,
    source: str,
    now: datetime,
    envelope_from: str | None = None,
) -> Accepted:
    """Store `raw` durably unless the same message is stored already (`maild.dedupe`);
    raises StorageUnavailable when it can't."""
    identity = identify(raw)
    with storage_errors():
        try:
            return _insert(engine, raw, identity, source, now, envelope_from)
        except IntegrityError:
            # Another worker stored the same message between our look-up and insert.
            return _insert(engine, raw, identity, source, now, envelope_from)


def _insert(engine: Engine, raw: bytes, identity: Identity, source: str, now: datetime,
            envelope_from: str | None) -> Accepted:
    # Core, not the ORM: this is the SMTP listener's hot path.
    with core_transaction(engine) as connection:
        existing = connection.execute(_FIND, {"key": identity.key}).scalar()
        if existing is not None:
            return Accepted(int(existing), True, "inbound", identity)
        result = connection.execute(_INSERT, {
            "dedupe_key": identity.key, "message_id": identity.message_id, "source": source,
            "envelope_from": envelope_from, "received_at": now, "raw": raw, "size": len(raw),
            "state": InboundState.NEW, "reason": "", "attempts": 0})
        inserted = result.inserted_primary_key
        assert inserted is not None
        return Accepted(int(inserted[0]), False, "inbound", identity)
