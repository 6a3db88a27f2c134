"""The tables of maild — the only module that defines tables.

The stages meet here and nowhere else:

- `inbound`  raw bytes of every message received, exactly as received (state new|done|failed);
- `ticket`, `message`, `attachment`, `event`  the tickets and their whole correspondence;
- `participant`  the addresses a ticket's answers go to in Cc;
- `outbox`   every message maild owes somebody, rendered and with its Message-ID, written in the
             same transaction as the ticket change that owes it (state pending|sending|sent|
             deferred|dead);
- `status_change`   every status a ticket entered, for the SLA clock;
- `duty`            timer duties done (escalations, close requests), unique per period;
- `ticket_counter`  the per-day counter behind date-based ticket numbers;
- `imap_cursor`     per polled IMAP folder: UIDVALIDITY and the highest UID already stored;
- `undeliverable`   addresses a bounce showed to fail for good: no automatic mail goes to them
                    until they write again (SPEC §9, `maild.undeliverable`).

Instants are stored as UTC and come back timezone-aware (`UTCDateTime`). The state enums are
in `maild.states` (re-exported here), so that reading needs no ORM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from maild.dbapi import instant, stored_utc
from maild.states import (
    Actor,
    Channel,
    Direction,
    EventType,
    InboundState,
    MessageKind,
    OutboxState,
    TicketStatus,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC (SQLite has no zones) and returns them aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else stored_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return instant(value)  # raw SQL on SQLite hands back text


def _utc(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class Queue(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)


class Staff(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True)  # stored lower-case
    name: str = ""
    active: bool = True


class Ticket(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True)
    subject: str
    status: str = Field(default=TicketStatus.NEW, index=True)
    priority: int = 3
    queue_id: int = Field(foreign_key="queue.id", index=True)
    owner: str | None = Field(default=None, index=True)
    customer: str = Field(index=True)  # lower-case address; "" for a phone contact without one
    customer_name: str = ""
    channel: str = Channel.EMAIL
    language: str = "en"
    created_at: datetime = _utc()
    updated_at: datetime = _utc()
    status_since: datetime = _utc()                       # when the current status began
    unattended_since: datetime | None = _utc(default=None)  # SPEC §8; None while attended
    answered_at: datetime | None = _utc(default=None)     # the latest staff answer
    close_requested_at: datetime | None = _utc(default=None)
    breached: bool = False
    next_due_at: datetime | None = _utc(default=None, index=True)  # next timer duty, if any


class StatusChange(SQLModel, table=True):
    """Every status a ticket entered, and when: the SLA clock is computed from these."""

    __tablename__ = "status_change"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = _utc()
    status: str


class Duty(SQLModel, table=True):
    """A timer duty done once: (ticket, kind, period) is unique, so a second tick at the same
    instant — or two workers — can never send the same escalation twice."""

    __table_args__ = (UniqueConstraint("ticket_id", "kind", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    kind: str     # escalation | breach | close_request | auto_close
    period: str   # ISO instant the period began
    done_at: datetime = _utc()


class Message(SQLModel, table=True):
    """One piece of the correspondence: inbound mail, outbound mail, or an internal note."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    direction: str
    kind: str
    sender: str = ""
    recipients: str = ""  # comma-separated addresses (To and Cc)
    subject: str = ""
    body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    message_id: str | None = Field(default=None, index=True)  # without angle brackets
    reply_to: str = ""    # an inbound message's Reply-To address, where answers go (SPEC §5)
    html: bool = False    # the sender wrote HTML: answers to them get an HTML alternative
    inbound_id: int | None = Field(default=None, foreign_key="inbound.id")
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id")
    automatic: bool = False
    created_at: datetime = _utc()


class Participant(SQLModel, table=True):
    """An address in Cc of a ticket (SPEC §4 `tickets.cc_participants`): it gets the staff
    answers in Cc, and its mail threads as a participant's. `#uncc` makes it inactive."""

    __table_args__ = (UniqueConstraint("ticket_id", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    address: str          # lower-case
    active: bool = True
    added_by: str = ""    # the customer whose mail named it, or the staff member
    added_at: datetime = _utc()


class Attachment(SQLModel, table=True):
    """What a message carried; the bytes stay in the message's raw inbound row."""

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    filename: str = ""
    content_type: str = "application/octet-stream"
    size: int = 0


class Event(SQLModel, table=True):
    """The ticket's history: who did what, when."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = _utc()
    type: str             # an EventType
    actor: str = ""       # an address, or an Actor
    detail: str = ""


class Inbound(SQLModel, table=True):
    """A received message, byte for byte, stored before anything acknowledges it."""

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True)  # maild.dedupe: the same message has the same key
    message_id: str = Field(default="", index=True)  # without brackets; "" when it has none
    source: str = ""                      # "pipe", "smtp", "imap:<name>", ...
    envelope_from: str | None = None
    received_at: datetime = _utc()
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int = 0
    state: str = Field(default=InboundState.NEW, index=True)
    reason: str = ""
    attempts: int = 0      # times threading was started: counted before the work (SPEC §9)
    claimed_at: datetime | None = _utc(default=None)  # a worker threading it now (maild.claims)
    claimed_by: str = ""
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    processed_at: datetime | None = _utc(default=None)


class Outbox(SQLModel, table=True):
    """One message to one recipient, rendered when the row was written."""

    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_auto_reply", "rcpt_to", "auto_reply", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    kind: str                             # template name: ack, reopened, ...
    mail_from: str
    rcpt_to: str
    message_id: str = Field(unique=True)  # without angle brackets
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    auto_reply: bool = False              # automatic answer to a sender: counts towards the cap
    state: str = Field(default=OutboxState.PENDING)
    attempts: int = 0
    created_at: datetime = _utc()
    next_attempt_at: datetime = _utc()
    claimed_at: datetime | None = _utc(default=None)
    claimed_by: str = ""                  # "host:pid" of the worker holding the claim
    sent_at: datetime | None = _utc(default=None)
    last_error: str = ""


class ImapCursor(SQLModel, table=True):
    """How far the poller of one IMAP folder got: the highest UID stored, per UIDVALIDITY."""

    __tablename__ = "imap_cursor"

    mailbox: str = Field(primary_key=True)   # the [[imap]] name
    folder: str = Field(primary_key=True)
    uidvalidity: int = Field(default=0, sa_type=BigInteger)  # 32-bit unsigned in IMAP
    last_uid: int = Field(default=0, sa_type=BigInteger)


class Undeliverable(SQLModel, table=True):
    """An address that a permanent bounce showed not to work, until it writes to maild again."""

    address: str = Field(primary_key=True)  # lower-case
    since: datetime = _utc()                # when the bounce came
    status: str = ""                        # RFC 3463 code, e.g. 5.1.1
    diagnostic: str = ""                    # what the remote server said
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")  # where it landed
    inbound_id: int | None = Field(default=None, foreign_key="inbound.id")  # the bounce


class TicketCounter(SQLModel, table=True):
    __tablename__ = "ticket_counter"

    day: str = Field(primary_key=True)  # YYYYMMDD in sla.timezone
    value: int = 0


__all__ = [
    "Actor",
    "Attachment",
    "Channel",
    "Direction",
    "Duty",
    "Event",
    "EventType",
    "ImapCursor",
    "Inbound",
    "InboundState",
    "Message",
    "MessageKind",
    "Outbox",
    "OutboxState",
    "Participant",
    "Queue",
    "Staff",
    "StatusChange",
    "Ticket",
    "TicketCounter",
    "TicketStatus",
    "UTCDateTime",
    "Undeliverable",
]
