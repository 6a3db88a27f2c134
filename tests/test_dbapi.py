"""`maild.dbapi` writes instants into SQLite exactly as SQLAlchemy's DateTime does, so rows
written straight to the driver and rows written through the ORM compare and sort as one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from maild.dbapi import Reader
from maild.errors import StorageUnavailable

INSTANTS = [datetime(2026, 12, 1, 6, 0, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=3)))]


@pytest.mark.parametrize("instant", INSTANTS)
def test_an_instant_is_stored_as_sqlalchemy_stores_it(instant: datetime) -> None:
    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("at", sa.DateTime))
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert(), {"at": instant.astimezone(UTC).replace(tzinfo=None)})
        [(by_sqlalchemy,)] = connection.exec_driver_sql("SELECT at FROM t").fetchall()
    driver = sqlite3.connect(":memory:")
    Reader(driver, "sqlite").execute("CREATE TABLE t (at DATETIME)")
    Reader(driver, "sqlite").execute("INSERT INTO t (at) VALUES (:at)", at=instant)
    [(by_maild,)] = driver.execute("SELECT at FROM t").fetchall()
    assert by_maild == by_sqlalchemy


def test_instants_bound_in_turn_on_one_reader_are_each_stored_as_themselves() -> None:
    """The reader keeps the last instant it converted (`Reader._stored`): a repeated one, a
    different one, the same moment in another zone, and back, each stored right."""
    driver = sqlite3.connect(":memory:")
    reader = Reader(driver, "sqlite")
    reader.execute("CREATE TABLE t (n INTEGER, at DATETIME)")
    moscow = INSTANTS[0].astimezone(timezone(timedelta(hours=3)))
    sequence = [INSTANTS[0], INSTANTS[0], INSTANTS[3], moscow, INSTANTS[0], INSTANTS[1]]
    for n, instant in enumerate(sequence):
        reader.execute("INSERT INTO t (n, at) VALUES (:n, :at)", n=n, at=instant)
    stored = [at for (at,) in driver.execute("SELECT at FROM t ORDER BY n")]
    expected = [i.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
                for i in sequence]
    assert stored == expected
    assert stored[3] == stored[0]  # one moment, whatever its zone


def test_execute_many_runs_the_statement_for_each_row_with_its_own_instants() -> None:
    """`Reader.execute_many` (the sender's outcomes of a batch): each row's parameters, its
    instants stored as `execute` stores them, the same instant object in two rows included."""
    driver = sqlite3.connect(":memory:")
    reader = Reader(driver, "sqlite")
    reader.execute("CREATE TABLE t (n INTEGER, state TEXT, at DATETIME)")
    for n in range(4):
        reader.execute("INSERT INTO t (n, state) VALUES (:n, 'pending')", n=n)
    moments = [INSTANTS[0], INSTANTS[3], INSTANTS[3], None]
    reader.execute_many("UPDATE t SET state = :state, at = :at WHERE n = :n",
                        [{"n": n, "state": f"s{n}", "at": at} for n, at in enumerate(moments)])
    reader.execute_many("UPDATE t SET state = 'never' WHERE n = :n", [])
    stored = driver.execute("SELECT state, at FROM t ORDER BY n").fetchall()
    assert stored == [(f"s{n}", at and at.astimezone(UTC).replace(tzinfo=None).isoformat(
        " ", "microseconds")) for n, at in enumerate(moments)]


def test_a_database_that_cannot_write_now_is_storage_unavailable_a_broken_row_is_not(
    tmp_path: Path,
) -> None:
    """What the Reader raises: "cannot work now" (a lock held too long) as StorageUnavailable,
    for the caller to try again; any other driver error as it is."""
    path = tmp_path / "t.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    reader = Reader(sqlite3.connect(path, isolation_level=None, timeout=0), "sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        reader.execute("INSERT INTO t (name) VALUES (:name)", name=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageUnavailable, match="locked") as raised:
        reader.execute("INSERT INTO t (name) VALUES (:name)", name="x")
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    holder.execute("ROLLBACK")
    assert reader.execute("INSERT INTO t (name) VALUES (:name)", name="x") == 1
    assert reader.value("SELECT count(*) FROM t") == 1
