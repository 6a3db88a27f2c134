"""Bounces of mail maild sent (SPEC §9): stored on the ticket of the mail they return, never
answered and never reopening it; a permanent failure marks the address undeliverable, no
automatic mail goes to it until it writes again, and the owner is told — never the customer.

Real bounces of several MTAs from the corpus (`MAILD_CORPUS`) are made to return a mail maild
really sent in the test: the returned Message-ID and the failed address are replaced by the
acknowledgement's and the customer's. The rest are built here, so they run without the corpus.
"""

from __future__ import annotations

import os
import re
from email.feedparser import FeedParser
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from maild.bounces import detect, detect_message
from maild.parsing import parse_message
from tests.conftest import Helpdesk, mail, recipient

CORPUS = Path(os.environ.get("MAILD_CORPUS", "")) if os.environ.get("MAILD_CORPUS") else None
BOUNCES = "sisimai-set-of-emails/maildir/bsd"
CUSTOMER = "ivan@example.org"

# One permanent bounce each of MTAs that write them differently: RFC 3464 reports (Postfix,
# Sendmail, Outlook.com, Exchange 2007), formats only flufl.bounce reads (Exim, qmail, Gmail's
# old notices), and prose notices (DragonFly, Yahoo).
MTA_BOUNCES = ["lhost-postfix-03.eml", "lhost-sendmail-05.eml", "lhost-outlook-01.eml",
               "lhost-exchange2007-02.eml", "lhost-exim-01.eml", "lhost-qmail-03.eml",
               "lhost-gmail-01.eml", "lhost-dragonfly-01.eml", "lhost-yahoo-01.eml"]


@pytest.fixture
def staffed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Helpdesk:
    """A helpdesk whose staff are told of mail on tickets (the bounce notice among it)."""
    return Helpdesk(tmp_path, capsys, notify="true")


def _ticket_with_ack(helpdesk: Helpdesk) -> tuple[str, EmailMessage]:
    number = helpdesk.ingest(mail(sender=f"Ivan <{CUSTOMER}>")).out.strip()
    acks = [m for m in helpdesk.outbox() if recipient(m) == CUSTOMER]
    assert len(acks) == 1
    return number, acks[0]


def _returning(raw: bytes, message_id: str, address: str) -> bytes:
    """A real bounce made to return the mail `message_id` sent to `address`."""
    verdict = detect(raw)
    assert verdict.bounce and verdict.original_message_id and verdict.recipients
    raw = raw.replace(verdict.original_message_id.encode(), message_id.strip("<>").encode())
    return re.sub(re.escape(verdict.recipients[0]).encode(), address.encode(), raw,
                  flags=re.IGNORECASE)


def dsn(recipient_address: str, *, status: str = "5.1.1", action: str = "failed",
        returned_message_id: str | None = None) -> bytes:
    """An RFC 3464 report as Postfix writes it; the returned headers only when asked."""
    returned = (
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Support <support@example.com>\r\nMessage-ID: {returned_message_id}\r\n"
        "Subject: [Ticket#1] Printer\r\n") if returned_message_id else ""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.net>\r\nAuto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your "
        "message could not be delivered to one or more recipients.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient_address}\r\nAction: {action}\r\n"
        f"Status: {status}\r\nDiagnostic-Code: smtp; {status[0]}50 {status} "
        f"<{recipient_address}>: Recipient address rejected\r\n"
        f"{returned}--b--\r\n").encode()


def _events(helpdesk: Helpdesk, number: str, type_: str) -> list[dict[str, str]]:
    return [e for e in helpdesk.ticket(number)["events"] if e["type"] == type_]


# --- corpus bounces of several MTAs -----------------------------------------------------------


@pytest.mark.skipif(CORPUS is None, reason="MAILD_CORPUS is not set")
@pytest.mark.parametrize("name", MTA_BOUNCES)
def test_a_real_bounce_lands_on_the_ticket_of_the_mail_it_returns(
    helpdesk: Helpdesk, name: str,
) -> None:
    assert CORPUS is not None
    helpdesk.ingest(mail(sender="Olga <olga@example.net>", subject="Another ticket"))
    number, ack = _ticket_with_ack(helpdesk)
    sent = len(helpdesk.outbox())
    bounce = _returning((CORPUS / BOUNCES / name).read_bytes(), ack["Message-ID"], CUSTOMER)

    assert helpdesk.ingest(bounce).out.strip() == number
    assert len(helpdesk.tickets()) == 2
    # nothing answered; the queue's staff (no owner yet) are told, follow-up notices off or not
    assert sorted(recipient(m) for m in helpdesk.outbox()[sent:]) \
        == ["alice@example.com", "bob@example.com"]
    shown = helpdesk.ticket(number)
    assert [u["address"] for u in shown["undeliverable"]] == [CUSTOMER]
    assert any(e["type"] == "bounce_received" and e["detail"].startswith("permanent")
               for e in shown["events"])
    assert any(e["type"] == "address_undeliverable" and CUSTOMER in e["detail"]
               for e in shown["events"])
    assert shown["messages"][-1]["automatic"] is True


@pytest.mark.skipif(CORPUS is None, reason="MAILD_CORPUS is not set")
@pytest.mark.parametrize("name", ["rfc3834-01.eml", "arf-02.eml", "lhost-amazonses-12.eml"])
def test_a_vacation_reply_or_a_feedback_report_is_no_bounce(helpdesk: Helpdesk, name: str) -> None:
    assert CORPUS is not None
    number = helpdesk.ingest((CORPUS / BOUNCES / name).read_bytes()).out.strip()
    shown = helpdesk.ticket(number)
    assert not {"bounce_received", "address_undeliverable"} & {e["type"] for e in shown["events"]}
    assert shown["undeliverable"] == []


# --- built here -------------------------------------------------------------------------------


def test_reading_an_out_of_office_reply_logs_nothing_at_info(
        caplog: pytest.LogCaptureFixture) -> None:
    """The daemon logs at INFO; flufl.bounce would add a line per detector for every automatic
    mail it reads (17 an out-of-office reply)."""
    caplog.set_level("INFO")
    reply = (b"From: Ivan <ivan@example.org>\r\nTo: support@example.com\r\n"
             b"Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\n"
             b"I am away until Monday.\r\n")
    assert not detect(reply).failures
    assert [r.getMessage() for r in caplog.records if r.name.startswith("flufl")] == []


def test_without_the_returned_mail_the_bounce_lands_by_its_failed_recipient(
    helpdesk: Helpdesk,
) -> None:
    helpdesk.ingest(mail(sender="Olga <olga@example.net>", subject="Olga's ticket"))
    number, _ = _ticket_with_ack(helpdesk)
    helpdesk.ingest(mail(sender="Petr <petr@example.net>", subject="Petr's ticket"))

    assert helpdesk.ingest(dsn(CUSTOMER)).out.strip() == number
    assert any("failed recipient ivan@example.org" in e["detail"]
               for e in _events(helpdesk, number, "message_received"))
    assert _events(helpdesk, number, "address_undeliverable")


def test_the_marked_address_gets_no_automatic_mail_until_it_writes_again(
    helpdesk: Helpdesk,
) -> None:
    number, ack = _ticket_with_ack(helpdesk)
    helpdesk.ingest(dsn(CUSTOMER, returned_message_id=ack["Message-ID"]))

    # A contact logged by staff would be acknowledged: not to a marked address.
    second = helpdesk.run("ticket", "new", "--channel", "phone", "--customer", CUSTOMER,
                          "--subject", "Called about the printer", "--body", "He called.")
    assert second.code == 0, second.err
    logged = second.out.strip()
    assert [m["Message-ID"] for m in helpdesk.outbox() if recipient(m) == CUSTOMER] \
        == [ack["Message-ID"]]
    [refused] = _events(helpdesk, logged, "not_sent")
    assert CUSTOMER in refused["detail"] and "undeliverable" in refused["detail"]

    # A staff member's answer is not automatic mail: it goes.
    assert helpdesk.run("ticket", "reply", number, "--staff", "alice@example.com",
                        "--body", "We are on it.").code == 0
    assert len([m for m in helpdesk.outbox() if recipient(m) == CUSTOMER]) == 2

    # The customer writes again: the mark is gone and the acknowledgement goes.
    third = helpdesk.ingest(mail(sender=f"Ivan <{CUSTOMER}>", subject="New printer")).out.strip()
    assert helpdesk.ticket(third)["undeliverable"] == []
    assert _events(helpdesk, third, "address_deliverable")
    assert len([m for m in helpdesk.outbox() if recipient(m) == CUSTOMER]) == 3


def test_the_owner_is_told_and_the_customer_is_not(staffed: Helpdesk) -> None:
    number, ack = _ticket_with_ack(staffed)
    assert staffed.run("ticket", "assign", number, "bob@example.com").code == 0
    before = len(staffed.outbox())

    staffed.ingest(dsn(CUSTOMER, returned_message_id=ack["Message-ID"]))
    new = staffed.outbox()[before:]
    assert [recipient(m) for m in new] == ["bob@example.com"]
    [notice] = new
    assert f"[Ticket#{number}]" in notice["Subject"]
    assert notice["Auto-Submitted"] == "auto-generated"
    text = notice.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert CUSTOMER in text and "5.1.1" in text


@pytest.mark.parametrize("bounce", [True, False])
def test_notify_bounce_not_follow_up_switches_the_bounce_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bounce: bool
) -> None:
    """Follow-up notices off (`notify="false"` turns both of them off) is no reason to keep a
    bounce from the owner: `[notify] bounce` alone decides."""
    helpdesk = Helpdesk(tmp_path, capsys)
    helpdesk.config.write_text(helpdesk.config.read_text().replace(
        "[notify]\n", f"[notify]\nbounce = {str(bounce).lower()}\n"))
    number, ack = _ticket_with_ack(helpdesk)
    assert helpdesk.run("ticket", "assign", number, "bob@example.com").code == 0
    before = len(helpdesk.outbox())

    helpdesk.ingest(dsn(CUSTOMER, returned_message_id=ack["Message-ID"]))
    assert _events(helpdesk, number, "address_undeliverable")
    told = [recipient(m) for m in helpdesk.outbox()[before:]]
    assert told == (["bob@example.com"] if bounce else [])


def test_a_bounce_on_a_closed_ticket_does_not_reopen_it(staffed: Helpdesk) -> None:
    number, ack = _ticket_with_ack(staffed)
    assert staffed.run("ticket", "close", number, "--staff", "alice@example.com").code == 0
    to_customer = len([m for m in staffed.outbox() if recipient(m) == CUSTOMER])

    assert staffed.ingest(dsn(CUSTOMER, returned_message_id=ack["Message-ID"])).out.strip() \
        == number
    shown = staffed.ticket(number)
    assert shown["status"] == "closed"
    assert "not_reopened" in {e["type"] for e in shown["events"]}
    assert "reopened" not in {e["type"] for e in shown["events"]}
    assert len([m for m in staffed.outbox() if recipient(m) == CUSTOMER]) == to_customer


def test_a_temporary_failure_is_recorded_and_marks_nothing(staffed: Helpdesk) -> None:
    number, ack = _ticket_with_ack(staffed)
    before = len(staffed.outbox())

    staffed.ingest(dsn(CUSTOMER, status="4.2.2", action="delayed",
                       returned_message_id=ack["Message-ID"]))
    [event] = _events(staffed, number, "bounce_received")
    assert event["detail"].startswith("temporary") and "4.2.2" in event["detail"]
    assert staffed.ticket(number)["undeliverable"] == []
    assert len(staffed.outbox()) == before  # nobody is told, nothing is answered


def test_an_address_maild_never_wrote_to_is_not_marked(helpdesk: Helpdesk) -> None:
    number, ack = _ticket_with_ack(helpdesk)
    helpdesk.ingest(dsn("someone.else@example.net", returned_message_id=ack["Message-ID"]))
    assert _events(helpdesk, number, "bounce_received")
    assert helpdesk.ticket(number)["undeliverable"] == []
    assert _events(helpdesk, number, "address_undeliverable") == []


def test_the_worker_parses_a_bounce_once(
    helpdesk: Helpdesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector reads the tree `parse_message` built (`ParsedMail.message`), not the bytes
    again: one parse of the whole bounce, from receiving it to its ticket."""
    number, ack = _ticket_with_ack(helpdesk)
    whole_parses = []
    close = FeedParser.close

    def counted(parser: FeedParser) -> Message:
        root = close(parser)
        if root.get("message-id") == "<bounce-1@mx.example.net>" \
                and not parser._headersonly:  # type: ignore[attr-defined]
            whole_parses.append(root)
        return root

    monkeypatch.setattr(FeedParser, "close", counted)
    assert helpdesk.ingest(dsn(CUSTOMER, returned_message_id=ack["Message-ID"])).out.strip() \
        == number
    assert _events(helpdesk, number, "address_undeliverable")
    assert len(whole_parses) == 1


def test_the_detector_agrees_on_the_bytes_and_on_the_parsed_mail() -> None:
    """`detect(raw)` (the bench's and these tests') and the worker's `detect_message` on
    `ParsedMail.message` read the same tree; a person's mail keeps none."""
    for raw in (dsn(CUSTOMER), dsn(CUSTOMER, status="4.2.2", action="delayed",
                                   returned_message_id="<x@example.com>")):
        parsed = parse_message(raw)
        assert parsed.message is not None
        assert detect_message(parsed.message) == detect(raw)
        assert detect(raw).bounce
    assert parse_message(mail().as_bytes()).message is None
    if CORPUS is not None:
        for name in [*MTA_BOUNCES, "rfc3834-01.eml", "arf-02.eml"]:
            raw = (CORPUS / BOUNCES / name).read_bytes()
            tree = parse_message(raw).message
            assert tree is not None
            assert detect_message(tree) == detect(raw), name


def test_an_auto_reply_and_a_feedback_report_are_no_bounces(helpdesk: Helpdesk) -> None:
    number, ack = _ticket_with_ack(helpdesk)
    vacation = mail(sender=f"Ivan <{CUSTOMER}>", subject="Out of office",
                    body="I am away until Monday.\nFinal-Recipient: rfc822; x@example.org\n",
                    in_reply_to=ack["Message-ID"], headers={"Auto-Submitted": "auto-replied"})
    assert helpdesk.ingest(vacation).out.strip() == number
    feedback = (
        "From: Abuse <abuse@mx.example.net>\r\nTo: support@example.com\r\n"
        "Subject: Complaint\r\nMessage-ID: <arf-1@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nA complaint about a message.\r\n"
        "--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        "User-Agent: Example/1.0\r\nVersion: 1\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.com\r\nTo: {CUSTOMER}\r\nMessage-ID: {ack['Message-ID']}\r\n"
        "--b--\r\n").encode()
    helpdesk.ingest(feedback)
    for ticket in helpdesk.tickets():
        shown = helpdesk.ticket(ticket["number"])
        assert not {"bounce_received", "address_undeliverable"} & {
            e["type"] for e in shown["events"]}
        assert shown["undeliverable"] == []


def qmail_bounce(returned_lines: int) -> bytes:
    """A bounce in qmail's own format (no DSN: only flufl.bounce reads it), returning a mail
    of `returned_lines` short lines."""
    return (b"From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\n"
            b"Subject: failure notice\r\nMessage-ID: <qmail-1@mx.example.net>\r\n\r\n"
            b"Hi. This is the qmail-send program at mx.example.net.\r\n"
            b"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
            b"This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
            b"<ivan@example.org>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
            b"--- Below this line is a copy of the message.\r\n\r\n"
            b"From: Support <support@example.com>\r\nSubject: [Ticket#1] x\r\n\r\n"
            + b"x\r\n" * returned_lines)


def test_flufl_bounce_reads_the_first_lines_of_a_long_bounce_only(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its detectors match every line against their patterns (25 µs a line): a "bounce" of
    25 MB of short lines took two minutes, past the worker's timeout (found by
    bench/hostile_campaign.py --threading). The MTA's words come first, so the first 2,000
    lines still decide; the whole message is still what maild's own rules read."""
    import maild.bounces

    given: list[int] = []
    real = maild.bounces.all_failures

    def spy(msg: EmailMessage) -> object:
        given.append(msg.as_bytes().count(b"\n"))
        return real(msg)

    monkeypatch.setattr(maild.bounces, "all_failures", spy)
    for lines in (10, 1_000_000):
        verdict = detect(qmail_bounce(lines))
        assert verdict.bounce and verdict.detector == "flufl.bounce", verdict
        assert verdict.recipients == ("ivan@example.org",) and verdict.permanent
    # No detector matches this one, so each of them read it to its end.
    assert not detect(b"From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\n"
                      b"Subject: x\r\n\r\n" + b"x\r\n" * 1_000_000).bounce
    assert given[0] > 10, given
    assert max(given[1:]) <= maild.bounces._MAX_FLUFL_LINES + 1, given


@pytest.mark.parametrize("charset", ["idna", "undefined", "x-unknown", "hex"])
def test_a_notice_in_a_charset_that_cannot_decode_it_is_read_as_utf_8(charset: str) -> None:
    """`idna` takes no "replace", `undefined` fails whatever it is given: the detector raised,
    and the message was failed instead of threaded (found by bench/hostile_campaign.py
    --threading)."""
    raw = (f"From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\n"
           f"Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset={charset}\r\n\r\n"
           "Your message to ivan@example.org could not be delivered: user unknown.\r\n"
           "Status: 5.1.1\r\n").encode()
    verdict = detect(raw)
    assert verdict.bounce and verdict.recipients == ("ivan@example.org",), verdict


@pytest.mark.parametrize("charset", ["idna", "undefined", "\"utf-8''x\""])
def test_an_8_bit_notice_in_such_a_charset_is_read_as_utf_8(charset: str) -> None:
    """compat32 decodes the 8-bit bytes of a payload by its charset even when not asked to
    decode (`get_payload()`), and raised there (found by bench/hostile_campaign.py
    --threading once the case above was fixed)."""
    raw = (f"From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\n"
           f"Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset={charset}\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n"
           "Сообщение для ivan@example.org не доставлено: user unknown.\r\n"
           "Status: 5.1.1\r\n").encode()
    verdict = detect(raw)
    assert verdict.bounce and verdict.recipients == ("ivan@example.org",), verdict


def test_what_a_report_says_is_stored_without_nul_or_control_characters() -> None:
    """A report's text goes into events, the undeliverable mark and staff notices; PostgreSQL
    refuses a NUL in text, and the bounce failed instead of being threaded (found by the
    stricter check of tests/hostile.py on PostgreSQL)."""
    raw = (b"From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\n"
           b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
           b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
           b"Final-Recipient: rfc822; iv\x00an@example.org\r\nAction: fail\x00ed\r\n"
           b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user\x00 unknown\x1b[31m\r\n"
           b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
           b"Message-ID: <maild.1\x00@example.com>\r\n--b--\r\n")
    verdict = detect(raw)
    assert verdict.bounce, verdict
    [failure] = verdict.failures
    for value in (failure.recipient, failure.status, failure.diagnostic, failure.action):
        assert value.isprintable(), repr(value)
    assert failure.recipient == "ivan@example.org" and failure.status == "5.1.1"
    assert verdict.original_message_id is None or verdict.original_message_id.isprintable()
