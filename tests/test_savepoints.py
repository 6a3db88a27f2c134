"""`session.begin_nested()` on maild's engines: its SAVEPOINT, RELEASE and ROLLBACK TO go
straight to the driver (`maild.db._savepoints_on_the_driver`), and a savepoint still scopes
what fails in it — a driver write, an ORM flush — to itself, the transaction around it going on.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from maild.db import add_row, transaction
from maild.models import Queue


def queues(engine: Engine) -> list[str]:
    with transaction(engine, readonly=True) as session:
        return sorted(q.name for q in session.exec(select(Queue).where(
            col(Queue.name).startswith("sp-"))))


def test_a_savepoint_takes_back_only_its_own_writes(engine: Engine) -> None:
    with transaction(engine) as session:
        add_row(session, Queue, {"name": "sp-before"})
        with pytest.raises(RuntimeError), session.begin_nested():
            add_row(session, Queue, {"name": "sp-driver-write-undone"})
            session.add(Queue(name="sp-orm-write-undone"))
            session.flush()
            raise RuntimeError("the message failed")
        # An ORM flush that breaks a constraint ends its savepoint only, not the transaction.
        with pytest.raises(IntegrityError), session.begin_nested():
            session.add(Queue(name="sp-before"))
            session.flush()
        with session.begin_nested():
            session.add(Queue(name="sp-kept"))
        add_row(session, Queue, {"name": "sp-after"})
    assert queues(engine) == ["sp-after", "sp-before", "sp-kept"]


@pytest.mark.sqlite
def test_savepoint_statements_pass_sqlalchemy_s_statement_layer_by(engine: Engine) -> None:
    """SQLite runs each SAVEPOINT, RELEASE and ROLLBACK TO; none is a Core execution of
    SQLAlchemy's (which cost a tenth of threading a mail)."""
    through_core: list[str] = []
    run: list[str] = []

    def core(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        through_core.append(statement)

    event.listen(engine, "before_cursor_execute", core)
    try:
        with transaction(engine) as session:
            driver = session.connection().connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.set_trace_callback(run.append)
            with session.begin_nested():
                add_row(session, Queue, {"name": "sp-released"})
            with pytest.raises(RuntimeError), session.begin_nested():
                add_row(session, Queue, {"name": "sp-rolled-back"})
                raise RuntimeError("the message failed")
            driver.set_trace_callback(None)
    finally:
        event.remove(engine, "before_cursor_execute", core)
    said = [s.split()[0] + (" " + s.split()[1] if s.startswith("ROLLBACK") else "")
            for s in run if s.split()[0] in ("SAVEPOINT", "RELEASE", "ROLLBACK")]
    assert said == ["SAVEPOINT", "RELEASE", "SAVEPOINT", "ROLLBACK TO"]
    assert not [s for s in through_core if "SAVEPOINT" in s.upper()]
    assert queues(engine) == ["sp-released"]
