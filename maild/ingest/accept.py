"""`accept`: commit a raw message to `inbound`, once, and say where it is."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser

from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from maild.db import core_transaction, storage_errors
from maild.headers import normalize_message_id
from maild.models import Inbound, InboundState

_MAX_KEY = 400
_header_parser = BytesHeaderParser(policy=policy.compat32)
# Built once: constructing a statement costs more CPU than executing it (the SMTP hot path).
_FIND = select(col(Inbound.id)).where(col(Inbound.dedupe_key) == bindparam("key"))
_INSERT = insert(Inbound)


@dataclass(frozen=True)
class Accepted:
    row_id: int
    duplicate: bool  # the same message was stored before; nothing new was written
    table: str = "inbound"  # where the bytes are: `inbound`, or the daemon's intake `spool`
    dedupe_key: str = ""  # `mid:<Message-ID>` or `sha256:…`: what a log line can be traced by

    def __str__(self) -> str:
        return f"{self.table} {self.row_id}"


def dedupe_key(raw: bytes) -> str:
    """`mid:<Message-ID>` when the message has one, else `sha256:<hex of the bytes>`."""
    try:
        value = _header_parser.parsebytes(_header_block(raw)).get("Message-ID")
    except Exception:  # a header block broken enough to defeat even compat32
        value = None
    message_id = normalize_message_id(str(value)) if value else ""
    message_id = message_id.split()[0] if message_id.split() else ""
    if message_id:
        if len(message_id) > _MAX_KEY:
            return "mid-sha256:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()
        return "mid:" + message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _header_block(raw: bytes) -> bytes:
    """The bytes up to the first empty line: all that is needed to find the Message-ID."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return raw[: min(ends) + 2] if ends else raw


def accept(
    engine: Engine,
    raw: bytes,
    *,
    source: str,
    now: datetime,
    envelope_from: str | None = None,
) -> Accepted:
    """Store `raw` durably unless already stored; raises StorageUnavailable when it can't."""
    key = dedupe_key(raw)
    with storage_errors():
        try:
            return _insert(engine, raw, key, source, now, envelope_from)
        except IntegrityError:
            # Another worker stored the same message between our look-up and insert.
            return _insert(engine, raw, key, source, now, envelope_from)


def _insert(
    engine: Engine, raw: bytes, key: str, source: str, now: datetime, envelope_from: str | None
) -> Accepted:
    # Core, not the ORM: this is the SMTP listener's hot path.
    with core_transaction(engine) as connection:
        existing = connection.execute(_FIND, {"key": key}).scalar()
        if existing is not None:
            return Accepted(int(existing), True, "inbound", key)
        result = connection.execute(_INSERT, {
            "dedupe_key": key, "source": source, "envelope_from": envelope_from,
            "received_at": now, "raw": raw, "size": len(raw), "state": InboundState.NEW,
            "reason": "", "attempts": 0})
        inserted = result.inserted_primary_key
        assert inserted is not None
        return Accepted(int(inserted[0]), False, "inbound", key)
