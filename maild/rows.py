"""The write path's statements, straight to the DB-API driver inside an ORM session's
transaction: inserts of whole rows, and the few reads and updates made for every mail.

A statement through SQLAlchemy Core costs about 33 µs here (its cache key, an execution
context, bind and result processing), the same through `sqlite3` about 6 µs, and the worker
makes a dozen or more per mail. `rows_of(session)` is a `Rows` over the session's own driver
connection, so what it writes is in the same transaction — and the same SAVEPOINT — as what the
session writes, and is committed or rolled back with it.

What it shares with the read side is `maild.dbapi.Reader`: `:name` parameters, instants stored
as naive UTC, "cannot write now" errors raised as `StorageUnavailable`. What it adds:

`insert(model, values)`: one row of a table of `maild.models`, its columns and their defaults
read from the model (the SQL is derived, never written out), its id returned. (UPDATEs and
other statements returning no rows go through the Reader's `execute`.)

The rows it writes are not in the session's identity map, and it does not flush the session:
read them back with a query, and flush first when a statement depends on what the session
holds unwritten (`maild.dbapi.reader_of` flushes; this does not, it is the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session, SQLModel

from maild.dbapi import Reader


class Rows(Reader):
    """`maild.dbapi.Reader` plus inserts, on the connection of one transaction."""

    def insert(self, model: type[SQLModel], values: dict[str, Any]) -> int:
        """Insert one row of `model` (columns not given get the model's defaults); its id."""
        shape = _shape(model.__table__, self.dialect)  # type: ignore[attr-defined]
        params = {**shape.defaults, **values}
        with self._errors:
            cursor = self.connection.cursor()
            try:
                cursor.execute(shape.sql, self._params(params))
                if self.dialect == "sqlite":
                    return int(cursor.lastrowid or 0)
                row = cursor.fetchone()
                return int(row[0]) if row else 0
            finally:
                cursor.close()

    def defaults(self, model: type[SQLModel]) -> dict[str, Any]:
        """The value `insert` gives each column of `model` that it is not given."""
        return _shape(model.__table__, self.dialect).defaults  # type: ignore[attr-defined]


def rows_of(session: Session) -> Rows:
    """The `Rows` of the session's current transaction — the innermost: a savepoint's own (one
    per transaction, kept in `session.info`: asking the session for its connection is itself a
    measurable cost).

    Asking the session for its connection is also what makes SQLAlchemy emit a savepoint's
    SAVEPOINT: it does so lazily, when a nested transaction first needs its connection. So the
    first call inside each `begin_nested()` block asks, and what follows is inside it. (Kept
    per outermost transaction, a `Rows` made in one message's savepoint was reused in the next
    message's block, whose SAVEPOINT then never came: its writes could not be rolled back.)"""
    current = session.get_nested_transaction() or session.get_transaction()
    kept = session.info.get(_KEY)
    if kept is not None and kept[0] is current:
        rows: Rows = kept[1]
        return rows
    connection = session.connection()
    rows = Rows(connection.connection.driver_connection, connection.dialect.name)
    session.info[_KEY] = (current, rows)
    return rows


_KEY = "maild.rows"


@dataclass(frozen=True)
class _Shape:
    sql: str                    # INSERT of every column but the id, in the driver's style
    defaults: dict[str, Any]    # the model's default of each column (None: none)


@cache
def _shape(table: Table, dialect: str) -> _Shape:
    columns = [c for c in table.columns if not c.primary_key]
    defaults = {c.name: (getattr(c.default, "arg", None) if c.default is not None
                         and c.default.is_scalar else None) for c in columns}
    sql = (f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) "
           f"VALUES ({', '.join(':' + c.name for c in columns)})")
    if dialect != "sqlite":
        sql += " RETURNING id"
    return _Shape(Rows(None, dialect)._sql(sql), defaults)
