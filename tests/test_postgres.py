"""maild on a real PostgreSQL server: schema, threading, timer duties, and parallel workers.

The session's private cluster (tests/pg.py; the `cluster` fixture of tests/conftest.py) runs on a
free loopback port; every test gets a fresh database. The parallel tests run several workers
against one database at once — the situation `FOR UPDATE SKIP LOCKED` (maild.db.claim), the duty
rows and the ticket-counter upsert exist for — and check that every message is threaded once
and every mail is sent once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import smtplib
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from maild import config
from maild.clock import Clock, FixedClock
from maild.compose import Templates
from maild.config import DatabaseSettings, Settings
from maild.db import make_engine
from maild.dbapi import Pool
from maild.errors import StorageUnavailable
from maild.ingest.accept import accept
from maild.numbers import next_number
from maild.outbound import Deliverer, MaildirTransport
from maild.sla.duties import run_duties
from maild.threading import process_pending
from maild.tracked import Tracker
from tests.conftest import BASE_CONFIG, Helpdesk, mail
from tests.pg import PostgresCluster
from tests.servers import MaildProcess, wait_port, wait_until
from tests.sla_helpers import arrive, at, escalation_mails, tick, with_sla
from tests.smtp_sink import SmtpSink, free_port

WORKERS = 4
T = TypeVar("T")


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str) -> Helpdesk:
    return Helpdesk(tmp_path, capsys, url=pg_url)


def query(url: str, sql: str) -> list[Any]:
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql)).all())
    finally:
        engine.dispose()


def in_parallel(work: Callable[[int], T], workers: int = WORKERS) -> list[T]:
    """Run `work(index)` in `workers` threads that start together; re-raise the first error."""
    start = threading.Barrier(workers)
    results: list[Any] = [None] * workers
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=30)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"worker-{i}")
               for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hangs"
    if errors:
        raise errors[0]
    return results


def with_pool(settings: Settings, use: Callable[[Pool], T]) -> T:
    """Each worker has connections of its own, like a separate process."""
    pool = Pool(settings.database)
    try:
        return use(pool)
    finally:
        pool.close()


# --- schema -----------------------------------------------------------------------------------


def test_init_twice_builds_exactly_the_tables_of_the_models(desk: Helpdesk, pg_url: str) -> None:
    again = desk.run("init")
    assert again.code == 0, again.err
    assert "postgresql+psycopg://" in again.out

    engine = make_engine(DatabaseSettings(url=pg_url))
    try:
        assert engine.dialect.name == "postgresql"
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
            tables = set(inspect(connection).get_table_names())
            queues = connection.exec_driver_sql("SELECT name FROM queue ORDER BY id").all()
            staff = connection.exec_driver_sql(
                "SELECT email, active FROM staff ORDER BY id").all()
    finally:
        engine.dispose()
    assert diff == []
    assert tables == set(SQLModel.metadata.tables) | {"alembic_version"}
    assert [q[0] for q in queues] == ["General questions", "Compatibility problems",
                                      "Development questions"]
    assert staff == [("alice@example.com", True), ("bob@example.com", True)]


# --- threading (the shapes of test_threading.py) -----------------------------------------------


def _new_ticket(desk: Helpdesk, **kwargs: Any) -> str:
    result = desk.ingest(mail(**kwargs))
    assert result.code == 0, result.err
    return result.out.strip()


def test_a_new_mail_makes_a_ticket_and_one_acknowledgement(desk: Helpdesk) -> None:
    number = _new_ticket(desk, message_id="<first@example.org>")

    assert number.isdigit() and len(number) >= 13
    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["customer"], ticket["queue"]) == \
        ("new", "ivan@example.org", "General questions")
    [ack] = desk.outbox()
    assert ack["To"].addresses[0].addr_spec == "ivan@example.org"
    assert ack["Subject"].startswith(f"[Ticket#{number}] ")
    assert ack["In-Reply-To"] == "<first@example.org>"
    directions = [(m["direction"], m["message_id"]) for m in ticket["messages"]]
    assert directions == [("in", "first@example.org"), ("out", ack["Message-ID"].strip("<>"))]
    second = _new_ticket(desk, subject="Another problem", sender="olga@example.org")
    assert int(second) == int(number) + 1


def test_replies_by_tag_and_by_in_reply_to_land_on_the_ticket(desk: Helpdesk) -> None:
    number = _new_ticket(desk)
    [ack] = desk.outbox()
    for subject in (f"RE: AW: [Ticket#{number}] Printer does not print",
                    f"Ответ: [ticket#{number}] Принтер"):
        assert desk.ingest(mail(subject=subject)).out.strip() == number, subject
    reply = mail(subject="Re: your message", in_reply_to=ack["Message-ID"])
    assert desk.ingest(reply).out.strip() == number

    assert sum(m["direction"] == "in" for m in desk.ticket(number)["messages"]) == 4
    assert len(desk.tickets()) == 1
    assert len(desk.outbox()) == 1  # follow-ups are not acknowledged again


def test_a_closed_ticket_is_reopened_by_a_reply(desk: Helpdesk) -> None:
    number = _new_ticket(desk)
    desk.set_ticket(number, status="closed", owner="alice@example.com")

    result = desk.ingest(mail(subject=f"Re: [Ticket#{number}] it broke again"))

    assert result.out.strip() == number
    shown = desk.ticket(number)
    assert shown["status"] == "open"
    assert "reopened" in [e["type"] for e in shown["events"]]
    assert sorted(n["To"].addresses[0].addr_spec for n in desk.outbox()[1:]) == \
        ["alice@example.com", "ivan@example.org"]


def test_the_same_message_twice_is_stored_once(desk: Helpdesk) -> None:
    original = mail(message_id="<twice@example.org>")
    first, second = desk.ingest(original), desk.ingest(original)
    assert first.code == second.code == 0
    assert first.out == second.out
    assert len(desk.tickets()) == 1
    assert len(desk.run("inbound", "list", "--json").json()) == 1
    assert len(desk.outbox()) == 1


# --- timer duties -------------------------------------------------------------------------------

def test_tick_escalates_once_per_unattended_period(desk: Helpdesk) -> None:
    with_sla(desk)
    number = arrive(desk, at("2026-11-30 10:00"))
    assert tick(desk, at("2026-11-30 10:29"))["escalated"] == []

    assert tick(desk, at("2026-11-30 10:31"))["escalated"] == [number]
    assert tick(desk, at("2026-11-30 10:31"))["escalated"] == []  # the same instant again
    assert tick(desk, at("2026-11-30 11:00"))["escalated"] == []  # the same period

    assert escalation_mails(desk) == ["alice@example.com", "bob@example.com"]
    assert [e["type"] for e in desk.ticket(number)["events"]].count("escalated") == 1


def test_parallel_ticks_escalate_each_ticket_once(desk: Helpdesk, pg_url: str) -> None:
    with_sla(desk)
    numbers = {arrive(desk, at("2026-11-30 10:00"), sender=f"c{i}@example.org",
                       subject=f"Problem {i}") for i in range(12)}
    settings = config.load(desk.config)
    clock = FixedClock(at("2026-11-30 10:31"))

    def tick(_: int) -> list[str]:
        return with_pool(settings, lambda pool: run_duties(
            pool, settings, Templates(settings), clock).escalations)

    escalated = [n for found in in_parallel(tick) for n in found]

    assert sorted(escalated) == sorted(numbers)  # each ticket by exactly one worker
    assert query(pg_url, "SELECT count(*) FROM outbox WHERE kind = 'escalation'") == [(24,)]
    assert query(pg_url, "SELECT count(*) FROM duty") == [(12,)]


# --- parallel workers ---------------------------------------------------------------------------


def _store(pool: Pool, count: int, when: datetime) -> list[int]:
    """`count` customer mails from `count` different senders, stored but not threaded."""
    return [accept(pool, bytes(mail(sender=f"Customer {i} <customer{i}@example.org>",
                                      subject=f"Problem number {i}",
                                      body=f"Hello, problem {i} here.\n")),
                   source="test", now=when).row_id
            for i in range(count)]


def test_four_workers_thread_and_deliver_every_message_exactly_once(
    desk: Helpdesk, pg_url: str
) -> None:
    settings = config.load(desk.config)
    when = at("2026-11-30 10:00")
    clock: Clock = FixedClock(when)
    stored = with_pool(settings, lambda pool: _store(pool, 200, when))
    assert len(set(stored)) == 200

    def thread_all(_: int) -> list[tuple[int, str]]:
        """Like the daemon's worker loop: take what is new until nothing is."""
        def work(pool: Pool) -> list[tuple[int, str]]:
            templates, created = Templates(settings), []
            while settled := process_pending(pool, settings, templates, clock, limit=60):
                created += [(s.inbound_id, s.ticket_number or "") for s in settled if s.created]
            return created
        return with_pool(settings, work)

    created = [c for worker in in_parallel(thread_all) for c in worker]

    # Every inbound row was threaded by exactly one worker, into a ticket of its own.
    assert sorted(i for i, _ in created) == sorted(stored)
    assert query(pg_url, "SELECT state, count(*), min(attempts), max(attempts) FROM inbound "
                         "GROUP BY state") == [("done", 200, 1, 1)]
    assert query(pg_url, "SELECT count(*), count(DISTINCT ticket_id) FROM inbound") == \
        [(200, 200)]
    assert query(pg_url, "SELECT count(*) FROM ticket") == [(200,)]
    assert query(pg_url, "SELECT direction, count(*), count(DISTINCT message_id), "
                         "count(DISTINCT ticket_id) FROM message GROUP BY direction "
                         "ORDER BY direction") == [("in", 200, 200, 200), ("out", 200, 200, 200)]
    assert query(pg_url, "SELECT kind, state, count(*), count(DISTINCT rcpt_to), "
                         "count(DISTINCT ticket_id) FROM outbox GROUP BY kind, state") == \
        [("ack", "pending", 200, 200, 200)]

    # Ticket numbers: the per-day counter gave each ticket its own, with no gaps.
    numbers = [n for _, n in created]
    day = when.strftime("%Y%m%d")
    assert sorted(numbers) == [f"{day}{i:05d}" for i in range(1, 201)]
    assert query(pg_url, "SELECT day, value FROM ticket_counter") == [(day, 200)]

    # Four deliverers, small batches so their claims interleave, one Maildir.
    box = desk.root / "delivered"
    outbound = dataclasses.replace(settings.outbound, batch_size=7)

    def deliver_all(_: int) -> list[int]:
        # Each deliverer has connections of its own, like a separate process.
        deliverer = Deliverer(Pool(settings.database), MaildirTransport(box), outbound)
        try:
            sent: list[int] = []
            while report := deliverer.deliver_due(clock):
                assert not report.deferred and not report.dead, report
                sent += report.sent
            return sent
        finally:
            deliverer.close()

    sent = [row for worker in in_parallel(deliver_all) for row in worker]

    assert len(sent) == 200 and len(set(sent)) == 200
    assert len(list((box / "new").iterdir())) == 200
    assert list((box / "tmp").iterdir()) == []
    assert query(pg_url, "SELECT state, count(*), min(attempts), max(attempts), "
                         "count(claimed_by) FILTER (WHERE claimed_by <> '') FROM outbox "
                         "GROUP BY state") == [("sent", 200, 1, 1, 0)]


def test_the_ticket_counter_gives_unique_consecutive_numbers_under_contention(
    desk: Helpdesk, pg_url: str
) -> None:
    """Four workers allocate at once, from the day's very first number (the row to insert)."""
    settings = config.load(desk.config)
    when = at("2026-12-01 12:00")

    def allocate(_: int) -> list[str]:
        def work(pool: Pool) -> list[str]:
            numbers = []
            for _ in range(50):
                with pool.writing() as db:
                    numbers.append(next_number(Tracker(db, pool.reader), when,
                                               settings.sla.zone))
            return numbers
        return with_pool(settings, work)

    numbers = [n for worker in in_parallel(allocate) for n in worker]

    assert sorted(numbers) == [f"20261201{i:05d}" for i in range(1, 201)]
    assert query(pg_url, "SELECT day, value FROM ticket_counter") == [("20261201", 200)]


def test_a_numbering_connection_the_server_closed_is_replaced_without_a_duplicate(
    desk: Helpdesk, pg_url: str
) -> None:
    """The counter advances on a connection of the pool apart from the transaction; after a
    server restart (here: every backend of the database terminated) the connections that broke
    are dropped, the first number asked then fails as the database's (StorageUnavailable: a
    worker gives its batch back and tries again), and the next ones come, each once."""
    settings = config.load(desk.config)
    when = at("2026-12-01 12:00")

    def number(pool: Pool) -> str:
        with pool.writing() as db:
            return next_number(Tracker(db, pool.reader), when, settings.sla.zone)

    def work(pool: Pool) -> tuple[list[str], int]:
        numbers, refused = [number(pool), number(pool)], 0
        query(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        while len(numbers) < 4 and refused < 5:
            try:
                numbers.append(number(pool))
            except StorageUnavailable:
                refused += 1  # a connection the server closed, dropped by the pool
        return numbers, refused

    numbers, refused = with_pool(settings, work)
    assert numbers == [f"20261201{i:05d}" for i in range(1, 5)]
    assert 1 <= refused <= 2  # the two connections the pool held: one per statement's block
    assert query(pg_url, "SELECT day, value FROM ticket_counter") == [("20261201", 4)]
    # The pool closed (every command's is, at its end), its connections are closed too.
    assert query(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                         "current_database() AND pid <> pg_backend_pid()") == [(0,)]


def test_the_same_mail_accepted_by_four_intakes_at_once_is_stored_once(
    desk: Helpdesk, pg_url: str
) -> None:
    """The insert race of `accept`: the loser's unique violation turns into "duplicate"."""
    settings = config.load(desk.config)
    when = at("2026-11-30 10:00")
    raws = [bytes(mail(subject=f"Problem {i}")) for i in range(40)]

    def intake(_: int) -> list[tuple[int, bool]]:
        return with_pool(settings, lambda pool: [
            (a.row_id, a.duplicate)
            for a in (accept(pool, raw, source="test", now=when) for raw in raws)])

    results = in_parallel(intake)

    assert all(len({worker[i][0] for worker in results}) == 1 for i in range(40))
    assert sum(not duplicate for worker in results for _, duplicate in worker) == 40
    assert query(pg_url, "SELECT count(*), count(DISTINCT dedupe_key) FROM inbound") == \
        [(40, 40)]


def test_parallel_workers_thread_a_reply_stored_after_its_original_onto_its_ticket(
    desk: Helpdesk, pg_url: str
) -> None:
    """One worker (or SQLite's writer lock) threads rows in the order they were stored, so a
    reply carrying only In-Reply-To always finds the ticket of the original stored before it.
    Four workers on PostgreSQL must keep that promise."""
    settings = config.load(desk.config)
    when = at("2026-11-30 10:00")
    clock = FixedClock(when)

    def store(pool: Pool) -> None:
        for i in range(20):
            for message in (mail(sender=f"c{i}@example.org", message_id=f"<orig{i}@example.org>"),
                            mail(sender=f"c{i}@example.org", subject="more details",
                                 in_reply_to=f"<orig{i}@example.org>")):
                accept(pool, bytes(message), source="test", now=when)

    with_pool(settings, store)

    def thread_all(_: int) -> None:
        def work(pool: Pool) -> None:
            templates = Templates(settings)
            while process_pending(pool, settings, templates, clock, limit=60):
                pass
        with_pool(settings, work)

    in_parallel(thread_all)

    assert query(pg_url, "SELECT state, count(*) FROM inbound GROUP BY state") == [("done", 40)]
    assert query(pg_url, "SELECT count(*) FROM ticket") == [(20,)]


def test_four_tick_processes_settle_and_send_everything_once(desk: Helpdesk, pg_url: str) -> None:
    """`maild tick` in four real processes at once: threading, duties and delivery in parallel,
    with the claims of each process visible to the others as `host:pid`."""
    settings = config.load(desk.config)
    when = at("2026-11-30 10:00")
    with_pool(settings, lambda pool: _store(pool, 60, when))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "maild", "--config", str(desk.config), "tick", "--json",
               "--at", (when + timedelta(minutes=1)).isoformat()]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env) for _ in range(WORKERS)]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [p.returncode for p in processes] == [0] * WORKERS, [err for _, err in outputs]
    assert query(pg_url, "SELECT state, count(*) FROM inbound GROUP BY state") == [("done", 60)]
    assert query(pg_url, "SELECT count(*), count(DISTINCT number) FROM ticket") == [(60, 60)]
    # A tick delivers what is due when it gets there: whatever one process queued after the
    # others had delivered is still pending, and one more tick sends it.
    assert tick(desk, when + timedelta(minutes=2))["failed"] == 0
    assert query(pg_url, "SELECT state, count(*), max(attempts) FROM outbox GROUP BY state") == \
        [("sent", 60, 1)]
    delivered = list((desk.root / "var" / "outbox" / "new").iterdir())
    assert len(delivered) == 60
    assert sorted(Counter(p.read_bytes().split(b"\r\nDelivered-To: ", 1)[1].split(b"\r\n")[0]
                          for p in delivered).values()) == [1] * 60


# --- several `maild run` on one database ------------------------------------------------------


def test_four_inits_at_once_on_a_fresh_database_all_succeed(tmp_path: Path, pg_url: str) -> None:
    """Several daemons started together each run `init`; an advisory lock takes them in turn."""
    cfg = tmp_path / "maild.toml"
    cfg.write_text(BASE_CONFIG.format(root=tmp_path, url=pg_url, tag="Ticket", language="en",
                                      cap=5, reopen="true", notify="false", busy="5s",
                                      templates="",
                                      transport="maildir", smtp_port=25))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    processes = [subprocess.Popen([sys.executable, "-m", "maild", "--config", str(cfg), "init"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                 for _ in range(WORKERS)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [p.returncode for p in processes] == [0] * WORKERS, [err for _, err in outputs]
    assert query(pg_url, "SELECT count(*) FROM queue") == [(3,)]
    assert query(pg_url, "SELECT email FROM staff ORDER BY email") == \
        [("alice@example.com",), ("bob@example.com",)]


def test_two_daemons_on_one_database_take_thread_and_answer_every_mail_once(
    tmp_path: Path, pg_url: str, sink: SmtpSink
) -> None:
    """Two `maild run` processes on one PostgreSQL database, started at the same moment, each
    with an SMTP listener of its own: the scale path of DESIGN.md, end to end."""
    daemons = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        port = free_port()
        daemon = MaildProcess(root, BASE_CONFIG.format(
            root=root, url=pg_url, tag="Ticket", language="en", cap=5, reopen="true",
            notify="false",
            busy="5s", templates="", transport="smtp", smtp_port=sink.port)
            + f'\n[smtp]\nlisten = "127.0.0.1:{port}"\n')
        daemon.port = port
        daemons.append(daemon)
    for daemon in daemons:
        daemon.start()  # together: both run `init` on the empty database at once
    try:
        for daemon in daemons:
            wait_port(daemon.port, timeout=60)
        total = 60
        replies = []
        for n in range(total):
            with smtplib.SMTP("127.0.0.1", daemons[n % 2].port) as client:
                client.ehlo()
                client.mail(f"customer{n}@example.org")
                client.rcpt("support@example.com")
                replies.append(client.data(bytes(mail(
                    sender=f"Customer {n} <customer{n}@example.org>",
                    subject=f"Problem {n}", message_id=f"<two-daemons-{n}@example.org>")))[1])
        assert all(b"stored as inbound" in reply for reply in replies), replies[:3]

        def acknowledged() -> list[str]:
            return [r for m in sink.messages for r in m.rcpt_tos if r.startswith("customer")]

        assert wait_until(lambda: len(acknowledged()) >= total, timeout=60), \
            daemons[0].log()[-2000:] + daemons[1].log()[-2000:]
    finally:
        codes = [daemon.stop() for daemon in daemons]
    assert codes == [0, 0]
    assert sorted(acknowledged()) == sorted(f"customer{n}@example.org" for n in range(total))
    assert query(pg_url, "SELECT state, count(*) FROM inbound GROUP BY state") == [("done", total)]
    assert query(pg_url, "SELECT count(*), count(DISTINCT number) FROM ticket") == \
        [(total, total)]
    assert query(pg_url, "SELECT state, count(*), max(attempts) FROM outbox "
                         "WHERE kind = 'ack' GROUP BY state") == [("sent", total, 1)]
    # Each intake stored the half sent to it, straight into `inbound`.
    for daemon in daemons:
        assert len(re.findall(r"inbound \d+ stored from", daemon.log())) == total // 2
    assert "ERROR" not in daemons[0].log() + daemons[1].log()
    assert not list(tmp_path.rglob("*.spool"))  # PostgreSQL: the intake writes inbound itself
    status = daemons[0].cli("status", "--json", "--check")
    assert status.returncode == 0, status.stdout + status.stderr
    counted = json.loads(status.stdout)
    assert (counted["inbound"]["done"], counted["tickets"]["new"], counted["spool"]["waiting"]) \
        == (total, total, 0)
    assert counted["outbox"]["sent"] == len(sink.messages)


def test_a_database_restart_under_a_running_daemon_loses_nothing(
    tmp_path: Path, pg_url: str, cluster: PostgresCluster, sink: SmtpSink
) -> None:
    """PostgreSQL restarted (an upgrade, a failover) while `maild run` works: mail offered
    meanwhile gets 451 and nothing half-stored; afterwards both processes reconnect by
    themselves, and the retried mail is threaded and answered once."""
    port = free_port()
    daemon = MaildProcess(tmp_path, BASE_CONFIG.format(
        root=tmp_path, url=pg_url, tag="Ticket", language="en", cap=5, reopen="true",
            notify="false",
        busy="5s", templates="", transport="smtp", smtp_port=sink.port)
        + f'\n[smtp]\nlisten = "127.0.0.1:{port}"\n')
    daemon.start(wait_for=port)

    def send(n: int) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            client.mail(f"customer{n}@example.org")
            client.rcpt("support@example.com")
            return client.data(bytes(mail(sender=f"customer{n}@example.org",
                                          subject=f"Restart {n}",
                                          message_id=f"<restart-{n}@example.org>")))

    try:
        assert send(1)[0] == 250
        assert wait_until(lambda: len(sink.messages) == 1, timeout=30), daemon.log()
        cluster.pause()
        try:
            assert send(2)[0] == 451
        finally:
            cluster.resume()
        assert send(2)[0] == 250
        assert wait_until(lambda: len(sink.messages) == 2, timeout=60), daemon.log()
        assert daemon.running(), daemon.log()
    finally:
        assert daemon.stop() == 0
    assert query(pg_url, "SELECT state, count(*) FROM inbound GROUP BY state") == [("done", 2)]
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == \
        ["customer1@example.org", "customer2@example.org"]
    assert "Traceback" not in daemon.log(), daemon.log()
