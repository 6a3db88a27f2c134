"""Mail loops (SPEC §6, §9): automatic mail facing maild stays bounded, for a simulated day.

Each scenario runs maild against one or more peers that answer mail by themselves — an RFC 3834
autoresponder, a naive one that marks nothing and answers every mail it gets, a second maild —
with a relay in between that may strip the marks of automatic mail (some do). Time is a
`FixedClock` moved a minute per answer, so a day passes in seconds; the mail really goes through
the database, the threading worker and the outbox Maildir, as it does in `maild run`.

What must hold: every mail a peer sent is stored (nothing lost); maild sends no peer more than
`mail.auto_reply_limit_per_hour` automatic mails in any hour; and the exchange ends or stays at
that rate all day, whatever the peer does.
"""

from __future__ import annotations

import heapq
import itertools
import mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path

import pytest

from maild import config
from maild.app import App
from maild.clock import FixedClock
from maild.ingest.accept import accept
from maild.threading import process_inbound
from tests.conftest import Helpdesk, mail

START = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ANSWER_AFTER = timedelta(minutes=1)
CAP = 5  # mail.auto_reply_limit_per_hour of the desks below
# The marks of automatic mail that a careless relay or list server drops on the way.
AUTOMATIC_MARKS = ("Auto-Submitted", "Precedence", "X-Auto-Response-Suppress", "X-Autoreply",
                   "List-Id", "List-Unsubscribe")

Responder = Callable[[EmailMessage], EmailMessage | None]


class Desk:
    """One maild installation driven by a clock of its own: mail in, threaded, delivered."""

    def __init__(self, helpdesk: Helpdesk) -> None:
        self.clock = FixedClock(START)
        self.app = App(config.load(helpdesk.config), clock=self.clock)
        self.address = self.app.settings.mail.support_address
        self.outbox = helpdesk.root / "var" / "outbox"
        self.taken: set[str] = set()
        self.received = 0

    def receive(self, raw: bytes, at: datetime) -> None:
        self.clock.set(at)
        stored = accept(self.app.pool, raw, source="test", now=at)
        assert not stored.duplicate
        self.received += 1
        process_inbound(self.app.pool, self.app.settings, self.app.templates, self.clock,
                        stored.row_id)
        self.app.deliverer().deliver_due(self.clock)

    def sent_since_last_look(self) -> Iterator[EmailMessage]:
        """The mail this desk delivered that no one has taken yet, oldest first."""
        box = mailbox.Maildir(self.outbox, create=False) if self.outbox.exists() else None
        names = sorted(set(box.keys()) - self.taken) if box is not None else []
        for name in names:
            self.taken.add(name)
            path = Path(self.outbox, "new", name)
            yield BytesParser(policy=policy.default).parsebytes(path.read_bytes())

    def inbound_states(self) -> dict[str, int]:
        with self.app.reading() as reader:
            return {row["state"]: row["n"] for row in reader.rows(
                "SELECT state, count(*) AS n FROM inbound GROUP BY state")}

    def close(self) -> None:
        self.app.close()


def rfc3834_responder(address: str) -> Responder:
    """An out-of-office reply done right: marked `Auto-Submitted: auto-replied`, answering."""
    def answer(message: EmailMessage) -> EmailMessage:
        reply = _reply(address, message, f"Auto: {message['Subject']}")
        reply["Auto-Submitted"] = "auto-replied"
        return reply
    return answer


def naive_responder(address: str) -> Responder:
    """The worst kind: no mark, no In-Reply-To, a fixed subject, an answer to every mail."""
    def answer(message: EmailMessage) -> EmailMessage:
        reply = mail(subject="Out of office", sender=address,
                     to=str(message["Reply-To"] or message["From"]),
                     body="I am away until Monday.\n")
        return reply
    return answer


def _reply(address: str, message: EmailMessage, subject: str) -> EmailMessage:
    return mail(subject=subject, sender=address, to=str(message["Reply-To"] or message["From"]),
                in_reply_to=str(message["Message-ID"]), body="I am away until Monday.\n")


def stripping_relay(message: EmailMessage) -> EmailMessage:
    """A relay that drops every mark of automatic mail (and keeps the rest)."""
    for name in AUTOMATIC_MARKS:
        del message[name]
    return message


@dataclass(order=True)
class _Delivery:
    at: datetime
    order: int
    to: str = field(compare=False)
    raw: bytes = field(compare=False)


@dataclass
class Exchange:
    """Desks and responders passing mail for a day; each answer takes `ANSWER_AFTER`."""

    desks: dict[str, Desk]
    responders: dict[str, Responder]
    relay: Callable[[EmailMessage], EmailMessage] = lambda message: message
    sent: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)  # (from, to)
    _queue: list[_Delivery] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)

    def post(self, message: EmailMessage, at: datetime) -> None:
        to = str(message["To"].addresses[0].addr_spec)
        sender = str(message["From"].addresses[0].addr_spec)
        self.sent.setdefault((sender, to), []).append(at)
        raw = self.relay(message).as_bytes(policy=policy.SMTP)
        heapq.heappush(self._queue, _Delivery(at + ANSWER_AFTER, next(self._order), to, raw))

    def run(self, until: datetime) -> None:
        while self._queue and self._queue[0].at < until:
            delivery = heapq.heappop(self._queue)
            if delivery.to in self.desks:
                desk = self.desks[delivery.to]
                desk.receive(delivery.raw, delivery.at)
                for message in desk.sent_since_last_look():
                    self.post(message, delivery.at)
            elif delivery.to in self.responders:
                message = BytesParser(policy=policy.default).parsebytes(delivery.raw)
                answer = self.responders[delivery.to](message)
                if answer is not None:
                    self.post(answer, delivery.at)
            # Mail to anyone else (staff of a desk) leaves the exchange here.

    def most_in_one_hour(self, sender: str, to: str) -> int:
        times = sorted(self.sent.get((sender, to), []))
        return max((sum(1 for t in times if start <= t < start + timedelta(hours=1))
                    for start in times), default=0)

    def count(self, sender: str, to: str) -> int:
        return len(self.sent.get((sender, to), []))


def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
         domain: str = "example.com") -> Desk:
    root = tmp_path / name
    root.mkdir()
    helpdesk = Helpdesk(root, capsys, cap=CAP, notify="true")
    if domain != "example.com":  # the same installation under another domain, staff included
        helpdesk.config.write_text(helpdesk.config.read_text().replace("example.com", domain))
    return Desk(helpdesk)


@pytest.fixture
def support(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Desk]:
    one = desk(tmp_path, capsys, "support")
    yield one
    one.close()


def test_an_rfc3834_autoresponder_is_never_answered(support: Desk) -> None:
    peer = "away@customer.example"
    exchange = Exchange({support.address: support}, {peer: rfc3834_responder(peer)})
    exchange.post(mail(sender=peer, subject="Printer does not print"), START)
    exchange.run(START + DAY)
    assert exchange.count(support.address, peer) == 1   # the acknowledgement of the first mail
    assert exchange.count(peer, support.address) == 2   # the mail and one automatic answer
    assert support.inbound_states() == {"done": 2}       # both stored, on tickets


def test_two_naive_autoresponders_get_the_hourly_cap_and_no_more_all_day(
    support: Desk,
) -> None:
    peers = ["away@customer.example", "vacation@other-customer.example"]
    exchange = Exchange({support.address: support},
                        {peer: naive_responder(peer) for peer in peers})
    for hour in range(24):  # each also writes by hand now and then, which rearms its loop
        for peer in peers:
            exchange.post(mail(sender=peer, subject=f"Question {hour}"),
                          START + timedelta(hours=hour, minutes=7))
    exchange.run(START + DAY + timedelta(hours=1))
    for peer in peers:
        # Nothing marks the answers automatic, so only the cap stops each round: it is reached
        # every hour, and never passed.
        assert exchange.most_in_one_hour(support.address, peer) == CAP
        assert exchange.count(support.address, peer) <= CAP * 25
    assert support.inbound_states() == {"done": support.received}  # every mail stored


def test_an_rfc3834_autoresponder_behind_a_relay_that_strips_the_marks_ends_at_once(
    support: Desk,
) -> None:
    peer = "away@customer.example"
    exchange = Exchange({support.address: support}, {peer: rfc3834_responder(peer)},
                        stripping_relay)
    exchange.post(mail(sender=peer, subject="Printer does not print"), START)
    exchange.run(START + DAY)
    # Its answer names the acknowledgement, so it joins that ticket, and a follow-up is
    # never acknowledged.
    assert exchange.count(support.address, peer) == 1
    assert exchange.count(peer, support.address) == 2
    assert support.inbound_states() == {"done": 2}


@pytest.mark.parametrize(("relay", "answers_back"),
                         [(lambda message: message, 0), (stripping_relay, 1)],
                         ids=["marks kept", "marks stripped"])
def test_maild_facing_a_second_maild_ends_after_one_acknowledgement_each_way_at_most(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
    relay: Callable[[EmailMessage], EmailMessage], answers_back: int,
) -> None:
    ours, theirs = desk(tmp_path, capsys, "ours"), desk(tmp_path, capsys, "theirs",
                                                       "vendor.example")
    try:
        exchange = Exchange({ours.address: ours, theirs.address: theirs}, {}, relay)
        # Their support desk writes to ours by hand (a real question), from its own address.
        question = mail(sender=f"Vendor support <{theirs.address}>", to=ours.address,
                        subject="Your licence server is down", message_id=make_msgid())
        exchange.post(question, START)
        exchange.run(START + DAY)
        # Ours acknowledges their question. Theirs acknowledges that only when the relay
        # stripped its marks (to theirs, a customer's new mail), and that acknowledgement names
        # our ticket, so it joins it and ours answers nothing more.
        assert exchange.count(ours.address, theirs.address) == 1
        assert exchange.count(theirs.address, ours.address) == 1 + answers_back
        # Mail from a desk's own address to the other is stored by the other, always.
        for one in (ours, theirs):
            assert sum(one.inbound_states().values()) == one.received
    finally:
        ours.close()
        theirs.close()
