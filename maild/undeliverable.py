"""Addresses that get no automatic mail from maild: a permanent bounce marked them, and their
own next mail clears the mark (SPEC §9). The only reader and writer of the `undeliverable`
table: threading marks and clears (`maild.threading.bounced`), the outbox asks (`marked`).
"""

from __future__ import annotations

from datetime import datetime

from maild.bounces import Failure
from maild.tracked import Tracker

# Asked of every automatic mail and every mail a person writes, in the writer's transaction;
# what a block learnt is remembered for the rest of it (`maild.tracked`), and forgotten with it.
_MARKED = "SELECT status, diagnostic FROM undeliverable WHERE address = :address"
_SENT_TO = "SELECT id FROM outbox WHERE rcpt_to = :address LIMIT 1"
_FORGET = "DELETE FROM undeliverable WHERE address = :address"
_MARK = ("INSERT INTO undeliverable (address, since, status, diagnostic, ticket_id, inbound_id) "
         "VALUES (:address, :since, :status, :diagnostic, :ticket_id, :inbound_id)")


def marked(db: Tracker, address: str) -> str:
    """Why `address` gets no automatic mail ("" when it does): what the bounce said. Asked
    once per address in a worker's message (`maild.tracked`): a new ticket asks it of the
    sender when it clears them, then again for their acknowledgement."""
    if _key(address) in db.remembered:
        said: str = db.remembered[_key(address)]
        return said
    row = db.sql.first(_MARKED, address=address.lower())
    if row is None:
        said = ""
    else:
        why = " ".join(x for x in (row["status"], row["diagnostic"][:120]) if x)
        said = f"undeliverable: a bounce said {why}" if why else "undeliverable: it bounced"
    _remember(db, address, said)
    return said


def sent_to(db: Tracker, address: str) -> bool:
    """maild has sent mail to `address`: only such an address can be marked by a bounce (a
    heuristic that read another address out of a notice must not silence anyone)."""
    return db.sql.first(_SENT_TO, address=address.lower()) is not None


def mark(db: Tracker, now: datetime, failure: Failure, ticket_id: int | None,
         inbound_id: int | None) -> None:
    """Mark the failed recipient (again: a later bounce replaces the mark)."""
    _forget(db, failure.recipient)
    db.sql.execute(_MARK, address=failure.recipient.lower(), since=now, status=failure.status,
                  diagnostic=failure.diagnostic[:500], ticket_id=ticket_id,
                  inbound_id=inbound_id)
    _remember(db, failure.recipient, None)  # the next `marked` reads what was written


def clear(db: Tracker, address: str) -> bool:
    """The address wrote to maild: it works again. True when it was marked."""
    if not marked(db, address):
        return False
    _forget(db, address)
    return True


def _forget(db: Tracker, address: str) -> None:
    db.sql.execute(_FORGET, address=address.lower())
    _remember(db, address, "")


def _remember(db: Tracker, address: str, said: str | None) -> None:
    """What `marked` says of `address` for the rest of the block (None: ask)."""
    if said is None:
        db.remembered.pop(_key(address), None)
    else:
        db.remembered[_key(address)] = said


def _key(address: str) -> tuple[str, str]:
    return _MARKED, address.lower()
