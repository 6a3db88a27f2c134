"""The delivery worker: claim due outbox rows, send them, record what happened.

A batch of rows is claimed (state `sending`) in a short transaction of its own, so no
transaction stays open while the network is slow, and parallel workers never take the same row.
The outcomes of the batch are recorded together in one transaction once it is through (a commit
per mail was most of a delivery's cost); a worker killed in between leaves the batch claimed,
and it is sent again under the same Message-IDs (into a Maildir, under the same file names, so
replacing the earlier copies). Outcomes:

- sent                            -> `sent`
- TemporaryFailure                -> `deferred`, next attempt after a doubling back-off
                                     (`retry_initial` … `retry_max`), `dead` past `lifetime`
- PermanentFailure                -> `dead`, recorded as an event on the ticket, never retried
A claim left behind by a crash is taken back once its lease has run out, or at once when the
claiming process ran on this host and is gone (`kill -9`, then a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, insert, update
from sqlmodel import col, select

from maild.claims import held_elsewhere, this_worker
from maild.clock import Clock
from maild.config import OutboundSettings
from maild.db import add_row, claim, core_transaction, transaction
from maild.errors import PermanentFailure, TemporaryFailure
from maild.models import Actor, Event, EventType, Outbox, OutboxState
from maild.outbound.transports import Transport

log = logging.getLogger("maild.outbound")
CLAIM_LEASE = timedelta(minutes=5)
_DUE_STATES = (OutboxState.PENDING, OutboxState.DEFERRED)
_RETRYABLE = (OutboxState.DEAD, OutboxState.DEFERRED)
_FINISH = update(Outbox).where(col(Outbox.id) == bindparam("row")).values(
    state=bindparam("state"), attempts=bindparam("attempts"), claimed_at=None, claimed_by="",
    last_error=bindparam("error"), sent_at=bindparam("sent_at"),
    next_attempt_at=bindparam("next"))


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sent or self.deferred or self.dead)

    def summary(self) -> str:
        return f"sent {len(self.sent)}, deferred {len(self.deferred)}, failed {len(self.dead)}"


class Deliverer:
    """Delivers due outbox rows through one transport; remembers whether the peer is down."""

    def __init__(self, engine: Engine, transport: Transport, settings: OutboundSettings) -> None:
        self.engine = engine
        self.transport = transport
        self.settings = settings
        self.outage: str | None = None  # set while the transport cannot connect
        self.worker = this_worker()

    def deliver_due(
        self,
        clock: Clock,
        *,
        limit: int | None = None,
        only: list[int] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> DeliveryReport:
        """Deliver up to `limit` due rows (or only the given outbox ids, when due).

        When `should_stop` turns true the row in hand is finished and the rest of the batch is
        handed back unsent, so a stopping daemon leaves no claims behind.
        """
        now = clock.now()
        report = DeliveryReport()
        rows = self._claim(now, limit or self.settings.batch_size, only)
        outcomes: list[_Outcome] = []
        try:
            for index, row in enumerate(rows):
                if should_stop():
                    self._release(rows[index:])
                    break
                outcome = self._send(row, clock.now())
                outcomes.append(outcome)
                if outcome.state == OutboxState.DEFERRED and self.outage:
                    # The peer is unreachable: the rest of the batch would fail the same way.
                    outcomes += [self._defer(rest, clock.now(), self.outage)
                                 for rest in rows[index + 1:]]
                    break
        finally:
            self.transport.close()
            self._record(outcomes)
        for outcome in outcomes:
            assert outcome.row.id is not None
            getattr(report, _REPORTED[outcome.state]).append(outcome.row.id)
        return report

    def _claim(self, now: datetime, limit: int, only: list[int] | None) -> list[Outbox]:
        with transaction(self.engine) as session:
            sending = select(Outbox).where(Outbox.state == OutboxState.SENDING)
            for row in session.exec(claim(sending, self.engine)):
                if not held_elsewhere(row.claimed_by, row.claimed_at, now, CLAIM_LEASE):
                    log.warning("outbox %s message-id=<%s>: taking back the claim of %s",
                                row.id, row.message_id, row.claimed_by or "a lost worker")
                    row.state = OutboxState.PENDING
            query = select(Outbox).where(col(Outbox.state).in_(_DUE_STATES),
                                         col(Outbox.next_attempt_at) <= now)
            if only is not None:
                query = query.where(col(Outbox.id).in_(only))
            query = query.order_by(col(Outbox.next_attempt_at), col(Outbox.id)).limit(limit)
            rows = list(session.exec(claim(query, self.engine)))
            for row in rows:
                row.state = OutboxState.SENDING
                row.claimed_at = now
                row.claimed_by = self.worker
            return rows

    def _release(self, rows: list[Outbox]) -> None:
        with transaction(self.engine) as session:
            for row in rows:
                fresh = session.get(Outbox, row.id)
                if fresh is not None and fresh.state == OutboxState.SENDING:
                    fresh.state = OutboxState.PENDING  # due again at its next_attempt_at
                    fresh.claimed_at = None
                    fresh.claimed_by = ""

    def _send(self, row: Outbox, now: datetime) -> _Outcome:
        assert row.id is not None
        delivery_id = f"{int(row.created_at.timestamp())}.M{row.id}maild"
        try:
            self.transport.send(row.mail_from, row.rcpt_to, row.raw, delivery_id)
        except TemporaryFailure as exc:
            if exc.connection:
                if self.outage is None:
                    log.warning("outbound: cannot reach the relay, deferring mail: %s", exc)
                self.outage = str(exc)
            else:
                log.warning("outbox %s message-id=<%s> to %s deferred: %s",
                            row.id, row.message_id, row.rcpt_to, exc)
            return self._defer(row, now, str(exc))
        except PermanentFailure as exc:
            log.error("outbox %s message-id=<%s> to %s failed permanently: %s",
                      row.id, row.message_id, row.rcpt_to, exc)
            return _Outcome(row, OutboxState.DEAD, now, str(exc))
        if self.outage is not None:
            log.info("outbound: relay reachable again")
            self.outage = None
        log.info("outbox %s message-id=<%s> to %s sent", row.id, row.message_id, row.rcpt_to)
        return _Outcome(row, OutboxState.SENT, now)

    def _defer(self, row: Outbox, now: datetime, error: str) -> _Outcome:
        attempts = row.attempts + 1
        delay = min(self.settings.retry_initial * (2 ** (attempts - 1)), self.settings.retry_max)
        if now + delay - row.created_at > self.settings.lifetime:
            return _Outcome(row, OutboxState.DEAD, now,
                            f"gave up after {attempts} attempts: {error}")
        return _Outcome(row, OutboxState.DEFERRED, now, error, next_attempt_at=now + delay)

    def _record(self, outcomes: list[_Outcome]) -> None:
        """Write the outcomes of a batch in one transaction. Core, not the ORM: loading each
        row back (with its bytes) only to set a few columns was a third of a delivery's CPU."""
        if not outcomes:
            return
        with core_transaction(self.engine) as connection:
            connection.execute(_FINISH, [{
                "row": o.row.id, "state": o.state, "attempts": o.row.attempts + 1,
                "error": o.error[:1000], "sent_at": o.at if o.state == OutboxState.SENT else None,
                "next": o.next_attempt_at or o.row.next_attempt_at} for o in outcomes])
            failed = [o for o in outcomes if o.state == OutboxState.DEAD
                      and o.row.ticket_id is not None]
            if failed:
                connection.execute(insert(Event), [Event.values(
                    o.row.ticket_id or 0, o.at, EventType.DELIVERY_FAILED, Actor.SYSTEM,
                    f"{o.row.kind} to {o.row.rcpt_to} <{o.row.message_id}>: {o.error}"[:1000]
                ) for o in failed])


@dataclass(frozen=True)
class _Outcome:
    row: Outbox
    state: OutboxState
    at: datetime
    error: str = ""
    next_attempt_at: datetime | None = None


_REPORTED = {OutboxState.SENT: "sent", OutboxState.DEFERRED: "deferred",
             OutboxState.DEAD: "dead"}


def requeue(engine: Engine, outbox_ids: list[int] | None, now: datetime,
            actor: str = Actor.OPERATOR) -> list[int]:
    """Put dead and deferred rows (all, or the given ones) back to `pending`, due now, with a
    fresh back-off and lifetime (counted from now); returns their ids. Each is recorded as an
    event `delivery_retried` on its ticket. The operator's way to re-run delivery once the
    cause (a relay's configuration, a full mailbox) is fixed."""
    with transaction(engine) as session:
        query = select(Outbox).where(col(Outbox.state).in_(_RETRYABLE))
        if outbox_ids is not None:
            query = query.where(col(Outbox.id).in_(outbox_ids))
        rows = list(session.exec(claim(query.order_by(col(Outbox.id)), engine)))
        for row in rows:
            if row.ticket_id is not None:
                add_row(session, Event, Event.values(
                    row.ticket_id, now, EventType.DELIVERY_RETRIED, actor,
                    f"{row.kind} to {row.rcpt_to} <{row.message_id}>, {row.state} after "
                    f"{row.attempts} attempt(s): {row.last_error}"[:1000]))
            row.state = OutboxState.PENDING
            row.attempts = 0
            row.created_at = now  # the lifetime restarts (outbox rows are queue entries)
            row.next_attempt_at = now
        return [row.id for row in rows if row.id is not None]
