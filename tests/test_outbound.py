"""Outbound delivery against a real SMTP server and a real Maildir: nothing lost, nothing twice."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from maild import config
from maild.clock import FixedClock
from maild.db import make_engine, transaction
from maild.dbapi import Pool
from maild.models import Event, Outbox
from maild.outbound import Deliverer, MaildirTransport, transports
from maild.outbound.deliver import DeliveryReport
from maild.outbound.smtp import SmtpTransport
from tests.conftest import Helpdesk, mail
from tests.smtp_sink import SmtpSink


def _owe_mail(helpdesk: Helpdesk, count: int = 1) -> None:
    for i in range(count):
        assert helpdesk.ingest(mail(subject=f"problem {i}", sender=f"c{i}@example.org"),
                               "--no-deliver").code == 0


def _deliverer(helpdesk: Helpdesk, transport: object) -> Deliverer:
    settings = config.load(helpdesk.config)
    return Deliverer(Pool(settings.database), transport,  # type: ignore[arg-type]
                     settings.outbound)


@contextmanager
def _engine(helpdesk: Helpdesk) -> Iterator[Engine]:
    """The installation's database, to look at what delivery did (and to set up a claim)."""
    engine = make_engine(config.load(helpdesk.config).database)
    try:
        yield engine
    finally:
        engine.dispose()


def _rows(helpdesk: Helpdesk) -> list[Outbox]:
    with _engine(helpdesk) as engine, transaction(engine, readonly=True) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)))  # type: ignore[arg-type]


def test_smtp_delivery_sends_each_message_once_over_one_connection(
    helpdesk: Helpdesk, sink: SmtpSink
) -> None:
    _owe_mail(helpdesk, 3)
    deliverer = _deliverer(helpdesk, SmtpTransport("127.0.0.1", sink.port))
    queued = _rows(helpdesk)[-1].created_at  # the wall clock of `ingest`: no date is assumed
    report = deliverer.deliver_due(FixedClock(queued + timedelta(days=1)))
    assert len(report.sent) == 3
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == \
        ["c0@example.org", "c1@example.org", "c2@example.org"]
    assert all(m.mail_from == "support@example.com" for m in sink.messages)
    assert all(r.state == "sent" for r in _rows(helpdesk))
    assert not deliverer.deliver_due(FixedClock(queued + timedelta(days=2)))  # nothing twice
    assert len(sink.messages) == 3


def test_a_temporary_refusal_is_retried_with_doubling_back_off(
    helpdesk: Helpdesk, sink: SmtpSink
) -> None:
    _owe_mail(helpdesk)
    sink.handler.reply = lambda rcpt: "450 4.2.0 mailbox busy"
    deliverer = _deliverer(helpdesk, SmtpTransport("127.0.0.1", sink.port))
    start = _rows(helpdesk)[0].created_at
    clock = FixedClock(start)

    assert len(deliverer.deliver_due(clock).deferred) == 1
    [row] = _rows(helpdesk)
    assert row.state == "deferred" and row.next_attempt_at == start + timedelta(minutes=1)
    assert "450" in row.last_error

    clock.set(start + timedelta(seconds=30))
    assert not deliverer.deliver_due(clock)  # not due yet
    clock.set(start + timedelta(minutes=1))
    deliverer.deliver_due(clock)
    assert _rows(helpdesk)[0].next_attempt_at == clock.now() + timedelta(minutes=2)

    sink.handler.reply = lambda rcpt: "250 OK"
    clock.set(clock.now() + timedelta(minutes=2))
    assert len(deliverer.deliver_due(clock).sent) == 1
    assert len(sink.messages) == 1
    assert _rows(helpdesk)[0].attempts == 3


def test_a_permanent_refusal_is_recorded_on_the_ticket_and_never_retried(
    helpdesk: Helpdesk, sink: SmtpSink
) -> None:
    _owe_mail(helpdesk)
    sink.handler.reply = lambda rcpt: "550 5.1.1 no such user"
    deliverer = _deliverer(helpdesk, SmtpTransport("127.0.0.1", sink.port))
    queued = _rows(helpdesk)[0].created_at
    clock = FixedClock(queued + timedelta(days=1))
    assert len(deliverer.deliver_due(clock).dead) == 1
    sink.handler.reply = lambda rcpt: "250 OK"
    clock.set(queued + timedelta(days=2))
    assert not deliverer.deliver_due(clock)
    assert sink.messages == []
    [row] = _rows(helpdesk)
    assert row.state == "dead" and "550" in row.last_error
    with _engine(helpdesk) as engine, transaction(engine, readonly=True) as session:
        events = list(session.exec(select(Event).where(Event.type == "delivery_failed")))
    assert len(events) == 1 and "550" in events[0].detail


def test_an_unreachable_relay_defers_the_batch_with_one_log_line(
    helpdesk: Helpdesk, caplog: pytest.LogCaptureFixture
) -> None:
    down = SmtpSink()  # a free port nobody listens on
    _owe_mail(helpdesk, 3)
    deliverer = _deliverer(helpdesk, SmtpTransport("127.0.0.1", down.port, timeout=2))
    created = max(r.created_at for r in _rows(helpdesk))
    with caplog.at_level(logging.WARNING, logger="maild.outbound"):
        report = deliverer.deliver_due(FixedClock(created))
        deliverer.deliver_due(FixedClock(created + timedelta(minutes=1)))
    assert len(report.deferred) == 3
    assert sum("cannot reach the relay" in r.message for r in caplog.records) == 1
    assert all(r.state == "deferred" for r in _rows(helpdesk))

    down.start()  # the relay comes back: everything goes, once
    try:
        later = FixedClock(created + timedelta(hours=1))
        assert len(deliverer.deliver_due(later).sent) == 3
        assert len(down.messages) == 3
    finally:
        down.stop()


def test_mail_past_its_lifetime_is_given_up_and_recorded(helpdesk: Helpdesk) -> None:
    down = SmtpSink()
    _owe_mail(helpdesk)
    deliverer = _deliverer(helpdesk, SmtpTransport("127.0.0.1", down.port, timeout=2))
    created = _rows(helpdesk)[0].created_at
    deliverer.deliver_due(FixedClock(created + timedelta(days=6)))
    [row] = _rows(helpdesk)
    assert row.state == "dead" and "gave up" in row.last_error


def test_maildir_delivery_of_the_same_row_twice_leaves_one_file(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "box")
    for _batch in range(2):  # in one batch, and again in the next
        for _ in range(2):
            transport.send("support@example.com", "a@example.org",
                           b"Subject: x\r\n\r\nbody\r\n", "1764064800.M7maild")
        transport.close()
    [only] = list((tmp_path / "box" / "new").iterdir())
    assert only.read_bytes().endswith(b"Subject: x\r\n\r\nbody\r\n")
    assert b"Delivered-To: a@example.org" in only.read_bytes()
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


@pytest.mark.parametrize("syncfs", [True, False], ids=["one syncfs", "an fsync a file"])
def test_a_maildir_batch_is_seen_in_new_only_once_it_is_durable(
    tmp_path: Path, syncfs: bool
) -> None:
    """A reader of new/ never sees a file a crash could still take back: the batch waits in
    tmp/ until it has been synced, then moves as a whole — with one syncfs(2), or where that
    does not report errors, an fsync of each file."""
    transport = MaildirTransport(tmp_path / "box")
    transport._syncfs = syncfs and transports._syncfs_reports_errors()
    for i in range(3):
        transport.send("support@example.com", f"c{i}@example.org", b"Subject: x\r\n\r\nb\r\n",
                       f"1764064800.M{i}maild")
    assert list((tmp_path / "box" / "new").iterdir()) == []
    assert len(list((tmp_path / "box" / "tmp").iterdir())) == 3
    transport.close()
    assert len(list((tmp_path / "box" / "new").iterdir())) == 3
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_a_maildir_batch_that_cannot_be_made_durable_is_deferred_then_sent_once(
    helpdesk: Helpdesk
) -> None:
    _owe_mail(helpdesk, 2)
    box = helpdesk.root / "var" / "outbox"
    transport = MaildirTransport(box)
    deliverer = _deliverer(helpdesk, transport)
    queued = _rows(helpdesk)[-1].created_at
    # The batch is written into tmp/, and then new/ cannot take it.
    for sub in ("tmp", "cur"):
        (box / sub).mkdir(parents=True)
    (box / "new").write_text("not a folder")
    transport._ready = True  # as after an earlier batch
    report = deliverer.deliver_due(FixedClock(queued + timedelta(minutes=1)))
    assert report.sent == [] and len(report.deferred) == 2
    assert all(r.state == "deferred" and "maildir" in r.last_error for r in _rows(helpdesk))
    assert list((box / "tmp").iterdir()) == []  # nothing left behind to be mistaken for mail
    (box / "new").unlink()
    report = deliverer.deliver_due(FixedClock(queued + timedelta(hours=1)))
    assert len(report.sent) == 2
    assert len(list((box / "new").iterdir())) == 2
    assert list((box / "tmp").iterdir()) == []
    assert all(r.state == "sent" for r in _rows(helpdesk))


@pytest.mark.parametrize(("system", "release", "reports"), [
    ("linux", "6.18.44-fc-v1045", True), ("linux", "5.8.0", True), ("linux", "5.4.0-42", False),
    ("linux", "4.19.0", False), ("darwin", "23.1.0", False)])
def test_syncfs_is_trusted_only_where_it_reports_write_back_errors(
    monkeypatch: pytest.MonkeyPatch, system: str, release: str, reports: bool
) -> None:
    monkeypatch.setattr(transports.sys, "platform", system)
    monkeypatch.setattr(transports.os, "uname", lambda: os.uname_result(
        ("Linux", "host", release, "#1", "x86_64")))
    assert transports._syncfs_reports_errors() is reports


def test_a_crashed_claim_is_taken_back_after_its_lease(helpdesk: Helpdesk) -> None:
    _owe_mail(helpdesk)
    deliverer = _deliverer(helpdesk, MaildirTransport(helpdesk.root / "var" / "outbox"))
    created = _rows(helpdesk)[0].created_at
    with _engine(helpdesk) as engine, transaction(engine) as session:  # claimed, then died
        row = session.exec(select(Outbox)).one()
        row.state = "sending"
        row.claimed_at = created
    assert not deliverer.deliver_due(FixedClock(created + timedelta(minutes=1)))
    assert len(deliverer.deliver_due(FixedClock(created + timedelta(minutes=6))).sent) == 1
    assert len(helpdesk.outbox()) == 1


def test_the_senders_outcomes_are_recorded_by_its_next_claim_and_never_sent_twice(
    helpdesk: Helpdesk, sink: SmtpSink
) -> None:
    """The daemon's sender records a batch in the transaction that claims the next one: until
    then its rows stay claimed by it (nobody else sends them), and `close` records what is left."""
    _owe_mail(helpdesk, 2)
    deliverer = _deliverer(helpdesk, SmtpTransport("127.0.0.1", sink.port))
    queued = _rows(helpdesk)[-1].created_at
    clock = FixedClock(queued + timedelta(minutes=1))
    assert len(deliverer.deliver_due(clock, limit=1, record_with_next_claim=True).sent) == 1
    assert [r.state for r in _rows(helpdesk)] == ["sending", "pending"]
    first, second = (r.id for r in _rows(helpdesk))
    other: list[DeliveryReport] = []  # another sender (a thread of its own: another claimant)
    thread = threading.Thread(target=lambda: other.append(_deliverer(
        helpdesk, SmtpTransport("127.0.0.1", sink.port)).deliver_due(clock)))
    thread.start()
    thread.join()
    assert other[0].sent == [second]  # the row in hand is this sender's: not sent again
    assert [r.state for r in _rows(helpdesk)] == ["sending", "sent"]
    assert not deliverer.deliver_due(clock, limit=1, record_with_next_claim=True)
    assert [r.state for r in _rows(helpdesk)] == ["sent", "sent"]  # recorded by that claim
    _owe_mail(helpdesk)
    assert len(deliverer.deliver_due(clock, record_with_next_claim=True).sent) == 1
    deliverer.close()
    assert [(r.state, r.attempts) for r in _rows(helpdesk)] == [("sent", 1)] * 3
    assert first != second and len(sink.messages) == 3


def test_a_dead_outcome_kept_for_the_next_claim_is_recorded_on_the_ticket(
    helpdesk: Helpdesk, sink: SmtpSink
) -> None:
    _owe_mail(helpdesk)
    sink.handler.reply = lambda rcpt: "550 5.1.1 no such user"
    deliverer = _deliverer(helpdesk, SmtpTransport("127.0.0.1", sink.port))
    clock = FixedClock(_rows(helpdesk)[-1].created_at + timedelta(minutes=1))
    assert len(deliverer.deliver_due(clock, record_with_next_claim=True).dead) == 1
    assert not deliverer.deliver_due(clock, record_with_next_claim=True)  # records it
    assert [r.state for r in _rows(helpdesk)] == ["dead"]
    with _engine(helpdesk) as engine, transaction(engine, readonly=True) as session:
        assert session.exec(select(Event).where(Event.type == "delivery_failed")).first()
    deliverer.close()
