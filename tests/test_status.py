"""`maild status`: queue counts, and attention only for what means maild is not doing its work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maild import config
from maild.dbapi import Pool
from maild.ingest.accept import accept
from maild.ingest.spool import Spool, spool_path
from tests.conftest import Helpdesk, mail
from tests.smtp_sink import free_port

AGO = timedelta(minutes=10)


def report(desk: Helpdesk) -> dict:  # type: ignore[type-arg]
    result = desk.run("status", "--json")
    assert result.code == 0, result.err
    return result.json()  # type: ignore[no-any-return]


def test_a_fresh_installation_needs_no_attention(helpdesk: Helpdesk) -> None:
    status = report(helpdesk)
    assert status["inbound"] == {"new": 0, "done": 0, "failed": 0, "oldest_new": None,
                                 "failed_last_24h": 0}
    assert status["spool"] == {"waiting": 0, "oldest": None}
    assert status["attention"] == []
    assert helpdesk.run("status", "--check").code == 0
    assert "attention  none" in helpdesk.run("status").out


def test_work_done_is_counted_and_needs_no_attention(helpdesk: Helpdesk) -> None:
    assert helpdesk.ingest(mail()).code == 0
    status = report(helpdesk)
    assert (status["inbound"]["done"], status["outbox"]["sent"], status["tickets"]["new"]) == \
        (1, 1, 1)
    assert status["attention"] == []


def test_mail_stored_but_not_threaded_for_minutes_needs_attention(helpdesk: Helpdesk) -> None:
    pool = Pool(config.load(helpdesk.config).database)
    received = datetime.now(UTC) - AGO
    try:
        accept(pool, bytes(mail()), source="smtp", now=received)
    finally:
        pool.close()
    status = report(helpdesk)
    assert status["inbound"]["new"] == 1
    assert datetime.fromisoformat(status["inbound"]["oldest_new"]) == received  # JSON: ISO
    [problem] = status["attention"]
    assert "1 inbound message(s) not threaded" in problem and "maild run" in problem
    # The sentence is for an operator: Moscow time (sla.timezone), to the minute.
    moscow = received.astimezone(ZoneInfo("Europe/Moscow")).strftime("%Y-%m-%d %H:%M MSK")
    assert f"the oldest since {moscow}:" in problem
    checked = helpdesk.run("status", "--check")
    assert checked.code == 1
    assert "attention  1 inbound message(s) not threaded" in checked.out


def test_mail_just_stored_is_not_a_problem_yet(helpdesk: Helpdesk) -> None:
    pool = Pool(config.load(helpdesk.config).database)
    try:
        accept(pool, bytes(mail()), source="smtp", now=datetime.now(UTC))
    finally:
        pool.close()
    assert report(helpdesk)["attention"] == []


@pytest.mark.sqlite
def test_mail_left_in_the_spool_needs_attention(helpdesk: Helpdesk) -> None:
    spool = Spool(spool_path(helpdesk.root / "var" / "maild.db"), busy_timeout=1.0)
    spool.store(bytes(mail()), source="smtp", now=datetime.now(UTC) - AGO)
    spool.close()
    status = report(helpdesk)
    assert status["spool"]["waiting"] == 1
    assert any("intake spool" in problem for problem in status["attention"])


def test_a_message_that_failed_today_needs_attention(helpdesk: Helpdesk) -> None:
    assert helpdesk.ingest(b"Subject: nobody sent this\r\n\r\nbody\r\n").code == 0
    status = report(helpdesk)
    assert (status["inbound"]["failed"], status["inbound"]["failed_last_24h"]) == (1, 1)
    assert any("failed in the last 24 h" in problem for problem in status["attention"])


def test_deferred_mail_needs_attention_with_the_relays_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = Helpdesk(tmp_path, capsys, transport="smtp", smtp_port=free_port())  # nobody there
    assert desk.ingest(mail()).code == 0
    status = report(desk)
    assert status["outbox"]["deferred"] == 1
    [problem] = status["attention"]
    assert problem.startswith("1 outgoing mail(s) deferred, last error:")
    assert "refused" in problem.lower() or "connect" in problem.lower(), problem
