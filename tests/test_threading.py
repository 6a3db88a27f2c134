"""Threading as SPEC §5: new tickets, replies by tag, by number and by reference, reopen,
duplicates."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from maild import config
from maild.app import App
from maild.ingest.accept import accept
from maild.threading import process_inbound
from tests.conftest import Helpdesk, mail, recipient

MOSCOW = ZoneInfo("Europe/Moscow")  # sla.timezone of the tests' config


def _new_ticket(helpdesk: Helpdesk, **kwargs: object) -> str:
    result = helpdesk.ingest(mail(**kwargs))  # type: ignore[arg-type]
    assert result.code == 0, result.err
    return result.out.strip()


def test_a_new_mail_makes_a_ticket_and_one_acknowledgement(helpdesk: Helpdesk) -> None:
    original = mail(message_id="<first@example.org>")
    result = helpdesk.ingest(original)
    number = result.out.strip()

    assert result.code == 0
    assert number.isdigit() and len(number) >= 13
    ticket = helpdesk.ticket(number)
    assert ticket["status"] == "new"
    assert ticket["customer"] == "ivan@example.org"
    assert ticket["queue"] == "General questions"
    assert ticket["priority"] == "normal"
    assert ticket["channel"] == "email"
    [ack] = helpdesk.outbox()
    assert ack["To"].addresses[0].addr_spec == "ivan@example.org"
    assert ack["Subject"].startswith(f"[Ticket#{number}] ")
    assert "Printer does not print" in ack["Subject"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<first@example.org>"
    assert "<first@example.org>" in ack["References"]
    assert number in ack.get_content()
    # The acknowledgement is part of the correspondence, with the Message-ID that was sent.
    directions = [(m["direction"], m["message_id"]) for m in ticket["messages"]]
    assert directions[0] == ("in", "first@example.org")
    assert directions[1] == ("out", ack["Message-ID"].strip("<>"))


def test_ticket_numbers_are_date_based_and_count_up(helpdesk: Helpdesk) -> None:
    before = datetime.now(MOSCOW).strftime("%Y%m%d")
    first = _new_ticket(helpdesk)
    second = _new_ticket(helpdesk, subject="Another problem")
    after = datetime.now(MOSCOW).strftime("%Y%m%d")
    assert before <= first[:8] <= second[:8] <= after and len(first) == 13
    if first[:8] == second[:8]:
        assert int(second) == int(first) + 1
    else:  # the two mails straddled midnight in sla.timezone: the new day counts from 1
        assert second[8:] == "00001"


def test_a_reply_with_the_tag_lands_on_the_same_ticket(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk)
    for subject in (
        f"[Ticket#{number}] Printer does not print",
        f"RE: AW: Fwd: [Ticket#{number}] Printer does not print",
        f"Ответ: [ticket#{number}] Принтер",
        f"Some words first [TICKET#{number}]",
    ):
        result = helpdesk.ingest(mail(subject=subject))
        assert result.out.strip() == number, subject
    ticket = helpdesk.ticket(number)
    assert sum(m["direction"] == "in" for m in ticket["messages"]) == 5
    assert len(helpdesk.tickets()) == 1
    assert len(helpdesk.outbox()) == 1  # follow-ups are not acknowledged again


def test_an_encoded_word_subject_with_the_tag_lands_on_the_same_ticket(
    helpdesk: Helpdesk,
) -> None:
    number = _new_ticket(helpdesk)
    encoded = Header(f"Re: [Ticket#{number}] Принтер не печатает", "utf-8").encode()
    assert "=?utf-8?" in encoded and number not in encoded  # the tag is hidden by the encoding
    raw = (f"From: ivan@example.org\r\nTo: support@example.com\r\nSubject: {encoded}\r\n"
           "Message-ID: <enc@example.org>\r\n\r\nStill broken.\r\n").encode()
    assert helpdesk.ingest(raw).out.strip() == number


def test_a_reply_carrying_only_in_reply_to_lands_on_the_ticket(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk)
    [ack] = helpdesk.outbox()
    reply = mail(subject="Re: your message", in_reply_to=ack["Message-ID"])
    assert helpdesk.ingest(reply).out.strip() == number


def test_a_reply_referencing_the_customers_own_message_lands_on_the_ticket(
    helpdesk: Helpdesk,
) -> None:
    """The colleague the customer wrote in Cc answers all: they are on its correspondence."""
    number = _new_ticket(helpdesk, message_id="<orig@example.org>",
                         headers={"Cc": "colleague@example.net"})
    reply = mail(subject="more details", sender="colleague@example.net",
                 references="<unrelated@x> <orig@example.org>")
    assert helpdesk.ingest(reply).out.strip() == number


def test_a_stranger_reusing_the_customers_message_id_opens_a_ticket_of_their_own(
    helpdesk: Helpdesk,
) -> None:
    """A customer's Message-ID is no secret (a mailing list, a Cc, a forward): it proves
    nothing, so a stranger cannot write onto the ticket with it (issue #13)."""
    number = _new_ticket(helpdesk, message_id="<orig@example.org>")
    reply = mail(subject="more details", sender="stranger@example.net",
                 in_reply_to="<orig@example.org>", references="<orig@example.org>")
    other = helpdesk.ingest(reply).out.strip()
    assert other != number
    [claim] = [e for e in helpdesk.ticket(other)["events"] if e["type"] == "claimed_ticket"]
    assert claim["detail"] == (f"In-Reply-To/References name a message of ticket {number}, "
                               "but the sender is not one of its participants")
    assert len(helpdesk.ticket(number)["messages"]) == 2  # the customer's and the ack


def test_a_closed_ticket_is_reopened_by_a_reply_and_notices_are_queued(
    helpdesk: Helpdesk,
) -> None:
    number = _new_ticket(helpdesk)
    helpdesk.set_ticket(number, status="closed", owner="alice@example.com")  # issue #4: commands

    result = helpdesk.ingest(mail(subject=f"Re: [Ticket#{number}] it broke again"))

    assert result.out.strip() == number
    shown = helpdesk.ticket(number)
    assert shown["status"] == "open"  # it has an owner
    assert "reopened" in [e["type"] for e in shown["events"]]
    notices = helpdesk.outbox()[1:]
    assert sorted(n["To"].addresses[0].addr_spec for n in notices) == \
        ["alice@example.com", "ivan@example.org"]
    assert all(n["Subject"].startswith(f"[Ticket#{number}]") for n in notices)


def test_the_same_message_twice_is_stored_once(helpdesk: Helpdesk) -> None:
    original = mail(message_id="<twice@example.org>")
    first = helpdesk.ingest(original)
    second = helpdesk.ingest(original)
    assert first.out == second.out
    assert len(helpdesk.tickets()) == 1
    assert len(helpdesk.run("inbound", "list", "--json").json()) == 1
    assert len(helpdesk.outbox()) == 1


def test_the_same_message_with_other_trace_headers_is_stored_once(helpdesk: Helpdesk) -> None:
    original = bytes(mail(message_id="<paths@example.org>"))
    by_mta = (b"Received: from mx.example.org by mail.example.com; Tue, 1 Dec 2026 10:00\n"
              b"Return-Path: <ivan@example.org>\nDelivered-To: help@example.com\n"
              b"X-Spam-Score: 0.1\n" + original.replace(b"\r\n", b"\n"))
    first, second = helpdesk.ingest(original), helpdesk.ingest(by_mta)
    assert first.out == second.out and first.out.strip()
    assert len(helpdesk.run("inbound", "list", "--json").json()) == 1
    assert len(helpdesk.outbox()) == 1


def test_a_different_message_under_a_known_message_id_is_not_lost(helpdesk: Helpdesk) -> None:
    """Broken mailers reuse Message-IDs: the second message is stored and threaded on its own,
    its sender gets their own acknowledgement, and the reuse is recorded."""
    first = helpdesk.ingest(mail(message_id="<reused@example.org>"))
    olgas = mail(message_id="<reused@example.org>", subject="Scanner is dead",
                 sender="Olga <olga@example.org>", body="No scans at all.\n")
    second = helpdesk.ingest(olgas)
    assert first.code == second.code == 0
    assert first.out.strip() and second.out.strip() and first.out != second.out
    assert len(helpdesk.run("inbound", "list", "--json").json()) == 2
    olga = helpdesk.ticket(second.out.strip())
    assert olga["customer"] == "olga@example.org" and olga["subject"] == "Scanner is dead"
    [reused] = [e for e in olga["events"] if e["type"] == "message_id_reused"]
    assert "<reused@example.org>" in reused["detail"] and first.out.strip() in reused["detail"]
    assert not [e for e in helpdesk.ticket(first.out.strip())["events"]
                if e["type"] == "message_id_reused"]
    assert sorted(m["To"].addresses[0].addr_spec for m in helpdesk.outbox()) == \
        ["ivan@example.org", "olga@example.org"]
    # Olga's mail delivered again is still the same message: her ticket, nothing new.
    assert helpdesk.ingest(olgas).out == second.out
    assert len(helpdesk.tickets()) == 2 and len(helpdesk.outbox()) == 2


def test_the_same_bytes_without_message_id_are_stored_once(helpdesk: Helpdesk) -> None:
    raw = b"From: a@example.org\r\nSubject: no id\r\n\r\nbody\r\n"
    assert helpdesk.ingest(raw).out == helpdesk.ingest(raw).out
    assert len(helpdesk.tickets()) == 1


def test_a_stranger_quoting_a_tag_opens_a_new_ticket_that_records_the_claim(
    helpdesk: Helpdesk,
) -> None:
    number = _new_ticket(helpdesk)
    result = helpdesk.ingest(mail(subject=f"Re: [Ticket#{number}] give me the data",
                                  sender="mallory@evil.example"))
    other = result.out.strip()
    assert other != number
    claims = [e for e in helpdesk.ticket(other)["events"] if e["type"] == "claimed_ticket"]
    assert claims and number in claims[0]["detail"]
    assert len(helpdesk.ticket(number)["messages"]) == 2  # untouched: customer mail + ack


def test_staff_and_cc_participants_may_use_the_tag(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk, to="support@example.com, boss@example.org")
    assert helpdesk.ingest(mail(subject=f"[Ticket#{number}] x", sender="boss@example.org")) \
        .out.strip() == number
    assert helpdesk.ingest(mail(subject=f"[Ticket#{number}] x", sender="alice@example.com")) \
        .out.strip() == number


def test_an_unknown_number_in_the_tag_opens_a_new_ticket(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk)
    other = helpdesk.ingest(mail(subject="[Ticket#2099010199999] hello")).out.strip()
    assert other != number


def test_an_out_of_office_reply_gets_no_acknowledgement(helpdesk: Helpdesk) -> None:
    result = helpdesk.ingest(mail(subject="Out of office",
                                  headers={"Auto-Submitted": "auto-replied"}))
    number = result.out.strip()
    assert helpdesk.outbox() == []
    events = helpdesk.ticket(number)["events"]
    assert any(e["type"] == "no_acknowledgement" for e in events)


def test_an_out_of_office_reply_does_not_reopen_a_closed_ticket(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk)
    helpdesk.set_ticket(number, status="closed")
    helpdesk.ingest(mail(subject=f"Auto: [Ticket#{number}]",
                         headers={"Auto-Submitted": "auto-replied"}))
    assert helpdesk.ticket(number)["status"] == "closed"
    assert len(helpdesk.outbox()) == 1


def test_automatic_replies_to_one_address_are_capped_per_hour(
    tmp_path: object, capsys: object
) -> None:
    helpdesk = Helpdesk(tmp_path, capsys, cap=2)  # type: ignore[arg-type]
    for i in range(4):
        helpdesk.ingest(mail(subject=f"problem {i}"))
    assert len(helpdesk.tickets()) == 4
    assert len(helpdesk.outbox()) == 2
    suppressed = [e for t in helpdesk.tickets()
                  for e in helpdesk.ticket(t["number"])["events"]
                  if e["type"] == "auto_reply_suppressed"]
    assert len(suppressed) == 2


def test_a_tag_with_regex_metacharacters_threads(tmp_path: object, capsys: object) -> None:
    helpdesk = Helpdesk(tmp_path, capsys, tag="Help.Desk+")  # type: ignore[arg-type]
    number = helpdesk.ingest(mail()).out.strip()
    assert helpdesk.outbox()[0]["Subject"].startswith(f"[Help.Desk+#{number}]")
    assert helpdesk.ingest(mail(subject=f"Re: [Help.Desk+#{number}]")).out.strip() == number
    assert helpdesk.ingest(mail(subject=f"Re: [HelpXDesk+#{number}]")).out.strip() != number


def test_russian_templates_are_used_when_configured(tmp_path: object, capsys: object) -> None:
    helpdesk = Helpdesk(tmp_path, capsys, language="ru")  # type: ignore[arg-type]
    helpdesk.ingest(mail())
    [ack] = helpdesk.outbox()
    assert "Здравствуйте" in ack.get_content()


def test_ticket_show_raw_prints_the_original_bytes(helpdesk: Helpdesk) -> None:
    raw = b"From: a@example.org\r\nSubject: raw\r\nMessage-ID: <raw@x>\r\n\r\n\xff\xfe body\r\n"
    number = helpdesk.ingest(raw).out.strip()
    shown = subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(helpdesk.config), "ticket", "show",
         number, "--raw"], capture_output=True, check=True)
    assert shown.stdout == raw


def test_a_sender_without_a_domain_gets_a_ticket_but_no_acknowledgement(
    helpdesk: Helpdesk,
) -> None:
    raw = b"From: root\r\nSubject: cron output\r\nMessage-ID: <cron@host.example>\r\n\r\nok\r\n"
    number = helpdesk.ingest(raw).out.strip()
    assert helpdesk.ticket(number)["customer"] == "root@invalid"
    assert helpdesk.outbox() == []
    assert any(e["type"] == "no_acknowledgement" for e in helpdesk.ticket(number)["events"])


def test_international_addresses_never_break_the_acknowledgement(helpdesk: Helpdesk) -> None:
    utf8_local = "From: Jöhn <jdöe@mächine.example>\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    number = helpdesk.ingest(utf8_local).out.strip()
    assert any(e["type"] == "not_sent" for e in helpdesk.ticket(number)["events"])
    assert helpdesk.outbox() == []  # the local part would need SMTPUTF8: nothing is sent

    idn = "From: Jan <jan@bücher.example>\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    helpdesk.ingest(idn)
    [ack] = helpdesk.outbox()
    assert ack["To"].addresses[0].addr_spec == "jan@xn--bcher-kva.example"


def test_a_bounce_of_the_acknowledgement_lands_on_its_ticket_without_a_reply(
    helpdesk: Helpdesk,
) -> None:
    number = _new_ticket(helpdesk, sender="Ivan <ivan@typo.example>")
    [ack] = helpdesk.outbox()
    bounce = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; ivan@typo.example\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Support <support@example.com>\r\nMessage-ID: {ack['Message-ID']}\r\n"
        f"Subject: {ack['Subject']}\r\n--b--\r\n").encode()
    assert helpdesk.ingest(bounce).out.strip() == number
    assert len(helpdesk.tickets()) == 1
    # no answer to a bounce: the one new mail each is the staff's bounce notice
    assert [recipient(m) for m in helpdesk.outbox()].count("ivan@typo.example") == 1
    assert {recipient(m) for m in helpdesk.outbox()[1:]} == {"alice@example.com",
                                                              "bob@example.com"}
    events = helpdesk.ticket(number)["events"]
    assert any("returned message" in e["detail"] for e in events)


# --- SPEC §5 rules 1 and 3: the customer's ticket number is enough ----------------------------

# (subject, body) of a follow-up that names the ticket only by its number, no References.
NUMBER_FORMS = {
    "Ticket#N in the subject": ("Re: Ticket#{n} still broken", "It still does not print.\n"),
    "Ticket N: in the subject": ("Ticket {n}: still broken", "It still does not print.\n"),
    "заявка №N in the subject": ("заявка №{n}", "Принтер всё ещё не печатает.\n"),
    "(#N) in the subject": ("Printer (#{n})", "It still does not print.\n"),
    "the number in the body only": ("Still broken",
                                    "Hello, this is about my ticket {n}: no change.\n"),
}


def _follow_up(form: str, number: str, **kwargs: object) -> EmailMessage:
    subject, body = NUMBER_FORMS[form]
    return mail(subject=subject.format(n=number), body=body.format(n=number),
                **kwargs)  # type: ignore[arg-type]


def _events(helpdesk: Helpdesk, number: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in helpdesk.ticket(number)["events"] if e["type"] == type_]


@pytest.mark.parametrize("form", NUMBER_FORMS)
def test_the_customers_ticket_number_is_enough(helpdesk: Helpdesk, form: str) -> None:
    number = _new_ticket(helpdesk)
    assert helpdesk.ingest(_follow_up(form, number)).out.strip() == number
    assert len(helpdesk.tickets()) == 1
    via = "text" if "body" in form else "subject"
    assert [e["detail"] for e in _events(helpdesk, number, "message_received")] == \
        [f"threaded by {via}"]
    assert len(helpdesk.outbox()) == 1  # a follow-up, not acknowledged again


@pytest.mark.parametrize("form", NUMBER_FORMS)
def test_a_stranger_naming_the_number_opens_a_new_ticket_that_records_the_claim(
    helpdesk: Helpdesk, form: str,
) -> None:
    number = _new_ticket(helpdesk)
    other = helpdesk.ingest(_follow_up(form, number, sender="mallory@evil.example")).out.strip()
    assert other not in ("", number)
    [claim] = _events(helpdesk, other, "claimed_ticket")
    place = "text" if "body" in form else "subject"
    assert claim["detail"] == (f"the {place} names ticket {number}, but the sender is not one "
                               "of its participants")
    assert len(helpdesk.ticket(number)["messages"]) == 2  # untouched: customer mail + ack


def test_a_cc_participant_may_name_the_number_in_the_body(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk, to="support@example.com, boss@example.org")
    follow_up = mail(subject="Printer", body=f"Any news on ticket no. {number}?\n",
                     sender="boss@example.org")
    assert helpdesk.ingest(follow_up).out.strip() == number


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Re: Ticket#2099010199999 hello", "hello\n"),
        ("hello", "about my ticket 2099010199999\n"),
    ],
)
def test_a_number_of_no_known_ticket_opens_a_new_ticket(
    helpdesk: Helpdesk, subject: str, body: str,
) -> None:
    number = _new_ticket(helpdesk)
    other = _new_ticket(helpdesk, subject=subject, body=body)
    assert other != number
    assert _events(helpdesk, other, "claimed_ticket") == []


def test_a_bare_number_in_the_body_is_no_ticket_reference(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk)
    other = _new_ticket(helpdesk, subject="New phone",
                        body=f"Please call me back at +{number}, order {number}.\n")
    assert other != number


def test_the_new_text_names_the_ticket_before_the_quoted_history(helpdesk: Helpdesk) -> None:
    first = _new_ticket(helpdesk)
    second = _new_ticket(helpdesk, subject="Scanner does not scan")
    # Bottom-posted: the quote of the first ticket's mail comes before the customer's new text.
    body = (f"On Mon, 30 Nov 2026 at 10:00, Support <support@example.com> wrote:\n"
            f"> we have received your message and opened ticket {first} for it\n\n"
            f"Sorry, I meant my other ticket {second}: the scanner still does not scan.\n")
    assert helpdesk.ingest(mail(subject="Re: your message", body=body)).out.strip() == second


def test_references_come_before_a_number_in_the_text(helpdesk: Helpdesk) -> None:
    first = _new_ticket(helpdesk)
    [ack] = helpdesk.outbox()
    second = _new_ticket(helpdesk, subject="Scanner does not scan")
    reply = mail(subject="Re: your message", in_reply_to=ack["Message-ID"],
                 body=f"This is like my ticket {second}.\n")
    assert helpdesk.ingest(reply).out.strip() == first


def test_a_claim_in_the_subject_wins_over_one_in_the_text(helpdesk: Helpdesk) -> None:
    first = _new_ticket(helpdesk)
    second = _new_ticket(helpdesk, subject="Scanner does not scan")
    other = _new_ticket(helpdesk, subject=f"Re: заявка №{first}",
                        body=f"and ticket {second}\n", sender="mallory@evil.example")
    [claim] = _events(helpdesk, other, "claimed_ticket")
    assert claim["detail"].startswith(f"the subject names ticket {first},")


def test_staff_mail_is_not_threaded_by_a_number_in_its_text(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk)
    # A staff mail that names the ticket only in its text is about no ticket (SPEC §7: staff
    # name a ticket by its subject): refused, and nothing reaches the customer.
    note = mail(subject="Printer question", body=f"What about ticket {number}?\n",
                sender="Alice <alice@example.com>")
    assert helpdesk.ingest(note).out.strip() == ""
    assert len(helpdesk.ticket(number)["messages"]) == 2
    assert [m["To"].addresses[0].addr_spec for m in helpdesk.outbox()] == \
        ["ivan@example.org", "alice@example.com"]  # the acknowledgement, then the refusal

    # A colleague forwards another customer's mail that mentions the old ticket: a new ticket
    # for that customer, not a staff answer on the old one.
    forward = ("Please take care of this one.\n\n"
               "---------- Forwarded message ---------\n"
               "From: Olga <olga@example.org>\n"
               "Date: Mon, 30 Nov 2026 at 10:00\n"
               "Subject: Scanner\n"
               "To: Alice <alice@example.com>\n\n"
               f"Hello, my colleague had ticket {number}; now our scanner fails too.\n")
    result = helpdesk.ingest(mail(subject="Fwd: Scanner", body=forward,
                                  sender="Alice <alice@example.com>"))
    other = result.out.strip()
    assert other not in ("", number)
    assert helpdesk.ticket(other)["customer"] == "olga@example.org"
    assert len(helpdesk.ticket(number)["messages"]) == 2
    assert not any(m["To"].addresses[0].addr_spec == "ivan@example.org"
                   for m in helpdesk.outbox()[1:])


def test_staff_name_a_ticket_in_the_subject_only_by_its_tag(helpdesk: Helpdesk) -> None:
    number = _new_ticket(helpdesk)
    # A colleague forwards a customer's "заявка №N" mail: not a staff answer on ticket N, so
    # nothing of it is relayed to that ticket's customer.
    forward = ("FYI\n\n---------- Forwarded message ---------\n"
               f"From: Olga <olga@example.org>\nSubject: заявка №{number}\n\n"
               "Сканер не работает.\n")
    result = helpdesk.ingest(mail(subject=f"Fwd: заявка №{number}", body=forward,
                                  sender="Alice <alice@example.com>"))
    assert result.out.strip() not in ("", number)
    assert len(helpdesk.ticket(number)["messages"]) == 2
    # maild's own tag, with or without its brackets, is how staff answer.
    answer = mail(subject=f"Re: Ticket#{number} Printer", body="Try the new driver.\n",
                  sender="Alice <alice@example.com>")
    assert helpdesk.ingest(answer).out.strip() == number
    assert helpdesk.ticket(number)["status"] == "waiting"


def test_mails_settled_in_one_transaction_fail_alone_and_thread_onto_each_other(
        helpdesk: Helpdesk) -> None:
    """The worker settles a batch of stored mail in one transaction, a savepoint each: a mail
    that cannot be threaded fails alone (its row kept, with the reason), a reply threads onto
    the ticket its original opened earlier in the same batch, and the rest commit."""
    from email import policy as email_policy

    from maild import config
    from maild.dbapi import Pool
    from maild.ingest.accept import accept

    batch = [
        mail(message_id="<opening@example.org>"),
        mail(sender="support@example.com", subject="Written as ourselves, for nobody"),
        mail(subject="Re: Printer does not print", in_reply_to="<opening@example.org>",
             references="<opening@example.org>", body="It still does not print.\n"),
        mail(sender="Olga <olga@example.org>", subject="The scanner is slow"),
    ]
    pool = Pool(config.load(helpdesk.config).database)
    try:
        for message in batch:
            accept(pool, message.as_bytes(policy=email_policy.SMTP), source="pipe",
                   now=datetime.now(MOSCOW))
    finally:
        pool.close()

    assert helpdesk.run("tick").code == 0

    rows = sorted(helpdesk.run("inbound", "list", "--json").json(), key=lambda r: r["id"])
    assert [r["state"] for r in rows] == ["done", "failed", "done", "done"]
    assert "maild would answer itself" in rows[1]["reason"]
    listed = helpdesk.tickets()
    assert sorted(t["customer"] for t in listed) == ["ivan@example.org", "olga@example.org"]
    ivan = helpdesk.ticket(next(t["number"] for t in listed if t["customer"] == "ivan@example.org"))
    customer_texts = [m["body"].strip() for m in ivan["messages"] if m["direction"] == "in"]
    assert customer_texts == ["Hello, my printer does not print.", "It still does not print."]
    # One acknowledgement per ticket, none for the failed mail or the reply.
    assert sorted(m["To"].addresses[0].addr_spec for m in helpdesk.outbox()) == \
        ["ivan@example.org", "olga@example.org"]


def test_a_reply_taken_before_the_mail_it_answers_waits_for_it(helpdesk: Helpdesk) -> None:
    """Two workers, or a pass that takes the reply first: the reply must not open a ticket of
    its own while the mail it answers is still `new` — it waits, uncounted, and then joins."""
    app = App(config.load(helpdesk.config))
    try:
        now = app.clock.now()
        first = accept(app.pool, bytes(mail(message_id="<first@example.org>")),
                       source="test", now=now)
        reply = accept(app.pool, bytes(mail(subject="Re: Printer does not print",
                                              message_id="<second@example.org>",
                                              in_reply_to="<first@example.org>")),
                       source="test", now=now)
        waited = process_inbound(app.pool, app.settings, app.templates, app.clock,
                                 reply.row_id)
        assert waited.state == "new" and waited.ticket_number is None, waited
        assert waited.reason == f"waits for inbound {first.row_id}, which it answers"
        opened = process_inbound(app.pool, app.settings, app.templates, app.clock,
                                 first.row_id)
        joined = process_inbound(app.pool, app.settings, app.templates, app.clock,
                                 reply.row_id)
    finally:
        app.close()
    assert opened.ticket_number is not None and joined.ticket_number == opened.ticket_number
    [row] = [r for r in helpdesk.run("inbound", "list", "--json").json()
             if r["id"] == reply.row_id]
    assert row["attempts"] == 1, row  # the wait counted no attempt


def test_a_batch_is_threaded_without_a_temporary_file(helpdesk: Helpdesk, tmp_path: Path) -> None:
    """Each message of a batch is settled in a savepoint, whose undo copy of the pages it
    changes SQLite keeps in a statement journal. Past 64 KiB that used to spill into a new file
    in SQLite's temporary directory, once per transaction (a file created and deleted: as dear
    as a Maildir delivery, and a failure where that directory is full). The journal stays in
    memory now: the directory is never touched."""
    from email import policy as email_policy

    from maild.threading.worker import MESSAGES_PER_TRANSACTION

    for i in range(5):  # pages that exist before the batch, for its savepoints to change
        assert helpdesk.ingest(mail(sender=f"Early {i} <early{i}@example.org>")).code == 0
    app = App(config.load(helpdesk.config))
    try:
        for i in range(MESSAGES_PER_TRANSACTION):  # one transaction's worth
            accept(app.pool, mail(sender=f"Customer {i} <c{i}@example.org>",
                                    subject=f"Export {i} fails",
                                    body=f"Step {i} of the export fails.\n" * 400
                                    ).as_bytes(policy=email_policy.SMTP),
                   source="pipe", now=app.clock.now())
    finally:
        app.close()
    scratch = tmp_path / "sqlite-tmp"
    scratch.mkdir()
    before = scratch.stat().st_mtime_ns
    # A process of its own: SQLite reads SQLITE_TMPDIR once per process.
    ticked = subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(helpdesk.config), "tick"],
        capture_output=True, text=True, env={**os.environ, "SQLITE_TMPDIR": str(scratch)})
    assert ticked.returncode == 0, ticked.stderr
    states = [r["state"] for r in helpdesk.run("inbound", "list", "--json").json()]
    assert states == ["done"] * (5 + MESSAGES_PER_TRANSACTION)
    assert scratch.stat().st_mtime_ns == before  # no file was created (and deleted) in it


def test_a_mail_that_fails_after_writing_leaves_nothing_of_itself_in_its_batch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The second mail of a batch fails after its ticket and message rows are written (its
    acknowledgement's template is broken): its savepoint rolls all of it back, it is `failed`
    with the reason, and the mails before and after it commit. Its savepoint used to be
    skipped — SQLAlchemy emits a SAVEPOINT only when the block first asks for the connection,
    and the driver connection of the first mail's block was reused — so the failed mail's
    ticket stayed, and a retry would have opened a second one."""
    import shutil
    from email import policy as email_policy

    from maild.compose import BUILTIN_TEMPLATES

    templates = tmp_path / "templates"
    shutil.copytree(BUILTIN_TEMPLATES, templates)
    broken = templates / "ru" / "ack.txt"
    broken.write_text(broken.read_text(encoding="utf-8") + "{{ no_such_variable }}\n",
                      encoding="utf-8")
    (tmp_path / "desk").mkdir()
    helpdesk = Helpdesk(tmp_path / "desk", capsys, language="auto", templates=str(templates))
    batch = [mail(sender="Ann <ann@example.org>", subject="Export fails"),
             mail(sender="Иван <ivan@example.org>", subject="Принтер не печатает",
                  body="Здравствуйте! Принтер не печатает, помогите пожалуйста.\n"),
             mail(sender="Olga <olga@example.org>", subject="The scanner is slow")]
    app = App(config.load(helpdesk.config))
    try:
        for message in batch:
            accept(app.pool, message.as_bytes(policy=email_policy.SMTP), source="pipe",
                   now=app.clock.now())
    finally:
        app.close()
    assert helpdesk.run("tick").code == 0

    rows = sorted(helpdesk.run("inbound", "list", "--json").json(), key=lambda r: r["id"])
    assert [r["state"] for r in rows] == ["done", "failed", "done"]
    assert "no_such_variable" in rows[1]["reason"]
    assert sorted(t["customer"] for t in helpdesk.tickets()) == \
        ["ann@example.org", "olga@example.org"]
    assert sorted(recipient(m) for m in helpdesk.outbox()) == \
        ["ann@example.org", "olga@example.org"]
