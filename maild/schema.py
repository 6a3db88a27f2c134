"""The column shapes of maild's tables, as plain data: what the writers that import no ORM need
to insert a row and read one back — the threading worker, the timers and the commands that
change tickets (`maild.dbapi.Reader.insert`, `maild.tracked`).

The tables are defined once, in `maild.models` (SQLModel: `maild init`, Alembic and the tests
use it). What follows the marker below is copied from it by `make schema`
(`python -m maild.schemagen`), and tests/test_schema.py fails while it is not current. Without
this, every such process imported SQLModel, pydantic and SQLAlchemy only to learn a table's
columns: half a second of CPU and some 50 MiB (issue #12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from maild.models import (
        Attachment,
        Duty,
        Event,
        ImapCursor,
        Inbound,
        Message,
        Outbox,
        Participant,
        Queue,
        Staff,
        StatusChange,
        Ticket,
        TicketCounter,
        Undeliverable,
    )

_Row = TypeVar("_Row")


@dataclass(frozen=True, eq=False)  # one object per table: hashed by identity, as a cache key
class Table(Generic[_Row]):
    """One table: its name, its model's name, its `id` key (None for another key), its columns
    (the key first), the default of each other column, which hold instants (stored as naive
    UTC, read back aware) and which booleans. `_Row` is its model, for the type checker only:
    the rows read through it are plain objects (`maild.tracked`)."""

    name: str
    model: str
    key: str | None
    columns: tuple[str, ...]
    defaults: dict[str, Any]
    instants: frozenset[str]
    flags: frozenset[str]


# --- written by `make schema` (python -m maild.schemagen) from maild.models ---

ATTACHMENT: Table[Attachment] = Table(
    'attachment', 'Attachment', key='id',
    columns=('id', 'message_id', 'filename', 'content_type', 'size'),
    defaults={'message_id': None, 'filename': '', 'content_type': 'application/octet-stream',
              'size': 0},
    instants=frozenset(),
    flags=frozenset())


DUTY: Table[Duty] = Table(
    'duty', 'Duty', key='id',
    columns=('id', 'ticket_id', 'kind', 'period', 'done_at'),
    defaults={'ticket_id': None, 'kind': None, 'period': None, 'done_at': None},
    instants=frozenset({'done_at'}),
    flags=frozenset())


EVENT: Table[Event] = Table(
    'event', 'Event', key='id',
    columns=('id', 'ticket_id', 'at', 'type', 'actor', 'detail'),
    defaults={'ticket_id': None, 'at': None, 'type': None, 'actor': '', 'detail': ''},
    instants=frozenset({'at'}),
    flags=frozenset())


IMAP_CURSOR: Table[ImapCursor] = Table(
    'imap_cursor', 'ImapCursor', key=None,
    columns=('mailbox', 'folder', 'uidvalidity', 'last_uid'),
    defaults={'mailbox': None, 'folder': None, 'uidvalidity': 0, 'last_uid': 0},
    instants=frozenset(),
    flags=frozenset())


INBOUND: Table[Inbound] = Table(
    'inbound', 'Inbound', key='id',
    columns=('id', 'dedupe_key', 'message_id', 'source', 'envelope_from', 'received_at', 'raw',
             'size', 'state', 'reason', 'attempts', 'claimed_at', 'claimed_by', 'ticket_id',
             'processed_at'),
    defaults={'dedupe_key': None, 'message_id': '', 'source': '', 'envelope_from': None,
              'received_at': None, 'raw': None, 'size': 0, 'state': 'new', 'reason': '',
              'attempts': 0, 'claimed_at': None, 'claimed_by': '', 'ticket_id': None,
              'processed_at': None},
    instants=frozenset({'claimed_at', 'processed_at', 'received_at'}),
    flags=frozenset())


MESSAGE: Table[Message] = Table(
    'message', 'Message', key='id',
    columns=('id', 'ticket_id', 'direction', 'kind', 'sender', 'recipients', 'subject', 'body',
             'message_id', 'reply_to', 'html', 'inbound_id', 'outbox_id', 'automatic',
             'created_at'),
    defaults={'ticket_id': None, 'direction': None, 'kind': None, 'sender': '', 'recipients': '',
              'subject': '', 'body': '', 'message_id': None, 'reply_to': '', 'html': False,
              'inbound_id': None, 'outbox_id': None, 'automatic': False, 'created_at': None},
    instants=frozenset({'created_at'}),
    flags=frozenset({'automatic', 'html'}))


OUTBOX: Table[Outbox] = Table(
    'outbox', 'Outbox', key='id',
    columns=('id', 'ticket_id', 'kind', 'mail_from', 'rcpt_to', 'message_id', 'raw', 'auto_reply',
             'state', 'attempts', 'created_at', 'next_attempt_at', 'claimed_at', 'claimed_by',
             'sent_at', 'last_error'),
    defaults={'ticket_id': None, 'kind': None, 'mail_from': None, 'rcpt_to': None,
              'message_id': None, 'raw': None, 'auto_reply': False, 'state': 'pending',
              'attempts': 0, 'created_at': None, 'next_attempt_at': None, 'claimed_at': None,
              'claimed_by': '', 'sent_at': None, 'last_error': ''},
    instants=frozenset({'claimed_at', 'created_at', 'next_attempt_at', 'sent_at'}),
    flags=frozenset({'auto_reply'}))


PARTICIPANT: Table[Participant] = Table(
    'participant', 'Participant', key='id',
    columns=('id', 'ticket_id', 'address', 'active', 'added_by', 'added_at'),
    defaults={'ticket_id': None, 'address': None, 'active': True, 'added_by': '',
              'added_at': None},
    instants=frozenset({'added_at'}),
    flags=frozenset({'active'}))


QUEUE: Table[Queue] = Table(
    'queue', 'Queue', key='id',
    columns=('id', 'name'),
    defaults={'name': None},
    instants=frozenset(),
    flags=frozenset())


STAFF: Table[Staff] = Table(
    'staff', 'Staff', key='id',
    columns=('id', 'email', 'name', 'active'),
    defaults={'email': None, 'name': '', 'active': True},
    instants=frozenset(),
    flags=frozenset({'active'}))


STATUS_CHANGE: Table[StatusChange] = Table(
    'status_change', 'StatusChange', key='id',
    columns=('id', 'ticket_id', 'at', 'status'),
    defaults={'ticket_id': None, 'at': None, 'status': None},
    instants=frozenset({'at'}),
    flags=frozenset())


TICKET: Table[Ticket] = Table(
    'ticket', 'Ticket', key='id',
    columns=('id', 'number', 'subject', 'status', 'priority', 'queue_id', 'owner', 'customer',
             'customer_name', 'channel', 'language', 'created_at', 'updated_at', 'status_since',
             'unattended_since', 'answered_at', 'close_requested_at', 'breached', 'next_due_at'),
    defaults={'number': None, 'subject': None, 'status': 'new', 'priority': 3, 'queue_id': None,
              'owner': None, 'customer': None, 'customer_name': '', 'channel': 'email',
              'language': 'en', 'created_at': None, 'updated_at': None, 'status_since': None,
              'unattended_since': None, 'answered_at': None, 'close_requested_at': None,
              'breached': False, 'next_due_at': None},
    instants=frozenset({'answered_at', 'close_requested_at', 'created_at', 'next_due_at',
                        'status_since', 'unattended_since', 'updated_at'}),
    flags=frozenset({'breached'}))


TICKET_COUNTER: Table[TicketCounter] = Table(
    'ticket_counter', 'TicketCounter', key=None,
    columns=('day', 'value'),
    defaults={'day': None, 'value': 0},
    instants=frozenset(),
    flags=frozenset())


UNDELIVERABLE: Table[Undeliverable] = Table(
    'undeliverable', 'Undeliverable', key=None,
    columns=('address', 'since', 'status', 'diagnostic', 'ticket_id', 'inbound_id'),
    defaults={'address': None, 'since': None, 'status': '', 'diagnostic': '', 'ticket_id': None,
              'inbound_id': None},
    instants=frozenset({'since'}),
    flags=frozenset())
