"""A ticket's conversation with its customer, as read queries written once in SQL:

- `public_messages`: what the customer sees — their own messages and maild's mail to them
  (`mailkinds.TO_CUSTOMERS`), never internal notes, staff members' own mail or staff-only
  notices. The web's status page shows these; the References of every mail to the customer
  name them, so their mail client keeps one thread (`maild.tickets`).
- `cc_addresses`: the ticket's active Cc participants, in the order they joined: the Cc of
  every answer (`maild.tickets`), and `cc` in `ticket show --json` (`maild.views`).

Both run through a `maild.dbapi.Reader`: the writers' in their write transaction, the commands'
on a connection of their own.
"""

from __future__ import annotations

from maild import mailkinds
from maild.dbapi import Reader, Row, instant
from maild.states import Direction, MessageKind

_TO_CUSTOMERS = ", ".join(f"'{kind}'" for kind in mailkinds.TO_CUSTOMERS)


def public_messages(reader: Reader, ticket_id: int) -> list[Row]:
    """The customer's conversation on the ticket, oldest first: `id`, `direction`, `sender`,
    `body`, `message_id`, `created_at` (aware UTC), `inbound_id`, `outbox_id`."""
    rows = reader.rows(
        "SELECT m.id, m.direction, m.sender, m.body, m.message_id, m.created_at, "
        "m.inbound_id, m.outbox_id FROM message m "
        "LEFT JOIN outbox o ON o.id = m.outbox_id "
        "WHERE m.ticket_id = :ticket AND ("
        " (m.direction = :inward AND m.kind = :customer)"
        f" OR (m.direction = :outward AND o.kind IN ({_TO_CUSTOMERS}))) "
        "ORDER BY m.id",
        ticket=ticket_id, inward=Direction.IN.value, customer=MessageKind.CUSTOMER.value,
        outward=Direction.OUT.value)
    for row in rows:
        row["created_at"] = instant(row["created_at"])
    return rows


def cc_addresses(reader: Reader, ticket_id: int) -> list[str]:
    """The ticket's active Cc participants, in the order they joined."""
    return [str(address) for address in reader.column(
        "SELECT address FROM participant WHERE ticket_id = :ticket AND active = :active "
        "ORDER BY id", ticket=ticket_id, active=True)]
