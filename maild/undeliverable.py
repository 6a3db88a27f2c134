"""Addresses that get no automatic mail from maild: a permanent bounce marked them, and their
own next mail clears the mark (SPEC §9). The only reader and writer of the `undeliverable`
table: threading marks and clears (`maild.threading.bounced`), the outbox asks (`marked`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, insert
from sqlmodel import Session, col, select

from maild.bounces import Failure
from maild.models import Outbox, Undeliverable

# Asked of every automatic mail and every mail a person writes: built once (see maild.outbox).
_MARKED = select(col(Undeliverable.address), col(Undeliverable.since),
                 col(Undeliverable.status), col(Undeliverable.diagnostic)).where(
    col(Undeliverable.address) == bindparam("address"))
_SENT_TO = select(col(Outbox.id)).where(col(Outbox.rcpt_to) == bindparam("address")).limit(1)


def marked(session: Session, address: str) -> str:
    """Why `address` gets no automatic mail ("" when it does): what the bounce said."""
    row = session.connection().execute(_MARKED, {"address": address.lower()}).first()
    if row is None:
        return ""
    said = " ".join(x for x in (row.status, row.diagnostic[:120]) if x)
    return f"undeliverable: a bounce said {said}" if said else "undeliverable: it bounced"


def sent_to(session: Session, address: str) -> bool:
    """maild has sent mail to `address`: only such an address can be marked by a bounce (a
    heuristic that read another address out of a notice must not silence anyone)."""
    return session.connection().execute(_SENT_TO, {"address": address.lower()}).first() \
        is not None


def mark(session: Session, now: datetime, failure: Failure, ticket_id: int | None,
         inbound_id: int | None) -> None:
    """Mark the failed recipient (again: a later bounce replaces the mark). Core statements,
    not ORM objects: the worker settles many messages in one session, and a mark cleared by a
    later message of the same batch must not linger in the session's identity map."""
    _forget(session, failure.recipient)
    session.connection().execute(insert(Undeliverable).values(
        address=failure.recipient, since=now, status=failure.status,
        diagnostic=failure.diagnostic[:500], ticket_id=ticket_id, inbound_id=inbound_id))


def clear(session: Session, address: str) -> bool:
    """The address wrote to maild: it works again. True when it was marked."""
    if not marked(session, address):
        return False
    _forget(session, address)
    return True


def _forget(session: Session, address: str) -> None:
    session.connection().execute(delete(Undeliverable).where(
        col(Undeliverable.address) == address.lower()))
