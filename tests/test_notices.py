"""Staff notices and answers by mail, the rules one at a time (SPEC §6 and §7): who is told,
what a reply to which mail does, Cc participants, attachments and their limit — through the
real CLI (`maild ingest`, `maild ticket ...`), a real SQLite database and the outbox Maildir.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Helpdesk, mail, plain_text, recipient

CUSTOMER = "ivan@example.org"


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Helpdesk:
    return Helpdesk(tmp_path, capsys, notify="true", cap=50)




def new(desk: Helpdesk, message: EmailMessage | None = None) -> str:
    result = desk.ingest(message or mail())
    assert result.code == 0, result.err
    return result.out.strip()


def sent_since(desk: Helpdesk, before: int) -> list[EmailMessage]:
    return desk.outbox()[before:]


def answering(original: EmailMessage, sender: str, body: str) -> EmailMessage:
    """A reply to `original` as a mail client builds it: Re:, In-Reply-To, References."""
    return mail(subject=f"Re: {original['Subject']}", sender=sender, body=body,
                in_reply_to=str(original["Message-ID"]), references=str(original["Message-ID"]))


def events(desk: Helpdesk, number: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in desk.ticket(number)["events"] if e["type"] == type_]


def test_every_staff_member_is_told_of_a_new_ticket(desk: Helpdesk) -> None:
    new(desk)
    assert sorted(recipient(m) for m in desk.outbox()) == \
        ["alice@example.com", "bob@example.com", CUSTOMER]


@pytest.mark.parametrize(("switch", "told_of_new", "told_of_follow_up"), [
    ("new_ticket", False, True), ("follow_up", True, False)])
def test_each_kind_of_notice_can_be_switched_off(
    desk: Helpdesk, switch: str, told_of_new: bool, told_of_follow_up: bool,
) -> None:
    desk.config.write_text(desk.config.read_text().replace(f"{switch} = true",
                                                           f"{switch} = false"))
    number = new(desk)
    assert any(recipient(m) == "alice@example.com" for m in desk.outbox()) is told_of_new
    before = len(desk.outbox())
    desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", body="More details.\n"))
    assert any(recipient(m) == "alice@example.com"
               for m in sent_since(desk, before)) is told_of_follow_up


def test_notices_never_count_against_the_customers_hourly_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    desk = Helpdesk(tmp_path, capsys, notify="true", cap=1)
    new(desk)
    second = new(desk, mail(subject="Another problem"))
    assert [recipient(m) for m in desk.outbox()].count(CUSTOMER) == 1  # the second ack is capped
    assert [recipient(m) for m in desk.outbox()].count("alice@example.com") == 2
    assert events(desk, second, "auto_reply_suppressed")


def test_no_notice_for_a_customers_automatic_mail(desk: Helpdesk) -> None:
    number = new(desk)
    desk.run("ticket", "assign", number, "alice@example.com", "--staff", "alice@example.com")
    before = len(desk.outbox())
    away = mail(subject=f"Re: [Ticket#{number}] Printer", body="I am out of office.\n",
                headers={"Auto-Submitted": "auto-replied"})
    assert desk.ingest(away).out.strip() == number
    assert sent_since(desk, before) == []
    assert events(desk, number, "message_received")


def test_a_follow_up_on_an_ownerless_ticket_goes_to_its_queues_staff(desk: Helpdesk) -> None:
    desk.config.write_text(desk.config.read_text().replace(
        "[tickets]", '[[queues]]\nname = "General questions"\nstaff = ["bob@example.com"]\n'
        '[[queues]]\nname = "Billing"\n\n[tickets]'))
    assert desk.run("init").code == 0
    number = new(desk)
    assert sorted(recipient(m) for m in desk.outbox()) == ["bob@example.com", CUSTOMER]
    before = len(desk.outbox())
    desk.run("ticket", "queue", number, "Billing")  # a queue without a staff list: everyone
    desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", body="Any news?\n"))
    assert sorted(recipient(m) for m in sent_since(desk, before)) == \
        ["alice@example.com", "bob@example.com"]


def test_a_reply_to_a_notice_with_note_stays_internal(desk: Helpdesk) -> None:
    number = new(desk)
    notice = next(m for m in desk.outbox() if recipient(m) == "alice@example.com")
    before = len(desk.outbox())
    desk.ingest(answering(notice, "Alice <alice@example.com>", "#note\nLooks like the driver."))
    assert sent_since(desk, before) == []
    assert desk.ticket(number)["messages"][-1]["kind"] == "note"


def test_a_reply_to_a_refusal_is_internal_too(desk: Helpdesk) -> None:
    number = new(desk)
    desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", body="#priority urgent\nHi\n",
                     sender="Alice <alice@example.com>"))
    [refusal] = [m for m in desk.outbox() if "could not run your commands" in m["Subject"]]
    before = len(desk.outbox())
    desk.ingest(answering(refusal, "Alice <alice@example.com>", "#priority high\nOops."))
    assert sent_since(desk, before) == []
    ticket = desk.ticket(number)
    assert ticket["priority"] == "high" and ticket["messages"][-1]["kind"] == "note"


def test_cc_participants_get_answers_and_staff_can_add_or_drop_them(desk: Helpdesk) -> None:
    number = new(desk, mail(headers={"Cc": "Olga <olga@example.org>, alice@example.com, "
                                           "support@example.com"}))
    assert desk.ticket(number)["cc"] == ["olga@example.org"]  # never staff or maild itself
    before = len(desk.outbox())
    desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", sender="alice@example.com",
                     body="#cc boss@example.org\nWe are on it.\n"))
    answers = sent_since(desk, before)
    assert sorted(recipient(m) for m in answers) == [CUSTOMER] * 3  # To the customer, three copies
    assert {str(m["Cc"]) for m in answers} == {"olga@example.org, boss@example.org"}
    assert len({m["Message-ID"] for m in answers}) == 3
    before = len(desk.outbox())
    desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", sender="alice@example.com",
                     body="#uncc olga@example.org\nStill on it.\n"))
    assert [str(m["Cc"]) for m in sent_since(desk, before)] == ["boss@example.org"] * 2
    assert [e["type"] for e in desk.ticket(number)["events"]].count("cc_added") == 2


def test_cc_participants_can_be_switched_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    desk = Helpdesk(tmp_path, capsys)
    desk.config.write_text(desk.config.read_text().replace(
        "reopen_closed = true", "reopen_closed = true\ncc_participants = false"))
    number = new(desk, mail(headers={"Cc": "olga@example.org"}))
    assert desk.ticket(number)["cc"] == []


def test_staff_attachments_over_the_limit_are_refused_and_nothing_is_sent(
    desk: Helpdesk,
) -> None:
    desk.config.write_text(desk.config.read_text().replace(
        'support_address = "support@example.com"',
        'support_address = "support@example.com"\nmax_attachment_bytes = 1000'))
    number = new(desk)
    before = len(desk.outbox())
    big = mail(subject=f"Re: [Ticket#{number}] Printer", sender="Alice <alice@example.com>",
               body="Here is the driver.\n")
    big.add_attachment(b"x" * 5000, maintype="application", subtype="zip",
                       filename="драйвер.zip")
    desk.ingest(big)
    [refusal] = sent_since(desk, before)
    assert recipient(refusal) == "alice@example.com"
    assert "not sent" in refusal["Subject"] and "драйвер.zip (5 KB)" in plain_text(refusal)
    ticket = desk.ticket(number)
    assert ticket["status"] == "new" and events(desk, number, "attachments_refused")


def test_a_notice_names_the_customers_files_it_cannot_carry(desk: Helpdesk) -> None:
    desk.config.write_text(desk.config.read_text().replace(
        'support_address = "support@example.com"',
        'support_address = "support@example.com"\nmax_attachment_bytes = 1000'))
    message = mail()
    message.add_attachment(b"y" * 300, maintype="image", subtype="png", filename="small.png")
    message.add_attachment(b"z" * 3000, maintype="image", subtype="png", filename="big.png")
    new(desk, message)
    notice = next(m for m in desk.outbox() if recipient(m) == "alice@example.com")
    assert [p.get_filename() for p in notice.iter_attachments()] == ["small.png"]
    assert "big.png (3 KB), not attached (over 1000 bytes)" in plain_text(notice)


def test_a_reopened_ticket_tells_the_customer_in_their_thread_and_the_owner(
    desk: Helpdesk,
) -> None:
    number = new(desk)
    desk.run("ticket", "assign", number, "bob@example.com")
    desk.run("ticket", "close", number)
    before = len(desk.outbox())
    again = mail(subject=f"Re: [Ticket#{number}] Printer", body="Broken again.\n",
                 message_id="<again@example.org>")
    desk.ingest(again)
    reopened, owner = sent_since(desk, before)
    assert recipient(reopened) == CUSTOMER and reopened["In-Reply-To"] == "<again@example.org>"
    assert "<again@example.org>" in reopened["References"]
    assert len(reopened["References"].split()) >= 3  # the conversation so far
    assert recipient(owner) == "bob@example.com" and "Broken again." in plain_text(owner)


def test_a_ticket_reopened_by_a_cc_participant_tells_the_customer_with_them_in_cc(
    desk: Helpdesk,
) -> None:
    """SPEC §6: reopened → customer and owner, whoever's message reopened it."""
    number = new(desk, mail(headers={"Cc": "Boss <boss@example.org>"}))
    desk.run("ticket", "assign", number, "bob@example.com")
    desk.run("ticket", "close", number)
    before = len(desk.outbox())
    desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", sender="Boss <boss@example.org>",
                     body="It is broken again.\n"))
    sent = sent_since(desk, before)
    reopened = [m for m in sent if "reopened" in plain_text(m) and "which you own" not in
                plain_text(m)]
    assert sorted(str(m["Delivered-To"]) for m in reopened) == ["boss@example.org", CUSTOMER]
    assert all(recipient(m) == CUSTOMER and str(m["Cc"]) == "boss@example.org" for m in reopened)
    assert all(plain_text(m).startswith("Hello Ivan Petrov,") for m in reopened)
    assert all("A message from boss@example.org has reopened it," in plain_text(m)
               for m in reopened)
    assert "bob@example.com" in [recipient(m) for m in sent]
    assert desk.ticket(number)["status"] == "open"


@pytest.mark.parametrize("command", ["#cc ivan@example.org", "#uncc nobody@example.org"])
def test_a_cc_command_that_cannot_apply_is_refused_and_nothing_runs(
    desk: Helpdesk, command: str,
) -> None:
    number = new(desk)
    before = len(desk.outbox())
    result = desk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", sender="alice@example.com",
                              body=f"#priority high\n{command}\nWe are on it.\n"))
    assert result.code == 0, result.err
    [refusal] = sent_since(desk, before)
    assert recipient(refusal) == "alice@example.com" and command in plain_text(refusal)
    ticket = desk.ticket(number)
    assert ticket["priority"] != "high" and ticket["status"] == "new"
    assert [e["detail"] for e in events(desk, number, "commands_refused")] != []


def test_notices_of_one_batch_follow_each_other_in_each_staff_members_thread(
        desk: Helpdesk) -> None:
    """A new ticket and a follow-up to it, threaded in one transaction (a savepoint each): the
    new ticket's notice starts the ticket's staff thread, and the follow-up's notice to the same
    staff member answers that one — although it was written in the same transaction, by
    another message's block, which knows nothing of what the first remembered."""
    from email import policy as email_policy

    from maild import config
    from maild.app import App
    from maild.ingest.accept import accept

    app = App(config.load(desk.config))
    try:
        for message in (mail(message_id="<opening@example.org>"),
                        mail(subject="Re: Printer does not print", body="Still nothing.\n",
                             in_reply_to="<opening@example.org>",
                             references="<opening@example.org>")):
            accept(app.pool, message.as_bytes(policy=email_policy.SMTP), source="pipe",
                   now=app.clock.now())
    finally:
        app.close()
    assert desk.run("tick").code == 0

    [ticket] = desk.tickets()
    root = f"<maild.ticket.{ticket['number']}@example.com>"
    to_alice = [m for m in desk.outbox() if recipient(m) == "alice@example.com"]
    assert [m["Subject"].endswith("[new]") for m in to_alice] == [True, False]
    first, second = to_alice
    assert (first["In-Reply-To"], first["References"]) == (root, root)
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"].split() == [root, first["Message-ID"]]
