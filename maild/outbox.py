"""The transactional outbox: the only way any stage owes somebody a mail.

`queue_mail` takes a kind of mail (`maild.mailkinds`), renders its template, makes the
Message-ID and the headers the kind prescribes, and adds the `outbox` rows (one per recipient)
plus the outgoing `message` row to the caller's transaction (`maild.tracked`), so the mail is
owed if and only if the ticket change that owes it commits. It also refuses what maild must
never send: mail to its own addresses, and automatic replies past the hourly cap of any one
address (SPEC §6), so two autoresponders can never loop through maild.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from maild import mailkinds, undeliverable
from maild.compose import Envelope, OutgoingFile, Templates, build_message
from maild.config import Settings
from maild.events import event_values
from maild.headers import deliverable
from maild.mailkinds import MailKind
from maild.schema import ATTACHMENT, EVENT, MESSAGE, OUTBOX, TICKET
from maild.signing import signed_message_id
from maild.states import Actor, Direction, EventType, OutboxState
from maild.subject import format_tag, tagged_subject
from maild.tracked import Tracker

if TYPE_CHECKING:
    from maild.models import Ticket

# The two reads queue_mail makes for every mail.
_AUTO_REPLIES_SINCE = ("SELECT count(*) FROM outbox WHERE rcpt_to = :address "
                       "AND auto_reply = :yes AND created_at > :since")
_LAST_TO_STAFF = ("SELECT message_id FROM outbox WHERE ticket_id = :ticket "
                  "AND rcpt_to = :address AND kind IN ("
                  + ", ".join(f"'{name}'" for name in mailkinds.TO_STAFF) + ") "
                  "ORDER BY id DESC LIMIT 1")


def auto_replies_last_hour(db: Tracker, address: str, now: datetime) -> int:
    return int(db.sql.value(_AUTO_REPLIES_SINCE, address=address.lower(), yes=True,
                           since=now - timedelta(hours=1)))


def queue_mail(
    db: Tracker,
    settings: Settings,
    templates: Templates,
    now: datetime,
    kind: MailKind,
    *,
    ticket: Ticket | None,
    to: str,
    to_name: str = "",
    cc: Sequence[str] = (),
    context: dict[str, Any],
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    html: bool = False,
    from_name: str | None = None,
    attachments: Sequence[OutgoingFile] = (),
) -> int | None:
    """Owe `to` — and each of `cc`, a copy of its own that shows them in Cc — the `kind` mail
    about `ticket`: headers from the kind's row of `maild.mailkinds`, the thread of the ticket
    for staff mail, the hourly cap for capped kinds. Returns the outbox id of the mail to `to`;
    None when it could not be owed (no usable address, maild's own, the cap), which is recorded on
    the ticket.

    Without a ticket (a refused staff mail) the template sees no ticket variables, and the mail
    is not part of any correspondence."""
    wanted = [to, *(a for a in cc if a.lower() != to.lower())]
    usable = [a for a in (_usable(db, settings, now, kind, ticket, a) for a in wanted) if a]
    if not usable:
        return None
    addressee = usable[0] if usable[0] == _normal(to) else None
    if kind.internal and ticket is not None:
        in_reply_to, references = _staff_thread(db, settings, ticket, usable[0],
                                                in_reply_to, references)
    variables: dict[str, Any] = {"support_address": settings.mail.support_address,
                                 "support_name": settings.mail.support_name}
    language = settings.mail.language if settings.mail.language != "auto" else "en"
    if ticket is not None:
        language = ticket.language
        variables.update({
            "ticket": ticket, "number": ticket.number,
            "tag": format_tag(settings.mail.subject_tag, ticket.number),
            "subject": tagged_subject(settings.mail.subject_tag, ticket.number, ticket.subject)})
    rendered = templates.render(kind.template_name, language, {**variables, **context})
    shown_cc = tuple(a for a in usable if a != _normal(to))
    outbox_ids = []
    for recipient in usable:
        envelope = Envelope(
            message_id=signed_message_id(settings, recipient),  # a reference proves `recipient`
            to_address=_normal(to),
            to_name=to_name, cc=shown_cc, in_reply_to=in_reply_to, references=tuple(references),
            auto_submitted=kind.auto_submitted, ticket_number=ticket.number if ticket else None,
            from_name=from_name, html=html, attachments=tuple(attachments))
        outbox_ids.append((envelope.message_id, db.sql.insert(OUTBOX, {
            "ticket_id": ticket.id if ticket else None, "kind": kind.name,
            "mail_from": settings.mail.support_address, "rcpt_to": recipient,
            "message_id": envelope.message_id,
            "raw": build_message(settings, rendered, envelope, now),
            "auto_reply": kind.capped, "state": OutboxState.PENDING, "created_at": now,
            "next_attempt_at": now})))
        if kind.internal and ticket is not None:
            db.remembered[_LAST_TO_STAFF, ticket.id, recipient] = envelope.message_id
    if ticket is not None:
        first_message_id, first_id = outbox_ids[0]
        copy_id = db.sql.insert(MESSAGE, {
            "ticket_id": _id(ticket), "direction": Direction.OUT, "kind": kind.filed_as,
            "sender": settings.mail.support_address, "recipients": ",".join(usable),
            "subject": rendered.subject, "body": rendered.body, "message_id": first_message_id,
            "outbox_id": first_id, "automatic": kind.auto_submitted is not None,
            "created_at": now})
        for file in attachments:  # listed on the correspondence; the bytes are in the outbox
            db.sql.insert(ATTACHMENT, {
                "message_id": copy_id, "filename": file.filename,
                "content_type": file.content_type, "size": len(file.data)})
    return outbox_ids[0][1] if addressee else None


def _normal(address: str) -> str:
    return deliverable(address.lower()) or address.lower()


def _usable(db: Tracker, settings: Settings, now: datetime, kind: MailKind,
            ticket: Ticket | None, address: str) -> str | None:
    """The address as it can be sent to, or None — recorded on the ticket — when it cannot:
    none at all, maild's own (it would answer itself, SPEC §5), undeliverable for automatic mail
    (it bounced, SPEC §9), or capped (SPEC §6)."""
    usable = deliverable(address.lower()) or ""
    why = ""
    if not usable:
        why = "no usable address"
    elif settings.is_own(usable):
        why = "maild's own address"
    elif kind.auto_submitted is not None and (bounced := undeliverable.marked(db, usable)):
        why = bounced  # SPEC §9: automatic mail waits until the address writes again
    elif kind.capped and auto_replies_last_hour(db, usable, now) \
            >= settings.mail.auto_reply_limit_per_hour:
        if ticket is not None:
            db.sql.insert(EVENT, event_values(
                _id(ticket), now, EventType.AUTO_REPLY_SUPPRESSED, Actor.SYSTEM,
                f"{kind.name} to {usable}: hourly cap of "
                f"{settings.mail.auto_reply_limit_per_hour} reached"))
        return None
    if why:
        if ticket is not None:
            db.sql.insert(EVENT, event_values(_id(ticket), now, EventType.NOT_SENT, Actor.SYSTEM,
                                             f"{kind.name}: not sent to {address!r} ({why})"))
        return None
    return usable


def _staff_thread(db: Tracker, settings: Settings, ticket: Ticket, recipient: str,
                  answering: str | None, references: Sequence[str]
                  ) -> tuple[str, tuple[str, ...]]:
    """In-Reply-To and References of internal mail about a ticket: every one names the ticket's
    staff thread, and follows the previous one this staff member got about it (or answers the
    staff member's own mail, for a refusal), so a mail client shows the ticket as one
    conversation."""
    root = f"maild.ticket.{ticket.number}@{settings.mail.domain}"
    previous = _last_to_staff(db, ticket, recipient)
    thread = tuple(dict.fromkeys(m for m in (root, previous, *references) if m))
    return answering or previous or root, thread


def _last_to_staff(db: Tracker, ticket: Ticket, recipient: str) -> str | None:
    """The Message-ID of the last internal mail `recipient` got about `ticket`. Within one
    tracking block (`maild.tracked`) what it sent is remembered, and a ticket it opened has
    had no mail before: a new ticket's notices ask the database nothing."""
    key = (_LAST_TO_STAFF, ticket.id, recipient)
    if key in db.remembered or db.inserted(TICKET, ticket.id):
        remembered: str | None = db.remembered.get(key)
        return remembered
    found: str | None = db.sql.value(_LAST_TO_STAFF, ticket=ticket.id, address=recipient)
    return found


def _id(ticket: Ticket) -> int:
    assert ticket.id is not None
    return ticket.id
