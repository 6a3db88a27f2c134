"""The database through SQLAlchemy: `maild init` (the schema by Alembic, queues and staff from
the config), and the engine and ORM transactions the tests set up and inspect with. maild's
own reads and writes go over DB-API (`maild.dbapi`, `maild.tracked`).

SQLite runs in WAL mode with `synchronous=FULL` (a commit is on disk before maild acknowledges
anything), a busy timeout, and `BEGIN IMMEDIATE` for write transactions so two writers queue on
the lock instead of failing half-way — as `maild.dbapi`'s connections do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from maild.config import DatabaseSettings, Settings
from maild.dbapi import SCHEMA_REVISION as SCHEMA_REVISION  # checked without SQLAlchemy
from maild.keys import create_key
from maild.models import Queue, Staff
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
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    engine = create_engine(url, connect_args={"timeout": timeout})
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


_write_locks: WeakKeyDictionary[Engine, AbstractContextManager[object]] = WeakKeyDictionary()


def _writer_lock(engine: Engine) -> AbstractContextManager[object]:
    return _write_locks.get(engine) or nullcontext()


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
