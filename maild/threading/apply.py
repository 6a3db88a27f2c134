"""Apply one parsed inbound message to the tickets: open a new one, append, or reopen.

Everything happens in the caller's transaction: the ticket, its message and attachment rows,
its history events and the outbox rows for the mail it now owes. Automatic mail (SPEC §6) is
stored like any other but gets no automatic answer and does not reopen a closed ticket — an
out-of-office reply to a closing notice must not restart the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from maild.compose import Envelope, Templates
from maild.config import Settings, priority_value
from maild.headers import MAX_SUBJECT, single_line
from maild.models import (
    Attachment,
    Channel,
    Direction,
    Event,
    Inbound,
    Message,
    MessageKind,
    Queue,
    Ticket,
    TicketStatus,
)
from maild.outbox import queue_mail
from maild.parsing import ParsedMail
from maild.threading.numbers import next_number
from maild.threading.resolve import resolve


@dataclass(frozen=True)
class Applied:
    ticket: Ticket
    created: bool = False
    reopened: bool = False


@dataclass(frozen=True)
class Context:
    session: Session
    settings: Settings
    templates: Templates
    now: datetime


def apply_message(ctx: Context, inbound: Inbound, mail: ParsedMail) -> Applied:
    found = resolve(ctx.session, ctx.settings, mail)
    ticket = found.ticket
    if ticket is not None and ticket.status == TicketStatus.CLOSED \
            and not ctx.settings.tickets.reopen_closed:
        # Follow-ups to closed tickets open new ones when reopening is switched off.
        return _new_ticket(ctx, inbound, mail, follows=ticket.number)
    if ticket is None:
        return _new_ticket(ctx, inbound, mail, claimed=found.claimed)
    return _append(ctx, ticket, inbound, mail, via=found.via)


def _new_ticket(
    ctx: Context, inbound: Inbound, mail: ParsedMail, *, claimed: str | None = None,
    follows: str | None = None,
) -> Applied:
    settings, session = ctx.settings, ctx.session
    queue = session.exec(select(Queue).where(Queue.name == settings.tickets.default_queue)).one()
    assert queue.id is not None
    ticket = Ticket(
        number=next_number(session, ctx.now, settings.sla.zone),
        subject=single_line(mail.subject, limit=MAX_SUBJECT) or "(no subject)",
        status=TicketStatus.NEW,
        priority=priority_value(settings.tickets.default_priority),
        queue_id=queue.id,
        customer=mail.sender,
        customer_name=mail.sender_name,
        channel=Channel.EMAIL,
        language=settings.mail.language,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    session.add(ticket)
    session.flush()
    assert ticket.id is not None
    _event(ctx, ticket, "created", mail.sender, f"by email, queue {queue.name!r}")
    if claimed:
        _event(ctx, ticket, "claimed_ticket", mail.sender,
               f"subject quotes ticket {claimed}, but the sender is not one of its participants")
    if follows:
        _event(ctx, ticket, "follows_closed", mail.sender,
               f"follow-up to closed ticket {follows} (tickets.reopen_closed = false)")
    message = _store_message(ctx, ticket, inbound, mail)
    if mail.automatic:
        _event(ctx, ticket, "no_acknowledgement", "maild",
               f"automatic message: {mail.automatic_reason}")
    elif not _reachable(mail.sender):
        _event(ctx, ticket, "no_acknowledgement", "maild",
               f"the sender address {mail.sender} has no domain to answer to")
    else:
        _reply_to_sender(ctx, ticket, mail, message, "ack")
    return Applied(ticket, created=True)


def _append(ctx: Context, ticket: Ticket, inbound: Inbound, mail: ParsedMail, via: str) -> Applied:
    message = _store_message(ctx, ticket, inbound, mail)
    _event(ctx, ticket, "message_received", mail.sender, f"threaded by {via}")
    ticket.updated_at = ctx.now
    from_customer = not ctx.settings.is_staff(mail.sender)
    if ticket.status == TicketStatus.CLOSED:
        if mail.automatic:
            _event(ctx, ticket, "not_reopened", "maild",
                   f"automatic message: {mail.automatic_reason}")
            return Applied(ticket)
        _reopen(ctx, ticket, mail, message)
        return Applied(ticket, reopened=True)
    if from_customer and ticket.status == TicketStatus.WAITING and not mail.automatic:
        _set_status(ctx, ticket, _working_status(ticket), mail.sender, "customer answered")
    return Applied(ticket)


def _reopen(ctx: Context, ticket: Ticket, mail: ParsedMail, message: Message) -> None:
    _set_status(ctx, ticket, _working_status(ticket), mail.sender, "reopened by a new message")
    _event(ctx, ticket, "reopened", mail.sender, f"message {message.message_id or message.id}")
    _reply_to_sender(ctx, ticket, mail, message, "reopened")
    if ticket.owner:
        owner_name = _staff_name(ctx.settings, ticket.owner)
        queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket,
                   kind="reopened_owner",
                   envelope=Envelope(message_id="", to_address=ticket.owner, to_name=owner_name,
                                     in_reply_to=message.message_id,
                                     auto_submitted="auto-generated"),
                   context={"owner_name": owner_name, "sender": mail.sender,
                            "excerpt": _excerpt(mail.text)})


def _reply_to_sender(
    ctx: Context, ticket: Ticket, mail: ParsedMail, message: Message, kind: str
) -> None:
    """An automatic answer to the sender, threaded under their message."""
    if mail.automatic or not _reachable(mail.sender):
        return
    references = mail.references + ((mail.message_id,) if mail.message_id else ())
    queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket, kind=kind,
               envelope=Envelope(message_id="", to_address=mail.sender,
                                 to_name=mail.sender_name, in_reply_to=mail.message_id,
                                 references=references, auto_submitted="auto-replied"),
               context={"customer_name": mail.sender_name or "",
                        "original_subject": mail.subject},
               auto_reply=True)


def _store_message(ctx: Context, ticket: Ticket, inbound: Inbound, mail: ParsedMail) -> Message:
    assert ticket.id is not None
    kind = MessageKind.STAFF if ctx.settings.is_staff(mail.sender) else MessageKind.CUSTOMER
    message = Message(
        ticket_id=ticket.id, direction=Direction.IN, kind=kind, sender=mail.sender,
        recipients=",".join(dict.fromkeys(mail.to + mail.cc)), subject=mail.subject,
        body=mail.text, message_id=mail.message_id, inbound_id=inbound.id,
        automatic=mail.automatic, created_at=ctx.now)
    ctx.session.add(message)
    ctx.session.flush()
    assert message.id is not None
    for attachment in mail.attachments:
        ctx.session.add(Attachment(message_id=message.id, filename=attachment.filename,
                                   content_type=attachment.content_type, size=attachment.size))
    return message


def _reachable(address: str) -> bool:
    """False for the `name@invalid` that parsing makes of a sender without a domain."""
    return not address.endswith("@invalid")


def _working_status(ticket: Ticket) -> TicketStatus:
    return TicketStatus.OPEN if ticket.owner else TicketStatus.NEW


def _set_status(ctx: Context, ticket: Ticket, status: TicketStatus, actor: str, why: str) -> None:
    if ticket.status != status:
        _event(ctx, ticket, "status", actor, f"{ticket.status} -> {status}: {why}")
        ticket.status = status
        ticket.updated_at = ctx.now


def _event(ctx: Context, ticket: Ticket, type_: str, actor: str, detail: str) -> None:
    assert ticket.id is not None
    ctx.session.add(Event(ticket_id=ticket.id, at=ctx.now, type=type_, actor=actor,
                          detail=detail))


def _staff_name(settings: Settings, email: str) -> str:
    return next((s.name for s in settings.staff if s.email.lower() == email.lower()), "")


def _excerpt(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "\n[…]"
