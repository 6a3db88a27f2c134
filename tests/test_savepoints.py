"""`Reader.savepoint()`, in which maild's writers settle each message and record each timer
duty: what fails in it — a statement that breaks a constraint, an error of the caller's — is
taken back alone, and the transaction around it goes on. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from maild.dbapi import Pool, unique_violation
from maild.schema import QUEUE


def queues(pool: Pool) -> list[str]:
    with pool.reader() as db:
        return db.column("SELECT name FROM queue WHERE name LIKE 'sp-%' ORDER BY name")


def test_a_savepoint_takes_back_only_its_own_writes(pool: Pool) -> None:
    with pool.writing() as db:
        db.insert(QUEUE, {"name": "sp-before"})
        with pytest.raises(RuntimeError), db.savepoint():
            db.insert(QUEUE, {"name": "sp-undone"})
            raise RuntimeError("the message failed")
        # A statement that breaks a constraint ends its savepoint only, not the transaction.
        with pytest.raises(Exception) as broken, db.savepoint():
            db.insert(QUEUE, {"name": "sp-before"})
        assert unique_violation(broken.value)
        with db.savepoint():
            db.insert(QUEUE, {"name": "sp-kept"})
        db.insert(QUEUE, {"name": "sp-after"})
    assert queues(pool) == ["sp-after", "sp-before", "sp-kept"]


def test_savepoints_nest_and_the_transaction_still_rolls_back_as_a_whole(pool: Pool) -> None:
    with pytest.raises(RuntimeError), pool.writing() as db:
        with db.savepoint():
            db.insert(QUEUE, {"name": "sp-outer"})
            with pytest.raises(RuntimeError), db.savepoint():
                db.insert(QUEUE, {"name": "sp-inner"})
                raise RuntimeError("inner")
        assert db.column("SELECT name FROM queue WHERE name LIKE 'sp-%'") == ["sp-outer"]
        raise RuntimeError("the whole batch failed")
    assert queues(pool) == []


def test_only_a_unique_constraint_is_a_unique_violation(pool: Pool) -> None:
    with pool.writing() as db:
        with pytest.raises(Exception) as missing, db.savepoint():
            db.execute("INSERT INTO status_change (ticket_id, at, status) "
                       "VALUES (999999, '2026-12-01 00:00:00', 'new')")  # no such ticket
        assert not unique_violation(missing.value)
        assert not unique_violation(RuntimeError("UNIQUE constraint failed"))


