"""The threading worker: take `inbound` rows in state `new` and settle each one.

Each row is settled in one transaction: `done` with its ticket, or — when it cannot be parsed or
threaded — `failed` with the reason, its bytes untouched, ready for `retry_failed`. A database
that cannot take the write right now is not the message's fault: the row stays `new` and the
error goes up to the caller, who tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from maild.clock import Clock
from maild.compose import Templates
from maild.config import Settings
from maild.db import claim, storage_errors, transaction
from maild.errors import StorageUnavailable
from maild.models import Inbound, InboundState, Ticket
from maild.parsing import parse_message
from maild.threading.apply import Context, apply_message

log = logging.getLogger("maild.threading")


@dataclass(frozen=True)
class Settled:
    inbound_id: int
    state: InboundState
    ticket_number: str | None = None
    ticket_id: int | None = None
    reason: str = ""
    created: bool = False


def process_inbound(
    engine: Engine, settings: Settings, templates: Templates, clock: Clock, inbound_id: int
) -> Settled:
    """Settle one inbound row (a row already settled is reported as it stands)."""
    try:
        # Parse before taking the write lock: it is pure CPU work on bytes that never change.
        with storage_errors(), transaction(engine, readonly=True) as session:
            stored = session.get(Inbound, inbound_id)
            if stored is None or stored.state != InboundState.NEW:
                return _current(session, inbound_id)
            raw, envelope_from = stored.raw, stored.envelope_from
        mail = parse_message(raw, envelope_from)
        with storage_errors(), transaction(engine) as session:
            row = session.exec(claim(
                select(Inbound).where(Inbound.id == inbound_id,
                                      Inbound.state == InboundState.NEW), engine)).first()
            if row is None:  # another worker settled it meanwhile
                return _current(session, inbound_id)
            earlier = _earlier_in_thread(session, row, mail.thread_ids)
            if earlier is not None:
                # The message it answers is still being threaded (by another worker, or later
                # in this pass): thread that first, or this reply would open a ticket of its own.
                return Settled(inbound_id, InboundState.NEW,
                               reason=f"waits for inbound {earlier}, which it answers")
            now = clock.now()
            applied = apply_message(Context(session, settings, templates, now), row, mail)
            ticket = applied.ticket
            row.state = InboundState.DONE
            row.ticket_id = ticket.id if ticket else None
            row.reason = "" if ticket else "staff mail about no ticket: refused, sender told"
            row.attempts += 1
            row.processed_at = now
            log.info("inbound %s message-id=<%s> -> %s%s", inbound_id, mail.message_id or "-",
                     f"ticket {ticket.number}" if ticket else "no ticket (refused staff mail)",
                     " (new)" if applied.created else "")
            return Settled(inbound_id, InboundState.DONE, ticket.number if ticket else None,
                           ticket.id if ticket else None, reason=row.reason,
                           created=applied.created)
    except StorageUnavailable:
        raise
    except Exception as exc:  # any other failure is this message's: keep it, say why
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        _mark_failed(engine, clock, inbound_id, reason)
        log.warning("inbound %s failed: %s", inbound_id, reason)
        return Settled(inbound_id, InboundState.FAILED, reason=reason)


def process_pending(
    engine: Engine,
    settings: Settings,
    templates: Templates,
    clock: Clock,
    limit: int = 100,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Settled]:
    """Settle up to `limit` rows in state `new`, oldest first, until `should_stop()`."""
    with transaction(engine, readonly=True) as session:
        ids = list(session.exec(select(Inbound.id).where(Inbound.state == InboundState.NEW)
                                .order_by(col(Inbound.id)).limit(limit)))
    settled: list[Settled] = []
    for inbound_id in ids:
        if should_stop():
            break
        if inbound_id is not None:
            settled.append(process_inbound(engine, settings, templates, clock, inbound_id))
    return settled


def retry_failed(engine: Engine, inbound_ids: list[int] | None = None) -> list[int]:
    """Put failed rows (all, or the given ones) back to `new`; returns their ids."""
    with storage_errors(), transaction(engine) as session:
        query = select(Inbound).where(Inbound.state == InboundState.FAILED)
        if inbound_ids is not None:
            query = query.where(col(Inbound.id).in_(inbound_ids))
        rows = list(session.exec(query))
        for row in rows:
            row.state = InboundState.NEW
        return [row.id for row in rows if row.id is not None]


def _earlier_in_thread(session: Session, row: Inbound, thread_ids: tuple[str, ...]) -> int | None:
    """An older inbound row, not yet threaded, whose Message-ID this message refers to."""
    if not thread_ids:
        return None
    return session.exec(select(Inbound.id).where(
        col(Inbound.message_id).in_(thread_ids), Inbound.state == InboundState.NEW,
        col(Inbound.id) < row.id)).first()


def _mark_failed(engine: Engine, clock: Clock, inbound_id: int, reason: str) -> None:
    try:
        with transaction(engine) as session:
            row = session.get(Inbound, inbound_id)
            if row is not None and row.state == InboundState.NEW:
                row.state = InboundState.FAILED
                row.reason = reason
                row.attempts += 1
                row.processed_at = clock.now()
    except OperationalError as exc:
        raise StorageUnavailable(str(exc)) from exc


def _current(session: Session, inbound_id: int) -> Settled:
    row = session.get(Inbound, inbound_id)
    if row is None:
        raise LookupError(f"no inbound message {inbound_id}")
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    return Settled(inbound_id, InboundState(row.state), ticket.number if ticket else None,
                   row.ticket_id, row.reason)
