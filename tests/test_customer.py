"""Who the customer is (SPEC §5): the From address, or the Reply-To when From is maild's own;
maild's own addresses never become a customer and never receive mail from maild; mail to a
customer goes to the Reply-To of their latest message."""

from __future__ import annotations

from email.message import EmailMessage

from tests.conftest import Helpdesk, mail


def recipients(helpdesk: Helpdesk) -> list[str]:
    return [m["To"].addresses[0].addr_spec for m in helpdesk.outbox()]


def form_mail(reply_to: str | None, sender: str = "Support <support@example.com>",
              **kwargs: str) -> EmailMessage:
    """What a web form or a forwarding rule writes: From maild's own address."""
    headers = {"Reply-To": reply_to} if reply_to else {}
    return mail(sender=sender, headers=headers, **kwargs)  # type: ignore[arg-type]


def test_a_web_form_writing_from_the_support_address_opens_the_customers_ticket(
    helpdesk: Helpdesk,
) -> None:
    number = helpdesk.ingest(form_mail("Anna Smirnova <anna@customer.example>")).out.strip()
    ticket = helpdesk.ticket(number)
    assert (ticket["customer"], ticket["customer_name"]) == ("anna@customer.example",
                                                           "Anna Smirnova")
    assert ticket["messages"][0]["from"] == "anna@customer.example"
    [ack] = helpdesk.outbox()
    assert ack["To"].addresses[0].addr_spec == "anna@customer.example"
    assert ack["To"].addresses[0].display_name == "Anna Smirnova"


def test_a_forwarding_rule_from_an_accepted_address_counts_the_same(helpdesk: Helpdesk) -> None:
    helpdesk.config.write_text(helpdesk.config.read_text().replace(
        'accept = ["support@example.com"]', 'accept = ["support@example.com", "help@example.com"]'))
    number = helpdesk.ingest(form_mail("olga@example.org",
                                       sender="Help desk <help@example.com>")).out.strip()
    assert helpdesk.ticket(number)["customer"] == "olga@example.org"
    assert recipients(helpdesk) == ["olga@example.org"]


def test_mail_from_maild_itself_naming_nobody_else_is_kept_as_failed(helpdesk: Helpdesk) -> None:
    for reply_to in (None, "support@example.com"):
        result = helpdesk.ingest(form_mail(reply_to))
        assert result.code == 0  # stored is stored
        assert result.out == ""
    failed = helpdesk.run("inbound", "list", "--state", "failed", "--json").json()
    assert len(failed) == 2
    assert all("maild's own address support@example.com" in row["reason"] for row in failed)
    assert helpdesk.tickets() == [] and helpdesk.outbox() == []


def test_answers_go_to_the_reply_to_of_the_customers_latest_message(helpdesk: Helpdesk) -> None:
    # Outlook with a shared mailbox: From the person, Reply-To the team's address.
    first = mail(sender="Ivan <ivan@example.org>", headers={"Reply-To": "it-team@example.org"})
    number = helpdesk.ingest(first).out.strip()
    assert helpdesk.ticket(number)["customer"] == "ivan@example.org"
    helpdesk.run("ticket", "reply", number, "--staff", "alice@example.com", "--body", "Try A.")
    assert recipients(helpdesk) == ["it-team@example.org", "it-team@example.org"]
    # Ivan writes again from his own client, without a Reply-To: the next answer is his.
    helpdesk.ingest(mail(subject=f"Re: [Ticket#{number}] Printer", sender="ivan@example.org",
                         body="A did not help.\n"))
    helpdesk.run("ticket", "reply", number, "--staff", "alice@example.com", "--body", "Try B.")
    assert recipients(helpdesk)[-1] == "ivan@example.org"


def test_a_form_cannot_make_a_visitor_act_as_staff(helpdesk: Helpdesk) -> None:
    """Nor take part in tickets as staff do: mail on someone's behalf proves no staff member,
    even with `mail.staff_auth = "from"` (its From line is maild's own), so the ticket it
    names is only claimed (SPEC §5)."""
    number = helpdesk.ingest(mail()).out.strip()
    forged = form_mail("alice@example.com", subject=f"[Ticket#{number}] Printer",
                       body="#close\nplease close it\n")
    other = helpdesk.ingest(forged).out.strip()
    assert other != number
    ticket = helpdesk.ticket(number)
    assert ticket["status"] != "closed"
    assert len(ticket["messages"]) == 2  # the customer's mail and its acknowledgement
    claim = helpdesk.ticket(other)
    assert "claimed_ticket" in [e["type"] for e in claim["events"]]
    assert claim["messages"][0]["kind"] == "customer"


def test_maild_never_sends_to_its_own_address(helpdesk: Helpdesk) -> None:
    number = helpdesk.ingest(mail()).out.strip()
    helpdesk.set_ticket(number, customer="support@example.com")  # however it came about
    assert helpdesk.run("ticket", "reply", number, "--staff", "alice@example.com",
                        "--body", "Hello").code == 0
    assert recipients(helpdesk) == ["ivan@example.org"]  # the acknowledgement only
    [refused] = [e for e in helpdesk.ticket(number)["events"] if e["type"] == "not_sent"]
    assert "maild's own address" in refused["detail"]
    new = helpdesk.run("ticket", "new", "--channel", "phone", "--customer",
                       "Support@Example.com", "--subject", "x", "--body", "y")
    assert new.code == 2 and "maild's own address" in new.err
