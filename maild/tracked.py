"""Rows of `maild.models` as objects outside the ORM session: how the worker reads and writes
the tickets and messages of the mail it threads.

The operations of `maild.tickets` read and change tickets (and the messages they store) as
objects, and the CLI, the web pages and the timers hand them objects of the ORM session. For the
worker that cost more than anything else it does per reply (issue #12, bench/README): the ORM
select of the ticket and its unit of work flushing the change when the savepoint ends were 40 %
of threading a follow-up, and building a new ticket and its message through SQLModel's
constructor 180 µs each. So in the worker the objects are *tracked* instead: inside
`tracking(session)`, `load`, `get` and `insert` go straight to the driver (`maild.rows`, the
same transaction and savepoint), each object is a plain one with the model's columns as its
attributes (`_plain`: no constructor, no ORM instrumentation) and is never added to the
session, and when the block ends without an error `save` writes what changed on each with one
UPDATE. When it ends with one, the objects are dropped with the savepoint they were read in.

One object per row within a tracking block (an identity map by model and id), as the session
keeps it. `maild.db.add_object` inserts through the tracker when one is active, so
`maild.tickets.open_ticket` works in both worlds. What is tracked must not also be loaded
through the session in the same block: the two objects would not know of each other.

`remembered` holds what the block's own statements have told or done that a later statement of
the block would ask the database again (whether an address is marked undeliverable, which mail
a staff member last got about a ticket): it is dropped with the block, so a savepoint rolled
back takes what it remembered with it. Whoever asks owns its keys, and forgets or updates one
when it writes what the answer depends on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import Boolean, Table
from sqlmodel import Session, SQLModel

from maild.dbapi import bound_list, instant
from maild.models import UTCDateTime
from maild.rows import Rows, rows_of

_Model = TypeVar("_Model", bound=SQLModel)
_KEY = "maild.tracker"


class Tracker:
    """The objects read and inserted in one tracking block, with their columns as read."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self._held: dict[tuple[type[SQLModel], int], tuple[SQLModel, dict[str, Any]]] = {}
        self._inserted: set[tuple[type[SQLModel], int]] = set()
        self.remembered: dict[tuple[Any, ...], Any] = {}

    def load(self, model: type[_Model], column: str, values: list[Any]) -> list[_Model]:
        """The rows of `model` whose `column` (a name of maild's, never input) is one of
        `values`, as tracked objects (the ones already held as they are now, changes and all)."""
        if not values:
            return []
        shape = _shape(model)
        listed, params = bound_list("v", values)
        return [self._held_or(model, row) for row in self.rows.rows(
            f"SELECT {shape.columns} FROM {shape.table} WHERE {column} IN ({listed})", **params)]

    def get(self, model: type[_Model], row_id: int) -> _Model | None:
        held = self._held.get((model, row_id))
        if held is not None:
            return cast(_Model, held[0])
        found = self.load(model, "id", [row_id])
        return found[0] if found else None

    def insert(self, model: type[_Model], values: dict[str, Any]) -> _Model:
        """Insert one row (columns not given get the model's defaults); its tracked object."""
        row_id = self.rows.insert(model, values)
        self._inserted.add((model, row_id))
        return self._track(model, {**self.rows.defaults(model), **values, "id": row_id})

    def inserted(self, model: type[SQLModel], row_id: int | None) -> bool:
        """The row was inserted in this block: nothing written before the block refers to it."""
        return (model, row_id) in self._inserted

    def save(self) -> None:
        """Write each object's changed columns, and take its values as read from now on."""
        for (model, row_id), (found, read) in self._held.items():
            now = {name: found.__dict__[name] for name in read}
            changed = {name: value for name, value in now.items() if value != read[name]}
            if changed:
                self.rows.execute(_update(_shape(model).table, tuple(changed)),
                                  **{f"new_{name}": value for name, value in changed.items()},
                                  row=row_id)
                self._held[model, row_id] = (found, now)

    def _held_or(self, model: type[_Model], row: dict[str, Any]) -> _Model:
        held = self._held.get((model, row["id"]))
        if held is not None:
            return cast(_Model, held[0])
        convert = _shape(model).convert
        return self._track(model, {name: convert[name](value) if value is not None else None
                                   for name, value in row.items()})

    def _track(self, model: type[_Model], values: dict[str, Any]) -> _Model:
        found = cast(_Model, object.__new__(_plain(model)))
        found.__dict__.update(values)
        self._held[model, values["id"]] = (found, dict(values))
        return found


@contextmanager
def tracking(session: Session) -> Iterator[Tracker]:
    """Track objects in the session's transaction until the block ends: saved if it ends
    normally, dropped if it raises (the caller's savepoint rolls back what was written)."""
    tracker = Tracker(rows_of(session))
    session.info[_KEY] = tracker
    try:
        yield tracker
        tracker.save()
    finally:
        session.info.pop(_KEY, None)


def tracker_of(session: Session) -> Tracker | None:
    """The tracker of the block the session is in, if any."""
    found: Tracker | None = session.info.get(_KEY)
    return found


def tracker_in(session: Session) -> Tracker:
    """The tracker of the block the session must be in (threading runs only in one)."""
    found = tracker_of(session)
    if found is None:
        raise RuntimeError("threading runs inside maild.tracked.tracking (the worker's)")
    return found


class _Shape:
    """What reading a model's rows needs: its table, its columns, how each value comes back."""

    def __init__(self, table: Table) -> None:
        self.table = table.name
        self.columns = ", ".join(c.name for c in table.columns)
        self.convert: dict[str, Callable[[Any], Any]] = {
            c.name: instant if isinstance(c.type, UTCDateTime)
            else bool if isinstance(c.type, Boolean) else _same for c in table.columns}


@cache
def _shape(model: type[SQLModel]) -> _Shape:
    return _Shape(model.__table__)  # type: ignore[attr-defined]


@cache
def _plain(model: type[SQLModel]) -> type:
    """The class of `model`'s tracked objects: its columns as plain attributes, read and set
    in the object's dict. Not the model itself: every attribute of an ORM class is a
    descriptor of SQLAlchemy's, and a message's threading reads some eighty of them (2-3 % of
    the worker's time); nor can a tracked object ever be added to the session by mistake."""
    return type(model.__name__, (), {"__module__": __name__,
                                     "__doc__": f"A tracked row of `{_shape(model).table}`."})


@cache
def _update(table: str, columns: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{name} = :new_{name}" for name in columns)
    return f"UPDATE {table} SET {assignments} WHERE id = :row"


def _same(value: Any) -> Any:
    return value
