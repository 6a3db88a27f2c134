"""The database over plain DB-API — `sqlite3`, or psycopg on PostgreSQL — without SQLAlchemy:
every read and write of maild's but `maild init` (Alembic). A command starts in tens of
milliseconds, not the 0.6 s that importing SQLModel and SQLAlchemy takes, and the daemon's
processes carry no ORM (issue #12).

Every query is SQL with `:name` parameters, run through a `Reader`:

- `connect(settings)` opens one from the configured URL; each `snapshot()` block is one read
  transaction, each `writing()` block one write transaction (on SQLite queued on maild's writer
  lock, then `BEGIN IMMEDIATE`), and `savepoint()` scopes a failure inside one to itself;
  outside them every statement stands alone (autocommit);
- `Pool(settings)` lends such readers to the threads of one process, one thread at a time;
- `insert(table, values)` writes a row of a table of `maild.schema`; the writers of tickets
  work on tracked objects over it (`maild.tracked`).

The Reader translates what differs between the drivers: the parameter style, instants (stored
as naive UTC — text on SQLite in SQLAlchemy's format, `timestamp` on PostgreSQL — bound from and
returned as aware UTC datetimes: `instant`), and "cannot read now" errors (`StorageUnavailable`).
`schema_problem` is the check every command but `init` makes before it touches a database.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from maild.config import DatabaseSettings
from maild.errors import StorageUnavailable
from maild.schema import Table
from maild.writelock import WriterLock

Row = dict[str, Any]

SCHEMA_REVISION = "0006"
"""The Alembic revision this maild works with (tests/test_schema.py checks it is the head)."""

_URL = re.compile(r"^(?P<backend>\w+)(?:\+(?P<driver>\w+))?://(?P<rest>.*)$", re.DOTALL)


# --- instants ---------------------------------------------------------------------------------

def stored_utc(value: datetime) -> datetime:
    """An aware instant as the tables hold it: naive UTC (SQLite has no zones)."""
    if value.tzinfo is None:
        raise ValueError("maild stores only timezone-aware datetimes")
    return value.astimezone(UTC).replace(tzinfo=None)


def instant(value: Any) -> datetime | None:
    """A stored instant as maild uses it: aware UTC (text on SQLite, naive UTC elsewhere)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not an instant: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- URLs -------------------------------------------------------------------------------------

def backend(url: str) -> str:
    """`sqlite` or `postgresql` (the part of the URL before `+driver://`)."""
    found = _URL.match(url)
    return found.group("backend") if found else ""


def sqlite_path(url: str) -> Path | None:
    """The database file a SQLite URL names; None for PostgreSQL or an in-memory database.
    Read as SQLAlchemy reads it: `sqlite:///relative`, `sqlite:////absolute`, `?query` apart."""
    found = _URL.match(url)
    if found is None or found.group("backend") != "sqlite":
        return None
    rest = found.group("rest").split("?", 1)[0]
    database = unquote(rest[1:]) if rest.startswith("/") else ""
    if not database or database == ":memory:":
        return None
    return Path(database)


def display_name(url: str) -> str:
    """The database as error messages name it: its file, or its URL without the password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    return re.sub(r"^([^:/]+://[^:/@]*):[^@]*@", r"\1:***@", url)


def id_list(ids: Iterable[int]) -> str:
    """Row ids for `IN (...)`, written into the SQL: integers only, so nothing to bind, and
    any number of them ("NULL" for none: `IN (NULL)` matches nothing)."""
    return ", ".join(str(int(i)) for i in ids) or "NULL"


def bound_list(name: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """Values for `IN (...)` as parameters: the SQL (`:name0, :name1, ...`) and its
    parameters, to pass beside the statement's others ("NULL" for none, as `id_list`)."""
    params = {f"{name}{i}": value for i, value in enumerate(values)}
    return ", ".join(f":{key}" for key in params) or "NULL", params


# --- the reader -------------------------------------------------------------------------------

class _StorageErrors:
    """Locked, gone, out of disk, the server gone: StorageUnavailable — the database cannot
    work now, no fault of the message or command (other driver errors pass as they are).
    A class, not a generator `contextmanager`: it wraps every statement (a dozen and more a
    mail threaded), and entering and leaving one costs a third as much."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: object) -> None:
        if isinstance(exc, Exception) and _driver_error(exc, operational=True):
            raise StorageUnavailable(first_line(exc)) from exc


_STORAGE_ERRORS = _StorageErrors()


class Reader:
    """SQL with `:name` parameters over one DB-API connection; rows come back as dicts."""

    _errors = _STORAGE_ERRORS

    def __init__(self, connection: Any, dialect: str, *, owned: bool = False,
                 writer_lock: WriterLock | None = None) -> None:
        self.connection = connection
        self.dialect = dialect  # "sqlite" | "postgresql"
        self._owned = owned     # ours to begin, end and close (not an ORM session's)
        self._writer_lock = writer_lock  # a SQLite file's: what maild's writers queue on
        self._in_snapshot = False
        self._last_instant: datetime | None = None  # the last instant bound, and as stored
        self._last_stored: Any = None

    @property
    def claim_lock(self) -> str:
        """What ends a SELECT of rows to claim: on PostgreSQL `FOR UPDATE SKIP LOCKED`, so
        parallel workers never take the same row; nothing on SQLite, where `BEGIN IMMEDIATE`
        serialises the writers already."""
        return "" if self.dialect == "sqlite" else " FOR UPDATE SKIP LOCKED"

    @property
    def row_lock(self) -> str:
        """What ends a SELECT of rows this transaction is about to change and must wait for: on
        PostgreSQL `FOR UPDATE` (a short transaction holding one is waited for, where
        `claim_lock` would pass it by); nothing on SQLite, for the reason above."""
        return "" if self.dialect == "sqlite" else " FOR UPDATE"

    def rows(self, sql: str, **params: Any) -> list[Row]:
        with self._errors:
            cursor = self.connection.cursor()
            try:
                cursor.execute(self._sql(sql), self._params(params))
                names = [column[0] for column in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            finally:
                cursor.close()

    def execute(self, sql: str, **params: Any) -> int:
        """A statement that returns no rows (an UPDATE); how many rows it changed."""
        with self._errors:
            cursor = self.connection.cursor()
            try:
                cursor.execute(self._sql(sql), self._params(params))
                return int(cursor.rowcount)
            finally:
                cursor.close()

    def execute_many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        """One statement that returns no rows, run once for each of `rows` (its parameters) —
        in the driver's own loop: a batch's outcomes, one UPDATE each."""
        if not rows:
            return
        with self._errors:
            cursor = self.connection.cursor()
            try:
                cursor.executemany(self._sql(sql), [self._params(row) for row in rows])
            finally:
                cursor.close()

    def insert(self, table: Table[Any], values: dict[str, Any]) -> int:
        """Insert one row of `table` (`maild.schema`; columns not given get their defaults),
        its id. The statement is derived from the table, never written out."""
        shape = _insert_shape(table, self.dialect)
        with self._errors:
            cursor = self.connection.cursor()
            try:
                cursor.execute(shape.sql, self._params({**table.defaults, **values}))
                if self.dialect == "sqlite":
                    return int(cursor.lastrowid or 0)
                row = cursor.fetchone()
                return int(row[0]) if row else 0
            finally:
                cursor.close()

    def first(self, sql: str, **params: Any) -> Row | None:
        found = self.rows(sql, **params)
        return found[0] if found else None

    def value(self, sql: str, **params: Any) -> Any:
        """The first column of the first row (None without rows)."""
        row = self.first(sql, **params)
        return next(iter(row.values())) if row else None

    def column(self, sql: str, **params: Any) -> list[Any]:
        """The first column of every row."""
        return [next(iter(row.values())) for row in self.rows(sql, **params)]

    @contextmanager
    def snapshot(self) -> Iterator[Reader]:
        """One read transaction: every query in the block sees the same state. Inside an ORM
        session (`reader_of`) the session's transaction is that already."""
        if not self._owned or self._in_snapshot:
            yield self
            return
        self._in_snapshot = True
        try:
            if self.dialect == "sqlite":
                with self._errors:
                    self.connection.execute("BEGIN")
                try:
                    yield self
                finally:
                    self.connection.rollback()  # it only read
            else:
                with self._errors, self.connection.transaction(force_rollback=True):
                    yield self
        finally:
            self._in_snapshot = False

    @contextmanager
    def writing(self) -> Iterator[Reader]:
        """One write transaction, committed when the block ends, rolled back when it raises —
        on SQLite queued on maild's writer lock, then `BEGIN IMMEDIATE`, as `maild.db`'s
        transactions are. Over another's connection (not `owned`) the statements run in that
        transaction, which its owner commits."""
        if not self._owned:
            yield self
            return
        if self.dialect == "sqlite":
            with self._writer_lock or nullcontext():
                with self._errors:
                    self.connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                    with self._errors:
                        self.connection.execute("COMMIT")
                except BaseException:
                    if self.connection.in_transaction:
                        self.connection.execute("ROLLBACK")
                    raise
            return
        with self._errors, self.connection.transaction():
            yield self

    @contextmanager
    def savepoint(self) -> Iterator[Reader]:
        """A savepoint inside the write transaction: what the block wrote is rolled back when it
        raises, and the transaction goes on (the worker settles each message in one, so that a
        bad message fails alone)."""
        if self.dialect != "sqlite":
            with self._errors, self.connection.transaction():  # psycopg: nested is a savepoint
                yield self
            return
        with self._errors:
            self.connection.execute("SAVEPOINT maild")
        try:
            yield self
        except BaseException:
            with self._errors:
                self.connection.execute("ROLLBACK TO SAVEPOINT maild")
                self.connection.execute("RELEASE SAVEPOINT maild")
            raise
        with self._errors:
            self.connection.execute("RELEASE SAVEPOINT maild")

    def close(self) -> None:
        if self._owned:
            self.connection.close()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else _pyformat(sql)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with each instant as stored, converted in place: every caller hands over a
        dict made for the one statement (its keyword arguments, an insert's merged row)."""
        for name, value in params.items():
            if isinstance(value, datetime):
                params[name] = self._stored(value)
        return params

    def _stored(self, value: datetime) -> Any:
        """An instant as its column holds it. The rows a writer inserts for one message carry
        the same instant again and again (the message's `now`): the last one is kept, as it
        was converted (datetimes are immutable, and the one kept cannot be another's id)."""
        if value is not self._last_instant:
            stored: Any = stored_utc(value)
            if self.dialect == "sqlite":
                # How SQLAlchemy's SQLite DateTime stores an instant (years zero-padded,
                # microseconds always), at a third of strftime's cost.
                stored = stored.isoformat(" ", "microseconds")
            self._last_instant, self._last_stored = value, stored
        return self._last_stored



class _InsertShape:
    """The INSERT of one table's every column but its id, in one driver's parameter style."""

    def __init__(self, table: Table[Any], dialect: str) -> None:
        columns = [name for name in table.columns if name != table.key]
        sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
               f"VALUES ({', '.join(':' + name for name in columns)})")
        if dialect != "sqlite" and table.key is not None:
            sql += f" RETURNING {table.key}"
        self.sql = sql if dialect == "sqlite" else _pyformat(sql)


@lru_cache(maxsize=64)
def _insert_shape(table: Table[Any], dialect: str) -> _InsertShape:
    return _InsertShape(table, dialect)


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """`:name` parameters as psycopg's `%(name)s` (and a literal `%` doubled)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql.replace("%", "%%"))


def _driver_error(exc: BaseException, *, operational: bool = False) -> bool:
    """An error of sqlite3 or psycopg (only "cannot work now" ones, with `operational`)."""
    if isinstance(exc, sqlite3.Error):
        return isinstance(exc, sqlite3.OperationalError) or not operational
    if not type(exc).__module__.startswith("psycopg"):
        return False
    import psycopg

    return isinstance(exc, psycopg.OperationalError if operational else psycopg.Error)


def unique_violation(exc: BaseException) -> bool:
    """A row broke a UNIQUE constraint (sqlite3's IntegrityError says which kind in its text;
    psycopg has a class for it)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE constraint failed" in str(exc)
    if not type(exc).__module__.startswith("psycopg"):
        return False
    from psycopg import errors

    return isinstance(exc, errors.UniqueViolation)


def first_line(exc: BaseException) -> str:
    """What an error says, in one line (a database error's first line names its cause)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def connect(settings: DatabaseSettings, *, checkpoints: bool = True) -> Reader:
    """A Reader on its own connection to the configured database. Creates nothing: call it only
    for a database that exists (`schema_problem` says so first).

    `checkpoints=False` leaves SQLite's WAL checkpoints to other connections: the daemon's
    intake uses it so that a commit answering an SMTP client never also copies the WAL into the
    database file (the worker's connections do that)."""
    url = settings.url
    timeout = settings.busy_timeout.total_seconds()
    if backend(url) == "sqlite":
        path = sqlite_path(url)
        try:
            # Any thread may use it (a `Pool` hands it to one thread at a time).
            connection = sqlite3.connect(path or ":memory:", timeout=timeout,
                                         isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            # A write here (the pipe's store) is acknowledged: on disk before the commit
            # returns, as `maild.db` commits.
            connection.execute("PRAGMA synchronous=FULL")
            # As `maild.db`'s engine: the schema's foreign keys hold, and a savepoint's undo
            # copy of the pages it changes stays in memory (see `maild.db.make_engine`).
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA temp_store=MEMORY")
            if not checkpoints:
                connection.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as exc:
            raise StorageUnavailable(first_line(exc)) from exc
        return Reader(connection, "sqlite", owned=True,
                      writer_lock=WriterLock(path, timeout) if path else None)
    try:
        import psycopg
    except ImportError:
        raise StorageUnavailable("PostgreSQL needs psycopg: pip install 'maild[postgres]'") \
            from None
    conninfo = _URL.sub(lambda m: f"{m.group('backend')}://{m.group('rest')}", url)
    try:
        server = psycopg.connect(conninfo, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        raise StorageUnavailable(first_line(exc)) from exc
    return Reader(server, "postgresql", owned=True)


class Pool:
    """Readers shared by the threads of one process — the daemon's intake: its listener, IMAP
    pollers, web pages and supervisor — each lent to one thread at a time, and opened when no
    idle one is left. A connection whose block raised a database error is closed, not lent
    again: after a server restart or a disk error it may be broken, and the next block opens a
    fresh one."""

    def __init__(self, settings: DatabaseSettings, *, checkpoints: bool = True) -> None:
        self._settings = settings
        self._checkpoints = checkpoints
        self._idle: list[Reader] = []
        self._lock = threading.Lock()

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """A Reader of this thread's until the block ends (`snapshot`, `writing` inside)."""
        with self._lock:
            reader = self._idle.pop() if self._idle else None
        if reader is None:
            reader = connect(self._settings, checkpoints=self._checkpoints)
        try:
            yield reader
        except BaseException as exc:
            if isinstance(exc, StorageUnavailable) or _driver_error(exc):
                reader.close()
                raise
            self._give_back(reader)
            raise
        self._give_back(reader)

    @contextmanager
    def writing(self) -> Iterator[Reader]:
        """A Reader of this thread's for one write transaction (`Reader.writing`), until the
        block ends."""
        with self.reader() as reader, reader.writing():
            yield reader

    def _give_back(self, reader: Reader) -> None:
        with self._lock:
            self._idle.append(reader)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for reader in idle:
            reader.close()


def schema_problem(settings: DatabaseSettings,
                   open_reader: Callable[[], Reader] | None = None) -> str | None:
    """Why the commands cannot use this database yet, in one line that names it and says to
    run `maild init` — or None when it is there with the schema this maild expects.

    Creates nothing: a missing SQLite file is reported before anything connects to it. It reads
    through `open_reader()` (the reader a command goes on to use; left open), else through a
    connection of its own."""
    name = display_name(settings.url)
    database = sqlite_path(settings.url)
    if database is not None and not database.is_file():
        return f"database {name} does not exist; run `maild init` to create it"
    try:
        reader = open_reader() if open_reader else connect(settings)
        try:
            with reader.snapshot():
                if reader.dialect == "sqlite":
                    known = reader.value("SELECT count(*) FROM sqlite_master "
                                         "WHERE type = 'table' AND name = 'alembic_version'")
                else:
                    known = reader.value("SELECT count(*) FROM information_schema.tables "
                                         "WHERE table_schema = current_schema() "
                                         "AND table_name = 'alembic_version'")
                revision = reader.value("SELECT version_num FROM alembic_version") \
                    if known else None
        finally:
            if open_reader is None:
                reader.close()
    except Exception as exc:
        if not isinstance(exc, StorageUnavailable) and not _driver_error(exc):
            raise
        return f"cannot open database {name}: {first_line(exc)}"
    if not known:
        return f"database {name} has no maild schema; run `maild init` to create it"
    if revision != SCHEMA_REVISION:
        return (f"database {name} has schema {revision}, this maild needs {SCHEMA_REVISION}; "
                "run `maild init` to upgrade it")
    return None
