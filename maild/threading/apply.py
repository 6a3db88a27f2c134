"""Apply one parsed inbound message to the tickets: open, append, reopen — or, from staff,
answer and command (SPEC §5 and §7).

Everything happens in the caller's transaction through the operations of `maild.tickets`, so a
mail does exactly what the same act on the command line does. Automatic mail (SPEC §6) is
stored like any other but gets no automatic answer and does not reopen a closed ticket — an
out-of-office reply to a closing notice must not restart the work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlmodel import col, select

from maild import tickets
from maild.compose import Envelope
from maild.config import priority_value
from maild.errors import MaildError, UnparseableMessage
from maild.models import (
    Attachment,
    Channel,
    Direction,
    Inbound,
    Message,
    MessageKind,
    Ticket,
    TicketStatus,
)
from maild.outbox import queue_mail
from maild.parsing import ParsedMail
from maild.subject import strip_prefixes
from maild.threading.numbers import next_number
from maild.threading.resolve import resolve
from maild.threading.staffauth import verified_staff
from maild.threading.staffmail import Command, StaffMail, forwarded_senders, read_staff_mail
from maild.tickets import Context

__all__ = ["Applied", "Context", "apply_message"]  # Context is re-exported for the worker


@dataclass(frozen=True)
class Applied:
    ticket: Ticket | None    # None: a staff mail that was refused and is not on any ticket
    created: bool = False
    reopened: bool = False


def apply_message(ctx: Context, inbound: Inbound, mail: ParsedMail) -> Applied:
    customers = _from_the_customer(ctx, mail)
    applied = _apply(ctx, inbound, customers, on_behalf=customers is not mail)
    if applied.ticket is not None and inbound.message_id:
        _note_reused_message_id(ctx, applied.ticket, inbound)
    return applied


def _apply(ctx: Context, inbound: Inbound, mail: ParsedMail, *, on_behalf: bool) -> Applied:
    found = resolve(ctx.session, ctx.settings, mail)
    ticket = found.ticket
    # Mail written on someone's behalf (From maild's own address) is never staff mail, whatever
    # its Reply-To says: a web form must not let a visitor act as staff.
    staff = ctx.settings.is_staff(mail.sender) and not mail.automatic and not on_behalf
    if staff and verified_staff(ctx.settings, mail):
        return _staff_mail(ctx, inbound, mail, ticket)
    if ticket is not None and ticket.status == TicketStatus.CLOSED \
            and not ctx.settings.tickets.reopen_closed:
        # Follow-ups to closed tickets open new ones when reopening is switched off.
        return _new_ticket(ctx, inbound, mail, follows=ticket.number)
    applied = _new_ticket(ctx, inbound, mail, claimed=found.claimed,
                          claimed_in=found.claimed_in) if ticket is None \
        else _append(ctx, ticket, inbound, mail, via=found.via)
    if staff and applied.ticket is not None:  # From a staff address, but not proven so
        tickets.event(ctx, applied.ticket, "staff_unverified", mail.sender,
                      "From a staff address without the Authentication-Results that "
                      "mail.staff_auth requires: handled as a customer message")
    return applied


# --- customers --------------------------------------------------------------------------------


def _from_the_customer(ctx: Context, mail: ParsedMail) -> ParsedMail:
    """Who the customer is (SPEC §5): the From address — unless it is one of maild's own (a web
    form or a forwarding rule writing on a customer's behalf); then the Reply-To, returned as a
    new ParsedMail from that address. maild's own address never becomes a customer: such a
    message naming nobody else cannot be threaded."""
    if not ctx.settings.is_own(mail.sender):
        return mail
    for name, address in mail.reply_to:
        if not ctx.settings.is_own(address):
            return replace(mail, sender=address, sender_name=name)
    raise UnparseableMessage(
        f"From is maild's own address {mail.sender} and no Reply-To names a customer: "
        "maild would answer itself")


def _reply_to(ctx: Context, mail: ParsedMail) -> str:
    """Where answers to this message go, when it asks for another address than its From."""
    return next((address for _, address in mail.reply_to
                 if address != mail.sender and not ctx.settings.is_own(address)), "")


def _new_ticket(
    ctx: Context, inbound: Inbound, mail: ParsedMail, *, claimed: str | None = None,
    claimed_in: str = "subject",
    follows: str | None = None, customer: str | None = None, customer_name: str | None = None,
) -> Applied:
    ticket = tickets.open_ticket(
        ctx, number=next_number(ctx.session, ctx.now, ctx.settings.sla.zone),
        customer=customer or mail.sender,
        customer_name=mail.sender_name if customer_name is None else customer_name,
        subject=mail.subject if customer is None else strip_prefixes(mail.subject),
        channel=Channel.EMAIL, actor=mail.sender,
        language=tickets.language_for(ctx.settings, mail.subject, mail.text))
    if claimed:
        tickets.event(ctx, ticket, "claimed_ticket", mail.sender,
                      f"the {claimed_in} names ticket {claimed}, but the sender is not one "
                      "of its participants")
    if follows:
        tickets.event(ctx, ticket, "follows_closed", mail.sender,
                      f"follow-up to closed ticket {follows} (tickets.reopen_closed = false)")
    _store_message(ctx, ticket, inbound, mail)
    if mail.automatic:
        tickets.event(ctx, ticket, "no_acknowledgement", tickets.SYSTEM,
                      f"automatic message: {mail.automatic_reason}")
    elif customer is None:
        tickets.acknowledge(ctx, ticket, in_reply_to=mail.message_id,
                            references=_thread(mail), html=bool(mail.html),
                            original_subject=mail.subject)
    else:  # staff forwarded a customer's mail: the customer's thread is not this message
        tickets.acknowledge(ctx, ticket, original_subject=ticket.subject)
    return Applied(ticket, created=True)


def _append(ctx: Context, ticket: Ticket, inbound: Inbound, mail: ParsedMail, via: str) -> Applied:
    message = _store_message(ctx, ticket, inbound, mail)
    tickets.event(ctx, ticket, "message_received", mail.sender, f"threaded by {via}")
    ticket.updated_at = ctx.now
    if mail.automatic:
        if ticket.status == TicketStatus.CLOSED:
            tickets.event(ctx, ticket, "not_reopened", tickets.SYSTEM,
                          f"automatic message: {mail.automatic_reason}")
        return Applied(ticket)
    if ticket.status == TicketStatus.CLOSED:
        tickets.reopen(ctx, ticket, mail.sender, message, _excerpt(mail.text),
                       notify_sender=not mail.sender.endswith("@invalid"),
                       html=bool(mail.html))
        return Applied(ticket, reopened=True)
    tickets.customer_wrote(ctx, ticket, mail.sender)
    return Applied(ticket)


# --- staff ------------------------------------------------------------------------------------


def _staff_mail(ctx: Context, inbound: Inbound, mail: ParsedMail,
                ticket: Ticket | None) -> Applied:
    staff = mail.sender
    read = read_staff_mail(mail.text)
    errors = list(read.errors) + _invalid_commands(ctx, read.commands)
    if errors:
        if ticket is not None:
            _store_message(ctx, ticket, inbound, mail, kind=MessageKind.STAFF)
            tickets.event(ctx, ticket, "commands_refused", staff, "; ".join(errors))
        _tell_staff(ctx, ticket, mail, "staff_error", {"errors": errors})
        return Applied(ticket)
    if ticket is None:
        names = forwarded_senders(mail.text)
        customers = [a for a in list(names) + list(mail.to + mail.cc) if not _ours(ctx, a)]
        if not customers:
            _tell_staff(ctx, None, mail, "staff_refused", {})
            return Applied(None)
        applied = _new_ticket(ctx, inbound, mail, customer=customers[0],
                              customer_name=names.get(customers[0], ""))
        assert applied.ticket is not None
        tickets.event(ctx, applied.ticket, "forwarded", staff,
                      f"staff forwarded mail from {customers[0]}")
        return _run_commands(ctx, applied.ticket, staff, read, None, created=True)
    message = _store_message(ctx, ticket, inbound, mail, kind=MessageKind.STAFF,
                             body=read.text)
    return _run_commands(ctx, ticket, staff, read, message, created=False,
                         html=bool(mail.html))


def _run_commands(ctx: Context, ticket: Ticket, staff: str, read: StaffMail,
                  message: Message | None, *, created: bool, html: bool = False) -> Applied:
    names = [c.name for c in read.commands]
    for command in read.commands:
        if command.name == "assign":
            tickets.assign(ctx, ticket, command.argument, staff)
        elif command.name == "queue":
            tickets.move(ctx, ticket, command.argument, staff)
        elif command.name == "priority":
            tickets.prioritise(ctx, ticket, command.argument, staff)
    if message is not None:
        if "note" in names:
            tickets.note(ctx, ticket, staff, read.text, message=message)
        elif read.text.strip():
            tickets.answer(ctx, ticket, staff, read.text, message=message, html=html)
        else:
            tickets.attended(ctx, ticket, staff)
    if "close-request" in names:
        tickets.request_close(ctx, ticket, staff)
    if "close" in names:
        tickets.close(ctx, ticket, staff, "closed by staff mail")
    return Applied(ticket, created=created)


def _invalid_commands(ctx: Context, commands: tuple[Command, ...]) -> list[str]:
    """Check every argument before anything is applied: a mail's commands all run or none."""
    errors = []
    for command in commands:
        try:
            if command.name == "assign":
                tickets.staff_member(ctx.settings, command.argument)
            elif command.name == "queue":
                tickets.queue_named(ctx.session, command.argument)
            elif command.name == "priority":
                priority_value(command.argument)
        except (MaildError, ValueError) as exc:
            errors.append(f"{command.line.strip()}: {exc}")
    if {"close", "close-request"} <= {c.name for c in commands}:
        errors.append("#close and #close-request cannot go together")
    return errors


def _tell_staff(ctx: Context, ticket: Ticket | None, mail: ParsedMail, kind: str,
                context: dict[str, object]) -> None:
    """A short reply to the staff member; never anything to the customer."""
    queue_mail(ctx.session, ctx.settings, ctx.templates, ctx.now, ticket=ticket, kind=kind,
               envelope=Envelope(message_id="", to_address=mail.sender,
                                 to_name=tickets.staff_name(ctx.settings, mail.sender),
                                 in_reply_to=mail.message_id, references=_thread(mail),
                                 auto_submitted="auto-replied"),
               context={"staff_name": tickets.staff_name(ctx.settings, mail.sender),
                        "original_subject": mail.subject, **context})


# --- storing ----------------------------------------------------------------------------------


def _note_reused_message_id(ctx: Context, ticket: Ticket, inbound: Inbound) -> None:
    """A different message under a Message-ID already seen (SPEC §5): stored and threaded on
    its own merits like any other, and the reuse recorded on its ticket."""
    earlier = ctx.session.exec(
        select(Inbound.id, Inbound.ticket_id).where(
            Inbound.message_id == inbound.message_id, col(Inbound.id) != inbound.id)
        .order_by(col(Inbound.id)).limit(1)).first()
    if earlier is None:
        return
    other_id, other_ticket = earlier
    where = ""
    if other_ticket is not None:
        other = ctx.session.get(Ticket, other_ticket)
        where = f", ticket {other.number}" if other is not None else ""
    tickets.event(ctx, ticket, "message_id_reused", tickets.SYSTEM,
                  f"Message-ID <{inbound.message_id}> also names a different message "
                  f"(inbound {other_id}{where}); this one is stored and threaded on its own")


def _store_message(ctx: Context, ticket: Ticket, inbound: Inbound, mail: ParsedMail, *,
                   kind: MessageKind | None = None, body: str | None = None) -> Message:
    assert ticket.id is not None
    message = Message(
        ticket_id=ticket.id, direction=Direction.IN, kind=kind or MessageKind.CUSTOMER,
        sender=mail.sender, recipients=",".join(dict.fromkeys(mail.to + mail.cc)),
        reply_to=_reply_to(ctx, mail), subject=mail.subject,
        body=mail.text if body is None else body,
        message_id=mail.message_id, inbound_id=inbound.id, automatic=mail.automatic,
        created_at=ctx.now)
    ctx.session.add(message)
    ctx.session.flush()
    assert message.id is not None
    for attachment in mail.attachments:
        ctx.session.add(Attachment(message_id=message.id, filename=attachment.filename,
                                   content_type=attachment.content_type, size=attachment.size))
    return message


def _ours(ctx: Context, address: str) -> bool:
    """Staff or maild itself: never the customer of a forwarded mail."""
    return ctx.settings.is_staff(address) or ctx.settings.is_own(address)


def _thread(mail: ParsedMail) -> tuple[str, ...]:
    return mail.references + ((mail.message_id,) if mail.message_id else ())


def _excerpt(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "\n[…]"
