"""What can happen to a ticket, each in one place: open, receive, reopen, notify, assign, move,
set priority, answer, note, Cc, ask to close, close.

Every operation runs inside the caller's transaction (`Context.db`, whose tracked objects the
tickets and messages are: `maild.tracked`) and leaves the same
traces: the ticket's fields, an `event` (who, when, what), a `status_change` row when the status
moves, and `outbox` rows for the mail it owes — so the CLI, staff mail (threading) and the
timers (sla) change tickets in exactly the same way. It also keeps the SLA bookkeeping of
SPEC §8: `unattended_since` starts with the ticket or a customer message and ends when staff
act; `next_due_at` is set to "now" so the timer looks at the ticket again.

The lifecycle (the statuses of SPEC §3; every arrow is `set_status`, a `status` event)::

    open_ticket ──▶ new ──── assign ────▶ open ──── answer, request_close ────▶ waiting
                     │                    ▲  ▲                                    │
                     │                    │  └──────── customer_wrote ───────────┘
                     │                    │            (back to `new` if it has no owner)
                     └──────── answer (the answerer becomes owner) ──────────────▶ waiting
    new, open, waiting ──── close (staff; or auto-close after the close request) ──▶ closed
    closed ──── reopen (a customer's message) ──▶ open, or new when it has no owner
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from maild import conversation, mailkinds
from maild.clock import duration_for_people
from maild.compose import OutgoingFile, Templates
from maild.config import Settings, priority_name, priority_value
from maild.dbapi import Row
from maild.errors import NotFound, UsageError
from maild.events import event_values
from maild.headers import MAX_SUBJECT, single_line
from maild.links import status_url
from maild.mailkinds import MailKind
from maild.numbers import next_number
from maild.outbox import queue_mail
from maild.schema import EVENT, MESSAGE, PARTICIPANT, QUEUE, STATUS_CHANGE, TICKET
from maild.states import Actor, Channel, Direction, EventType, MessageKind, TicketStatus
from maild.tracked import Tracker

if TYPE_CHECKING:
    from maild.models import Message, Queue, Ticket

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# `ticket.next_due_at` of a ticket no timer duty will ever concern (closed).
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Context:
    db: Tracker
    settings: Settings
    templates: Templates
    now: datetime


@dataclass(frozen=True)
class Contact:
    """What a customer said, as a notice shows it to staff: the new text (quoted history
    removed) and the files they sent."""

    text: str
    attachments: Sequence[OutgoingFile] = ()


# --- looking things up ------------------------------------------------------------------------


def find(db: Tracker, number: str) -> Ticket:
    ticket = db.first(TICKET, "number = :number", number=number.strip())
    if ticket is None:
        raise NotFound(f"no ticket {number}")
    return ticket


def queue_named(db: Tracker, name: str) -> Queue:
    queues = _queues(db)
    for queue in queues:
        if queue.name.lower() == name.strip().lower():
            return queue
    known = ", ".join(repr(q.name) for q in queues)
    raise UsageError(f"no queue named {name!r}; queues: {known}")


def staff_member(settings: Settings, email: str) -> str:
    """The configured staff address for `email`, or UsageError naming the staff."""
    for member in settings.staff:
        if member.email.lower() == email.strip().lower():
            return member.email.lower()
    known = ", ".join(s.email for s in settings.staff) or "none configured"
    raise UsageError(f"{email} is not a staff member ({known})")


def staff_name(settings: Settings, email: str | None) -> str:
    if not email:
        return ""
    return next((s.name for s in settings.staff if s.email.lower() == email.lower()), "")


def customer_address(ctx: Context, ticket: Ticket) -> str:
    """Where mail to the ticket's customer goes (SPEC §5): the Reply-To of the customer's latest
    message when it has one, else the customer's own address."""
    return _address_of(ticket, _latest_from_customer(ctx.db, ticket))


def cc_of(db: Tracker, ticket: Ticket) -> list[str]:
    """The ticket's active Cc participants, in the order they joined (`maild.conversation`)."""
    assert ticket.id is not None
    return conversation.cc_addresses(db.sql, ticket.id)


def language_for(settings: Settings, *texts: str) -> str:
    """`mail.language`, or with "auto": Russian for a customer who wrote in Cyrillic."""
    if settings.mail.language != "auto":
        return settings.mail.language
    return "ru" if any(_CYRILLIC.search(t or "") for t in texts) else "en"


def reachable(ticket: Ticket) -> bool:
    """The customer has an address mail can go to (a phone contact may have none)."""
    return bool(ticket.customer) and not ticket.customer.endswith("@invalid")


# --- opening ----------------------------------------------------------------------------------


def open_ticket(
    ctx: Context,
    *,
    customer: str,
    customer_name: str,
    subject: str,
    channel: Channel,
    actor: str,
    priority: str | None = None,
    queue: str | None = None,
    language: str = "en",
) -> Ticket:
    """A new ticket with the next number, in its queue (status `new`, unattended from now)."""
    settings, db = ctx.settings, ctx.db
    target = queue_named(db, queue or settings.tickets.default_queue)
    assert target.id is not None
    ticket = db.insert(TICKET, {
        "number": next_number(db, ctx.now, settings.sla.zone),
        "subject": single_line(subject, limit=MAX_SUBJECT) or "(no subject)",
        "status": TicketStatus.NEW,
        "priority": priority_value(priority or settings.tickets.default_priority),
        "queue_id": target.id,
        "customer": customer.lower(),
        "customer_name": single_line(customer_name),
        "channel": channel,
        "language": language,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "status_since": ctx.now,
        "unattended_since": ctx.now,
        "next_due_at": ctx.now,
    })
    assert ticket.id is not None
    db.sql.insert(STATUS_CHANGE, {"ticket_id": ticket.id, "at": ctx.now,
                                 "status": TicketStatus.NEW})
    event(ctx, ticket, EventType.CREATED, actor, f"by {channel}, queue {target.name!r}, "
          f"priority {priority_name(ticket.priority)}")
    return ticket


def open_contact(
    ctx: Context, *, channel: Channel, customer: str, customer_name: str, subject: str,
    body: str, actor: str, priority: str | None = None, queue: str | None = None,
) -> Ticket:
    """A contact that did not come by mail (`maild ticket new`: phone, a web form handled by
    hand): its ticket, the contact as its first message, the acknowledgement and the staff
    notice — as for a mail."""
    if customer and ctx.settings.is_own(customer):
        raise UsageError(f"{customer} is maild's own address, never a customer")
    ticket = open_ticket(ctx, customer=customer, customer_name=customer_name, subject=subject,
                         channel=channel, actor=actor, priority=priority, queue=queue,
                         language=language_for(ctx.settings, subject, body))
    assert ticket.id is not None
    message = ctx.db.insert(MESSAGE, {
        "ticket_id": ticket.id, "direction": Direction.IN, "kind": MessageKind.CUSTOMER,
        "sender": customer.lower(), "subject": ticket.subject, "body": body,
        "created_at": ctx.now})
    acknowledge(ctx, ticket)
    notify_staff(ctx, ticket, message, Contact(body))
    return ticket


def acknowledge(ctx: Context, ticket: Ticket, message: Message | None = None, *,
                original_subject: str = "") -> None:
    """The acknowledgement of SPEC §6, answering `message` (the customer's mail, if it came by
    mail); recorded, not an error, when there is nobody to send to."""
    if not reachable(ticket):
        event(ctx, ticket, EventType.NO_ACKNOWLEDGEMENT, Actor.SYSTEM,
              "the customer has no email address" if not ticket.customer
              else f"the sender address {ticket.customer} has no domain to answer to")
        return
    # The mail that opened the ticket is the whole conversation so far (nothing to read back).
    in_reply_to, references = _customer_thread(ctx, ticket, message, opened=message is not None)
    queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, mailkinds.ACK, ticket=ticket,
               to=_address_of(ticket, message) if message is not None
               else customer_address(ctx, ticket), to_name=ticket.customer_name,
               in_reply_to=in_reply_to, references=references,
               html=bool(message and message.html),
               context={"customer_name": ticket.customer_name,
                        "original_subject": original_subject or ticket.subject,
                        "status_url": status_url(ctx.settings, ticket.number)})


# --- telling staff ----------------------------------------------------------------------------


def notify_staff(ctx: Context, ticket: Ticket, message: Message, contact: Contact, *,
                 new: bool = True) -> None:
    """The staff notice of a customer's message (SPEC §6): of a new ticket to every staff
    member (or its queue's `staff`); of a follow-up to the owner, or as for a new ticket when
    there is none. A reply to a notice answers the customer (SPEC §7)."""
    switched_on = ctx.settings.notify.new_ticket if new else ctx.settings.notify.follow_up
    if not switched_on:
        return
    if new or not ticket.owner:
        recipients = [(m.email.lower(), m.name)
                      for m in ctx.settings.queue_staff(queue_name(ctx, ticket))]
    else:
        recipients = [(ticket.owner, staff_name(ctx.settings, ticket.owner))]
    _notice(ctx, ticket, message, contact, mailkinds.NEW_TICKET if new else mailkinds.FOLLOW_UP,
            recipients)


def _notice(ctx: Context, ticket: Ticket, message: Message, contact: Contact, kind: MailKind,
            recipients: Sequence[tuple[str, str]], **extra: object) -> None:
    files, left_out = _within_limit(ctx, contact.attachments)
    listed = [{"filename": f.filename, "size": len(f.data), "attached": True} for f in files] \
        + [{"filename": f.filename, "size": len(f.data), "attached": False} for f in left_out]
    for address, name in recipients:
        queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, kind, ticket=ticket,
                   to=address, to_name=name, attachments=files,
                   context={"staff_name": name, "sender": message.sender,
                            "customer_name": ticket.customer_name,
                            "priority": priority_name(ticket.priority),
                            "queue": queue_name(ctx, ticket), "owner": ticket.owner or "",
                            "text": contact.text, "attachments": listed,
                            "limit": ctx.settings.mail.max_attachment_bytes, **extra})


def _within_limit(ctx: Context, files: Sequence[OutgoingFile]
                  ) -> tuple[list[OutgoingFile], list[OutgoingFile]]:
    """The files one mail of maild's may carry (`mail.max_attachment_bytes` in all), and the
    rest, which the notice only names."""
    kept: list[OutgoingFile] = []
    left_out: list[OutgoingFile] = []
    total = 0
    for file in files:
        if total + len(file.data) <= ctx.settings.mail.max_attachment_bytes:
            kept.append(file)
            total += len(file.data)
        else:
            left_out.append(file)
    return kept, left_out


# --- the customer writes ----------------------------------------------------------------------


def customer_wrote(ctx: Context, ticket: Ticket, sender: str) -> None:
    """A customer message on an open ticket: work resumes, a new unattended period may begin."""
    ticket.updated_at = ctx.now
    ticket.close_requested_at = None
    if ticket.status == TicketStatus.WAITING:
        set_status(ctx, ticket, _working_status(ticket), sender, "the customer answered")
    _start_unattended(ctx, ticket)


def reopen(ctx: Context, ticket: Ticket, sender: str, message: Message,
           contact: Contact) -> None:
    """A message on a closed ticket: reopened, the customer and the owner told (SPEC §5, §6;
    with no owner, staff are told as of any follow-up). When someone else wrote — a Cc
    participant — the customer's mail shows them in Cc, and they get a copy."""
    set_status(ctx, ticket, _working_status(ticket), sender, "reopened by a new message")
    event(ctx, ticket, EventType.REOPENED, sender, f"message {message.message_id or message.id}")
    ticket.close_requested_at = None
    ticket.unattended_since = None
    _start_unattended(ctx, ticket)
    writer = "" if sender.endswith("@invalid") else (message.reply_to or sender)
    name = ticket.customer_name
    if sender == ticket.customer:
        to, cc = writer, []
    elif reachable(ticket):
        to = customer_address(ctx, ticket)
        cc = [writer] if writer and writer.lower() != to.lower() else []
    else:  # a phone customer without an address: the writer hears of it alone
        to, cc, name = writer, [], ""
    if to:
        in_reply_to, references = _customer_thread(ctx, ticket, message)
        queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, mailkinds.REOPENED,
                   ticket=ticket, to=to, to_name=name, cc=cc, in_reply_to=in_reply_to,
                   references=references, html=message.html,
                   context={"customer_name": name, "original_subject": message.subject,
                            "writer": cc[0] if cc else ""})  # who wrote, when not the customer
    if ticket.owner:
        _notice(ctx, ticket, message, contact, mailkinds.REOPENED_OWNER,
                [(ticket.owner, staff_name(ctx.settings, ticket.owner))],
                owner_name=staff_name(ctx.settings, ticket.owner))
    else:
        notify_staff(ctx, ticket, message, contact, new=False)


def join_cc(ctx: Context, ticket: Ticket, addresses: Sequence[str], actor: str) -> list[str]:
    """Addresses in To/Cc of a customer's mail join the ticket's Cc (SPEC §4
    `tickets.cc_participants`) — never maild's own, staff, or the customer; returns those new."""
    if not ctx.settings.tickets.cc_participants:
        return []
    joined = []
    for address in dict.fromkeys(a.lower() for a in addresses):
        if not _may_be_cc(ctx.settings, ticket, address):
            continue
        if _participant(ctx.db, ticket, address) is None:
            _add_participant(ctx, ticket, address, actor)
            event(ctx, ticket, EventType.CC_ADDED, actor, f"{address} (in the customer's mail)")
            joined.append(address)
    return joined


# --- staff act --------------------------------------------------------------------------------


def assign(ctx: Context, ticket: Ticket, owner: str, actor: str) -> None:
    """Set the owner; the new owner gets the "assigned" mail (SPEC §6) unless they assigned the
    ticket to themselves."""
    owner = staff_member(ctx.settings, owner)
    if ticket.owner == owner:
        return
    event(ctx, ticket, EventType.ASSIGNED, actor, f"owner {ticket.owner or '-'} -> {owner}")
    ticket.owner = owner
    if ticket.status == TicketStatus.NEW:
        set_status(ctx, ticket, TicketStatus.OPEN, actor, "assigned")
    attended(ctx, ticket, actor)
    if owner != actor.lower():
        name = staff_name(ctx.settings, owner)
        queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, mailkinds.ASSIGNED,
                   ticket=ticket, to=owner, to_name=name,
                   context={"owner_name": name,
                            "assigned_by": "" if actor == Actor.OPERATOR else actor,
                            "queue": queue_name(ctx, ticket),
                            "priority": priority_name(ticket.priority),
                            "excerpt": first_customer_text(ctx.db, ticket)})


def move(ctx: Context, ticket: Ticket, queue: str, actor: str) -> None:
    target = queue_named(ctx.db, queue)
    if target.id == ticket.queue_id:
        return
    event(ctx, ticket, EventType.QUEUE, actor,
          f"{queue_name(ctx, ticket)!r} -> {target.name!r}")
    assert target.id is not None
    ticket.queue_id = target.id
    attended(ctx, ticket, actor)


def prioritise(ctx: Context, ticket: Ticket, priority: str, actor: str) -> None:
    try:
        value = priority_value(priority)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if value == ticket.priority:
        return
    event(ctx, ticket, EventType.PRIORITY, actor,
          f"{priority_name(ticket.priority)} -> {priority_name(value)}")
    ticket.priority = value
    attended(ctx, ticket, actor)


def answer(
    ctx: Context, ticket: Ticket, staff: str, text: str, *,
    message: Message | None = None, attachments: Sequence[OutgoingFile] = (),
) -> None:
    """The staff answer of SPEC §6/§7: relayed to the customer (and the ticket's Cc
    participants) from the support address, with the staff member's name and attachments, and
    an HTML alternative when the customer writes HTML; status `waiting`; the sender becomes
    owner when there is none.

    `message` is the staff member's own stored mail, when the answer came by mail."""
    staff = staff_member(ctx.settings, staff)
    if message is None:
        message = _store_text(ctx, ticket, MessageKind.STAFF, staff, text)
    else:
        message.kind = MessageKind.STAFF
    if not ticket.owner:
        event(ctx, ticket, EventType.ASSIGNED, staff, f"owner - -> {staff} (answered)")
        ticket.owner = staff
    if reachable(ticket):
        latest = _latest_from_customer(ctx.db, ticket)
        in_reply_to, references = _customer_thread(ctx, ticket, latest)
        name = staff_name(ctx.settings, staff)
        queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, mailkinds.ANSWER,
                   ticket=ticket, to=_address_of(ticket, latest), to_name=ticket.customer_name,
                   cc=cc_of(ctx.db, ticket), in_reply_to=in_reply_to,
                   references=references, html=bool(latest and latest.html),
                   from_name=f"{name} ({ctx.settings.mail.support_name})" if name else None,
                   attachments=attachments,
                   context={"staff_name": name, "body": text,
                            "customer_name": ticket.customer_name})
    else:
        event(ctx, ticket, EventType.NOT_SENT, staff, "the customer has no email address")
    event(ctx, ticket, EventType.ANSWERED, staff, f"message {message.id}")
    ticket.answered_at = ctx.now  # the customer's silence is counted from here
    set_status(ctx, ticket, TicketStatus.WAITING, staff, "staff answered")
    attended(ctx, ticket, staff)


def note(ctx: Context, ticket: Ticket, staff: str, text: str,
         message: Message | None = None) -> Message:
    """An internal note: stored on the ticket, never sent to the customer."""
    staff = staff_member(ctx.settings, staff)
    if message is None:
        message = _store_text(ctx, ticket, MessageKind.NOTE, staff, text)
    else:
        message.kind = MessageKind.NOTE
    event(ctx, ticket, EventType.NOTE, staff, f"message {message.id}")
    attended(ctx, ticket, staff)
    return message


def cc_candidate(settings: Settings, ticket: Ticket | None, address: str) -> str:
    """`address`, normalised, when it may join `ticket` in Cc (None: a ticket not yet opened);
    UsageError for maild's own, a staff member or the ticket's customer."""
    address = address.strip().lower()
    if not _may_be_cc(settings, ticket, address):
        raise UsageError(f"{address} is maild's own, a staff member or the customer: "
                         "not a Cc participant")
    return address


def cc_participant(db: Tracker, ticket: Ticket | None, address: str) -> str:
    """The address of the active Cc participant `address` of `ticket`, or UsageError."""
    return str(_active_participant(db, ticket, address)["address"])


def _active_participant(db: Tracker, ticket: Ticket | None, address: str) -> Row:
    found = _participant(db, ticket, address.strip().lower()) if ticket else None
    if found is None or not found["active"]:
        raise UsageError(f"{address} is not in Cc of "
                         + (f"ticket {ticket.number}" if ticket else "this ticket"))
    return found


def add_cc(ctx: Context, ticket: Ticket, address: str, actor: str) -> None:
    """`#cc ADDRESS`: the address gets the answers in Cc from now on."""
    address = cc_candidate(ctx.settings, ticket, address)
    found = _participant(ctx.db, ticket, address)
    if found is not None and found["active"]:
        return
    if found is None:
        _add_participant(ctx, ticket, address, actor)
    else:
        _set_active(ctx, found["id"], True)
    event(ctx, ticket, EventType.CC_ADDED, actor, address)
    attended(ctx, ticket, actor)


def remove_cc(ctx: Context, ticket: Ticket, address: str, actor: str) -> None:
    """`#uncc ADDRESS`: no more answers in Cc to that address."""
    found = _active_participant(ctx.db, ticket, address)
    _set_active(ctx, found["id"], False)
    event(ctx, ticket, EventType.CC_REMOVED, actor, found["address"])
    attended(ctx, ticket, actor)


def request_close(ctx: Context, ticket: Ticket, actor: str) -> None:
    """Ask the customer "may we close this ticket?"; the ticket waits for the answer."""
    if ticket.status == TicketStatus.CLOSED:
        raise UsageError(f"ticket {ticket.number} is closed")
    if not reachable(ticket):
        raise UsageError(f"ticket {ticket.number} has no customer address to ask")
    latest = _latest_from_customer(ctx.db, ticket)
    in_reply_to, references = _customer_thread(ctx, ticket, latest)
    kind = mailkinds.CLOSE_REQUEST_AUTO if actor == Actor.SYSTEM else mailkinds.CLOSE_REQUEST
    to = _address_of(ticket, latest)
    queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, kind, ticket=ticket,
               to=to, to_name=ticket.customer_name, in_reply_to=in_reply_to,
               references=references, html=bool(latest and latest.html),
               context={"customer_name": ticket.customer_name,
                        "staff_name": staff_name(ctx.settings, actor),
                        "close_after": duration_for_people(ctx.settings.close.close_after,
                                                           ticket.language, long=True)})
    event(ctx, ticket, EventType.CLOSE_REQUESTED, actor, f"to {to}")
    ticket.close_requested_at = ctx.now
    set_status(ctx, ticket, TicketStatus.WAITING, actor, "asked whether it may be closed")
    if actor != Actor.SYSTEM:
        attended(ctx, ticket, actor)


def close(ctx: Context, ticket: Ticket, actor: str, why: str = "closed") -> None:
    if ticket.status == TicketStatus.CLOSED:
        return
    set_status(ctx, ticket, TicketStatus.CLOSED, actor, why)
    ticket.unattended_since = None
    ticket.close_requested_at = None
    ticket.next_due_at = FAR_FUTURE


# --- bookkeeping ------------------------------------------------------------------------------


def set_status(ctx: Context, ticket: Ticket, status: TicketStatus, actor: str, why: str) -> None:
    if ticket.status == status:
        return
    assert ticket.id is not None
    event(ctx, ticket, EventType.STATUS, actor, f"{ticket.status} -> {status}: {why}")
    ticket.status = status
    ticket.status_since = ctx.now
    ticket.updated_at = ctx.now
    ticket.next_due_at = ctx.now  # the timer looks at it again
    ctx.db.sql.insert(STATUS_CHANGE, {"ticket_id": ticket.id, "at": ctx.now, "status": status})


def attended(ctx: Context, ticket: Ticket, actor: str) -> None:
    """A staff member acted: the unattended period (SPEC §8) ends."""
    if actor != Actor.SYSTEM:
        ticket.unattended_since = None
        ticket.next_due_at = ctx.now
    ticket.updated_at = ctx.now


def event(ctx: Context, ticket: Ticket, type_: EventType, actor: str, detail: str) -> None:
    assert ticket.id is not None
    ctx.db.sql.insert(EVENT, event_values(ticket.id, ctx.now, type_, actor, detail))


def first_customer_text(db: Tracker, ticket: Ticket, limit: int = 1000) -> str:
    text = db.sql.value(_FIRST_TEXT, ticket=ticket.id, incoming=Direction.IN.value) or ""
    return text if len(text) <= limit else text[:limit].rstrip() + "\n[…]"


def _customer_thread(ctx: Context, ticket: Ticket, answering: Message | None, *,
                     opened: bool = False) -> tuple[str | None, tuple[str, ...]]:
    """In-Reply-To and References of mail to the customer: the message it answers, after the
    Message-IDs of the customer's conversation so far (their mail and maild's to them), so
    their mail client keeps it in one thread. `opened`: `answering` opened the ticket, so it is
    all the conversation there is."""
    assert ticket.id is not None
    said = [answering.message_id] if opened and answering is not None else \
        [m["message_id"] for m in conversation.public_messages(ctx.db.sql, ticket.id)]
    thread: list[str] = [mid for mid in said if mid]
    in_reply_to = answering.message_id if answering is not None else None
    if in_reply_to:
        thread = [mid for mid in thread if mid != in_reply_to] + [in_reply_to]
    return in_reply_to, tuple(thread)


def _may_be_cc(settings: Settings, ticket: Ticket | None, address: str) -> bool:
    """Cc participants are the customer's other correspondents: never maild's own address, a
    staff member (they get notices) or the customer (they get the mail in To)."""
    return not (settings.is_own(address) or settings.is_staff(address)
                or (ticket is not None and address == ticket.customer))


def _participant(db: Tracker, ticket: Ticket, address: str) -> Row | None:
    """The participant row, as a row: written at once when it changes, not tracked, because
    the Cc of an answer later in the same block is read in SQL (`cc_of`)."""
    return db.sql.first("SELECT id, address, active FROM participant "
                        "WHERE ticket_id = :ticket AND address = :address",
                        ticket=ticket.id, address=address)


def _set_active(ctx: Context, participant_id: int, active: bool) -> None:
    ctx.db.sql.execute("UPDATE participant SET active = :active WHERE id = :id",
                       active=active, id=participant_id)


def _add_participant(ctx: Context, ticket: Ticket, address: str, actor: str) -> None:
    ctx.db.sql.insert(PARTICIPANT, {"ticket_id": ticket.id, "address": address,
                                   "added_by": actor, "added_at": ctx.now})


def _start_unattended(ctx: Context, ticket: Ticket) -> None:
    if ticket.unattended_since is None:
        ticket.unattended_since = ctx.now
        ticket.next_due_at = ctx.now


def _working_status(ticket: Ticket) -> TicketStatus:
    return TicketStatus.OPEN if ticket.owner else TicketStatus.NEW


def _store_text(ctx: Context, ticket: Ticket, kind: MessageKind, staff: str,
                text: str) -> Message:
    assert ticket.id is not None
    return ctx.db.insert(MESSAGE, {"ticket_id": ticket.id, "direction": Direction.IN,
                                   "kind": kind, "sender": staff, "subject": ticket.subject,
                                   "body": text, "created_at": ctx.now})


def _address_of(ticket: Ticket, latest: Message | None) -> str:
    """The Reply-To of the customer's latest message `latest`, else the customer's address."""
    return (latest.reply_to if latest else "") or ticket.customer


def _latest_from_customer(db: Tracker, ticket: Ticket) -> Message | None:
    return db.first(MESSAGE, "ticket_id = :ticket AND direction = :incoming AND kind = :kind "
                    "AND sender = :customer ORDER BY id DESC LIMIT 1", ticket=ticket.id,
                    incoming=Direction.IN.value, kind=MessageKind.CUSTOMER.value,
                    customer=ticket.customer)


_FIRST_TEXT = ("SELECT body FROM message WHERE ticket_id = :ticket AND direction = :incoming "
               "ORDER BY id LIMIT 1")


def queue_name(ctx: Context, ticket: Ticket) -> str:
    """The name of the ticket's queue ("" should it be gone)."""
    return next((q.name for q in _queues(ctx.db) if q.id == ticket.queue_id), "")


def _queues(db: Tracker) -> list[Queue]:
    """The queues, read once per tracking block: reference data that only `maild init`
    writes."""
    key = ("maild.queues",)
    queues: list[Queue] | None = db.remembered.get(key)
    if queues is None:
        queues = db.remembered[key] = db.all(QUEUE)
    return queues
