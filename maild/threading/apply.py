"""Apply one parsed inbound message to the tickets: open, append, reopen — or, from staff,
answer, note and command (SPEC §5 and §7).

Everything happens in the caller's transaction through the operations of `maild.tickets`, so a
mail does exactly what the same act on the command line does. Automatic mail (SPEC §6) is
stored like any other but gets no automatic answer, tells no staff member, and does not reopen
a closed ticket — an out-of-office reply to a closing notice must not restart the work.

A staff member's mail is the answer to the customer when it replies to a notice of a customer's
message, or names the ticket by its tag; when it replies to internal mail (an escalation, an
assignment, a refusal) it is an internal note unless it starts with `#reply`. Which mail it
replies to is read from its In-Reply-To/References against the Message-IDs in the outbox, and
what that mail was from its kind (`maild.mailkinds`), so it works from any mail client.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from maild import mailkinds, tickets
from maild.compose import OutgoingFile
from maild.config import priority_name, priority_value
from maild.dbapi import bound_list
from maild.errors import MaildError, UnparseableMessage
from maild.mailkinds import MailKind
from maild.outbox import queue_mail
from maild.parsing import ParsedMail
from maild.schema import ATTACHMENT, MESSAGE, TICKET
from maild.states import Actor, Channel, Direction, EventType, MessageKind, TicketStatus
from maild.subject import strip_prefixes
from maild.threading import bounced
from maild.threading.resolve import resolve
from maild.threading.staffauth import verified_staff
from maild.threading.staffmail import (
    Command,
    StaffMail,
    forwarded_senders,
    new_text,
    read_staff_mail,
)
from maild.tickets import Contact, Context

if TYPE_CHECKING:
    from maild.models import Message, Ticket

# Context is re-exported for the worker
__all__ = ["Applied", "Context", "Received", "apply_message"]

# The event of a claim (`Resolution.claimed_in`): where the stranger named the ticket.
_CLAIMS = {"subject": "the subject names", "text": "the text names",
           "references": "In-Reply-To/References name a message of"}


@dataclass(frozen=True)
class Received:
    """What applying a message needs of its stored `inbound` row."""

    id: int
    source: str      # "web" for the web channel's own submissions (see `_new_ticket`)
    message_id: str  # "" when it has none


@dataclass(frozen=True)
class Applied:
    ticket: Ticket | None    # None: a staff mail that was refused and is not on any ticket
    created: bool = False
    reopened: bool = False


def apply_message(ctx: Context, inbound: Received, mail: ParsedMail) -> Applied:
    customers = _from_the_customer(ctx, mail)
    deliverable = bounced.wrote_again(ctx, mail)  # first: its own acknowledgement goes (§9)
    applied = _apply(ctx, inbound, customers, on_behalf=customers is not mail)
    if applied.ticket is not None and inbound.message_id:
        _note_reused_message_id(ctx, applied.ticket, inbound)
    if deliverable and applied.ticket is not None:
        bounced.deliverable_again(ctx, applied.ticket, deliverable)
    return applied


def _apply(ctx: Context, inbound: Received, mail: ParsedMail, *, on_behalf: bool) -> Applied:
    # Is it the staff member its From line names? Asked once, here: the answer decides both
    # which ticket it may join (a proven staff member takes part in every ticket, SPEC §5) and
    # whether its commands run (SPEC §7). Mail written on someone's behalf (From maild's own
    # address) is never staff mail, whatever its Reply-To says: a web form must not let a
    # visitor act as staff.
    from_staff = ctx.settings.is_staff(mail.sender) and not on_behalf
    proven = from_staff and verified_staff(ctx.settings, mail)
    found = resolve(ctx.db, ctx.settings, mail, staff=proven)
    bounce = bounced.read(ctx, mail, found)
    if bounce is not None:  # SPEC §9: on the ticket of the mail it returns, never answered
        return _bounce(ctx, inbound, mail, bounce)
    ticket = found.ticket
    staff = from_staff and not mail.automatic
    if staff and proven:
        return _staff_mail(ctx, inbound, mail, ticket)
    if ticket is not None and ticket.status == TicketStatus.CLOSED \
            and not ctx.settings.tickets.reopen_closed:
        # Follow-ups to closed tickets open new ones when reopening is switched off.
        return _new_ticket(ctx, inbound, mail, follows=ticket.number)
    applied = _new_ticket(ctx, inbound, mail, claimed=found.claimed,
                          claimed_in=found.claimed_in) if ticket is None \
        else _append(ctx, ticket, inbound, mail, via=found.via)
    if staff and applied.ticket is not None:  # From a staff address, but not proven so
        tickets.event(ctx, applied.ticket, EventType.STAFF_UNVERIFIED, mail.sender,
                      "From a staff address without the proof that mail.staff_auth "
                      "requires: handled as a customer message")
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
    ctx: Context, inbound: Received, mail: ParsedMail, *, claimed: str | None = None,
    claimed_in: str = "subject", follows: str | None = None,
) -> Applied:
    # The web channel stores its submissions with the source "web" (only it can): their
    # priority is the form's. Anyone else's mail could claim any priority in that header.
    web = inbound.source == Channel.WEB
    ticket = tickets.open_ticket(
        ctx, customer=mail.sender, customer_name=mail.sender_name, subject=mail.subject,
        channel=Channel.WEB if web else Channel.EMAIL, actor=mail.sender,
        priority=_priority(mail.requested_priority) if web else None,
        language=tickets.language_for(ctx.settings, mail.subject, mail.text))
    if claimed:
        tickets.event(ctx, ticket, EventType.CLAIMED_TICKET, mail.sender,
                      f"{_CLAIMS[claimed_in]} ticket {claimed}, but the sender is not one "
                      "of its participants")
    if follows:
        tickets.event(ctx, ticket, EventType.FOLLOWS_CLOSED, mail.sender,
                      f"follow-up to closed ticket {follows} (tickets.reopen_closed = false)")
    message = _store_message(ctx, ticket, inbound, mail)
    if mail.automatic:
        tickets.event(ctx, ticket, EventType.NO_ACKNOWLEDGEMENT, Actor.SYSTEM,
                      f"automatic message: {mail.automatic_reason}")
        return Applied(ticket, created=True)
    tickets.join_cc(ctx, ticket, mail.to + mail.cc, mail.sender)
    tickets.acknowledge(ctx, ticket, message, original_subject=mail.subject)
    tickets.notify_staff(ctx, ticket, message, _contact(mail))
    return Applied(ticket, created=True)


def _append(ctx: Context, ticket: Ticket, inbound: Received, mail: ParsedMail, via: str) -> Applied:
    message = _store_message(ctx, ticket, inbound, mail)
    tickets.event(ctx, ticket, EventType.MESSAGE_RECEIVED, mail.sender, f"threaded by {via}")
    ticket.updated_at = ctx.now
    if mail.automatic:
        if ticket.status == TicketStatus.CLOSED:
            tickets.event(ctx, ticket, EventType.NOT_REOPENED, Actor.SYSTEM,
                          f"automatic message: {mail.automatic_reason}")
        return Applied(ticket)
    tickets.join_cc(ctx, ticket, mail.to + mail.cc, mail.sender)
    if ticket.status == TicketStatus.CLOSED:
        tickets.reopen(ctx, ticket, mail.sender, message, _contact(mail))
        return Applied(ticket, reopened=True)
    tickets.customer_wrote(ctx, ticket, mail.sender)
    tickets.notify_staff(ctx, ticket, message, _contact(mail), new=False)
    return Applied(ticket)


def _bounce(ctx: Context, inbound: Received, mail: ParsedMail, bounce: bounced.Bounce
            ) -> Applied:
    """Stored like any automatic mail on its ticket, closed or not (never reopened, never
    answered), then marked and told (`maild.threading.bounced`)."""
    applied = _append(ctx, bounce.ticket, inbound, mail, via=bounce.via)
    bounced.record(ctx, bounce, inbound.id)
    return applied


def _priority(requested: str) -> str | None:
    try:
        return priority_name(priority_value(requested)) if requested else None
    except ValueError:
        return None


def _contact(mail: ParsedMail) -> Contact:
    """What a notice shows staff of a customer's mail: its new text, its files."""
    return Contact(new_text(mail.text) or mail.text.strip(), _files(mail))


def _files(mail: ParsedMail) -> list[OutgoingFile]:
    return [OutgoingFile(a.filename, a.content_type, a.data, a.charset) for a in mail.attachments]


# --- staff ------------------------------------------------------------------------------------


def _staff_mail(ctx: Context, inbound: Received, mail: ParsedMail,
                ticket: Ticket | None) -> Applied:
    staff = mail.sender
    read = read_staff_mail(mail.text)
    errors = list(read.errors) + _invalid_commands(ctx, ticket, staff, read.commands)
    if errors:
        if ticket is not None:
            _store_message(ctx, ticket, inbound, mail, kind=MessageKind.STAFF)
            tickets.event(ctx, ticket, EventType.COMMANDS_REFUSED, staff, "; ".join(errors))
        _tell_staff(ctx, ticket, mail, mailkinds.STAFF_ERROR, {"errors": errors})
        return Applied(ticket)
    if ticket is None:
        return _forwarded(ctx, inbound, mail, read)
    names = {c.name for c in read.commands}
    replied = _replied_kind(ctx, mail)
    internal = replied is not None and replied.internal and not replied.answers_customer
    relay = "reply" in names or not (internal or "note" in names)
    files = _files(mail)
    if relay and sum(len(f.data) for f in files) > ctx.settings.mail.max_attachment_bytes:
        _store_message(ctx, ticket, inbound, mail, kind=MessageKind.STAFF)
        sizes = ", ".join(f"{f.filename} ({len(f.data)} bytes)" for f in files)
        tickets.event(ctx, ticket, EventType.ATTACHMENTS_REFUSED, staff,
                      f"{sizes}: over mail.max_attachment_bytes = "
                      f"{ctx.settings.mail.max_attachment_bytes}; nothing was sent")
        _tell_staff(ctx, ticket, mail, mailkinds.ATTACHMENTS_REFUSED,
                    {"files": [{"filename": f.filename, "size": len(f.data)} for f in files],
                     "limit": ctx.settings.mail.max_attachment_bytes})
        return Applied(ticket)
    message = _store_message(ctx, ticket, inbound, mail, kind=MessageKind.STAFF,
                             body=read.text)
    _run_commands(ctx, ticket, staff, read)
    if not read.text.strip():
        tickets.attended(ctx, ticket, staff)
    elif relay:
        tickets.answer(ctx, ticket, staff, read.text, message=message, attachments=files)
    else:
        tickets.note(ctx, ticket, staff, read.text, message=message)
    _run_closing(ctx, ticket, staff, read)
    return Applied(ticket)


def _forwarded(ctx: Context, inbound: Received, mail: ParsedMail, read: StaffMail) -> Applied:
    """A staff mail about no ticket: it forwards a customer's mail (or names the customer in
    To/Cc) — a new ticket for that customer; with nobody to open one for, it is refused."""
    staff = mail.sender
    names = forwarded_senders(mail.text)
    customers = [a for a in list(names) + list(mail.to + mail.cc) if not _ours(ctx, a)]
    if not customers:
        _tell_staff(ctx, None, mail, mailkinds.STAFF_REFUSED, {})
        return Applied(None)
    ticket = tickets.open_ticket(
        ctx, customer=customers[0], customer_name=names.get(customers[0], ""),
        subject=strip_prefixes(mail.subject), channel=Channel.EMAIL, actor=staff,
        language=tickets.language_for(ctx.settings, mail.subject, mail.text))
    tickets.event(ctx, ticket, EventType.FORWARDED, staff,
                  f"staff forwarded mail from {customers[0]}")
    message = _store_message(ctx, ticket, inbound, mail)
    # The customer's thread is not this message (staff wrote it): acknowledge afresh.
    tickets.acknowledge(ctx, ticket, original_subject=ticket.subject)
    tickets.notify_staff(ctx, ticket, message, _contact(mail))
    _run_commands(ctx, ticket, staff, read)
    _run_closing(ctx, ticket, staff, read)
    return Applied(ticket, created=True)


def _run_commands(ctx: Context, ticket: Ticket, staff: str, read: StaffMail) -> None:
    for command in read.commands:
        if command.name == "assign":
            tickets.assign(ctx, ticket, _assignee(staff, command), staff)
        elif command.name == "queue":
            tickets.move(ctx, ticket, command.argument, staff)
        elif command.name == "priority":
            tickets.prioritise(ctx, ticket, command.argument, staff)
        elif command.name == "cc":
            tickets.add_cc(ctx, ticket, command.argument, staff)
        elif command.name == "uncc":
            tickets.remove_cc(ctx, ticket, command.argument, staff)


def _run_closing(ctx: Context, ticket: Ticket, staff: str, read: StaffMail) -> None:
    """`#close-request` and `#close` act last: after the answer they may follow."""
    names = {c.name for c in read.commands}
    if "close-request" in names:
        tickets.request_close(ctx, ticket, staff)
    if "close" in names:
        tickets.close(ctx, ticket, staff, "closed by staff mail")


def _assignee(staff: str, command: Command) -> str:
    return staff if command.argument == "me" else command.argument


def _invalid_commands(ctx: Context, ticket: Ticket | None, staff: str,
                      commands: tuple[Command, ...]) -> list[str]:
    """Check every argument before anything is applied: a mail's commands all run or none."""
    errors = []
    for command in commands:
        try:
            if command.name == "assign":
                tickets.staff_member(ctx.settings, _assignee(staff, command))
            elif command.name == "queue":
                tickets.queue_named(ctx.db, command.argument)
            elif command.name == "priority":
                priority_value(command.argument)
            elif command.name == "cc":
                tickets.cc_candidate(ctx.settings, ticket, command.argument)
            elif command.name == "uncc":
                tickets.cc_participant(ctx.db, ticket, command.argument)
        except (MaildError, ValueError) as exc:
            errors.append(f"{command.line.strip()}: {exc}")
    names = {c.name for c in commands}
    if {"close", "close-request"} <= names:
        errors.append("#close and #close-request cannot go together")
    if {"note", "reply"} <= names:
        errors.append("#note and #reply cannot go together")
    return errors


def _replied_kind(ctx: Context, mail: ParsedMail) -> MailKind | None:
    """The kind of the maild mail this one replies to: the first of its In-Reply-To and
    References (most specific first) that names a mail in the outbox."""
    if not mail.thread_ids:
        return None
    listed, params = bound_list("id", mail.thread_ids)
    kinds = {row["message_id"]: row["kind"] for row in ctx.db.sql.rows(
        f"SELECT message_id, kind FROM outbox WHERE message_id IN ({listed})", **params)}
    return next((mailkinds.named(kinds[mid]) for mid in mail.thread_ids if mid in kinds), None)


def _tell_staff(ctx: Context, ticket: Ticket | None, mail: ParsedMail, kind: MailKind,
                context: dict[str, object]) -> None:
    """A short reply to the staff member; never anything to the customer."""
    name = tickets.staff_name(ctx.settings, mail.sender)
    queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, kind, ticket=ticket,
               to=mail.sender, to_name=name, in_reply_to=mail.message_id,
               references=_thread(mail),
               context={"staff_name": name, "original_subject": mail.subject, **context})


# --- storing ----------------------------------------------------------------------------------


# Asked of every mail with a Message-ID.
_OTHER_UNDER_ID = ("SELECT id, ticket_id FROM inbound WHERE message_id = :message_id "
                   "AND id != :inbound ORDER BY id LIMIT 1")


def _note_reused_message_id(ctx: Context, ticket: Ticket, inbound: Received) -> None:
    """A different message under a Message-ID already seen (SPEC §5): stored and threaded on
    its own merits like any other, and the reuse recorded on its ticket."""
    earlier = ctx.db.sql.first(_OTHER_UNDER_ID, message_id=inbound.message_id,
                               inbound=inbound.id)
    if earlier is None:
        return
    other_id, other_ticket = earlier["id"], earlier["ticket_id"]
    where = ""
    if other_ticket is not None:
        other = ctx.db.get(TICKET, other_ticket)
        where = f", ticket {other.number}" if other is not None else ""
    tickets.event(ctx, ticket, EventType.MESSAGE_ID_REUSED, Actor.SYSTEM,
                  f"Message-ID <{inbound.message_id}> also names a different message "
                  f"(inbound {other_id}{where}); this one is stored and threaded on its own")


def _store_message(ctx: Context, ticket: Ticket, inbound: Received, mail: ParsedMail, *,
                   kind: MessageKind | None = None, body: str | None = None) -> Message:
    assert ticket.id is not None
    message = ctx.db.insert(MESSAGE, {
        "ticket_id": ticket.id, "direction": Direction.IN, "kind": kind or MessageKind.CUSTOMER,
        "sender": mail.sender, "recipients": ",".join(dict.fromkeys(mail.to + mail.cc)),
        "reply_to": _reply_to(ctx, mail), "html": bool(mail.html), "subject": mail.subject,
        "body": mail.text if body is None else body, "message_id": mail.message_id,
        "inbound_id": inbound.id, "automatic": mail.automatic, "created_at": ctx.now})
    for attachment in mail.attachments:
        ctx.db.sql.insert(ATTACHMENT, {
            "message_id": message.id, "filename": attachment.filename,
            "content_type": attachment.content_type, "size": attachment.size})
    return message


def _ours(ctx: Context, address: str) -> bool:
    """Staff or maild itself: never the customer of a forwarded mail."""
    return ctx.settings.is_staff(address) or ctx.settings.is_own(address)


def _thread(mail: ParsedMail) -> tuple[str, ...]:
    return mail.references + ((mail.message_id,) if mail.message_id else ())
