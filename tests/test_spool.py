"""The intake spool: stored once, moved into `inbound` in order, never lost, never twice."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from maild import config
from maild.db import transaction
from maild.dbapi import Pool
from maild.dedupe import identify
from maild.errors import StorageUnavailable
from maild.ingest.accept import Accepted, accept
from maild.ingest.spool import Spool, SpoolBacklog, backlog_at, spool_path
from maild.models import Inbound, InboundState
from tests.conftest import Helpdesk, mail

pytestmark = pytest.mark.sqlite  # the intake spool is how the daemon writes on SQLite
WHEN = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


@pytest.fixture
def database(helpdesk: Helpdesk) -> Path:
    return helpdesk.root / "var" / "maild.db"


@pytest.fixture
def intake(database: Path) -> Iterator[Spool]:
    spool = Spool(spool_path(database), busy_timeout=0.2)
    yield spool
    spool.close()


@pytest.fixture
def mover(database: Path, intake: Spool) -> Iterator[Spool]:
    spool = Spool(spool_path(database), busy_timeout=0.2, mover=True)
    yield spool
    spool.close()


def inbound(engine: Engine) -> list[Inbound]:
    with transaction(engine, readonly=True) as session:
        return list(session.exec(select(Inbound).order_by(col(Inbound.id))))


def raw(n: int) -> bytes:
    return bytes(mail(subject=f"Problem {n}", message_id=f"<spool-{n}@example.org>", date=WHEN))


def test_the_spool_is_a_file_beside_the_database(database: Path, intake: Spool) -> None:
    assert spool_path(database) == database.parent / "maild.db.spool"
    assert spool_path(database).exists()


def test_a_message_is_stored_once_per_dedupe_key(intake: Spool) -> None:
    first = intake.store(raw(1), source="smtp", now=WHEN, envelope_from="a@example.org")
    again = intake.store(raw(1), source="smtp", now=WHEN, envelope_from="a@example.org")
    other = intake.store(raw(2), source="smtp", now=WHEN)
    assert (first.table, first.duplicate) == ("spool", False)
    assert (again.row_id, again.duplicate) == (first.row_id, True)
    assert other.row_id > first.row_id
    assert str(first) == f"spool {first.row_id}"
    assert backlog_at(intake.path).waiting == 2


def test_moving_keeps_order_bytes_and_envelope(
    engine: Engine, pool: Pool, intake: Spool, mover: Spool
) -> None:
    sent = [raw(n) for n in range(5)]
    for n, message in enumerate(sent):
        intake.store(message, source=f"imap-{n}", now=WHEN, envelope_from=f"e{n}@example.org")
    assert mover.move_into(pool, limit=3) == 3
    assert backlog_at(intake.path).waiting == 2
    assert mover.move_into(pool, limit=100) == 2
    assert mover.move_into(pool, limit=100) == 0
    rows = inbound(engine)
    assert [r.raw for r in rows] == sent
    assert [r.source for r in rows] == [f"imap-{n}" for n in range(5)]
    assert [r.envelope_from for r in rows] == [f"e{n}@example.org" for n in range(5)]
    assert {r.state for r in rows} == {InboundState.NEW}
    assert {r.received_at for r in rows} == {WHEN}
    assert rows[0].dedupe_key == identify(sent[0]).key
    assert rows[0].message_id == "spool-0@example.org"


def test_a_move_redone_after_a_lost_delete_stores_nothing_twice(
    engine: Engine, pool: Pool, intake: Spool, mover: Spool
) -> None:
    intake.store(raw(1), source="smtp", now=WHEN)
    mover.move_into(pool, limit=10)
    # The delete of that move never reached the disk: the same row is in the spool again.
    intake.store(raw(1), source="smtp", now=WHEN)
    assert mover.move_into(pool, limit=10) == 1
    assert backlog_at(intake.path).waiting == 0
    assert len(inbound(engine)) == 1


def test_mail_already_in_inbound_is_dropped_as_a_duplicate(
    engine: Engine, pool: Pool, intake: Spool, mover: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    first = accept(pool, raw(1), source="pipe", now=WHEN)  # `maild ingest` took it first
    again = intake.store(raw(1), source="smtp", now=WHEN)
    intake.store(raw(2), source="smtp", now=WHEN)
    with caplog.at_level(logging.INFO, logger="maild.spool"):
        assert mover.move_into(pool, limit=10) == 2
    assert [(r.source, r.raw) for r in inbound(engine)] == [("pipe", raw(1)), ("smtp", raw(2))]
    assert caplog.messages == [f"spool {again.row_id} message-id=<spool-1@example.org>: "
                               f"duplicate of inbound {first.row_id}, dropped"]


def test_spool_ids_are_never_reused(pool: Pool, intake: Spool, mover: Spool) -> None:
    first = intake.store(raw(1), source="smtp", now=WHEN)
    mover.move_into(pool, limit=10)
    assert intake.store(raw(2), source="smtp", now=WHEN).row_id > first.row_id


def test_a_locked_spool_refuses_with_storage_unavailable(database: Path, intake: Spool) -> None:
    locker = sqlite3.connect(spool_path(database), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable):
            intake.store(raw(1), source="smtp", now=WHEN)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert backlog_at(intake.path).waiting == 0
    assert not intake.store(raw(1), source="smtp", now=WHEN).duplicate


def test_a_locked_database_leaves_the_spool_untouched(
    engine: Engine, pool: Pool, database: Path, intake: Spool, mover: Spool, helpdesk: Helpdesk
) -> None:
    intake.store(raw(1), source="smtp", now=WHEN)
    settings = replace(config.load(helpdesk.config).database,
                       busy_timeout=timedelta(milliseconds=200))
    impatient = Pool(settings)
    locker = sqlite3.connect(database, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable):
            mover.move_into(impatient, limit=10)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        impatient.close()
    assert backlog_at(intake.path).waiting == 1
    assert mover.move_into(pool, limit=10) == 1
    assert len(inbound(engine)) == 1


def test_inbound_list_tells_of_mail_still_in_the_spool(
    helpdesk: Helpdesk, intake: Spool, database: Path
) -> None:
    assert backlog_at(spool_path(database)) == SpoolBacklog(0, None)
    assert "intake spool" not in helpdesk.run("inbound", "list").err
    intake.store(raw(1), source="smtp", now=WHEN)
    intake.store(raw(2), source="smtp", now=WHEN + timedelta(seconds=5))
    assert backlog_at(spool_path(database)) == SpoolBacklog(2, WHEN)
    listed = helpdesk.run("inbound", "list", "--json")
    assert listed.json() == []
    assert "2 message(s) in the intake spool" in listed.err


def test_no_spool_file_means_nothing_spooled(tmp_path: Path) -> None:
    assert backlog_at(tmp_path / "none.db.spool") == SpoolBacklog(0, None)
    assert not (tmp_path / "none.db.spool").exists()


def test_the_spool_file_shrinks_back_after_a_burst_of_big_messages(
    pool: Pool, intake: Spool, mover: Spool, database: Path
) -> None:
    path = spool_path(database)
    for n in range(8):
        intake.store(bytes(mail(subject=f"Big {n}", body="x" * 2_000_000,
                                message_id=f"<big-{n}@example.org>")),
                     source="smtp", now=WHEN)
    assert mover.move_into(pool, limit=100) == 8
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # what the mover's checkpoints get to
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
    assert free == 0
    assert pages < 10  # the schema's few pages, not the 16 MB that went through
    assert path.stat().st_size < 100_000


def test_the_worker_opens_the_spool_while_the_intake_is_writing(
    database: Path, intake: Spool
) -> None:
    """The worker (re)starts while the intake is in the middle of a commit: opening its
    connection must not need the write lock."""
    locker = sqlite3.connect(spool_path(database), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        Spool(spool_path(database), busy_timeout=0.1, mover=True).close()
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_big_messages_move_a_few_at_a_time(
    engine: Engine, pool: Pool, intake: Spool, mover: Spool) -> None:
    sent = [bytes(mail(subject=f"Big {n}", body="x" * 400_000,
                       message_id=f"<big-move-{n}@example.org>")) for n in range(5)]
    for message in sent:
        intake.store(message, source="smtp", now=WHEN)
    taken = []
    while moved := mover.move_into(pool, limit=100, max_bytes=1_000_000):
        taken.append(moved)
    assert taken == [2, 2, 1]
    assert [r.raw for r in inbound(engine)] == sent
    # One message bigger than the bound still moves, alone.
    huge = sent[0].replace(b"big-move-0@", b"huge@")
    intake.store(huge, source="smtp", now=WHEN)
    assert mover.move_into(pool, limit=100, max_bytes=10) == 1
    assert inbound(engine)[-1].raw == huge


def test_tick_moves_what_a_stopped_daemon_left_in_the_spool(
    helpdesk: Helpdesk, intake: Spool
) -> None:
    intake.store(raw(1), source="smtp", now=WHEN)
    intake.store(raw(2), source="smtp", now=WHEN)
    ticked = helpdesk.run("tick", "--json")
    assert ticked.code == 0, ticked.err
    assert (ticked.json()["spool_moved"], ticked.json()["inbound_done"]) == (2, 2)
    assert sorted(t["subject"] for t in helpdesk.tickets()) == ["Problem 1", "Problem 2"]
    assert backlog_at(intake.path).waiting == 0
    assert helpdesk.run("tick", "--json").json()["spool_moved"] == 0


def test_a_spool_left_by_an_older_maild_is_rekeyed_when_the_worker_opens_it(
    engine: Engine, pool: Pool, database: Path,
) -> None:
    old = sqlite3.connect(spool_path(database))
    old.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT "
                "NULL UNIQUE, source TEXT NOT NULL, envelope_from TEXT, received_at TEXT NOT "
                "NULL, raw BLOB NOT NULL)")
    old.execute("INSERT INTO spool (dedupe_key, source, received_at, raw) VALUES (?, ?, ?, ?)",
                ("mid:spool-1@example.org", "smtp", WHEN.isoformat(), raw(1)))
    old.commit()
    old.close()
    mover = Spool(spool_path(database), busy_timeout=0.2, mover=True)
    try:
        assert mover.move_into(pool, limit=10) == 1
    finally:
        mover.close()
    [row] = inbound(engine)
    assert (row.dedupe_key, row.message_id) == (identify(raw(1)).key, "spool-1@example.org")


def test_try_store_declines_at_once_while_another_writer_holds_the_spool(
    database: Path, mover: Spool, engine: Engine, pool: Pool
) -> None:
    """The SMTP listener stores on its event loop only when nobody else writes: while the
    worker's mover (another process, here another connection) holds the spool, `try_store`
    says so at once instead of waiting, and `store` (the listener's thread) waits its turn."""
    import threading
    import time

    # Built once: `mail` dates a message now, and one built a clock tick later would be another
    # message (the Date is part of what `maild.dedupe` compares).
    second = bytes(mail(message_id="<b@example.org>", date=WHEN))
    # A busy timeout far beyond the test's pauses: a loaded machine cannot make the waiting
    # store give up, and "at once" stays far below it.
    with closing(Spool(spool_path(database), busy_timeout=30)) as intake:
        assert intake.try_store(bytes(mail(message_id="<a@example.org>")), source="smtp",
                                now=WHEN) is not None
        with closing(sqlite3.connect(spool_path(database), isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            declined = intake.try_store(second, source="smtp", now=WHEN)
            assert declined is None and time.monotonic() - started < 5
            waited: list[Accepted] = []
            writer = threading.Thread(target=lambda: waited.append(
                intake.store(second, source="smtp", now=WHEN)))
            writer.start()
            time.sleep(0.2)
            assert not waited  # still waiting for the lock
            other.execute("COMMIT")
            writer.join()
        assert len(waited) == 1 and not waited[0].duplicate
        again = intake.try_store(second, source="smtp", now=WHEN)
        assert again is not None and again.duplicate
    assert mover.move_into(pool, 10) == 2
    assert [row.message_id for row in inbound(engine)] == ["a@example.org", "b@example.org"]
