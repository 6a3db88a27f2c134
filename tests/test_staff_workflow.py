"""Issue #4, the staff workflow, through real mail and the real command line: SPEC §3 (ticket
commands, `tick`), §5 (reopen), §6 (what maild sends) and §7 (staff by email).

Everything goes in through `maild ingest` and the `maild ticket ...` commands and comes out of
the configured transport — the outbox Maildir, or a real SMTP server (aiosmtpd) — and
`maild ticket show --json`. Time-driven duties run through `maild tick --at` a few days ahead of
the wall clock the other commands use.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Helpdesk, Run, mail, plain_text, recipient
from tests.smtp_sink import SmtpSink

CUSTOMER = "ivan@example.org"
QUESTION = "Hello, my printer HP LaserJet 1010 does not print under Windows 11.\n"


class Post:
    """What maild sent, read back from whichever transport the installation uses."""

    def __init__(self, desk: Helpdesk, sink: SmtpSink | None = None) -> None:
        self.desk = desk
        self.sink = sink
        self.seen: set[str] = set()

    def all(self) -> list[EmailMessage]:
        if self.sink is None:
            return self.desk.outbox()
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(m.data) for m in self.sink.messages]

    def new(self) -> list[EmailMessage]:
        """The messages sent since the last call, oldest first."""
        fresh = [m for m in self.all() if m["Message-ID"] not in self.seen]
        self.seen.update(m["Message-ID"] for m in fresh)
        return fresh


@pytest.fixture(params=["maildir", "smtp"])
def desk_and_post(request: pytest.FixtureRequest, tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Helpdesk, Post]]:
    """One installation per outbound transport (SPEC §4 `outbound.transport`)."""
    if request.param == "maildir":
        desk = Helpdesk(tmp_path, capsys)
        yield desk, Post(desk)
        return
    sink = SmtpSink()
    sink.start()
    try:
        desk = Helpdesk(tmp_path, capsys, transport="smtp", smtp_port=sink.port)
        yield desk, Post(desk, sink)
        assert not (tmp_path / "var" / "outbox").exists()  # nothing went to the Maildir
    finally:
        sink.stop()


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Helpdesk:
    # Staff error replies are automatic replies too: allow more than 5 an hour to one person.
    return Helpdesk(tmp_path, capsys, cap=50)


# --- helpers ----------------------------------------------------------------------------------


def ok(result: Run) -> Run:
    assert result.code == 0, result.err
    return result




def new_ticket(desk: Helpdesk, **kwargs: Any) -> str:
    kwargs.setdefault("body", QUESTION)
    return ok(desk.ingest(mail(**kwargs))).out.strip()


def events(ticket: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e for e in ticket["events"] if e["type"] == type_]


def when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["at"])


def mails_to(desk: Helpdesk, address: str) -> list[EmailMessage]:
    return [m for m in desk.outbox() if recipient(m) == address]


def staff_mail(number: str, text: str, *, sender: str = "Alice <alice@example.com>",
               subject: str = "Printer does not print", **kwargs: Any) -> EmailMessage:
    """A staff member's reply about ticket `number`, as a mail client writes it."""
    return mail(subject=f"Re: [Ticket#{number}] {subject}", body=text, sender=sender,
                **kwargs)


def quoted_reply(new_text: str, *, signature_above_quote: bool) -> str:
    """A mail client's reply: the new text on top, the customer's mail quoted, a signature."""
    attribution = "On Mon, 30 Nov 2026 at 10:00, Ivan <ivan@example.org> wrote:"
    quote = "> " + QUESTION.strip() + "\n>\n> Ivan Petrov\n> Sales department\n"
    signature = "-- \nAlice\nACME support\n"
    if signature_above_quote:
        return f"{new_text}\n\n{signature}\n{attribution}\n{quote}"
    return f"{new_text}\n\n{attribution}\n{quote}\n{signature}"


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def tick(desk: Helpdesk, at: str) -> dict[str, Any]:
    result: dict[str, Any] = ok(desk.run("tick", "--at", at, "--json")).json()
    return result


# --- 1. the whole story -----------------------------------------------------------------------


def test_the_whole_story_through_real_mail(desk_and_post: tuple[Helpdesk, Post]) -> None:
    desk, post = desk_and_post
    smtp = post.sink is not None
    start = datetime.now(UTC)

    # A customer writes; maild acknowledges.
    first = mail(body=QUESTION, message_id="<question@example.org>")
    number = ok(desk.ingest(first)).out.strip()
    [ack] = post.new()
    assert recipient(ack) == CUSTOMER
    assert ack["From"].addresses[0].addr_spec == "support@example.com"
    assert ack["Subject"] == f"[Ticket#{number}] Printer does not print"
    assert ack["In-Reply-To"] == "<question@example.org>"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert number in plain_text(ack)
    if smtp:
        assert post.sink is not None
        received = post.sink.messages[-1]
        assert received.mail_from == "support@example.com"
        assert received.rcpt_tos == [CUSTOMER]
    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["owner"], ticket["queue"]) == ("new", None,
                                                                   "General questions")
    [created] = events(ticket, "created")
    assert created["actor"] == CUSTOMER and start <= when(created) <= datetime.now(UTC)

    # Routed to a queue; nobody is mailed for that.
    ok(desk.run("ticket", "queue", number, "Compatibility problems"))
    assert post.new() == []
    ticket = desk.ticket(number)
    assert ticket["queue"] == "Compatibility problems"
    [moved] = events(ticket, "queue")
    assert moved["detail"] == "'General questions' -> 'Compatibility problems'"
    assert when(moved) >= when(created)

    # Assigned: the new owner is told.
    ok(desk.run("ticket", "assign", number, "alice@example.com"))
    [assigned] = post.new()
    assert recipient(assigned) == "alice@example.com"
    assert assigned["Subject"].startswith(f"[Ticket#{number}] ")
    assert "Compatibility problems" in plain_text(assigned)
    assert "HP LaserJet 1010" in plain_text(assigned)  # what the customer wrote
    assert "is now yours." in plain_text(assigned)  # nobody named as the assigner: no --staff
    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["owner"]) == ("open", "alice@example.com")
    [assignment] = events(ticket, "assigned")
    assert assignment["detail"] == "owner - -> alice@example.com"
    assert assignment["actor"] == "operator"
    assert when(assignment) >= when(moved)

    # Alice answers from her mail client: on top of the quote, with her signature.
    answer = quoted_reply(
        "Hello Ivan,\n\nplease install driver version 5.2 from our site and restart the "
        "printer.\n\nBest regards",
        signature_above_quote=smtp)
    # A reply to the "assigned" mail (internal) reaches the customer only with #reply
    # (SPEC §7); a mail that only keeps the tag is the answer as it is.
    replied_to = assigned["Message-ID"] if smtp else "<question@example.org>"
    staff = staff_mail(number, ("#reply\n" if smtp else "") + answer,
                       message_id="<answer@example.com>", in_reply_to=replied_to,
                       references=replied_to)
    assert ok(desk.ingest(staff)).out.strip() == number
    [relayed] = post.new()
    assert recipient(relayed) == CUSTOMER
    text = plain_text(relayed)
    assert "please install driver version 5.2" in text and "Best regards" in text
    for hidden in ("wrote:", "HP LaserJet", "Sales department", "ACME support"):
        assert hidden not in text, hidden
    assert not [line for line in text.splitlines() if line.startswith(">")]
    sender = relayed["From"].addresses[0]
    assert sender.addr_spec == "support@example.com"
    assert "Alice" in sender.display_name
    assert relayed["Subject"] == f"[Ticket#{number}] Printer does not print"
    assert relayed["In-Reply-To"] == "<question@example.org>"
    assert "<question@example.org>" in relayed["References"]
    assert relayed["Auto-Submitted"] is None  # a person wrote it
    ticket = desk.ticket(number)
    assert ticket["status"] == "waiting"
    [stored] = [m for m in ticket["messages"] if m["message_id"] == "answer@example.com"]
    assert (stored["kind"], stored["from"]) == ("staff", "alice@example.com")
    assert "wrote:" not in stored["body"] and "ACME support" not in stored["body"]
    [answered] = events(ticket, "answered")
    assert answered["actor"] == "alice@example.com" and when(answered) >= when(assignment)
    assert "open -> waiting: staff answered" in [e["detail"] for e in events(ticket, "status")]

    # Silence: nothing before close.request_after (3 days); then the close request.
    assert tick(desk, later(days=2))["close_requested"] == []
    asked_at = later(days=3, hours=1)
    assert tick(desk, asked_at)["close_requested"] == [number]
    [close_request] = post.new()
    assert recipient(close_request) == CUSTOMER
    assert close_request["Subject"] == f"[Ticket#{number}] Printer does not print"
    assert "May we close this ticket?" in plain_text(close_request)
    assert close_request["In-Reply-To"] == "<question@example.org>"
    ticket = desk.ticket(number)
    [requested] = events(ticket, "close_requested")
    assert requested["actor"] == "maild"
    assert when(requested) == datetime.fromisoformat(asked_at)
    assert ticket["status"] == "waiting"

    # The customer answers: the ticket is worked on again.
    ok(desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer does not print",
                        body="The new driver did not help, it still does not print.\n",
                        in_reply_to=close_request["Message-ID"])))
    assert post.new() == []  # no second acknowledgement
    ticket = desk.ticket(number)
    assert ticket["status"] == "open"
    back = events(ticket, "status")[-1]
    assert (back["actor"], back["detail"]) == (CUSTOMER,
                                               "waiting -> open: the customer answered")

    # Alice closes it.
    ok(desk.run("ticket", "close", number, "--staff", "alice@example.com"))
    assert post.new() == []
    ticket = desk.ticket(number)
    assert ticket["status"] == "closed"
    closed = events(ticket, "status")[-1]
    assert (closed["actor"], closed["detail"]) == ("alice@example.com", "open -> closed: closed")

    # A later reply reopens it; the customer and the owner are told.
    ok(desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer does not print",
                        body="It broke again after the Windows update.\n",
                        message_id="<again@example.org>")))
    notices = post.new()
    assert sorted(recipient(n) for n in notices) == ["alice@example.com", CUSTOMER]
    [reopened] = [n for n in notices if recipient(n) == CUSTOMER]
    [owner_notice] = [n for n in notices if recipient(n) == "alice@example.com"]
    assert all(n["Subject"].startswith(f"[Ticket#{number}] ") for n in notices)
    assert "reopened" in plain_text(reopened)
    assert reopened["In-Reply-To"] == "<again@example.org>"
    assert "It broke again after the Windows update." in plain_text(owner_notice)
    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["owner"]) == ("open", "alice@example.com")
    [reopening] = events(ticket, "reopened")
    assert reopening["actor"] == CUSTOMER and "again@example.org" in reopening["detail"]

    # The whole correspondence is on the ticket, in order.
    kinds = [(m["direction"], m["kind"], m["from"]) for m in ticket["messages"]]
    assert kinds == [
        ("in", "customer", CUSTOMER),
        ("out", "system", "support@example.com"),           # acknowledgement
        ("out", "system", "support@example.com"),           # assigned, to Alice
        ("in", "staff", "alice@example.com"),
        ("out", "staff", "support@example.com"),            # the relayed answer
        ("out", "system", "support@example.com"),           # close request
        ("in", "customer", CUSTOMER),
        ("in", "customer", CUSTOMER),
        ("out", "system", "support@example.com"),           # reopened, to the customer
        ("out", "system", "support@example.com"),           # reopened, to the owner
    ]
    sent = [m["message_id"] for m in ticket["messages"] if m["direction"] == "out"]
    assert sorted(sent) == sorted(m["Message-ID"].strip("<>") for m in post.all())
    if post.sink is not None:  # the SMTP envelope matches the headers, mail after mail
        for received, message in zip(post.sink.messages, post.all(), strict=True):
            assert received.mail_from == "support@example.com"
            assert received.rcpt_tos == [recipient(message)]


# --- 2. staff commands by mail ----------------------------------------------------------------


def test_commands_on_top_of_an_answer_are_applied_and_never_sent(desk: Helpdesk) -> None:
    number = new_ticket(desk)
    text = ("#assign bob@example.com\n#queue   Compatibility problems\n#priority high\n\n"
            "Hello Ivan,\n\nwhich driver version do you use?\n")
    ok(desk.ingest(staff_mail(number, text)))

    ticket = desk.ticket(number)
    assert ticket["owner"] == "bob@example.com"
    assert ticket["queue"] == "Compatibility problems"
    assert ticket["priority"] == "high"
    assert ticket["status"] == "waiting"
    for type_, detail in (("assigned", "owner - -> bob@example.com"),
                          ("queue", "'General questions' -> 'Compatibility problems'"),
                          ("priority", "normal -> high"),
                          ("answered", None)):
        [found] = events(ticket, type_)
        assert found["actor"] == "alice@example.com"
        assert detail is None or found["detail"] == detail
    [to_bob] = mails_to(desk, "bob@example.com")
    assert "assigned by alice@example.com" in plain_text(to_bob)
    [_, answer] = mails_to(desk, CUSTOMER)
    assert "which driver version do you use?" in plain_text(answer)
    for command in ("#assign", "#queue", "#priority", "bob@example.com"):
        assert command not in plain_text(answer)
    assert "Alice" in answer["From"].addresses[0].display_name


def test_an_answer_by_mail_makes_the_sender_owner_of_an_unowned_ticket(
    desk: Helpdesk,
) -> None:
    number = new_ticket(desk)
    ok(desk.ingest(staff_mail(number, "Hello Ivan,\n\nplease restart it.\n",
                              sender="Bob <bob@example.com>")))
    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["owner"]) == ("waiting", "bob@example.com")
    [took] = events(ticket, "assigned")
    assert took["actor"] == "bob@example.com"
    [_, answer] = desk.outbox()
    assert recipient(answer) == CUSTOMER and "please restart it." in plain_text(answer)
    assert answer["From"].addresses[0].display_name == "Bob (Support)"


def test_commands_alone_change_the_ticket_and_send_the_customer_nothing(
    desk: Helpdesk,
) -> None:
    number = new_ticket(desk)
    ok(desk.ingest(staff_mail(number, "#priority highest\n#queue development QUESTIONS\n")))
    ticket = desk.ticket(number)
    assert (ticket["priority"], ticket["queue"]) == ("highest", "Development questions")
    assert ticket["status"] == "new" and ticket["owner"] is None
    assert len(desk.outbox()) == 1  # the acknowledgement only


def test_note_by_mail_is_an_internal_note(desk: Helpdesk) -> None:
    number = new_ticket(desk)
    text = "#note\nThe customer is on our VIP list; call him at +7 900 000-00-00.\n"
    ok(desk.ingest(staff_mail(number, text, message_id="<note@example.com>")))
    assert len(desk.outbox()) == 1  # the acknowledgement only
    ticket = desk.ticket(number)
    assert ticket["status"] == "new" and ticket["owner"] is None
    [note] = [m for m in ticket["messages"] if m["message_id"] == "note@example.com"]
    assert note["kind"] == "note" and note["from"] == "alice@example.com"
    assert "VIP list" in note["body"]
    [recorded] = events(ticket, "note")
    assert recorded["actor"] == "alice@example.com"


def test_close_request_by_mail_asks_the_customer(desk: Helpdesk) -> None:
    number = new_ticket(desk)
    ok(desk.ingest(staff_mail(number, "#close-request\n")))
    ticket = desk.ticket(number)
    assert ticket["status"] == "waiting"
    [requested] = events(ticket, "close_requested")
    assert requested["actor"] == "alice@example.com"
    [_, question] = mails_to(desk, CUSTOMER)
    assert "May we close this ticket?" in plain_text(question)
    assert "Alice" in plain_text(question)
    assert "#close-request" not in plain_text(question)
    assert len(desk.outbox()) == 2


def test_close_by_mail_closes_and_an_answer_above_it_is_still_sent(desk: Helpdesk) -> None:
    silent, answered = new_ticket(desk), new_ticket(desk, subject="Scanner")
    ok(desk.ingest(staff_mail(silent, "#close\n")))
    ok(desk.ingest(staff_mail(answered, "#close\n\nGlad it works now. Closing.\n",
                              subject="Scanner")))
    assert desk.ticket(silent)["status"] == "closed"
    assert desk.ticket(answered)["status"] == "closed"
    closing = events(desk.ticket(silent), "status")[-1]
    assert closing["actor"] == "alice@example.com"
    assert closing["detail"] == "new -> closed: closed by staff mail"
    to_customer = mails_to(desk, CUSTOMER)
    assert len(to_customer) == 3  # two acknowledgements and the answer
    assert "Glad it works now. Closing." in plain_text(to_customer[-1])
    assert "#close" not in plain_text(to_customer[-1])


@pytest.mark.parametrize(("command", "complaint"), [
    ("#asign bob@example.com", "unknown command '#asign'"),
    ("#priority urgent", "unknown priority 'urgent'"),
    ("#queue Nowhere", "no queue named 'Nowhere'"),
    ("#assign nobody@example.com", "nobody@example.com is not a staff member"),
    ("#close please", "#close takes no argument"),
])
def test_a_bad_command_is_explained_to_the_staff_member_and_nothing_is_done(
    desk: Helpdesk, command: str, complaint: str,
) -> None:
    number = new_ticket(desk)
    text = f"#assign bob@example.com\n{command}\n\nHello Ivan, please try again.\n"
    ok(desk.ingest(staff_mail(number, text, message_id="<bad@example.com>")))

    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["owner"], ticket["queue"], ticket["priority"]) == \
        ("new", None, "General questions", "normal")  # not even the valid #assign
    assert events(ticket, "assigned") == [] and events(ticket, "answered") == []
    [refused] = events(ticket, "commands_refused")
    assert refused["actor"] == "alice@example.com" and complaint in refused["detail"]
    [error] = mails_to(desk, "alice@example.com")
    assert complaint in plain_text(error)
    assert error["Subject"].startswith(f"[Ticket#{number}] ")
    assert error["In-Reply-To"] == "<bad@example.com>"
    assert mails_to(desk, "bob@example.com") == []
    assert len(mails_to(desk, CUSTOMER)) == 1  # the acknowledgement only
    assert "please try again" not in "".join(plain_text(m) for m in mails_to(desk, CUSTOMER))


# --- 3. notes never reach the customer --------------------------------------------------------


def test_notes_never_reach_the_customer(desk: Helpdesk) -> None:
    number = new_ticket(desk)
    ok(desk.run("ticket", "note", number, "--staff", "bob@example.com",
                "--body", "Secret: the customer's licence expired."))
    ok(desk.ingest(staff_mail(number, "#note\nSecret too: offer a discount.\n")))
    assert len(desk.outbox()) == 1  # the acknowledgement only

    # A later answer carries only its own text, never a note.
    ok(desk.run("ticket", "reply", number, "--staff", "alice@example.com",
                "--body", "Please renew your licence."))
    for message in desk.outbox():
        assert "Secret" not in message.as_string()
    ticket = desk.ticket(number)
    notes = [m for m in ticket["messages"] if m["kind"] == "note"]
    assert [(n["from"], n["body"]) for n in notes] == [
        ("bob@example.com", "Secret: the customer's licence expired."),
        ("alice@example.com", "Secret too: offer a discount."),
    ]
    assert all(n["direction"] == "in" for n in notes)
    assert [e["actor"] for e in events(ticket, "note")] == ["bob@example.com",
                                                           "alice@example.com"]


# --- 4. staff mail about no ticket ------------------------------------------------------------


def test_a_staff_forward_opens_a_ticket_for_the_customer(desk: Helpdesk) -> None:
    forward = (
        "#queue Compatibility problems\n#priority high\n"
        "Please take care of this one.\n\n"
        "---------- Forwarded message ---------\n"
        "From: Olga <olga@example.org>\n"
        "Date: Mon, 30 Nov 2026 at 10:00\n"
        "Subject: Scanner does not scan\n"
        "To: Alice <alice@example.com>\n\n"
        "Hello Alice, our scanner stopped scanning yesterday.\n"
    )
    result = ok(desk.ingest(mail(subject="Fwd: Scanner does not scan", body=forward,
                                 sender="Alice <alice@example.com>")))
    number = result.out.strip()
    ticket = desk.ticket(number)
    assert ticket["customer"] == "olga@example.org"
    assert ticket["customer_name"] == "Olga"
    assert ticket["subject"] == "Scanner does not scan"
    assert (ticket["status"], ticket["queue"], ticket["priority"]) == \
        ("new", "Compatibility problems", "high")
    [forwarded] = events(ticket, "forwarded")
    assert forwarded["actor"] == "alice@example.com" and "olga@example.org" in \
        forwarded["detail"]
    [ack] = desk.outbox()
    assert recipient(ack) == "olga@example.org"
    assert ack["Subject"] == f"[Ticket#{number}] Scanner does not scan"
    assert number in plain_text(ack)
    assert "take care" not in plain_text(ack)  # Alice's words to colleagues stay inside

    # Olga's answer to the acknowledgement lands on her ticket.
    assert ok(desk.ingest(mail(subject=f"Re: {ack['Subject']}", sender="olga@example.org",
                               body="It shows error E5."))).out.strip() == number


def test_a_staff_mail_about_nothing_is_refused(desk: Helpdesk) -> None:
    result = ok(desk.ingest(mail(subject="Lunch?", body="Shall we meet at noon?\n",
                                 sender="Bob <bob@example.com>",
                                 message_id="<lunch@example.com>")))
    assert result.out == ""
    assert desk.tickets() == []
    [refusal] = desk.outbox()
    assert recipient(refusal) == "bob@example.com"
    assert refusal["Subject"] == "maild: not about a ticket: Lunch?"
    assert refusal["In-Reply-To"] == "<lunch@example.com>"
    assert "did not open a ticket" in " ".join(plain_text(refusal).split())


# --- 5. phone tickets -------------------------------------------------------------------------


def test_a_phone_ticket_with_an_address_is_acknowledged_by_mail(desk: Helpdesk) -> None:
    result = ok(desk.run("ticket", "new", "--channel", "phone", "--customer", "x@example.org",
                         "--name", "Xenia", "--subject", "Cannot log in",
                         "--body", "Called: her password reset mail never arrives."))
    number = result.out.strip()
    ticket = desk.ticket(number)
    assert (ticket["channel"], ticket["customer"], ticket["status"]) == \
        ("phone", "x@example.org", "new")
    assert ticket["messages"][0]["body"] == "Called: her password reset mail never arrives."
    [ack] = desk.outbox()
    assert recipient(ack) == "x@example.org" and ack["To"].addresses[0].display_name == "Xenia"
    assert ack["Subject"] == f"[Ticket#{number}] Cannot log in"
    assert number in plain_text(ack) and "Hello Xenia" in plain_text(ack)
    assert plain_text(ack).endswith("\r\n-- \r\nSupport, support@example.com\r\n")  # support_name


def test_a_phone_ticket_without_an_address_records_the_missing_acknowledgement(
    desk: Helpdesk,
) -> None:
    number = ok(desk.run("ticket", "new", "--channel", "phone", "--name", "Xenia",
                         "--subject", "Cannot log in", "--body", "No email address given."
                         )).out.strip()
    ticket = desk.ticket(number)
    assert (ticket["channel"], ticket["customer"]) == ("phone", "")
    assert desk.outbox() == []
    [missing] = events(ticket, "no_acknowledgement")
    assert "no email address" in missing["detail"]
    answered = ok(desk.run("ticket", "reply", number, "--staff", "bob@example.com",
                           "--body", "I called her back: fixed."))
    assert "has no email address; the answer is on the ticket, not sent" in answered.err
    assert desk.outbox() == []


def test_a_web_ticket_needs_a_customer(desk: Helpdesk) -> None:
    result = desk.run("ticket", "new", "--channel", "web", "--subject", "S", "--body", "B")
    assert result.code == 2
    assert "--customer" in result.err and result.out == ""
    assert desk.tickets() == []


# --- 6. the ticket commands -------------------------------------------------------------------


def test_reply_from_the_command_line(desk: Helpdesk) -> None:
    number = new_ticket(desk, message_id="<q@example.org>")
    ok(desk.run("ticket", "reply", number, "--staff", "bob@example.com",
                "--body", "Please send us a photo of the display."))
    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["owner"]) == ("waiting", "bob@example.com")
    [took] = events(ticket, "assigned")
    assert took["actor"] == "bob@example.com"
    [_, answer] = desk.outbox()
    assert recipient(answer) == CUSTOMER
    assert "Please send us a photo of the display." in plain_text(answer)
    assert "Bob" in plain_text(answer)
    assert answer["From"].addresses[0].display_name == "Bob (Support)"
    assert answer["From"].addresses[0].addr_spec == "support@example.com"
    assert answer["In-Reply-To"] == "<q@example.org>"
    assert answer["Subject"] == f"[Ticket#{number}] Printer does not print"

    # Somebody else answering later does not take the ticket away from its owner.
    ok(desk.run("ticket", "reply", number, "--staff", "alice@example.com", "--body", "Ping?"))
    assert desk.ticket(number)["owner"] == "bob@example.com"
    assert "Alice" in desk.outbox()[-1]["From"].addresses[0].display_name


def test_priority_queue_and_assign_from_the_command_line(desk: Helpdesk) -> None:
    number = new_ticket(desk)
    ok(desk.run("ticket", "priority", number, "high", "--staff", "alice@example.com"))
    ticket = desk.ticket(number)
    assert ticket["priority"] == "high"
    [changed] = events(ticket, "priority")
    assert (changed["actor"], changed["detail"]) == ("alice@example.com", "normal -> high")

    bad_queue = desk.run("ticket", "queue", number, "Nowhere")
    assert bad_queue.code == 2
    for known in ("General questions", "Compatibility problems", "Development questions"):
        assert known in bad_queue.err
    assert "Nowhere" in bad_queue.err

    bad_owner = desk.run("ticket", "assign", number, "nobody@example.com")
    assert bad_owner.code == 2
    assert "nobody@example.com" in bad_owner.err and "alice@example.com" in bad_owner.err

    ticket = desk.ticket(number)
    assert (ticket["queue"], ticket["owner"], ticket["status"]) == \
        ("General questions", None, "new")
    assert len(desk.outbox()) == 1
    assert desk.run("ticket", "priority", number, "urgent").code == 2
    assert desk.run("ticket", "reply", "1", "--staff", "alice@example.com",
                    "--body", "x").code == 2  # no such ticket


# --- 7. language = "auto" ---------------------------------------------------------------------


def test_automatic_language_follows_the_customer(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    desk = Helpdesk(tmp_path, capsys, language="auto")
    russian = new_ticket(desk, subject="Принтер не печатает", sender="olga@example.org",
                         body="Здравствуйте! Принтер перестал печатать.\n")
    english = new_ticket(desk, subject="Printer does not print")
    [ru_ack] = mails_to(desk, "olga@example.org")
    [en_ack] = mails_to(desk, CUSTOMER)
    assert "Спасибо за обращение" in plain_text(ru_ack) and russian in plain_text(ru_ack)
    assert ru_ack["Subject"] == f"[Ticket#{russian}] Принтер не печатает"
    assert "thank you for contacting us" in plain_text(en_ack) and english in plain_text(en_ack)
    assert "Спасибо" not in plain_text(en_ack)


# --- 8. HTML ----------------------------------------------------------------------------------


def test_an_html_writer_gets_an_html_alternative(desk: Helpdesk) -> None:
    html = mail(sender="olga@example.org", body="Hello, the <b>printer</b> is broken.\n")
    html.add_alternative("<p>Hello, the <b>printer</b> is broken.</p>", subtype="html")
    rich = ok(desk.ingest(html)).out.strip()
    new_ticket(desk)

    [ack] = mails_to(desk, "olga@example.org")
    assert ack.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in ack.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    html_part = ack.get_body(preferencelist=("html",))
    assert html_part is not None
    assert rich in html_part.get_content()
    assert "<p>" in html_part.get_content()

    [plain] = mails_to(desk, CUSTOMER)
    assert plain.get_content_type() == "text/plain"
    assert not plain.is_multipart()


# --- 9. auto-close ----------------------------------------------------------------------------


def test_silence_after_the_close_request_closes_the_ticket_once(desk: Helpdesk) -> None:
    number = new_ticket(desk)
    ok(desk.run("ticket", "reply", number, "--staff", "alice@example.com",
                "--body", "Restart the printer, please."))
    sent = len(desk.outbox())
    asked = datetime.now(UTC) + timedelta(days=3, minutes=5)

    assert tick(desk, asked.isoformat())["close_requested"] == [number]
    assert tick(desk, asked.isoformat())["close_requested"] == []  # the same instant again
    [question] = desk.outbox()[sent:]
    assert "May we close this ticket?" in plain_text(question)
    assert "7 days" in plain_text(question)  # close.close_after

    assert tick(desk, (asked + timedelta(days=6)).isoformat())["closed"] == []
    assert desk.ticket(number)["status"] == "waiting"

    closing = (asked + timedelta(days=7, minutes=1)).isoformat()
    first = tick(desk, closing)
    assert first["closed"] == [number] and first["close_requested"] == []
    again = tick(desk, closing)
    assert again["closed"] == [] and again["close_requested"] == [] and again["sent"] == 0
    assert len(desk.outbox()) == sent + 1  # only the one close request, no other mail

    ticket = desk.ticket(number)
    assert ticket["status"] == "closed"
    closed = events(ticket, "status")[-1]
    assert closed["actor"] == "maild"
    assert closed["detail"] == "waiting -> closed: no answer 7d after the close request"
    assert when(closed) == datetime.fromisoformat(closing)
    assert len(events(ticket, "close_requested")) == 1
    assert tick(desk, later(days=30))["closed"] == []


def test_staff_auth_requires_the_trusted_mtas_authentication_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = Helpdesk(tmp_path, capsys)
    desk.config.write_text(desk.config.read_text().replace(
        "[mail]\n", '[mail]\nstaff_auth = "authentication-results"\n'
                    'authserv_id = "mx.example.com"\n'))
    number = desk.ingest(mail()).out.strip()
    forged = mail(subject=f"Re: [Ticket#{number}]", sender="Alice <alice@example.com>",
                  body="#close\n\nDone.\n",
                  headers={"Authentication-Results":
                           "evil.example; dkim=pass header.d=example.com"})
    other = desk.ingest(forged).out.strip()
    assert other != number  # an unproven staff From only claims the ticket it names
    assert desk.ticket(number)["status"] != "closed"
    assert {"staff_unverified", "claimed_ticket"} <= {e["type"]
                                                      for e in desk.ticket(other)["events"]}
    # only the acknowledgement went to the customer; nothing relayed
    assert [recipient(m) for m in desk.outbox()].count("ivan@example.org") == 1

    genuine = mail(subject=f"Re: [Ticket#{number}]", sender="Alice <alice@example.com>",
                   body="#close\n\nDone.\n",
                   headers={"Authentication-Results":
                            "mx.example.com; spf=pass smtp.mailfrom=alice@example.com; "
                            "dkim=pass header.d=example.com header.s=s1"})
    desk.ingest(genuine)
    assert desk.ticket(number)["status"] == "closed"
