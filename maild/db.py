"""The database: engine, transactions, schema upgrades and storage-error translation.

SQLite runs in WAL mode with `synchronous=FULL` (a commit is on disk before maild acknowledges
anything), a busy timeout, and `BEGIN IMMEDIATE` for write transactions so two writers queue on
the lock instead of failing half-way. PostgreSQL needs none of this; claims there use
`FOR UPDATE SKIP LOCKED` (see `claim`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql.selectable import GenerativeSelect
from sqlmodel import Session, SQLModel, select

from maild.config import DatabaseSettings, Settings
from maild.dbapi import SCHEMA_REVISION as SCHEMA_REVISION  # checked without SQLAlchemy
from maild.dbapi import Reader, first_line
from maild.errors import StorageUnavailable
from maild.keys import create_key
from maild.models import Queue, Staff
from maild.rows import rows_of
from maild.tracked import tracker_of
from maild.writelock import WriterLock

log = logging.getLogger("maild.db")
MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(settings: DatabaseSettings) -> Engine:
    """An engine for the configured URL. Creates nothing by itself: connecting to a SQLite
    file that does not exist would create it, so commands check `dbapi.schema_problem` first and
    only `init` makes the file (SPEC §3)."""
    url = make_url(settings.url)
    timeout = settings.busy_timeout.total_seconds()
    if url.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        _savepoints_on_the_driver(engine)
        return engine
    engine = create_engine(url, connect_args={"timeout": timeout})
    _savepoints_on_the_driver(engine)
    if url.database and url.database != ":memory:":
        _write_locks[engine] = WriterLock(Path(url.database), timeout)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The worker settles each message in a savepoint, whose undo copy of every page it
        # changes SQLite keeps in a statement journal; past 64 KiB that spills to a new file
        # under /var/tmp, created and deleted once per transaction. In memory it costs a few
        # MiB at most (one transaction's pages) and no system call.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get("maild_readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _savepoints_on_the_driver(engine: Engine) -> None:
    """SAVEPOINT, RELEASE and ROLLBACK TO of `session.begin_nested()` straight to the driver.

    The worker settles every message in a savepoint of its own (a bad message fails alone).
    SQLAlchemy's dialect runs each of the three as a Core statement — a clause built, its
    cache key made, compiled, an execution context — which was a tenth of threading a mail
    (bench/README "Issue #12, ninth part"); the same text through the driver costs a few µs.
    SQLAlchemy's own bookkeeping of the nested transaction, which scopes an ORM flush that
    fails to the savepoint, is untouched: only the statements it sends take the short way, and
    a driver error in one is `StorageUnavailable`, as any write of `maild.rows` raises it."""
    dialect = engine.dialect
    quote = dialect.identifier_preparer.quote

    def run(connection: Connection, sql: str) -> None:
        Reader(connection.connection.driver_connection, dialect.name).execute(sql)

    # The Dialect methods SQLAlchemy calls for exactly these statements, this engine's only.
    dialect.do_savepoint = (  # type: ignore[method-assign]
        lambda connection, name: run(connection, f"SAVEPOINT {quote(name)}"))
    dialect.do_release_savepoint = (  # type: ignore[method-assign]
        lambda connection, name: run(connection, f"RELEASE SAVEPOINT {quote(name)}"))
    dialect.do_rollback_to_savepoint = (  # type: ignore[method-assign]
        lambda connection, name: run(connection, f"ROLLBACK TO SAVEPOINT {quote(name)}"))


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine; None for PostgreSQL or an in-memory database
    (`maild.dbapi.sqlite_path` reads the same from a URL, without an engine)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


@contextmanager
def transaction(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back when it raises.

    On a SQLite file maild's writers also queue on a `WriterLock` before `BEGIN IMMEDIATE`,
    so a waiting writer starts the moment the one before it commits (see maild.writelock).
    """
    if readonly:
        bind = engine.execution_options(maild_readonly=True)
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session
        return
    with _writer_lock(engine), Session(engine, expire_on_commit=False) as session, \
            session.begin():
        yield session


@contextmanager
def core_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction on a plain Core connection, for hot paths where an ORM session's
    bookkeeping is measurable (the SMTP listener's insert); same locking as `transaction`."""
    with _writer_lock(engine), engine.begin() as connection:
        yield connection


def add_row(session: Session, model: type[SQLModel], values: dict[str, Any]) -> int:
    """Insert one row of `model` in the session's transaction and return its id — straight to
    the driver (`maild.rows`), not through the ORM, for the rows that are only ever inserted
    (events, status changes, outbox rows, maild's own messages and their attachments). A
    SQLModel object and a flush cost about 0.35 ms a row, a Core insert about 33 µs, this about
    6 µs. The row is not in the session's identity map: read it back with a query."""
    return rows_of(session).insert(model, values)


_Model = TypeVar("_Model", bound=SQLModel)


def add_object(session: Session, model: type[_Model], values: dict[str, Any]) -> _Model:
    """Insert one row of `model` like `add_row`, and return it as the session's object of that
    row, as if loaded: what the caller changes on it later is flushed as an UPDATE. For the
    rows the operations go on to change or read (a new ticket, a stored incoming message): an
    ORM insert's flush cost about 0.44 ms, this about 0.17 ms (most of it building the
    SQLModel object). Inside `maild.tracked.tracking` (the worker) the object is the
    tracker's instead, outside the session, and the tracker writes its changes."""
    tracker = tracker_of(session)
    if tracker is not None:
        return tracker.insert(model, values)
    rows = rows_of(session)
    row_id = rows.insert(model, values)
    found = model(**{**rows.defaults(model), **values, "id": row_id})
    make_transient_to_detached(found)  # every column set: nothing expired, nothing to load
    session.add(found)
    return found


_write_locks: WeakKeyDictionary[Engine, AbstractContextManager[object]] = WeakKeyDictionary()


def _writer_lock(engine: Engine) -> AbstractContextManager[object]:
    return _write_locks.get(engine) or nullcontext()


@contextmanager
def storage_errors() -> Iterator[None]:
    """Translate "cannot write now" database errors (locked, disk full, I/O error, server gone)
    into StorageUnavailable. Only database errors: an OSError from elsewhere (a missing template
    is one) is a different failure and must not be mistaken for a full disk."""
    try:
        yield
    except OperationalError as exc:
        raise StorageUnavailable(_short(exc)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StorageUnavailable(_short(exc)) from exc
        raise


_Query = TypeVar("_Query", bound=GenerativeSelect)


def claim(statement: _Query, engine: Engine) -> _Query:
    """Lock claimed rows so parallel workers on PostgreSQL never take the same one."""
    if is_sqlite(engine):
        return statement  # BEGIN IMMEDIATE already serialises writers
    return statement.with_for_update(skip_locked=True)


def lock(statement: _Query, engine: Engine) -> _Query:
    """Lock rows this worker has claimed already, waiting for any short transaction that holds
    them (a claim with SKIP LOCKED would pass them by)."""
    if is_sqlite(engine):
        return statement  # BEGIN IMMEDIATE already serialises writers
    return statement.with_for_update()


def upgrade_schema(engine: Engine) -> None:
    """Create or upgrade the schema to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        _one_init_at_a_time(connection)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def load_reference_data(session: Session, settings: Settings) -> None:
    """Make the queue and staff tables match the config; staff no longer listed go inactive."""
    known_queues = {q.name for q in session.exec(select(Queue))}
    for queue in settings.queues:
        if queue.name not in known_queues:
            session.add(Queue(name=queue.name))
    configured = {s.email.lower(): s for s in settings.staff}
    for member in session.exec(select(Staff)):
        wanted = configured.pop(member.email, None)
        member.active = wanted is not None
        if wanted is not None:
            member.name = wanted.name
    for email, wanted in configured.items():
        session.add(Staff(email=email, name=wanted.name, active=True))


def init(engine: Engine, settings: Settings) -> None:
    """`maild init`: the database (with its folder, on SQLite), the keys when they are missing
    (the Message-IDs' and the web channel's), the schema, then queues and staff from the
    config."""
    database = sqlite_file(engine)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    create_key(settings.mail.secret_file)  # the key of the Message-IDs maild sends
    if settings.web is not None:
        create_key(settings.web.secret_file)  # the key of the web channel's links and forms
    upgrade_schema(engine)
    with transaction(engine) as session:
        _one_init_at_a_time(session.connection())
        load_reference_data(session, settings)


_INIT_LOCK = 0x6D61696C64  # "maild": the PostgreSQL advisory lock key of `init`


def _one_init_at_a_time(connection: Connection) -> None:
    """Several `maild run` started at once on one PostgreSQL database all run `init`: without
    this lock two would create the same tables or insert the same queues, and one would fail.
    The lock is held until the transaction ends; SQLite's BEGIN IMMEDIATE already serialises."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INIT_LOCK})


def _short(exc: BaseException) -> str:
    """The driver's own error (SQLAlchemy wraps it), in one line."""
    return first_line(getattr(exc, "orig", None) or exc)
