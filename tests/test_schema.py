"""The Alembic migrations build exactly the tables of maild.models, and `init` is idempotent."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from maild import config
from maild.db import make_engine, upgrade_schema
from tests.conftest import Helpdesk


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(config.DatabaseSettings(url=f"sqlite:///{tmp_path}/m.db"))
    upgrade_schema(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_init_twice_changes_nothing_and_loads_queues_and_staff(helpdesk: Helpdesk) -> None:
    assert helpdesk.run("init").code == 0
    engine = make_engine(config.load(helpdesk.config).database)
    with engine.connect() as connection:
        queues = connection.exec_driver_sql("SELECT name FROM queue ORDER BY id").all()
        staff = connection.exec_driver_sql("SELECT email, active FROM staff ORDER BY id").all()
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar() \
            if connection.dialect.name == "sqlite" else "wal"  # WAL is SQLite's, not a setting
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert [q[0] for q in queues] == ["General questions", "Compatibility problems",
                                      "Development questions"]
    assert staff == [("alice@example.com", 1), ("bob@example.com", 1)]
    assert mode == "wal"
    assert {"inbound", "ticket", "message", "outbox", "event", "alembic_version"} <= tables


def test_staff_removed_from_the_config_become_inactive(helpdesk: Helpdesk) -> None:
    text = helpdesk.config.read_text()
    helpdesk.config.write_text(text.replace('"bob@example.com"', '"carol@example.com"'))
    assert helpdesk.run("init").code == 0
    engine = make_engine(config.load(helpdesk.config).database)
    with engine.connect() as connection:
        staff = dict(connection.exec_driver_sql("SELECT email, active FROM staff").all())
    engine.dispose()
    assert staff == {"alice@example.com": 1, "bob@example.com": 0, "carol@example.com": 1}


def test_the_schema_revision_maild_expects_is_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from maild.db import MIGRATIONS, SCHEMA_REVISION

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_REVISION


def test_upgrading_to_0004_rekeys_stored_mail_as_maild_dedupe_does(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from maild.db import MIGRATIONS
    from maild.dedupe import identify
    from tests.conftest import mail

    engine = make_engine(config.DatabaseSettings(url=f"sqlite:///{tmp_path}/old.db"))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    raw = bytes(mail(message_id="<stored-before@example.org>"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0003")
        connection.execute(text(
            "INSERT INTO inbound (dedupe_key, source, received_at, raw, size, state, reason, "
            "attempts) VALUES ('mid:stored-before@example.org', 'pipe', '2026-11-30 10:00:00', "
            ":raw, :size, 'done', '', 1)"), {"raw": raw, "size": len(raw)})
    upgrade_schema(engine)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT dedupe_key, message_id FROM inbound")).one()
    engine.dispose()
    assert tuple(row) == (identify(raw).key, "stored-before@example.org")


def test_the_plain_column_shapes_are_those_of_the_models() -> None:
    """`maild/schema.py` is what `make schema` writes from `maild.models` (the writers that
    import no ORM insert and read rows by it): run `make schema` after changing a table."""
    from maild.schemagen import TARGET, generated

    assert TARGET.read_text(encoding="utf-8") == generated(), "run `make schema`"


def test_the_writers_of_tickets_import_no_orm() -> None:
    """Threading, the timers and the ticket operations, as the worker and `maild ingest`
    import them: neither SQLAlchemy nor SQLModel nor pydantic (half a second of CPU and some
    50 MiB a process, issue #12)."""
    import subprocess
    import sys

    probe = ("import sys, maild.threading, maild.sla.duties, maild.tickets, maild.tracked, "
             "maild.daemon.worker; print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'sqlalchemy', 'sqlmodel', 'pydantic', 'alembic'}))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True)
    assert found.stdout.strip() == "[]"
