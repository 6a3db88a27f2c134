"""The transactional outbox: the only way any stage owes somebody a mail.

`queue_mail` renders the template, makes the Message-ID, and adds the `outbox` row plus the
outgoing `message` row to the caller's session, so the mail is owed if and only if the ticket
change that owes it commits. It also enforces the hourly cap on automatic replies to any one
address (SPEC §6), so two autoresponders can never loop through maild.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from maild.compose import Envelope, Templates, build_message
from maild.config import Settings
from maild.headers import deliverable, make_message_id
from maild.models import Direction, Event, Message, MessageKind, Outbox, OutboxState, Ticket
from maild.subject import format_tag, tagged_subject


def auto_replies_last_hour(session: Session, address: str, now: datetime) -> int:
    query = select(func.count(col(Outbox.id))).where(
        Outbox.rcpt_to == address.lower(),
        Outbox.auto_reply.is_(True),  # type: ignore[attr-defined]
        Outbox.created_at > now - timedelta(hours=1),
    )
    return int(session.exec(query).one())


def queue_mail(
    session: Session,
    settings: Settings,
    templates: Templates,
    now: datetime,
    *,
    ticket: Ticket | None,
    kind: str,
    envelope: Envelope,
    context: dict[str, Any],
    auto_reply: bool = False,
    message_kind: MessageKind = MessageKind.SYSTEM,
) -> Outbox | None:
    """Owe `envelope.to_address` the `kind` mail about `ticket`; None when the cap forbids it
    or the address cannot be sent to (recorded on the ticket).

    Without a ticket (a refused staff mail) the template sees no ticket variables, and the mail
    is not part of any correspondence."""
    to_address = deliverable(envelope.to_address.lower()) or ""
    if not to_address or settings.is_own(to_address):
        # maild's own addresses never get mail from maild (SPEC §5): it would answer itself.
        why = "maild's own address" if to_address else "no usable address"
        if ticket is not None:
            assert ticket.id is not None
            session.add(Event(ticket_id=ticket.id, at=now, type="not_sent", actor="maild",
                              detail=f"{kind}: not sent to {envelope.to_address!r} ({why})"))
        return None
    envelope = replace(envelope, to_address=to_address)
    if auto_reply and auto_replies_last_hour(session, to_address, now) \
            >= settings.mail.auto_reply_limit_per_hour:
        if ticket is not None:
            assert ticket.id is not None
            session.add(Event(ticket_id=ticket.id, at=now, type="auto_reply_suppressed",
                              actor="maild",
                              detail=f"{kind} to {to_address}: hourly cap of "
                                     f"{settings.mail.auto_reply_limit_per_hour} reached"))
        return None
    if not envelope.message_id:
        envelope = replace(envelope, message_id=make_message_id(settings.mail.domain))
    variables: dict[str, Any] = {"support_address": settings.mail.support_address}
    language = settings.mail.language if settings.mail.language != "auto" else "en"
    if ticket is not None:
        envelope = replace(envelope, ticket_number=ticket.number)
        tag_text = settings.mail.subject_tag
        language = ticket.language
        variables.update({
            "ticket": ticket, "number": ticket.number,
            "tag": format_tag(tag_text, ticket.number),
            "subject": tagged_subject(tag_text, ticket.number, ticket.subject)})
    rendered = templates.render(kind, language, {**variables, **context})
    raw = build_message(settings, rendered, envelope, now)
    row = Outbox(ticket_id=ticket.id if ticket else None, kind=kind,
                 mail_from=settings.mail.support_address, rcpt_to=to_address,
                 message_id=envelope.message_id, raw=raw, auto_reply=auto_reply,
                 state=OutboxState.PENDING, created_at=now, next_attempt_at=now)
    session.add(row)
    session.flush()
    if ticket is None:
        return row
    assert ticket.id is not None
    session.add(Message(ticket_id=ticket.id, direction=Direction.OUT, kind=message_kind,
                        sender=settings.mail.support_address, recipients=to_address,
                        subject=rendered.subject, body=rendered.body,
                        message_id=envelope.message_id, outbox_id=row.id,
                        automatic=envelope.auto_submitted is not None, created_at=now))
    return row
