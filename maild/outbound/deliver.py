"""Delivery: claim due outbox rows, send them, record what happened.

A batch of rows is claimed (state `sending`) in a short transaction of its own, so no
transaction stays open while the network is slow, and parallel senders never take the same row.
The outcomes of the batch are recorded together in one transaction once it is through (a commit
per mail was most of a delivery's cost) — for the daemon's sender, which goes on to the next
batch at once, in the transaction that claims the next batch (`record_with_next_claim`: one
write transaction a batch instead of two, and so half the waits of the worker for the write
lock on SQLite). A sender killed in between leaves the batch claimed, and it is sent again
under the same Message-IDs (into a Maildir, under the same file names, so replacing the
earlier copies). Outcomes:

- sent                            -> `sent`
- TemporaryFailure                -> `deferred`, next attempt after a doubling back-off
                                     (`retry_initial` … `retry_max`), `dead` past `lifetime`
- PermanentFailure                -> `dead`, recorded as an event on the ticket, never retried
A claim left behind by a crash is taken back once its lease has run out, or at once when the
claiming process ran on this host and is gone (`kill -9`, then a restart).

It talks to the database over plain DB-API (`maild.dbapi.Pool`), never SQLAlchemy, so the
daemon's sender process (`maild.daemon.sender`) holds no ORM, and a slow relay holds up
delivery alone, never the threading of new mail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from maild.claims import held_elsewhere, this_worker
from maild.clock import Clock
from maild.config import OutboundSettings
from maild.dbapi import Pool, Reader, Row, id_list, instant
from maild.errors import PermanentFailure, StorageUnavailable, TemporaryFailure
from maild.events import record_event
from maild.outbound.transports import Transport
from maild.states import Actor, EventType, OutboxState

log = logging.getLogger("maild.outbound")
CLAIM_LEASE = timedelta(minutes=5)
_SENDING = "SELECT id, message_id, claimed_by, claimed_at FROM outbox WHERE state = :sending"
_DUE = ("SELECT id, ticket_id, kind, mail_from, rcpt_to, message_id, raw, attempts, created_at, "
        "next_attempt_at FROM outbox WHERE state IN (:pending, :deferred) "
        "AND next_attempt_at <= :now")
_UNCLAIM = ("UPDATE outbox SET state = :pending, claimed_at = NULL, claimed_by = '' "
            "WHERE state = :sending")
_FINISH = ("UPDATE outbox SET state = :state, attempts = :attempts, claimed_at = NULL, "
           "claimed_by = '', last_error = :error, sent_at = :sent_at, next_attempt_at = :next "
           "WHERE id = :row")


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
    """Delivers due outbox rows through one transport; remembers whether the peer is down.
    Its database connections come from `pool` (one at a time: a Deliverer is one thread's)."""

    def __init__(self, pool: Pool, transport: Transport, settings: OutboundSettings) -> None:
        self.pool = pool
        self.transport = transport
        self.settings = settings
        self.outage: str | None = None  # set while the transport cannot connect
        self.worker = this_worker()
        self._kept: list[_Outcome] = []  # sent, not yet recorded: the next claim records them

    def deliver_due(
        self,
        clock: Clock,
        *,
        limit: int | None = None,
        only: list[int] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        record_with_next_claim: bool = False,
    ) -> DeliveryReport:
        """Deliver up to `limit` due rows (or only the given outbox ids, when due).

        When `should_stop` turns true the row in hand is finished and the rest of the batch is
        handed back unsent, so a stopping daemon leaves no claims behind.

        With `record_with_next_claim` the outcomes are kept and written by the next call's
        claim (or by `close`), for a caller that calls again at once until nothing is due.
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
            outcomes = self._end_batch(outcomes, clock.now())
            self._kept += outcomes
            if not record_with_next_claim:
                self.record_kept()
        for outcome in outcomes:
            getattr(report, _REPORTED[outcome.state]).append(outcome.row.id)
        return report

    def _claim(self, now: datetime, limit: int, only: list[int] | None) -> list[_Claimed]:
        """Record the outcomes kept from the last batch, take back the stale claims, then
        claim up to `limit` due rows."""
        with self.pool.writing() as db:
            _record(db, self._kept)
            lock = db.claim_lock
            stale = [row for row in db.rows(_SENDING + lock, sending=OutboxState.SENDING.value)
                     if not held_elsewhere(row["claimed_by"], instant(row["claimed_at"]), now,
                                           CLAIM_LEASE)]
            for row in stale:
                log.warning("outbox %s message-id=<%s>: taking back the claim of %s",
                            row["id"], row["message_id"], row["claimed_by"] or "a lost worker")
            _set_state(db, [row["id"] for row in stale], OutboxState.PENDING, None, "")
            due = _DUE if only is None else f"{_DUE} AND id IN ({id_list(only)})"
            rows = [_Claimed.of(row) for row in db.rows(
                f"{due} ORDER BY next_attempt_at, id LIMIT :limit{lock}",
                pending=OutboxState.PENDING.value, deferred=OutboxState.DEFERRED.value, now=now,
                limit=limit)]
            _set_state(db, [row.id for row in rows], OutboxState.SENDING, now, self.worker)
        self._kept = []  # committed with the claim
        return rows

    def _release(self, rows: list[_Claimed]) -> None:
        """Hand claimed rows back unsent: due again at their `next_attempt_at`."""
        with self.pool.writing() as db:
            db.execute(f"{_UNCLAIM} AND id IN ({id_list([row.id for row in rows])})",
                       pending=OutboxState.PENDING.value, sending=OutboxState.SENDING.value)

    def _send(self, row: _Claimed, now: datetime) -> _Outcome:
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

    def _end_batch(self, outcomes: list[_Outcome], now: datetime) -> list[_Outcome]:
        """Close the transport; when it says the batch is not durable (a Maildir's sync
        failed), what it took is deferred, not sent: it is written again at the next try."""
        try:
            self.transport.close()
        except TemporaryFailure as exc:
            taken = [o for o in outcomes if o.state == OutboxState.SENT]
            if taken:
                log.warning("outbound: %d mails not made durable, deferred: %s", len(taken), exc)
            return [self._defer(o.row, now, str(exc)) if o.state == OutboxState.SENT else o
                    for o in outcomes]
        return outcomes

    def _defer(self, row: _Claimed, now: datetime, error: str) -> _Outcome:
        attempts = row.attempts + 1
        delay = min(self.settings.retry_initial * (2 ** (attempts - 1)), self.settings.retry_max)
        if now + delay - row.created_at > self.settings.lifetime:
            return _Outcome(row, OutboxState.DEAD, now,
                            f"gave up after {attempts} attempts: {error}")
        return _Outcome(row, OutboxState.DEFERRED, now, error, next_attempt_at=now + delay)

    def record_kept(self) -> None:
        """Write the outcomes not yet recorded, in one transaction."""
        if self._kept:
            with self.pool.writing() as db:
                _record(db, self._kept)
            self._kept = []

    def close(self) -> None:
        """Record what is kept, close the database connections (the transport is closed after
        each batch). When the database cannot take the record, the rows stay claimed by this
        process and are sent again once it is gone, as after a crash."""
        try:
            self.record_kept()
        except StorageUnavailable as exc:
            log.warning("outbound: %d mails sent but not recorded, to be sent again: %s",
                        len(self._kept), exc)
        finally:
            self.pool.close()


@dataclass(frozen=True)
class _Claimed:
    """What delivery needs of a claimed outbox row."""

    id: int
    ticket_id: int | None
    kind: str
    mail_from: str
    rcpt_to: str
    message_id: str
    raw: bytes
    attempts: int
    created_at: datetime
    next_attempt_at: datetime

    @classmethod
    def of(cls, row: Row) -> _Claimed:
        created, due = instant(row["created_at"]), instant(row["next_attempt_at"])
        assert created is not None and due is not None
        return cls(row["id"], row["ticket_id"], row["kind"], row["mail_from"], row["rcpt_to"],
                   row["message_id"], bytes(row["raw"]), row["attempts"], created, due)


def _record(db: Reader, outcomes: list[_Outcome]) -> None:
    """Write the outcomes of a batch, inside the caller's write transaction."""
    db.execute_many(_FINISH, [
        {"row": o.row.id, "state": o.state.value, "attempts": o.row.attempts + 1,
         "error": o.error[:1000], "sent_at": o.at if o.state == OutboxState.SENT else None,
         "next": o.next_attempt_at or o.row.next_attempt_at} for o in outcomes])
    for o in outcomes:
        if o.state == OutboxState.DEAD and o.row.ticket_id is not None:
            record_event(db, o.row.ticket_id, o.at, EventType.DELIVERY_FAILED, Actor.SYSTEM,
                         f"{o.row.kind} to {o.row.rcpt_to} <{o.row.message_id}>: "
                         f"{o.error}"[:1000])


def _set_state(db: Reader, ids: list[int], state: OutboxState, claimed_at: datetime | None,
               claimed_by: str) -> None:
    if ids:
        db.execute(f"UPDATE outbox SET state = :state, claimed_at = :at, claimed_by = :by "
                   f"WHERE id IN ({id_list(ids)})", state=state.value, at=claimed_at,
                   by=claimed_by)


@dataclass(frozen=True)
class _Outcome:
    row: _Claimed
    state: OutboxState
    at: datetime
    error: str = ""
    next_attempt_at: datetime | None = None


_REPORTED = {OutboxState.SENT: "sent", OutboxState.DEFERRED: "deferred",
             OutboxState.DEAD: "dead"}


def requeue(db: Reader, outbox_ids: list[int] | None, now: datetime,
            actor: str = Actor.OPERATOR) -> list[int]:
    """Put dead and deferred rows (all, or the given ones) back to `pending`, due now, with a
    fresh back-off and lifetime (counted from now); returns their ids. Each is recorded as an
    event `delivery_retried` on its ticket. The operator's way to re-run delivery once the
    cause (a relay's configuration, a full mailbox) is fixed. In one write transaction."""
    with db.writing():
        only = "" if outbox_ids is None else f" AND id IN ({id_list(outbox_ids)})"
        rows = db.rows(f"SELECT id, ticket_id, kind, rcpt_to, message_id, state, attempts, "
                       f"last_error FROM outbox WHERE state IN (:dead, :deferred){only} "
                       f"ORDER BY id{db.claim_lock}",
                       dead=OutboxState.DEAD.value, deferred=OutboxState.DEFERRED.value)
        for row in rows:
            if row["ticket_id"] is not None:
                record_event(db, row["ticket_id"], now, EventType.DELIVERY_RETRIED, actor,
                             f"{row['kind']} to {row['rcpt_to']} <{row['message_id']}>, "
                             f"{row['state']} after {row['attempts']} attempt(s): "
                             f"{row['last_error']}"[:1000])
        # the lifetime restarts with created_at (outbox rows are queue entries)
        db.execute(f"UPDATE outbox SET state = :pending, attempts = 0, created_at = :now, "
                   f"next_attempt_at = :now WHERE id IN ({id_list(r['id'] for r in rows)})",
                   pending=OutboxState.PENDING.value, now=now)
        return [row["id"] for row in rows]
