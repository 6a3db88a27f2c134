"""Read models: tickets and inbound rows as the plain dicts `--json` prints (SPEC §3), and a
ticket as its customer sees it on the web (SPEC §10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from maild.clock import iso
from maild.config import priority_name
from maild.errors import UnparseableMessage
from maild.models import (
    Attachment,
    Direction,
    Event,
    Inbound,
    Message,
    Outbox,
    Queue,
    Ticket,
)
from maild.parsing import parse_message
from maild.tickets import cc_of, public_messages


def ticket_summary(ticket: Ticket, queue_names: dict[int, str],
                   sla: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": priority_name(ticket.priority),
        "queue": queue_names.get(ticket.queue_id, ""),
        "owner": ticket.owner,
        "customer": ticket.customer,
        "customer_name": ticket.customer_name,
        "channel": ticket.channel,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "sla": sla,  # computed by maild.sla from the status history
    }


def ticket_detail(session: Session, ticket: Ticket, sla: dict[str, Any]) -> dict[str, Any]:
    data = ticket_summary(ticket, queue_names(session), sla)
    messages = list(session.exec(select(Message).where(Message.ticket_id == ticket.id)
                                 .order_by(col(Message.id))))
    attachments: dict[int, list[dict[str, Any]]] = {}
    if messages:
        query = select(Attachment).where(col(Attachment.message_id).in_([m.id for m in messages]))
        for a in session.exec(query):
            attachments.setdefault(a.message_id, []).append(
                {"filename": a.filename, "content_type": a.content_type, "size": a.size})
    data["messages"] = [{
        "direction": m.direction,
        "kind": m.kind,
        "from": m.sender,
        "to": [r for r in m.recipients.split(",") if r],
        "subject": m.subject,
        "body": m.body,
        "message_id": m.message_id,
        "created_at": iso(m.created_at),
        "automatic": m.automatic,
        "attachments": attachments.get(m.id or 0, []),
    } for m in messages]
    data["cc"] = cc_of(session, ticket)
    data["events"] = [{"at": iso(e.at), "type": e.type, "actor": e.actor, "detail": e.detail}
                      for e in session.exec(select(Event).where(Event.ticket_id == ticket.id)
                                            .order_by(col(Event.id)))]
    return data


def queue_names(session: Session) -> dict[int, str]:
    return {q.id: q.name for q in session.exec(select(Queue)) if q.id is not None}


def inbound_summary(row: Inbound) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "source": row.source,
        "dedupe_key": row.dedupe_key,
        "message_id": row.message_id or None,
        "size": row.size,
        "received_at": iso(row.received_at),
        "processed_at": iso(row.processed_at),
        "attempts": row.attempts,
        "reason": row.reason,
        "ticket_id": row.ticket_id,
    }


def outbox_summary(row: Outbox, ticket_number: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "kind": row.kind,
        "ticket": ticket_number,
        "to": row.rcpt_to,
        "message_id": row.message_id,
        "created_at": iso(row.created_at),
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at),
        "sent_at": iso(row.sent_at),
        "last_error": row.last_error,
    }


# --- the customer's view (the web channel's status page, SPEC §10) --------------------------

@dataclass(frozen=True)
class File:
    filename: str
    content_type: str
    data: bytes


def public_view(session: Session, ticket: Ticket) -> dict[str, Any]:
    """A ticket as its customer sees it: status, priority, queue and the public correspondence
    — the customer's messages and maild's mail to them. Never internal notes, staff members'
    own mail or staff-only notices."""
    public = public_messages(session, ticket)
    files: dict[int, list[dict[str, Any]]] = {}
    if public:
        query = select(Attachment).where(col(Attachment.message_id).in_([m.id for m in public]))
        for a in session.exec(query.order_by(col(Attachment.id))):
            files.setdefault(a.message_id, []).append(
                {"id": a.id, "filename": a.filename, "size": a.size})
    queue = session.get(Queue, ticket.queue_id)
    return {
        "number": ticket.number, "subject": ticket.subject, "status": ticket.status,
        "priority": priority_name(ticket.priority), "queue": queue.name if queue else "",
        "language": ticket.language, "created_at": ticket.created_at,
        "messages": [{
            "id": m.id, "from_us": m.direction == Direction.OUT, "sender": m.sender,
            "created_at": m.created_at, "body": m.body,
            "attachments": files.get(m.id or 0, [])} for m in public],
    }


def public_file(session: Session, ticket: Ticket, attachment_id: int) -> File | None:
    """The bytes of a file on the ticket's public correspondence, from the stored message it
    came with (inbound or outbox); None when it is not one."""
    attachment = session.get(Attachment, attachment_id)
    public = {m.id: m for m in public_messages(session, ticket)}
    if attachment is None or attachment.message_id not in public:
        return None
    message = public[attachment.message_id]
    stored = session.get(Inbound, message.inbound_id) if message.inbound_id else \
        session.get(Outbox, message.outbox_id) if message.outbox_id else None
    if stored is None:
        return None
    siblings = list(session.exec(select(Attachment.id).where(
        Attachment.message_id == message.id).order_by(col(Attachment.id))))
    try:
        parsed = parse_message(stored.raw).attachments
    except UnparseableMessage:
        return None
    index = siblings.index(attachment_id)
    if index >= len(parsed):
        return None
    return File(attachment.filename, attachment.content_type, parsed[index].data)

