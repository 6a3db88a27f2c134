"""The threading worker: take `inbound` rows in state `new` and settle each one.

A row is first taken — claimed for this worker and its attempt counted — in a short transaction
of its own, before any work: a message that crashes or hangs the worker (the daemon kills a
worker stuck past `mail.processing_timeout`) has its attempts counted all the same, and after
`MAX_ATTEMPTS` it is marked `failed` instead of being taken again (SPEC §9), so it never holds
up the mail behind it. Then it is settled in one transaction: `done` with its ticket, or — when
it cannot be parsed or threaded — `failed` with the reason, its bytes untouched, ready for
`retry_failed`. A database that cannot take the write right now is not the message's fault: the
row stays `new` and the error goes up to the caller, who tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from maild.claims import held_elsewhere, this_worker
from maild.clock import Clock
from maild.compose import Templates
from maild.config import Settings
from maild.db import claim, lock, storage_errors, transaction
from maild.errors import StorageUnavailable
from maild.models import Inbound, InboundState, Ticket
from maild.parsing import parse_message
from maild.threading.apply import Context, apply_message

log = logging.getLogger("maild.threading")
MAX_ATTEMPTS = 3  # SPEC §9: a message that crashes or hangs the worker is taken at most 3 times


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
    taken: tuple[bytes, str | None] | Settled | None = None
    try:
        taken = _take(engine, settings, inbound_id)
        if isinstance(taken, Settled):
            return taken
        # Parse outside the write lock: it is pure CPU work on bytes that never change.
        mail = parse_message(*taken)
        with storage_errors(), transaction(engine) as session:
            row = session.exec(lock(select(Inbound).where(
                Inbound.id == inbound_id, Inbound.state == InboundState.NEW,
                Inbound.claimed_by == this_worker()), engine)).first()
            if row is None:  # our claim lapsed and another worker took it over
                return _current(session, inbound_id)
            earlier = _earlier_in_thread(session, row, mail.thread_ids)
            if earlier is not None:
                # The message it answers is still being threaded (by another worker, or later
                # in this pass): thread that first, or this reply would open a ticket of its own.
                # Waiting is no attempt of this message's.
                row.attempts -= 1
                _release(row)
                return Settled(inbound_id, InboundState.NEW,
                               reason=f"waits for inbound {earlier}, which it answers")
            now = clock.now()
            applied = apply_message(Context(session, settings, templates, now), row, mail)
            ticket = applied.ticket
            row.state = InboundState.DONE
            row.ticket_id = ticket.id if ticket else None
            row.reason = "" if ticket else "staff mail about no ticket: refused, sender told"
            row.processed_at = now
            _release(row)
            log.info("inbound %s message-id=<%s> -> %s%s", inbound_id, mail.message_id or "-",
                     f"ticket {ticket.number}" if ticket else "no ticket (refused staff mail)",
                     " (new)" if applied.created else "")
            return Settled(inbound_id, InboundState.DONE, ticket.number if ticket else None,
                           ticket.id if ticket else None, reason=row.reason,
                           created=applied.created)
    except StorageUnavailable:
        if taken is not None and not isinstance(taken, Settled):
            _give_back(engine, inbound_id)
        raise
    except Exception as exc:  # any other failure is this message's: keep it, say why
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        _mark_failed(engine, clock, inbound_id, reason)
        log.warning("inbound %s failed: %s", inbound_id, reason)
        return Settled(inbound_id, InboundState.FAILED, reason=reason)


def _take(engine: Engine, settings: Settings,
          inbound_id: int) -> tuple[bytes, str | None] | Settled:
    """Claim a `new` row for this worker and count the attempt — committed before any work, so
    that a message that crashes or hangs the worker is counted too (SPEC §9). The raw bytes
    and envelope sender to work on; or how the row stands when it is not ours to take: settled
    already, held by another live worker, or given up after `MAX_ATTEMPTS`."""
    # Claims are about processes, not business time: the wall clock, whatever `--at` says.
    now = datetime.now(UTC)
    with storage_errors(), transaction(engine) as session:
        row = session.exec(claim(select(Inbound).where(
            Inbound.id == inbound_id, Inbound.state == InboundState.NEW), engine)).first()
        if row is None:
            return _current(session, inbound_id)
        if held_elsewhere(row.claimed_by, row.claimed_at, now, _lease(settings)):
            return Settled(inbound_id, InboundState.NEW, reason=f"in hand of {row.claimed_by}")
        if row.attempts >= MAX_ATTEMPTS:
            row.state = InboundState.FAILED
            row.reason = (f"given up after {row.attempts} attempts that did not finish (the "
                          "worker crashed, was killed or hung on it)"
                          + (f"; last: {row.reason}" if row.reason else ""))[:1000]
            row.processed_at = now
            _release(row)
            log.error("inbound %s message-id=<%s> failed: %s", inbound_id,
                      row.message_id or "-", row.reason)
            return Settled(inbound_id, InboundState.FAILED, reason=row.reason)
        row.attempts += 1
        row.claimed_by, row.claimed_at = this_worker(), now
        return row.raw, row.envelope_from


def interrupted(engine: Engine, inbound_id: int, what: str) -> None:
    """Record why threading `inbound_id` did not finish (`what`: the worker hung, or died), and
    free its claim so that the next worker takes it at once; its attempt is counted already."""
    with storage_errors(), transaction(engine) as session:
        row = session.get(Inbound, inbound_id)
        if row is not None and row.state == InboundState.NEW:
            row.reason = f"attempt {row.attempts}: {what}"[:1000]
            _release(row)


def _give_back(engine: Engine, inbound_id: int) -> None:
    """The database failed under the work, not the message: uncount the attempt, if the
    database lets us (else the claim lapses, and the count stands)."""
    try:
        with transaction(engine) as session:
            row = session.get(Inbound, inbound_id)
            if row is not None and row.state == InboundState.NEW and \
                    row.claimed_by == this_worker():
                row.attempts = max(0, row.attempts - 1)
                _release(row)
    except Exception as exc:
        log.debug("inbound %s: attempt not given back: %s", inbound_id, exc)


def _lease(settings: Settings) -> timedelta:
    """How long a claim holds: longer than any message may take (`mail.processing_timeout`)."""
    return settings.mail.processing_timeout + timedelta(minutes=1)


def _release(row: Inbound) -> None:
    row.claimed_by, row.claimed_at = "", None


def process_pending(
    engine: Engine,
    settings: Settings,
    templates: Templates,
    clock: Clock,
    limit: int = 100,
    should_stop: Callable[[], bool] = lambda: False,
    in_hand: Callable[[int | None], None] = lambda _: None,
) -> list[Settled]:
    """Settle up to `limit` rows in state `new`, oldest first, until `should_stop()`;
    `in_hand` is told the id of each row before its work begins, and None after (the daemon
    watches it for a message that hangs the worker)."""
    with transaction(engine, readonly=True) as session:
        ids = list(session.exec(select(Inbound.id).where(Inbound.state == InboundState.NEW)
                                .order_by(col(Inbound.id)).limit(limit)))
    settled: list[Settled] = []
    for inbound_id in ids:
        if should_stop():
            break
        if inbound_id is not None:
            in_hand(inbound_id)
            try:
                settled.append(process_inbound(engine, settings, templates, clock, inbound_id))
            finally:
                in_hand(None)
    return settled


def retry_failed(engine: Engine, inbound_ids: list[int] | None = None) -> list[int]:
    """Put failed rows (all, or the given ones) back to `new` with a fresh count of attempts
    (the operator fixed the cause); returns their ids."""
    with storage_errors(), transaction(engine) as session:
        query = select(Inbound).where(Inbound.state == InboundState.FAILED)
        if inbound_ids is not None:
            query = query.where(col(Inbound.id).in_(inbound_ids))
        rows = list(session.exec(query))
        for row in rows:
            row.state = InboundState.NEW
            row.attempts = 0
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
                row.processed_at = clock.now()
                _release(row)
    except OperationalError as exc:
        raise StorageUnavailable(str(exc)) from exc


def _current(session: Session, inbound_id: int) -> Settled:
    row = session.get(Inbound, inbound_id)
    if row is None:
        raise LookupError(f"no inbound message {inbound_id}")
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    return Settled(inbound_id, InboundState(row.state), ticket.number if ticket else None,
                   row.ticket_id, row.reason)
