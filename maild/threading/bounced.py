"""A bounce of mail maild sent, on the tickets (SPEC §9): which ticket it lands on, which address
it marks undeliverable, who is told — and an address that writes again losing its mark.

`maild.bounces.detect_message` gives the verdict on the tree the worker parsed
(`ParsedMail.message`: only automatic mail is asked, and only it keeps its tree — a person's
mail is never a bounce); this module decides what it does. The bounce lands on the ticket of
the mail it returns: the one resolution found (its References, or the maild Message-ID quoted
in its returned headers), else the returned mail's Message-ID as the detector read it, else the
ticket of the newest mail maild sent to the failed address — a bounce comes minutes after the
mail it returns, so that is the mail it most likely returns, whether the address is a
customer's, a Cc participant's or a staff member's, and whether that ticket is open or closed
(a bounce reopens nothing). A bounce that names no mail or address of maild's is left to the
usual path (a ticket of its own, never answered).

The caller stores it like any automatic mail (never reopened, never answered); `record` adds
the event `bounce_received`, marks each permanently failed recipient that maild really sent
mail to (event `address_undeliverable`) and tells the ticket's owner — or the staff of its queue
when it has none, as for a follow-up — in an internal notice, switched by `[notify] bounce`
(on by default, and on whatever `[notify] follow_up` says: mail to a customer that never
arrives is the owner's to know). A temporary failure (4.x.x, delayed) is recorded and marks
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from maild import mailkinds, tickets, undeliverable
from maild.bounces import Failure, Verdict, detect_message
from maild.outbox import queue_mail
from maild.parsing import ParsedMail
from maild.schema import TICKET
from maild.states import Actor, EventType
from maild.threading.resolve import Resolution
from maild.tickets import Context

if TYPE_CHECKING:
    from maild.models import Ticket

_TICKET_OF_SENT = ("SELECT ticket_id FROM outbox WHERE message_id = :message_id "
                   "AND ticket_id IS NOT NULL LIMIT 1")
_TICKET_OF_NEWEST_TO = ("SELECT ticket_id FROM outbox WHERE rcpt_to = :address "
                        "AND ticket_id IS NOT NULL ORDER BY id DESC LIMIT 1")


@dataclass(frozen=True)
class Bounce:
    ticket: Ticket
    via: str          # how it found its ticket, for the `message_received` event
    verdict: Verdict


def read(ctx: Context, mail: ParsedMail, found: Resolution) -> Bounce | None:
    """The bounce this automatic message is, with the ticket it lands on; None when it is no
    bounce, or returns nothing maild sent."""
    if not mail.automatic:
        return None
    assert mail.message is not None  # `parse_message` keeps the tree of automatic mail
    verdict = detect_message(mail.message)
    if not verdict.bounce:
        return None
    if found.ticket is not None:
        return Bounce(found.ticket, found.via, verdict)
    if verdict.original_message_id:
        ticket = _ticket(ctx, _TICKET_OF_SENT, message_id=verdict.original_message_id)
        if ticket is not None:
            return Bounce(ticket, "returned message", verdict)
    for address in verdict.recipients:
        ticket = _ticket(ctx, _TICKET_OF_NEWEST_TO, address=address)
        if ticket is not None:
            return Bounce(ticket, f"failed recipient {address}", verdict)
    return None


def record(ctx: Context, bounce: Bounce, inbound_id: int) -> None:
    """What the bounce stored on `bounce.ticket` does: the event, the marks, the notice."""
    ticket, verdict = bounce.ticket, bounce.verdict
    kind = "permanent" if verdict.permanent else "temporary"
    tickets.event(ctx, ticket, EventType.BOUNCE_RECEIVED, Actor.SYSTEM,
                  f"{kind} delivery failure ({verdict.detector}): {verdict.summary()}")
    failures: list[Failure] = []
    for failure in verdict.failures:
        if not (failure.permanent and failure.recipient) or failure.recipient in \
                {f.recipient for f in failures}:
            continue
        if not undeliverable.sent_to(ctx.db, failure.recipient):
            continue  # not an address of maild's mail: nothing of ours to hold back
        undeliverable.mark(ctx.db, ctx.now, failure, ticket.id, inbound_id)
        code = " ".join(c for c in (failure.status, failure.diagnostic) if c)
        tickets.event(ctx, ticket, EventType.ADDRESS_UNDELIVERABLE, Actor.SYSTEM,
                      f"{failure.recipient}{': ' + code if code else ''}; no automatic mail "
                      "goes to it until it writes again")
        failures.append(failure)
    if failures:
        _tell_staff(ctx, ticket, [{"recipient": f.recipient, "status": f.status,
                                   "diagnostic": f.diagnostic} for f in failures])


def wrote_again(ctx: Context, mail: ParsedMail) -> str:
    """A person's mail: its From address is deliverable again. Returns that address when it
    was marked ("" else), for `deliverable_again` once the mail is on its ticket."""
    if mail.automatic or not undeliverable.clear(ctx.db, mail.sender):
        return ""
    return mail.sender


def deliverable_again(ctx: Context, ticket: Ticket, address: str) -> None:
    tickets.event(ctx, ticket, EventType.ADDRESS_DELIVERABLE, address,
                  f"{address} wrote again: automatic mail goes to it again")


def _tell_staff(ctx: Context, ticket: Ticket, failures: list[dict[str, str]]) -> None:
    """The owner — or, without one, the staff of the ticket's queue — learns of it
    (`[notify] bounce`); internal mail only, never to the customer."""
    if not ctx.settings.notify.bounce:
        return
    if ticket.owner:
        recipients = [(ticket.owner, tickets.staff_name(ctx.settings, ticket.owner))]
    else:
        recipients = [(m.email.lower(), m.name)
                      for m in ctx.settings.queue_staff(tickets.queue_name(ctx, ticket))]
    for address, name in recipients:
        queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, mailkinds.BOUNCE_NOTICE,
                   ticket=ticket, to=address, to_name=name,
                   context={"staff_name": name, "failures": failures})


def _ticket(ctx: Context, query: str, **values: str) -> Ticket | None:
    return ctx.db.get(TICKET, ctx.db.sql.value(query, **values))
