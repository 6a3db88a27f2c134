"""Rows of maild's tables as objects, read and written over DB-API in one write transaction:
how every writer of tickets works on them — the threading worker, the timers and the commands
that change tickets (`maild.tickets.Context.db`).

`load`, `get` and `insert` go straight to the driver (a `maild.dbapi.Reader` in its write
transaction, or a savepoint of it); each object is a plain one with the table's columns as its
attributes (`_plain`: no ORM, no constructor), and when the `tracking` block ends without an
error `save` writes what changed on each with one UPDATE. When it ends with one, the objects
are dropped with the savepoint they were read in. (The ORM's select and its unit of work were
40 % of threading a follow-up, and importing it half a second of every such process: issue
#12, bench/README.)

One object per row within a tracking block (an identity map by table and id). What a block
changed is written when it ends, not before: a statement of the block that reads a tracked
row's columns back from the database sees them as the block began (the operations ask the
objects, never the table, for what they themselves change).

`remembered` holds what the block's own statements have told or done that a later statement of
the block would ask the database again (whether an address is marked undeliverable, which mail
a staff member last got about a ticket): it is dropped with the block, so a savepoint rolled
back takes what it remembered with it. Whoever asks owns its keys, and forgets or updates one
when it writes what the answer depends on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import Any, TypeVar, cast

from maild.dbapi import Reader, bound_list, instant
from maild.schema import Table

_Row = TypeVar("_Row")


class Tracker:
    """The objects read and inserted in one tracking block, with their columns as read.

    `sql` is the block's transaction (a `maild.dbapi.Reader`); `apart()` lends a connection
    outside it, in autocommit (the ticket counter on PostgreSQL, `maild.numbers`)."""

    def __init__(self, db: Reader,
                 apart: Callable[[], AbstractContextManager[Reader]] | None = None) -> None:
        self.sql = db
        self._apart = apart
        self._held: dict[tuple[Table[Any], int], tuple[Any, dict[str, Any]]] = {}
        self._inserted: set[tuple[Table[Any], int]] = set()
        self.remembered: dict[tuple[Any, ...], Any] = {}

    def apart(self) -> AbstractContextManager[Reader]:
        if self._apart is None:
            raise RuntimeError("this tracker has no connection apart from its transaction")
        return self._apart()

    def load(self, table: Table[_Row], column: str, values: list[Any]) -> list[_Row]:
        """The rows of `table` whose `column` (a name of maild's, never input) is one of
        `values`, as tracked objects (the ones already held as they are now, changes and all)."""
        if not values:
            return []
        listed, params = bound_list("v", values)
        return self.where(table, f"{column} IN ({listed})", **params)

    def where(self, table: Table[_Row], condition: str, **params: Any) -> list[_Row]:
        """The rows of `table` that `condition` (SQL of maild's, `:name` parameters; it may end
        in ORDER BY, LIMIT or a lock) selects, as tracked objects."""
        shape = _shape(table)
        return [self._held_or(table, row) for row in self.sql.rows(
            f"SELECT {shape.columns} FROM {table.name} WHERE {condition}", **params)]

    def all(self, table: Table[_Row]) -> list[_Row]:
        """Every row of `table`, by id, as tracked objects: for the small reference tables."""
        return self.where(table, "1 = 1 ORDER BY id")

    def first(self, table: Table[_Row], condition: str, **params: Any) -> _Row | None:
        found = self.where(table, condition, **params)
        return found[0] if found else None

    def get(self, table: Table[_Row], row_id: int | None) -> _Row | None:
        if row_id is None:
            return None
        held = self._held.get((table, row_id))
        if held is not None:
            return cast(_Row, held[0])
        found = self.load(table, "id", [row_id])
        return found[0] if found else None

    def insert(self, table: Table[_Row], values: dict[str, Any]) -> _Row:
        """Insert one row (columns not given get their defaults); its tracked object."""
        row_id = self.sql.insert(table, values)
        self._inserted.add((table, row_id))
        return self._track(table, {**table.defaults, **values, "id": row_id})

    def inserted(self, table: Table[Any], row_id: int | None) -> bool:
        """The row was inserted in this block: nothing written before the block refers to it."""
        return (table, row_id) in self._inserted

    def save(self) -> None:
        """Write each object's changed columns, and take its values as read from now on."""
        for (table, row_id), (found, read) in self._held.items():
            now = {name: found.__dict__[name] for name in read}
            changed = {name: value for name, value in now.items() if value != read[name]}
            if changed:
                self.sql.execute(_update(table.name, tuple(changed)),
                                **{f"new_{name}": value for name, value in changed.items()},
                                row=row_id)
                self._held[table, row_id] = (found, now)

    def _held_or(self, table: Table[_Row], row: dict[str, Any]) -> _Row:
        held = self._held.get((table, row["id"]))
        if held is not None:
            return cast(_Row, held[0])
        convert = _shape(table).convert
        return self._track(table, {name: convert[name](value) if value is not None else None
                                   for name, value in row.items()})

    def _track(self, table: Table[_Row], values: dict[str, Any]) -> _Row:
        found: Any = object.__new__(_plain(table))
        found.__dict__.update(values)
        self._held[table, values["id"]] = (found, dict(values))
        return cast(_Row, found)


@contextmanager
def tracking(db: Reader, apart: Callable[[], AbstractContextManager[Reader]] | None = None
             ) -> Iterator[Tracker]:
    """Track objects in `db`'s transaction until the block ends: saved if it ends normally,
    dropped if it raises (the caller's savepoint or transaction rolls back what was written)."""
    tracker = Tracker(db, apart)
    yield tracker
    tracker.save()


class _Shape:
    """What reading a table's rows needs: its columns, and how each value comes back."""

    def __init__(self, table: Table[Any]) -> None:
        self.columns = ", ".join(table.columns)
        self.convert: dict[str, Callable[[Any], Any]] = {
            name: instant if name in table.instants else bool if name in table.flags
            else _same for name in table.columns}


@cache
def _shape(table: Table[Any]) -> _Shape:
    return _Shape(table)


@cache
def _plain(table: Table[Any]) -> type:
    """The class of `table`'s tracked objects, named after its model: its columns as plain
    attributes, read and set in the object's dict (a message's threading reads some eighty)."""
    return type(table.model, (), {"__module__": __name__,
                                  "__doc__": f"A tracked row of `{table.name}`."})


@cache
def _update(table: str, columns: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{name} = :new_{name}" for name in columns)
    return f"UPDATE {table} SET {assignments} WHERE id = :row"


def _same(value: Any) -> Any:
    return value
