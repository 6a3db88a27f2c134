"""Which ticket does an inbound message belong to? SPEC §5, in its order.

Staff take part in every ticket — once the mail proves it is theirs. Whether it does is
`mail.staff_auth`'s question (`maild.threading.staffauth`), asked once by the caller and passed
in as `staff`: a staff From line without that proof is read like anyone else's, and the
standing a staff address has on a ticket (the notices it was sent, the answers it wrote) is the
staff member's, so it counts for nothing unproven. With the default `"from"` the From line is
the proof.

1. Subject: a known ticket number in any form of `maild.subject.find_numbers` (`[Ticket#N]`,
   `Ticket N`, `#N`, `заявка №N`...) — honoured only from a participant of that ticket (its
   customer, an address on its correspondence, or proven staff). Mail from proven staff counts
   only maild's own tag, `[Ticket#N]` or `Ticket#N` (SPEC §7 "names the ticket by its tag"):
   a colleague forwarding a customer's "заявка №N" mail must not answer ticket N with it.
2. References: In-Reply-To / References naming any Message-ID stored on a ticket or sent by
   maild about it. A Message-ID maild signed for the sender (`maild.signing`: it got that mail
   from maild) is proof enough; any other — a customer's own Message-ID, which a stranger may
   know from a list or a Cc, one maild sent to somebody else, or one from before signing — is
   honoured only from a participant, as a number is. For automatic mail (bounces, delivery
   reports) the Message-ID of a message maild sent quoted in the report's returned headers
   ("returned message") finds the ticket too.
3. Text: a known ticket number named in the text in the same forms, the new text (without
   quoted history and signature) first — again only from a participant. Not for mail from
   proven staff: staff name a ticket by its subject (SPEC §7), and a colleague's forward of a
   customer's mail that mentions an old ticket must not become an answer on that ticket.
Otherwise a new ticket; when a non-participant named a known number or referred to a known
ticket's message, the claim is recorded with where it was made (subject, then references, then
text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maild.config import Settings
from maild.dbapi import bound_list
from maild.parsing import ParsedMail
from maild.schema import TICKET
from maild.signing import signed_for
from maild.states import Direction
from maild.subject import find_numbers, find_tags
from maild.threading.staffmail import new_text
from maild.tracked import Tracker

if TYPE_CHECKING:
    from maild.models import Ticket

_QUOTED_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)

# Rule 3 reads only the start of the text: a customer names the ticket near the top, and a huge
# body (a pasted log) must cost no more than a small one.
TEXT_SCAN_CHARS = 64 * 1024
# A customer names one or two tickets; a text with dozens of numbers is a list, not a reference.
# Looking up only the first few keeps every mail to one small query per place.
NUMBERS_PER_PLACE = 20

# Who takes part in a ticket: asked for nearly every reply, in SQL; the tickets themselves are
# the tracker's objects, to be changed.
_CC_PARTICIPANT = "SELECT id FROM participant WHERE ticket_id = :ticket AND address = :address"
_ON_CORRESPONDENCE = ("SELECT sender, recipients FROM message WHERE ticket_id = :ticket "
                      "AND (sender = :address OR recipients LIKE '%' || :address || '%') "
                      "LIMIT 100")


@dataclass(frozen=True)
class Resolution:
    ticket: Ticket | None
    via: str = ""                # "subject", "references", "returned message", "text"; "": new
    claimed: str | None = None   # a known ticket a non-participant named or referred to
    claimed_in: str = ""         # where: "subject", "references" or "text"


def resolve(db: Tracker, settings: Settings, mail: ParsedMail, *,
            staff: bool) -> Resolution:
    """The ticket `mail` belongs to, or the claim it makes. `staff`: its sender is proven to be
    the staff member its From line names (`maild.threading.staffauth.verified_staff`)."""
    tag = settings.mail.subject_tag
    named = find_tags(mail.subject, tag) if staff else find_numbers(mail.subject, tag)
    ticket, subject_claim = _by_number(db, settings, mail.sender, named, staff=staff)
    if ticket is not None:
        return Resolution(ticket, via="subject")
    ticket, reference_claim = _by_proven_reference(db, settings, mail, staff=staff)
    if ticket is not None:
        return Resolution(ticket, via="references")
    if mail.automatic:
        # A bounce or delivery report quotes the message it is about; when that is one maild
        # sent, the report belongs on that ticket (where the failed delivery is visible). It is
        # a reference to a Message-ID maild sent, so it comes before a number in the text.
        ticket = _by_reference(db, _returned_message_ids(mail.text), sent_only=True)
        if ticket is not None:
            return Resolution(ticket, via="returned message")
    text_claim = None
    if not staff:
        ticket, text_claim = _by_number(db, settings, mail.sender,
                                        _text_numbers(mail.text, tag), staff=False)
        if ticket is not None:
            return Resolution(ticket, via="text")
    if subject_claim:
        return Resolution(None, claimed=subject_claim, claimed_in="subject")
    if reference_claim:
        return Resolution(None, claimed=reference_claim, claimed_in="references")
    if text_claim:
        return Resolution(None, claimed=text_claim, claimed_in="text")
    return Resolution(None)


def is_participant(db: Tracker, settings: Settings, ticket: Ticket, address: str, *,
                   staff: bool) -> bool:
    """Its customer, proven staff (`staff`), one of its Cc participants, or an address on its
    correspondence. An unproven staff address is only ever its customer: it is on the
    correspondence of every ticket its staff member was notified of or answered."""
    address = address.lower()
    if staff or address == ticket.customer:
        return True
    if settings.is_staff(address):
        return False
    if db.sql.first(_CC_PARTICIPANT, ticket=ticket.id, address=address):
        return True
    # LIKE is a substring test; confirm the whole address on the candidates.
    return any(row["sender"] == address or address in row["recipients"].split(",")
               for row in db.sql.rows(_ON_CORRESPONDENCE, ticket=ticket.id, address=address))


def _by_number(db: Tracker, settings: Settings, sender: str, numbers: list[str], *,
               staff: bool) -> tuple[Ticket | None, str | None]:
    """The first ticket among `numbers` the sender takes part in; else (None, the first known
    number, which the sender claimed) — unknown numbers are skipped."""
    numbers = numbers[:NUMBERS_PER_PLACE]
    if not numbers:
        return None, None
    known = {t.number: t for t in db.load(TICKET, "number", numbers)}
    claimed: str | None = None
    for number in numbers:
        ticket = known.get(number)
        if ticket is None:
            continue
        if is_participant(db, settings, ticket, sender, staff=staff):
            return ticket, None
        claimed = claimed or number
    return None, claimed


def _text_numbers(text: str, tag: str) -> list[str]:
    """Numbers named in the text: those of the new text first, then those in quoted history,
    forwarded mail and signature (a reply that only quotes our acknowledgement still counts)."""
    head = text[:TEXT_SCAN_CHARS]
    return list(dict.fromkeys(find_numbers(new_text(head), tag) + find_numbers(head, tag)))


def _returned_message_ids(text: str) -> tuple[str, ...]:
    """Message-IDs quoted in a report's text (its returned headers), at most a few."""
    return tuple(dict.fromkeys(_QUOTED_MESSAGE_ID.findall(text)))[:10]


def _by_proven_reference(db: Tracker, settings: Settings, mail: ParsedMail, *,
                         staff: bool) -> tuple[Ticket | None, str | None]:
    """The ticket of the first reference the sender may use — signed for them, or on a ticket
    they take part in; else (None, the ticket of the first reference, which they claimed)."""
    claimed: str | None = None
    participant: dict[int, bool] = {}
    for message_id, ticket in _references(db, mail.thread_ids):
        if signed_for(settings, message_id, mail.sender):
            return ticket, None
        assert ticket.id is not None
        if ticket.id not in participant:
            participant[ticket.id] = is_participant(db, settings, ticket, mail.sender,
                                                    staff=staff)
        if participant[ticket.id]:
            return ticket, None
        claimed = claimed or ticket.number
    return None, claimed


def _by_reference(db: Tracker, message_ids: tuple[str, ...],
                  sent_only: bool = False) -> Ticket | None:
    found = _references(db, message_ids, sent_only)
    return found[0][1] if found else None


def _references(db: Tracker, message_ids: tuple[str, ...],
                sent_only: bool = False) -> list[tuple[str, Ticket]]:
    """The referenced Message-IDs stored on a ticket or sent by maild about one, with that
    ticket, in the order of `message_ids`."""
    if not message_ids:
        return []
    listed, wanted = bound_list("m", message_ids)
    # ascending ids: when two tickets hold the same Message-ID the newest one wins
    found = {row["message_id"]: row["ticket_id"] for row in db.sql.rows(
        f"SELECT ticket_id, message_id FROM message WHERE message_id IN ({listed})"
        + (" AND direction = :out" if sent_only else "") + " ORDER BY id",
        **wanted, out=Direction.OUT.value)}
    # Every copy maild sent has a Message-ID of its own (the Cc copies of an answer too).
    found.update({row["message_id"]: row["ticket_id"] for row in db.sql.rows(
        f"SELECT ticket_id, message_id FROM outbox WHERE message_id IN ({listed}) "
        "AND ticket_id IS NOT NULL", **wanted) if row["message_id"] not in found})
    tickets = {t.id: t for t in db.load(TICKET, "id", list(set(found.values())))}
    # In-Reply-To first, then the newest reference
    return [(mid, tickets[found[mid]]) for mid in message_ids
            if mid in found and found[mid] in tickets]
