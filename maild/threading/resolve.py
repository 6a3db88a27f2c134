"""Which ticket does an inbound message belong to? SPEC §5, in its order.

1. A tag with a known number in the subject — honoured only from a participant of that ticket
   (its customer, an address on its correspondence, or staff).
2. In-Reply-To / References naming any Message-ID stored on a ticket or sent by maild about it;
   such a reference is proof enough whoever sends it.
3. For automatic mail only (bounces, delivery reports): the Message-ID of a message maild sent,
   quoted in the report's returned headers.
Otherwise a new ticket; when a non-participant quoted a known tag, the claim is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import or_
from sqlmodel import Session, col, select

from maild.config import Settings
from maild.models import Direction, Message, Ticket
from maild.parsing import ParsedMail
from maild.subject import find_numbers

_QUOTED_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Resolution:
    ticket: Ticket | None
    via: str = ""                # "subject", "references" or "" for a new ticket
    claimed: str | None = None   # a known number quoted by a non-participant


def resolve(session: Session, settings: Settings, mail: ParsedMail) -> Resolution:
    claimed: str | None = None
    for number in find_numbers(mail.subject, settings.mail.subject_tag):
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
        if ticket is None:
            continue
        if is_participant(session, settings, ticket, mail.sender):
            return Resolution(ticket, via="subject")
        claimed = claimed or number
    ticket = _by_reference(session, mail.thread_ids)
    if ticket is not None:
        return Resolution(ticket, via="references")
    if mail.automatic:
        # A bounce or delivery report quotes the message it is about; when that is one maild
        # sent, the report belongs on that ticket (where the failed delivery is visible).
        ticket = _by_reference(session, _returned_message_ids(mail.text), sent_only=True)
        if ticket is not None:
            return Resolution(ticket, via="returned message")
    return Resolution(None, claimed=claimed)


def is_participant(session: Session, settings: Settings, ticket: Ticket, address: str) -> bool:
    address = address.lower()
    if address == ticket.customer or settings.is_staff(address):
        return True
    query = select(Message.sender, Message.recipients).where(
        Message.ticket_id == ticket.id,
        or_(col(Message.sender) == address, col(Message.recipients).contains(address)),
    )
    # `contains` is a substring test; confirm the whole address on the candidates.
    return any(sender == address or address in recipients.split(",")
               for sender, recipients in session.exec(query.limit(100)))


def _returned_message_ids(text: str) -> tuple[str, ...]:
    """Message-IDs quoted in a report's text (its returned headers), at most a few."""
    return tuple(dict.fromkeys(_QUOTED_MESSAGE_ID.findall(text)))[:10]


def _by_reference(session: Session, message_ids: tuple[str, ...],
                  sent_only: bool = False) -> Ticket | None:
    if not message_ids:
        return None
    query = select(Message.ticket_id, Message.message_id).where(
        Message.message_id.in_(message_ids)  # type: ignore[union-attr]
    ).order_by(Message.id)  # type: ignore[arg-type]
    if sent_only:
        query = query.where(Message.direction == Direction.OUT)
    # ascending ids: when two tickets hold the same Message-ID the newest one wins
    found = {mid: ticket_id for ticket_id, mid in session.exec(query)}
    for mid in message_ids:  # In-Reply-To first, then the newest reference
        if mid in found:
            return session.get(Ticket, found[mid])
    return None
