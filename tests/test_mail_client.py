"""Staff work the whole ticket from their mail clients (issue #10; SPEC §6 and §7), end to end:
mail in over the SMTP listener of a real `maild run`, mail out to a real SMTP sink, and every
staff mail built the way Thunderbird, Outlook and Gmail build a reply — `In-Reply-To` and
`References`, `Re:`/`AW:`/`RE:` prefixes, quoted history, HTML-only bodies, attachments with
Cyrillic file names. Time-driven duties run through `maild tick --at` a few hours ahead.
"""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import mail
from tests.servers import MaildProcess, wait_until
from tests.smtp_sink import SmtpSink, free_port

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"

[mail]
support_address = "support@example.com"

[smtp]
listen = "127.0.0.1:{port}"

[outbound]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {sink_port}

[[queues]]
name = "General questions"
[[queues]]
name = "Development questions"
staff = ["carol@example.com"]

[[staff]]
email = "alice@example.com"
name = "Alice"
[[staff]]
email = "bob@example.com"
name = "Bob"
[[staff]]
email = "carol@example.com"
name = "Carol"

[sla]
business_hours = "24x7"
[sla.priorities.normal]
escalate_after = "1h"
resolve_within = "2d"
"""

CUSTOMER = "ivan@customer.example"
COLLEAGUE = "olga@customer.example"
STAFF = ("alice@example.com", "bob@example.com", "carol@example.com")
PDF = b"%PDF-1.4\n% the driver's installation guide\n" + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200)) * 10


class Desk:
    """One `maild run` with its SMTP listener, and the mail that came out of it."""

    def __init__(self, root: Path, sink: SmtpSink) -> None:
        self.port = free_port()
        self.sink = sink
        self.daemon = MaildProcess(root, CONFIG.format(root=root, port=self.port,
                                                       sink_port=sink.port))
        self.daemon.start(wait_for=self.port)
        self.seen = 0

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.send_message(message)

    def sent(self) -> list[tuple[str, EmailMessage]]:
        """(recipient, message) of everything the sink received, in order."""
        parser = BytesParser(policy=policy.default)
        return [(rcpt, parser.parsebytes(m.data)) for m in self.sink.messages
                for rcpt in m.rcpt_tos]

    def wait(self, count: int) -> list[tuple[str, EmailMessage]]:
        """The next `count` deliveries; fails when more or fewer arrive."""
        assert wait_until(lambda: len(self.sent()) >= self.seen + count, timeout=30), \
            (self.sent()[self.seen:], self.daemon.log()[-3000:])
        wait_until(lambda: len(self.sent()) > self.seen + count, timeout=1.5)  # no more
        fresh = self.sent()[self.seen:]
        assert len(fresh) == count, [(r, m["Subject"]) for r, m in fresh]
        self.seen += count
        return fresh

    def nothing_more(self) -> None:
        assert not wait_until(lambda: len(self.sent()) > self.seen, timeout=3), \
            [(r, m["Subject"]) for r, m in self.sent()[self.seen:]]

    def ticket(self, number: str) -> dict[str, Any]:
        done = self.daemon.cli("ticket", "show", number, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def message_from(self, number: str, sender: str) -> dict[str, Any]:
        """The one message `sender` wrote on the ticket, once maild has stored it."""
        def mine() -> list[dict[str, Any]]:
            return [m for m in self.ticket(number)["messages"]
                    if m["direction"] == "in" and m["from"] == sender]
        assert wait_until(lambda: bool(mine()), timeout=30), self.daemon.log()[-3000:]
        [message] = mine()
        return message

    def tick(self, at: datetime) -> dict[str, Any]:
        done = self.daemon.cli("tick", "--at", at.isoformat(), "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def desk(tmp_path: Path, sink: SmtpSink) -> Iterator[Desk]:
    desk = Desk(tmp_path, sink)
    yield desk
    desk.daemon.stop()


# --- mail as the clients write it ---------------------------------------------------------


def to_of(message: EmailMessage) -> list[str]:
    return [a.addr_spec for a in message["To"].addresses]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def files_of(message: EmailMessage) -> dict[str, bytes]:
    return {str(part.get_filename()): part.get_content() for part in message.iter_attachments()}


def quoted(message: EmailMessage) -> str:
    return "\n".join("> " + line for line in text_of(message).splitlines())


def reply(original: EmailMessage, sender: str, text: str, *, client: str = "thunderbird",
          prefix: str = "Re: ", files: dict[str, bytes] | None = None,
          cc: str | None = None) -> EmailMessage:
    """A reply to `original` the way `client` writes one: threading headers, the prefix, the
    quoted history below the new text (Outlook: its header block; an HTML-only body)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = str(original["From"])
    if cc:
        message["Cc"] = cc
    subject = str(original["Subject"])
    message["Subject"] = subject if subject.lower().startswith(prefix.lower()) \
        else prefix + subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">"))
    message["In-Reply-To"] = str(original["Message-ID"])
    message["References"] = " ".join(
        filter(None, [str(original.get("References", "")), str(original["Message-ID"])]))
    if client == "outlook":
        history = (f"<div>-----Original Message-----<br>From: {original['From']}<br>"
                   f"Sent: {original['Date']}<br>To: {original['To']}<br>"
                   f"Subject: {original['Subject']}</div><div>"
                   + text_of(original).replace("\n", "<br>") + "</div>")
        paragraphs = "".join(f"<p>{line}</p>" for line in text.split("\n") if line)
        message["Thread-Index"] = "AdrDemoThreadIndex=="
        message.set_content(f"<html><body>{paragraphs}<br>{history}</body></html>",
                            subtype="html")
    elif client == "gmail":
        attribution = f"On {original['Date']}, {original['From']} wrote:"
        message.set_content(f"{text}\n\n{attribution}\n{quoted(original)}\n")
    else:  # Thunderbird
        attribution = f"On {original['Date']}, {original['From']} wrote:"
        message.set_content(f"{text}\n\n{attribution}\n{quoted(original)}\n\n-- \n{sender}\n")
    for name, data in (files or {}).items():
        maintype, _, subtype = ("application/pdf" if name.endswith(".pdf")
                                else "image/png").partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def first_mail() -> EmailMessage:
    """The customer's first mail: a colleague in Cc, a screenshot with a Cyrillic name."""
    message = mail(subject="Printer does not print", sender=f"Ivan Petrov <{CUSTOMER}>",
                   body="Hello,\n\nsince the update the printer prints nothing.\n",
                   headers={"Cc": f"Olga <{COLLEAGUE}>"})
    message.add_attachment(PNG, maintype="image", subtype="png",
                           filename="Снимок экрана.png")
    return message


def by_recipient(delivered: list[tuple[str, EmailMessage]]) -> dict[str, EmailMessage]:
    found = dict(delivered)
    assert len(found) == len(delivered), "two mails to one recipient"
    return found


# --- the story ----------------------------------------------------------------------------


def test_a_ticket_worked_from_mail_clients_from_first_mail_to_escalation(desk: Desk) -> None:
    # The customer writes, with a colleague in Cc: acknowledged, and every staff member told.
    desk.send(first_mail())
    arrived = by_recipient(desk.wait(4))
    assert set(arrived) == {CUSTOMER, *STAFF}
    ack = arrived[CUSTOMER]
    number = ack["X-Maild-Ticket"]
    notice = arrived["alice@example.com"]
    assert notice["Subject"] == f"[Ticket#{number}] Printer does not print [new]"
    assert notice["Auto-Submitted"] == "auto-generated"
    assert f"<maild.ticket.{number}@example.com>" in notice["References"]
    assert "since the update the printer prints nothing" in text_of(notice)
    assert "Ivan Petrov <ivan@customer.example>" in text_of(notice)
    assert files_of(notice) == {"Снимок экрана.png": PNG}
    assert desk.ticket(number)["cc"] == [COLLEAGUE]

    # Alice answers from Outlook (HTML only, RE:, her quote below) with a PDF.
    answer = reply(notice, "Alice <alice@example.com>",
                   "Hello Ivan,\nplease install the new driver, the guide is attached.",
                   client="outlook", prefix="RE: ",
                   files={"Инструкция по установке.pdf": PDF})
    desk.send(answer)
    delivered = by_recipient(desk.wait(2))  # the customer, and the colleague in Cc
    assert set(delivered) == {CUSTOMER, COLLEAGUE}
    relayed = delivered[CUSTOMER]
    assert to_of(relayed) == [CUSTOMER]
    assert [a.addr_spec for a in relayed["Cc"].addresses] == [COLLEAGUE]
    assert relayed["From"].addresses[0].display_name == "Alice (Support)"
    assert relayed["From"].addresses[0].addr_spec == "support@example.com"
    assert relayed["Subject"] == f"[Ticket#{number}] Printer does not print"
    body = text_of(relayed)
    assert "please install the new driver" in body
    for hidden in ("Original Message", "prints nothing", "[new]", "Sent:"):
        assert hidden not in body, hidden
    assert files_of(relayed) == {"Инструкция по установке.pdf": PDF}
    assert relayed["In-Reply-To"] == first_mail_id(desk, number)
    ticket = desk.ticket(number)
    assert (ticket["status"], ticket["owner"]) == ("waiting", "alice@example.com")

    # The customer follows up from Gmail: only the owner is told.
    desk.send(reply(relayed, f"Ivan Petrov <{CUSTOMER}>", "It still prints nothing.",
                    client="gmail"))
    [(told, follow_up)] = desk.wait(1)
    assert told == "alice@example.com"
    assert "It still prints nothing." in text_of(follow_up)
    assert "please install the new driver" not in text_of(follow_up)  # quote stripped
    assert follow_up["In-Reply-To"] is not None
    assert follow_up["In-Reply-To"] in (notice["Message-ID"],)  # her thread of this ticket

    # Nobody acts for more than an hour: every staff member gets the escalation.
    escalated = desk.tick(datetime.now(UTC) + timedelta(hours=2))
    assert escalated["escalated"] == [number]
    escalations = by_recipient(desk.wait(3))
    assert set(escalations) == set(STAFF)

    # Bob replies to the escalation from a German Outlook with #assign me and a remark:
    # the remark is an internal note, Bob owns the ticket, nothing reaches the customer.
    desk.send(reply(escalations["bob@example.com"], "Bob <bob@example.com>",
                    "#assign me\nI will call him tomorrow morning.", prefix="AW: "))
    remark = desk.message_from(number, "bob@example.com")
    assert remark["kind"] == "note" and "I will call him tomorrow" in remark["body"]
    desk.nothing_more()
    assert desk.ticket(number)["owner"] == "bob@example.com"

    # A reply to the escalation that starts with #reply is the answer after all.
    desk.send(reply(escalations["carol@example.com"], "Carol <carol@example.com>",
                    "#reply\nIvan, we are sending a technician today.", client="gmail"))
    delivered = by_recipient(desk.wait(2))
    assert set(delivered) == {CUSTOMER, COLLEAGUE}
    assert "we are sending a technician today" in text_of(delivered[CUSTOMER])
    assert "#reply" not in text_of(delivered[CUSTOMER])

    # The colleague in Cc answers: threaded as a participant's, the owner is told.
    desk.send(reply(delivered[COLLEAGUE], f"Olga <{COLLEAGUE}>", "Thanks, I will be there."))
    [(told, follow_up)] = desk.wait(1)
    assert told == "bob@example.com" and COLLEAGUE in text_of(follow_up)
    assert desk.message_from(number, COLLEAGUE)["kind"] == "customer"


def first_mail_id(desk: Desk, number: str) -> str:
    return "<" + desk.ticket(number)["messages"][0]["message_id"] + ">"


def test_queue_staff_get_its_new_ticket_notices(desk: Desk) -> None:
    done = desk.daemon.cli("ticket", "new", "--channel", "phone", "--customer", CUSTOMER,
                           "--subject", "API returns 500", "--body", "Called about the API.",
                           "--queue", "Development questions")
    assert done.returncode == 0, done.stderr
    delivered = by_recipient(desk.wait(2))
    assert set(delivered) == {CUSTOMER, "carol@example.com"}  # the queue's staff only
    assert "Called about the API." in text_of(delivered["carol@example.com"])


def test_taking_a_ticket_sends_no_assigned_mail_and_html_customers_get_html(desk: Desk) -> None:
    html = mail(subject="Scanner", sender=f"Ivan Petrov <{CUSTOMER}>")
    html.set_content("<html><body><p>The scanner is <b>dead</b>.</p></body></html>",
                     subtype="html")
    desk.send(html)
    arrived = by_recipient(desk.wait(4))
    number = arrived[CUSTOMER]["X-Maild-Ticket"]
    assert "The scanner is dead." in text_of(arrived["bob@example.com"])
    desk.send(reply(arrived["bob@example.com"], "Bob <bob@example.com>",
                    "#take\nHello Ivan, which model is it?"))
    [(recipient, answer)] = desk.wait(1)  # the answer; no "assigned" mail to Bob
    assert recipient == CUSTOMER
    assert answer.get_body(preferencelist=("html",)) is not None  # he wrote HTML
    assert desk.ticket(number)["owner"] == "bob@example.com"
