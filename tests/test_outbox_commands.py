"""`maild outbox list|show|retry`: outgoing mail that failed is a state an operator can see and
re-run, like a failed inbound message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.cli import main
from tests.conftest import Helpdesk, mail
from tests.smtp_sink import SmtpSink


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str], sink: SmtpSink
         ) -> Iterator[Helpdesk]:
    yield Helpdesk(tmp_path, capsys, transport="smtp", smtp_port=sink.port)


def test_mail_the_relay_refused_is_sent_again_after_the_cause_is_fixed(
    desk: Helpdesk, sink: SmtpSink
) -> None:
    sink.handler.reply = lambda rcpt: "550 5.7.1 relaying denied"  # a misconfigured relay
    number = desk.ingest(mail(sender="ivan@example.org")).out.strip()
    [dead] = desk.run("outbox", "list", "--state", "dead", "--json").json()
    assert (dead["kind"], dead["ticket"], dead["to"]) == ("ack", number, "ivan@example.org")
    assert "550" in dead["last_error"]
    assert sink.messages == []

    sink.handler.reply = lambda rcpt: "250 OK"  # the relay is fixed
    retried = desk.run("outbox", "retry", "--json")
    assert retried.code == 0, retried.err
    assert [(r["id"], r["state"]) for r in retried.json()] == [(dead["id"], "sent")]
    assert [m.rcpt_tos for m in sink.messages] == [["ivan@example.org"]]
    events = [e for e in desk.ticket(number)["events"] if e["type"].startswith("delivery")]
    assert [e["type"] for e in events] == ["delivery_failed", "delivery_retried"]
    assert "550" in events[1]["detail"]
    # Sent mail is not sent twice by a second retry.
    again = desk.run("outbox", "retry")
    assert (again.code, again.out.strip()) == (0, "no dead or deferred outgoing mail")
    assert len(sink.messages) == 1


def test_a_retry_that_fails_again_says_so(desk: Helpdesk, sink: SmtpSink) -> None:
    sink.handler.reply = lambda rcpt: "550 5.1.1 no such user"
    desk.ingest(mail(sender="nobody@example.org"))
    [dead] = desk.run("outbox", "list", "--json").json()
    retried = desk.run("outbox", "retry", str(dead["id"]))
    assert retried.code == 1
    assert retried.out.startswith(f"{dead['id']}: dead ") and "550" in retried.out


def test_only_dead_or_deferred_mail_is_retried(desk: Helpdesk, sink: SmtpSink) -> None:
    desk.ingest(mail())
    [sent] = desk.run("outbox", "list", "--json").json()
    assert sent["state"] == "sent"
    retried = desk.run("outbox", "retry", str(sent["id"]))
    assert retried.code == 0
    assert f"outbox {sent['id']} is not dead or deferred" in retried.err
    assert len(sink.messages) == 1


def test_show_prints_the_exact_bytes_that_were_sent(desk: Helpdesk, sink: SmtpSink) -> None:
    desk.ingest(mail())
    [row] = desk.run("outbox", "list", "--json").json()
    shown = desk.run("outbox", "show", str(row["id"]), "--json").json()
    assert shown == row
    desk.capsys.readouterr()
    assert main(["--config", str(desk.config), "outbox", "show", str(row["id"]), "--raw"]) == 0
    assert sink.messages[0].data.replace(b"\r\n", b"\n") in \
        desk.capsys.readouterr().out.encode().replace(b"\r\n", b"\n")
    assert desk.run("outbox", "show", "999").code == 2
