"""Read models: tickets, inbound and outgoing mail as the plain dicts `--json` prints (SPEC §3),
and a ticket as its customer sees it on the web (SPEC §10).

Every query is SQL over a `maild.dbapi.Reader`, written once here and shared: the commands run
it on a DB-API connection of their own (no ORM imported, so `maild ticket show` starts in tens
of milliseconds), the web pages on the intake's pool, the writers in their own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maild import conversation
from maild.clock import iso
from maild.config import priority_name
from maild.dbapi import Reader, Row, id_list, instant
from maild.errors import NotFound, UnparseableMessage
from maild.states import Direction, InboundState, OutboxState


@dataclass(slots=True)
class TicketRow:
    """A ticket as the read models show it (its queue by name). Not frozen: `ticket list`
    makes thousands, and a frozen dataclass is three times slower to make."""

    id: int
    number: str
    subject: str
    status: str
    priority: int
    queue: str
    owner: str | None
    customer: str
    customer_name: str
    channel: str
    language: str
    created_at: datetime
    updated_at: datetime
    breached: bool

    @classmethod
    def of(cls, row: Row) -> TicketRow:
        created, updated = instant(row["created_at"]), instant(row["updated_at"])
        assert created is not None and updated is not None
        return cls(id=int(row["id"]), number=row["number"], subject=row["subject"],
                   status=row["status"], priority=int(row["priority"]), queue=row["queue"],
                   owner=row["owner"], customer=row["customer"],
                   customer_name=row["customer_name"], channel=row["channel"],
                   language=row["language"], created_at=created, updated_at=updated,
                   breached=bool(row["breached"]))


_TICKETS = ("SELECT t.id, t.number, t.subject, t.status, t.priority, "
            "COALESCE(q.name, '') AS queue, t.owner, t.customer, t.customer_name, t.channel, "
            "t.language, t.created_at, t.updated_at, t.breached "
            "FROM ticket t LEFT JOIN queue q ON q.id = t.queue_id")


def tickets(reader: Reader, *, status: str | None = None, queue: str | None = None,
            owner: str | None = None) -> list[TicketRow]:
    """`ticket list`: every ticket, oldest first, or those with this status, queue (by its
    exact name; NotFound when there is none) and owner."""
    where, params = [], {}
    if status:
        where.append("t.status = :status")
        params["status"] = status
    if owner:
        where.append("t.owner = :owner")
        params["owner"] = owner.lower()
    if queue:
        queue_id = reader.value("SELECT id FROM queue WHERE name = :name", name=queue)
        if queue_id is None:
            raise NotFound(f"no queue named {queue!r}")
        where.append("t.queue_id = :queue")
        params["queue"] = queue_id
    sql = _TICKETS + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY t.id"
    return [TicketRow.of(row) for row in reader.rows(sql, **params)]


def ticket(reader: Reader, number: str) -> TicketRow | None:
    """The ticket with this number."""
    row = reader.first(_TICKETS + " WHERE t.number = :number", number=number.strip())
    return TicketRow.of(row) if row else None


def ticket_summary(ticket: TicketRow, sla: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": priority_name(ticket.priority),
        "queue": ticket.queue,
        "owner": ticket.owner,
        "customer": ticket.customer,
        "customer_name": ticket.customer_name,
        "channel": ticket.channel,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "sla": sla,  # computed by maild.sla from the status history
    }


def ticket_detail(reader: Reader, ticket: TicketRow, sla: dict[str, Any]) -> dict[str, Any]:
    data = ticket_summary(ticket, sla)
    attachments: dict[int, list[dict[str, Any]]] = {}
    for a in reader.rows("SELECT message_id, filename, content_type, size FROM attachment "
                         "WHERE message_id IN (SELECT id FROM message WHERE ticket_id = :t) "
                         "ORDER BY id", t=ticket.id):
        attachments.setdefault(a["message_id"], []).append(
            {"filename": a["filename"], "content_type": a["content_type"], "size": a["size"]})
    data["messages"] = [{
        "direction": m["direction"],
        "kind": m["kind"],
        "from": m["sender"],
        "to": [r for r in m["recipients"].split(",") if r],
        "subject": m["subject"],
        "body": m["body"],
        "message_id": m["message_id"],
        "created_at": iso(instant(m["created_at"])),
        "automatic": bool(m["automatic"]),
        "attachments": attachments.get(m["id"], []),
    } for m in reader.rows("SELECT id, direction, kind, sender, recipients, subject, body, "
                           "message_id, created_at, automatic FROM message "
                           "WHERE ticket_id = :t ORDER BY id", t=ticket.id)]
    data["cc"] = conversation.cc_addresses(reader, ticket.id)
    # Its addresses that get no automatic mail: a permanent bounce marked them (SPEC §9).
    data["undeliverable"] = [{
        "address": u["address"], "since": iso(instant(u["since"])), "status": u["status"],
        "diagnostic": u["diagnostic"]}
        for u in reader.rows("SELECT address, since, status, diagnostic FROM undeliverable "
                             "WHERE address = :c OR ticket_id = :t OR address IN "
                             "(SELECT address FROM participant WHERE ticket_id = :t) "
                             "ORDER BY address", c=ticket.customer, t=ticket.id)]
    data["events"] = [{"at": iso(instant(e["at"])), "type": e["type"], "actor": e["actor"],
                       "detail": e["detail"]}
                      for e in reader.rows("SELECT at, type, actor, detail FROM event "
                                           "WHERE ticket_id = :t ORDER BY id", t=ticket.id)]
    return data


def first_raw(reader: Reader, ticket_id: int) -> bytes | None:
    """The stored bytes of the first mail of the ticket (`ticket show --raw`); None when it did
    not arrive by mail."""
    raw = reader.value("SELECT raw FROM inbound WHERE ticket_id = :t ORDER BY id LIMIT 1",
                       t=ticket_id)
    return None if raw is None else bytes(raw)


def failed_inbound(reader: Reader) -> int:
    """How many stored messages failed to thread and wait for attention."""
    return int(reader.value("SELECT count(*) FROM inbound WHERE state = :failed",
                            failed=InboundState.FAILED.value))


# --- stored mail: `maild inbound`, `maild outbox` -------------------------------------------

_INBOUND = ("SELECT id, state, source, dedupe_key, message_id, size, received_at, "
            "processed_at, attempts, reason, ticket_id FROM inbound")


def inbound_summary(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "state": row["state"],
        "source": row["source"],
        "dedupe_key": row["dedupe_key"],
        "message_id": row["message_id"] or None,
        "size": row["size"],
        "received_at": iso(instant(row["received_at"])),
        "processed_at": iso(instant(row["processed_at"])),
        "attempts": row["attempts"],
        "reason": row["reason"],
        "ticket_id": row["ticket_id"],
    }


def inbound_list(reader: Reader, *, state: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """Stored inbound messages, newest first."""
    where = " WHERE state = :state" if state else ""
    return [inbound_summary(row) for row in reader.rows(
        f"{_INBOUND}{where} ORDER BY id DESC LIMIT :limit", state=state, limit=limit)]


def inbound_one(reader: Reader, inbound_id: int) -> dict[str, Any]:
    row = reader.first(f"{_INBOUND} WHERE id = :id", id=inbound_id)
    if row is None:
        raise NotFound(f"no inbound message {inbound_id}")
    return inbound_summary(row)


def inbound_settled(reader: Reader, inbound_id: int) -> Row:
    """How an inbound message stands — `state`, `reason` and its ticket's `number` (None
    without one) — for `maild ingest` waiting on the daemon's worker."""
    row = reader.first("SELECT i.state, i.reason, t.number FROM inbound i "
                       "LEFT JOIN ticket t ON t.id = i.ticket_id WHERE i.id = :id",
                       id=inbound_id)
    if row is None:
        raise NotFound(f"no inbound message {inbound_id}")
    return row


def threaded_ticket(reader: Reader, message_id: str) -> str | None:
    """The number of the ticket the mail with this Message-ID was threaded to, once it has
    been (the latest, if it came more than once) — for the web channel's pages."""
    number = reader.value("SELECT t.number FROM inbound i JOIN ticket t ON t.id = i.ticket_id "
                          "WHERE i.message_id = :mid AND i.state = :done "
                          "ORDER BY i.id DESC LIMIT 1",
                          mid=message_id, done=InboundState.DONE.value)
    return str(number) if number is not None else None


def inbound_raw(reader: Reader, inbound_id: int) -> bytes:
    raw = reader.value("SELECT raw FROM inbound WHERE id = :id", id=inbound_id)
    if raw is None:
        raise NotFound(f"no inbound message {inbound_id}")
    return bytes(raw)


_OUTBOX = ("SELECT o.id, o.state, o.kind, t.number, o.rcpt_to, o.message_id, o.created_at, "
           "o.attempts, o.next_attempt_at, o.sent_at, o.last_error "
           "FROM outbox o LEFT JOIN ticket t ON t.id = o.ticket_id")


def outbox_summary(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "state": row["state"],
        "kind": row["kind"],
        "ticket": row["number"],
        "to": row["rcpt_to"],
        "message_id": row["message_id"],
        "created_at": iso(instant(row["created_at"])),
        "attempts": row["attempts"],
        "next_attempt_at": iso(instant(row["next_attempt_at"])),
        "sent_at": iso(instant(row["sent_at"])),
        "last_error": row["last_error"],
    }


def outbox_list(reader: Reader, *, state: str | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    """Outgoing mail, newest first, with its ticket's number."""
    where = " WHERE o.state = :state" if state else ""
    return [outbox_summary(row) for row in reader.rows(
        f"{_OUTBOX}{where} ORDER BY o.id DESC LIMIT :limit", state=state, limit=limit)]


def outbox_of(reader: Reader, ids: list[int]) -> list[dict[str, Any]]:
    """These outgoing mails (those that exist), in the order of their ids."""
    found = {row["id"]: outbox_summary(row) for row in reader.rows(
        f"{_OUTBOX} WHERE o.id IN ({id_list(ids)})")}
    return [found[i] for i in sorted(found)]


def outbox_raw(reader: Reader, outbox_id: int) -> bytes:
    raw = reader.value("SELECT raw FROM outbox WHERE id = :id", id=outbox_id)
    if raw is None:
        raise NotFound(f"no outgoing mail {outbox_id}")
    return bytes(raw)


def pending_since(reader: Reader, since: datetime) -> list[int]:
    """Outgoing mail queued since `since` and not yet sent: what a command just owed."""
    return [int(i) for i in reader.column(
        "SELECT id FROM outbox WHERE state = :pending AND created_at >= :since ORDER BY id",
        pending=OutboxState.PENDING.value, since=since)]


# --- the customer's view (the web channel's status page, SPEC §10) --------------------------

@dataclass(frozen=True)
class File:
    filename: str
    content_type: str
    data: bytes


def public_view(reader: Reader, ticket: TicketRow) -> dict[str, Any]:
    """A ticket as its customer sees it: status, priority, queue and the public correspondence
    (`maild.conversation.public_messages`): never internal notes, staff members' own mail or
    staff-only notices."""
    public = conversation.public_messages(reader, ticket.id)
    files: dict[int, list[dict[str, Any]]] = {}
    if public:
        shown = {m["id"] for m in public}
        for a in reader.rows("SELECT id, message_id, filename, size FROM attachment "
                             "WHERE message_id IN (SELECT id FROM message WHERE ticket_id = :t) "
                             "ORDER BY id", t=ticket.id):
            if a["message_id"] in shown:
                files.setdefault(a["message_id"], []).append(
                    {"id": a["id"], "filename": a["filename"], "size": a["size"]})
    return {
        "number": ticket.number, "subject": ticket.subject, "status": ticket.status,
        "priority": priority_name(ticket.priority), "queue": ticket.queue,
        "language": ticket.language, "created_at": ticket.created_at,
        "messages": [{
            "id": m["id"], "from_us": m["direction"] == Direction.OUT, "sender": m["sender"],
            "created_at": m["created_at"], "body": m["body"],
            "attachments": files.get(m["id"], [])} for m in public],
    }


def public_file(reader: Reader, ticket: TicketRow, attachment_id: int) -> File | None:
    """The bytes of a file on the ticket's public correspondence, from the stored message it
    came with (inbound or outbox); None when it is not one."""
    from maild.parsing import parse_message  # the status page's downloads only: not at start-up

    attachment = reader.first("SELECT message_id, filename, content_type FROM attachment "
                              "WHERE id = :id", id=attachment_id)
    public = {m["id"]: m for m in conversation.public_messages(reader, ticket.id)}
    if attachment is None or attachment["message_id"] not in public:
        return None
    message = public[attachment["message_id"]]
    stored = reader.value("SELECT raw FROM inbound WHERE id = :id", id=message["inbound_id"]) \
        if message["inbound_id"] else \
        reader.value("SELECT raw FROM outbox WHERE id = :id", id=message["outbox_id"]) \
        if message["outbox_id"] else None
    if stored is None:
        return None
    siblings = [int(i) for i in reader.column(
        "SELECT id FROM attachment WHERE message_id = :m ORDER BY id", m=message["id"])]
    try:
        parsed = parse_message(bytes(stored)).attachments
    except UnparseableMessage:
        return None
    index = siblings.index(attachment_id)
    if index >= len(parsed):
        return None
    return File(attachment["filename"], attachment["content_type"], parsed[index].data)
