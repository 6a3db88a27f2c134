"""`maild.dbapi` writes instants into SQLite exactly as SQLAlchemy's DateTime does, so rows
written straight to the driver and rows written through the ORM compare and sort as one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from maild.dbapi import Reader

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
