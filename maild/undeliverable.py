"""Addresses that get no automatic mail from maild: a permanent bounce marked them, and their
own next mail clears the mark (SPEC §9). The only reader and writer of the `undeliverable`
table: threading marks and clears (`maild.threading.bounced`), the outbox asks (`marked`).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from maild.bounces import Failure
from maild.rows import rows_of
from maild.tracked import tracker_of

# Asked of every automatic mail and every mail a person writes: straight to the driver, in the
# session's transaction (`maild.rows`). None of it goes through the session's identity map, so
# a mark cleared by a later message of the same batch cannot linger there.
_MARKED = "SELECT status, diagnostic FROM undeliverable WHERE address = :address"
_SENT_TO = "SELECT id FROM outbox WHERE rcpt_to = :address LIMIT 1"
_FORGET = "DELETE FROM undeliverable WHERE address = :address"
_MARK = ("INSERT INTO undeliverable (address, since, status, diagnostic, ticket_id, inbound_id) "
         "VALUES (:address, :since, :status, :diagnostic, :ticket_id, :inbound_id)")


def marked(session: Session, address: str) -> str:
    """Why `address` gets no automatic mail ("" when it does): what the bounce said. Asked
    once per address in a worker's message (`maild.tracked`): a new ticket asks it of the
    sender when it clears them, then again for their acknowledgement."""
    tracker = tracker_of(session)
    if tracker is not None and _key(address) in tracker.remembered:
        said: str = tracker.remembered[_key(address)]
        return said
    row = rows_of(session).first(_MARKED, address=address.lower())
    if row is None:
        said = ""
    else:
        why = " ".join(x for x in (row["status"], row["diagnostic"][:120]) if x)
        said = f"undeliverable: a bounce said {why}" if why else "undeliverable: it bounced"
    _remember(session, address, said)
    return said


def sent_to(session: Session, address: str) -> bool:
    """maild has sent mail to `address`: only such an address can be marked by a bounce (a
    heuristic that read another address out of a notice must not silence anyone)."""
    return rows_of(session).first(_SENT_TO, address=address.lower()) is not None


def mark(session: Session, now: datetime, failure: Failure, ticket_id: int | None,
         inbound_id: int | None) -> None:
    """Mark the failed recipient (again: a later bounce replaces the mark)."""
    _forget(session, failure.recipient)
    rows_of(session).execute(_MARK, address=failure.recipient.lower(), since=now,
                             status=failure.status, diagnostic=failure.diagnostic[:500],
                             ticket_id=ticket_id, inbound_id=inbound_id)
    _remember(session, failure.recipient, None)  # the next `marked` reads what was written


def clear(session: Session, address: str) -> bool:
    """The address wrote to maild: it works again. True when it was marked."""
    if not marked(session, address):
        return False
    _forget(session, address)
    return True


def _forget(session: Session, address: str) -> None:
    rows_of(session).execute(_FORGET, address=address.lower())
    _remember(session, address, "")


def _remember(session: Session, address: str, said: str | None) -> None:
    """What `marked` says of `address` for the rest of the worker's message (None: ask)."""
    tracker = tracker_of(session)
    if tracker is None:
        return
    if said is None:
        tracker.remembered.pop(_key(address), None)
    else:
        tracker.remembered[_key(address)] = said


def _key(address: str) -> tuple[str, str]:
    return _MARKED, address.lower()
