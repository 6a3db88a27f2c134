"""`accept`: commit a raw message to `inbound`, once per message (`maild.dedupe`), and say
where it is.

The rule and the row are written once, in SQL over DB-API (`store`), so that every writer of
`inbound` stores the same row the same way: the MTA pipe on a connection of its own without
SQLAlchemy (`accept_on`: importing SQLAlchemy costs the pipe more CPU than all its work), the
daemon's intake on PostgreSQL (`accept_on`, on a connection of its pool), and the worker moving
the SQLite intake spool (`store`, in its own transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from maild.dbapi import Pool, Reader
from maild.dedupe import Identity, identify
from maild.states import InboundState

# ON CONFLICT on the unique key, not a look-up before the insert: two writers storing the same
# message at once (PostgreSQL; SQLite's writers queue) store it once, and neither fails.
_INSERT = (
    "INSERT INTO inbound (dedupe_key, message_id, source, envelope_from, received_at, raw, "
    "size, state, reason, attempts, claimed_by) "
    "VALUES (:key, :message_id, :source, :envelope_from, :received_at, :raw, :size, :state, "
    "'', 0, '') ON CONFLICT (dedupe_key) DO NOTHING RETURNING id")
_FIND = "SELECT id FROM inbound WHERE dedupe_key = :key"


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


def store(writer: Reader, raw: bytes, identity: Identity, *, source: str, now: datetime,
          envelope_from: str | None = None) -> Accepted:
    """Insert `raw` as a `new` inbound row in the writer's transaction, unless a row with its
    dedupe key is there already (then that row's id, `duplicate`)."""
    inserted = writer.value(_INSERT, key=identity.key, message_id=identity.message_id,
                            source=source, envelope_from=envelope_from, received_at=now,
                            raw=raw, size=len(raw), state=InboundState.NEW.value)
    if inserted is not None:
        return Accepted(int(inserted), False, "inbound", identity)
    existing = writer.value(_FIND, key=identity.key)
    if existing is None:  # ON CONFLICT found the key, so the row is there
        raise RuntimeError(f"inbound: no row for dedupe key {identity.key}")
    return Accepted(int(existing), True, "inbound", identity)


def accept_on(writer: Reader, raw: bytes, *, source: str, now: datetime,
              envelope_from: str | None = None) -> Accepted:
    """Store `raw` durably — committed in a write transaction of its own on the writer's
    connection (`maild.dbapi.connect`) — unless the same message is stored already; raises
    StorageUnavailable when it can't."""
    identity = identify(raw)
    with writer.writing():
        return store(writer, raw, identity, source=source, now=now, envelope_from=envelope_from)


def accept(pool: Pool, raw: bytes, *, source: str, now: datetime,
           envelope_from: str | None = None) -> Accepted:
    """`accept_on`, on a connection the pool lends; raises StorageUnavailable."""
    with pool.reader() as writer:
        return accept_on(writer, raw, source=source, now=now, envelope_from=envelope_from)
