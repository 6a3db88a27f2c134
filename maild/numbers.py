"""Date-based ticket numbers: YYYYMMDD in sla.timezone, then a per-day counter (5+ digits).

On SQLite the counter advances in the caller's transaction (there is one writer at a time, so
nobody waits for it, and a rollback leaves no gap). On PostgreSQL it advances in a transaction
of its own, committed at once: the counter row's lock is held for one statement, not for the
rest of a worker's batch, so parallel workers never queue behind each other's numbers. A number
given out to a transaction that then rolls back is a gap, never a duplicate (SPEC §5 asks for
unique numbers, not consecutive ones)."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError
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
        bind = session.get_bind()
        value = _advance_apart(bind if isinstance(bind, Engine) else bind.engine, day)
    return f"{day}{value:0{COUNTER_DIGITS}d}"


def _advance_apart(engine: Engine, day: str) -> int:
    """The counter advanced and committed on a connection of its own, in autocommit mode,
    which this thread keeps for it: taking one from the pool for every number (a ping, the
    isolation level set and reset) was a sixth of threading a new ticket on PostgreSQL. A
    connection the server has closed (a restart) is replaced once; any other error is raised,
    as the database's, and the connection dropped."""
    kept = _kept_connections(engine)
    thread = threading.get_ident()
    for attempt in (1, 2):
        own = kept.get(thread)
        if own is None:
            own = kept[thread] = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            value = own.exec_driver_sql(_ADVANCE_PYFORMAT, {"day": day}).scalar_one()
            own.commit()  # SQLAlchemy's bookkeeping: the statement committed on its own
            return int(value)
        except BaseException as exc:
            kept.pop(thread, None)
            with contextlib.suppress(Exception):
                own.close()
            if attempt == 1 and isinstance(exc, DBAPIError) and exc.connection_invalidated:
                continue  # a number lost with that connection is a gap, never a duplicate
            raise
    raise AssertionError("unreachable")


def _kept_connections(engine: Engine) -> dict[int, Connection]:
    """The numbering connections of `engine`, by thread; closed when it is disposed, so an
    engine given up (every command's, at its end) leaves no connection open behind it."""
    with _lock:
        kept = _kept.get(engine)
        if kept is None:
            kept = _kept[engine] = {}
            # An engine may be used again after a dispose: listen once.
            if not event.contains(engine, "engine_disposed", _close_kept):
                event.listen(engine, "engine_disposed", _close_kept)
        return kept


def _close_kept(engine: Engine) -> None:
    with _lock:
        kept = _kept.pop(engine, {})
    for connection in kept.values():
        with contextlib.suppress(Exception):
            connection.invalidate()  # closed for good: back in the pool it would stay open
            connection.close()


_kept: WeakKeyDictionary[Engine, dict[int, Connection]] = WeakKeyDictionary()
_lock = threading.Lock()


_ADVANCE = ("INSERT INTO ticket_counter (day, value) VALUES (:day, 1) "
            "ON CONFLICT (day) DO UPDATE SET value = ticket_counter.value + 1 "
            "RETURNING value")
_ADVANCE_PYFORMAT = _ADVANCE.replace(":day", "%(day)s")  # psycopg's own placeholders
