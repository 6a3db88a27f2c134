"""What can happen to a ticket, each in one place: open, receive, reopen, assign, move, set
priority, answer, note, ask to close, close.

Every operation runs inside the caller's transaction (`Context.session`) and leaves the same
traces: the ticket's fields, an `event` (who, when, what), a `status_change` row when the status
moves, and `outbox` rows for the mail it owes — so the CLI, staff mail (threading) and the
timers (sla) change tickets in exactly the same way. It also keeps the SLA bookkeeping of
SPEC §8: `unattended_since` starts with the ticket or a customer message and ends when staff
act; `next_due_at` is set to "now" so the timer looks at the ticket again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from maild.clock import duration_for_people
from maild.compose import Envelope, Templates
from maild.config import Settings, priority_name, priority_value
from maild.errors import NotFound, UsageError
from maild.headers import MAX_SUBJECT, single_line
from maild.models import (
    Channel,
    Direction,
    Event,
    Message,
    MessageKind,
    Queue,
    StatusChange,
    Ticket,
    TicketStatus,
)
from maild.outbox import queue_mail

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
SYSTEM = "maild"          # the actor of what maild does by itself (timers, notices)
OPERATOR = "operator"     # the actor of a command run without --staff
# `ticket.next_due_at` of a ticket no timer duty will ever concern (closed).
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Context:
    session: Session
    settings: Settings
    templates: Templates
    now: datetime


# --- looking things up ------------------------------------------------------------------------


def find(session: Session, number: str) -> Ticket:
    ticket = session.exec(select(Ticket).where(Ticket.number == number.strip())).first()
    if ticket is None:
        raise NotFound(f"no ticket {number}")
    return ticket


def queue_named(session: Session, name: str) -> Queue:
    queues = list(session.exec(select(Queue)))
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
    latest = ctx.session.exec(select(Message.reply_to).where(
        Message.ticket_id == ticket.id, Message.direction == Direction.IN,
        Message.kind == MessageKind.CUSTOMER, Message.sender == ticket.customer)
        .order_by(col(Message.id).desc()).limit(1)).first()
    return latest or ticket.customer


def language_for(settings: Settings, *texts: str) -> str:
    """`mail.language`, or with "auto": Russian for a customer who wrote in Cyrillic."""
    if settings.mail.language != "auto":
        return settings.mail.language
    return "ru" if any(_CYRILLIC.search(t or "") for t in texts) else "en"


# --- opening ----------------------------------------------------------------------------------


def open_ticket(
    ctx: Context,
    *,
    number: str,
    customer: str,
    customer_name: str,
    subject: str,
    channel: Channel,
    actor: str,
    priority: str | None = None,
    queue: str | None = None,
    language: str = "en",
) -> Ticket:
    """A new ticket in its queue (status `new`, unattended from now)."""
    settings, session = ctx.settings, ctx.session
    target = queue_named(session, queue or settings.tickets.default_queue)
    assert target.id is not None
    ticket = Ticket(
        number=number,
        subject=single_line(subject, limit=MAX_SUBJECT) or "(no subject)",
        status=TicketStatus.NEW,
        priority=priority_value(priority or settings.tickets.default_priority),
        queue_id=target.id,
        customer=customer.lower(),
        customer_name=single_line(customer_name),
        channel=channel,
        language=language,
        created_at=ctx.now,
        updated_at=ctx.now,
        status_since=ctx.now,
        unattended_since=ctx.now,
        next_due_at=ctx.now,
    )
    session.add(ticket)
    session.flush()
    assert ticket.id is not None
    session.add(StatusChange(ticket_id=ticket.id, at=ctx.now, status=TicketStatus.NEW))
    event(ctx, ticket, "created", actor, f"by {channel}, queue {target.name!r}, "
          f"priority {priority_name(ticket.priority)}")
    return ticket


def acknowledge(
    ctx: Context, ticket: Ticket, *, in_reply_to: str | None = None,
    references: tuple[str, ...] = (), html: bool = False, original_subject: str = "",
) -> None:
    """The acknowledgement of SPEC §6; recorded, not an error, when there is nobody to send to."""
    if not ticket.customer or ticket.customer.endswith("@invalid"):
        event(ctx, ticket, "no_acknowledgement", SYSTEM,
              "the customer has no email address" if not ticket.customer
              else f"the sender address {ticket.customer} has no domain to answer to")
        return
    queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket, kind="ack",
               envelope=Envelope(message_id="", to_address=customer_address(ctx, ticket),
                                 to_name=ticket.customer_name, in_reply_to=in_reply_to,
                                 references=references, auto_submitted="auto-replied",
                                 html=html),
               context={"customer_name": ticket.customer_name,
                        "original_subject": original_subject or ticket.subject},
               auto_reply=True)


# --- the customer writes ----------------------------------------------------------------------


def customer_wrote(ctx: Context, ticket: Ticket, sender: str) -> None:
    """A customer message on an open ticket: work resumes, a new unattended period may begin."""
    ticket.updated_at = ctx.now
    ticket.close_requested_at = None
    if ticket.status == TicketStatus.WAITING:
        set_status(ctx, ticket, _working_status(ticket), sender, "the customer answered")
    _start_unattended(ctx, ticket)


def reopen(ctx: Context, ticket: Ticket, sender: str, message: Message, excerpt: str,
           *, notify_sender: bool, html: bool = False) -> None:
    """A message on a closed ticket: reopened, the customer and the owner told (SPEC §5)."""
    set_status(ctx, ticket, _working_status(ticket), sender, "reopened by a new message")
    event(ctx, ticket, "reopened", sender, f"message {message.message_id or message.id}")
    ticket.close_requested_at = None
    ticket.unattended_since = None
    _start_unattended(ctx, ticket)
    if notify_sender:
        name = ticket.customer_name if sender == ticket.customer else ""
        queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket,
                   kind="reopened",
                   envelope=Envelope(message_id="", to_address=message.reply_to or sender,
                                     to_name=name,
                                     in_reply_to=message.message_id,
                                     auto_submitted="auto-replied", html=html),
                   context={"customer_name": name, "original_subject": message.subject},
                   auto_reply=True)
    if ticket.owner:
        owner_name = staff_name(ctx.settings, ticket.owner)
        queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket,
                   kind="reopened_owner",
                   envelope=Envelope(message_id="", to_address=ticket.owner, to_name=owner_name,
                                     in_reply_to=message.message_id,
                                     auto_submitted="auto-generated"),
                   context={"owner_name": owner_name, "sender": sender, "excerpt": excerpt})


# --- staff act --------------------------------------------------------------------------------


def assign(ctx: Context, ticket: Ticket, owner: str, actor: str, *,
           notify: bool | None = None) -> None:
    """Set the owner; the new owner gets the "assigned" mail (SPEC §6) — by default unless
    they assigned the ticket to themselves; `notify=True` tells them in any case."""
    owner = staff_member(ctx.settings, owner)
    if ticket.owner == owner:
        return
    event(ctx, ticket, "assigned", actor, f"owner {ticket.owner or '-'} -> {owner}")
    ticket.owner = owner
    if ticket.status == TicketStatus.NEW:
        set_status(ctx, ticket, TicketStatus.OPEN, actor, "assigned")
    attended(ctx, ticket, actor)
    if notify or (notify is None and owner != actor.lower()):
        name = staff_name(ctx.settings, owner)
        queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket,
                   kind="assigned",
                   envelope=Envelope(message_id="", to_address=owner, to_name=name,
                                     auto_submitted="auto-generated"),
                   context={"owner_name": name, "assigned_by": actor,
                            "queue": _queue_name(ctx, ticket),
                            "priority": priority_name(ticket.priority),
                            "excerpt": first_customer_text(ctx.session, ticket)})


def move(ctx: Context, ticket: Ticket, queue: str, actor: str) -> None:
    target = queue_named(ctx.session, queue)
    if target.id == ticket.queue_id:
        return
    event(ctx, ticket, "queue", actor, f"{_queue_name(ctx, ticket)!r} -> {target.name!r}")
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
    event(ctx, ticket, "priority", actor,
          f"{priority_name(ticket.priority)} -> {priority_name(value)}")
    ticket.priority = value
    attended(ctx, ticket, actor)


def answer(
    ctx: Context, ticket: Ticket, staff: str, text: str, *,
    message: Message | None = None, html: bool = False,
) -> None:
    """The staff answer of SPEC §6/§7: relayed to the customer from the support address, with
    the staff member's name; status `waiting`; the sender becomes owner when there is none.

    `message` is the staff member's own stored mail, when the answer came by mail."""
    staff = staff_member(ctx.settings, staff)
    if message is None:
        message = _store_text(ctx, ticket, MessageKind.STAFF, staff, text)
    if not ticket.owner:
        event(ctx, ticket, "assigned", staff, f"owner - -> {staff} (answered)")
        ticket.owner = staff
    if ticket.customer and not ticket.customer.endswith("@invalid"):
        last = _last_customer_message(ctx.session, ticket)
        references = tuple(m for m in (last.message_id if last else None,) if m)
        name = staff_name(ctx.settings, staff)
        queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket,
                   kind="reply",
                   envelope=Envelope(message_id="", to_address=customer_address(ctx, ticket),
                                     to_name=ticket.customer_name,
                                     in_reply_to=references[0] if references else None,
                                     references=references,
                                     from_name=f"{name} ({ctx.settings.mail.support_name})"
                                     if name else None, html=html),
                   context={"staff_name": name, "body": text,
                            "customer_name": ticket.customer_name},
                   message_kind=MessageKind.STAFF)
    else:
        event(ctx, ticket, "not_sent", staff, "the customer has no email address")
    event(ctx, ticket, "answered", staff, f"message {message.id}")
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
    event(ctx, ticket, "note", staff, f"message {message.id}")
    attended(ctx, ticket, staff)
    return message


def request_close(ctx: Context, ticket: Ticket, actor: str) -> None:
    """Ask the customer "may we close this ticket?"; the ticket waits for the answer."""
    if ticket.status == TicketStatus.CLOSED:
        raise UsageError(f"ticket {ticket.number} is closed")
    if not ticket.customer or ticket.customer.endswith("@invalid"):
        raise UsageError(f"ticket {ticket.number} has no customer address to ask")
    last = _last_customer_message(ctx.session, ticket)
    queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket,
               kind="close_request",
               envelope=Envelope(message_id="", to_address=customer_address(ctx, ticket),
                                 to_name=ticket.customer_name,
                                 in_reply_to=last.message_id if last else None,
                                 references=(last.message_id,) if last and last.message_id
                                 else (), auto_submitted="auto-generated"
                                 if actor == SYSTEM else None),
               context={"customer_name": ticket.customer_name,
                        "staff_name": staff_name(ctx.settings, actor),
                        "close_after": duration_for_people(ctx.settings.close.close_after,
                                                           ticket.language, long=True)})
    event(ctx, ticket, "close_requested", actor, f"to {customer_address(ctx, ticket)}")
    ticket.close_requested_at = ctx.now
    set_status(ctx, ticket, TicketStatus.WAITING, actor, "asked whether it may be closed")
    if actor != SYSTEM:
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
    event(ctx, ticket, "status", actor, f"{ticket.status} -> {status}: {why}")
    ticket.status = status
    ticket.status_since = ctx.now
    ticket.updated_at = ctx.now
    ticket.next_due_at = ctx.now  # the timer looks at it again
    ctx.session.add(StatusChange(ticket_id=ticket.id, at=ctx.now, status=status))


def attended(ctx: Context, ticket: Ticket, actor: str) -> None:
    """A staff member acted: the unattended period (SPEC §8) ends."""
    if actor != SYSTEM:
        ticket.unattended_since = None
        ticket.next_due_at = ctx.now
    ticket.updated_at = ctx.now


def event(ctx: Context, ticket: Ticket, type_: str, actor: str, detail: str) -> None:
    assert ticket.id is not None
    ctx.session.add(Event(ticket_id=ticket.id, at=ctx.now, type=type_, actor=actor,
                          detail=detail[:2000]))


def first_customer_text(session: Session, ticket: Ticket, limit: int = 1000) -> str:
    first = session.exec(select(Message).where(
        Message.ticket_id == ticket.id, Message.direction == Direction.IN)
        .order_by(col(Message.id))).first()
    text = first.body if first else ""
    return text if len(text) <= limit else text[:limit].rstrip() + "\n[…]"


def _start_unattended(ctx: Context, ticket: Ticket) -> None:
    if ticket.unattended_since is None:
        ticket.unattended_since = ctx.now
        ticket.next_due_at = ctx.now


def _working_status(ticket: Ticket) -> TicketStatus:
    return TicketStatus.OPEN if ticket.owner else TicketStatus.NEW


def _store_text(ctx: Context, ticket: Ticket, kind: MessageKind, staff: str,
                text: str) -> Message:
    assert ticket.id is not None
    message = Message(ticket_id=ticket.id, direction=Direction.IN, kind=kind, sender=staff,
                      subject=ticket.subject, body=text, created_at=ctx.now)
    ctx.session.add(message)
    ctx.session.flush()
    return message


def _last_customer_message(session: Session, ticket: Ticket) -> Message | None:
    return session.exec(select(Message).where(
        Message.ticket_id == ticket.id, Message.direction == Direction.IN,
        Message.kind == MessageKind.CUSTOMER).order_by(col(Message.id).desc())).first()


def _queue_name(ctx: Context, ticket: Ticket) -> str:
    queue = ctx.session.get(Queue, ticket.queue_id)
    return queue.name if queue else ""
