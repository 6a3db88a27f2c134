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

from maild.claims import held_elsewhere, this_worker
from maild.clock import Clock
from maild.compose import Templates
from maild.config import Settings
from maild.dbapi import Pool, Reader, bound_list, id_list, instant
from maild.errors import StorageUnavailable
from maild.parsing import ParsedMail, parse_message
from maild.states import InboundState
from maild.threading.apply import Context, Received, apply_message
from maild.tracked import tracking

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


MESSAGES_PER_TRANSACTION = 25
"""How many messages one write transaction settles, each in a savepoint of its own. A commit
is the dearest step of threading a message (an fsync on SQLite, a round trip on PostgreSQL);
25 bound how long the write lock is held to a fraction of a second."""


@dataclass
class _Taken:
    inbound_id: int
    raw: bytes
    envelope_from: str | None
    mail: ParsedMail | None = None
    failure: str = ""


def process_inbound(
    pool: Pool, settings: Settings, templates: Templates, clock: Clock, inbound_id: int
) -> Settled:
    """Settle one inbound row (a row already settled is reported as it stands)."""
    return process_batch(pool, settings, templates, clock, [inbound_id])[0]


def process_batch(
    pool: Pool, settings: Settings, templates: Templates, clock: Clock,
    inbound_ids: list[int], in_hand: Callable[[int | None], None] = lambda _: None,
) -> list[Settled]:
    """Settle the given inbound rows, in their order: taken (claimed, attempt counted) in one
    transaction, then parsed, then settled in one transaction with a savepoint each, so a
    message that fails rolls back alone and is marked `failed` while the rest commit. A row an
    earlier attempt did not finish (it may be the one that crashed or hung the worker) is taken
    and settled alone, so it can only ever fail itself."""
    settled: dict[int, Settled] = {}
    # First attempts together; then each row an earlier attempt did not finish, alone — taken
    # only when its turn comes, so a message that kills the worker counts no attempt of theirs.
    rounds = [(inbound_ids, True)] + [([i], False) for i in inbound_ids]
    for ids, first in rounds:
        taken: list[_Taken] = []
        try:
            for item in _take(pool, settings, [i for i in ids if i not in settled], first):
                if isinstance(item, Settled):
                    settled[item.inbound_id] = item
                else:
                    taken.append(item)
            for item in taken:
                # Parse outside the write lock: pure CPU work on bytes that never change.
                in_hand(item.inbound_id)
                try:
                    item.mail = parse_message(item.raw, item.envelope_from,
                                              max_parts=settings.mail.max_mime_parts,
                                              max_depth=settings.mail.max_mime_depth)
                except Exception as exc:
                    item.failure = _reason(exc)
            if taken:
                for result in _settle(pool, settings, templates, clock, taken, in_hand):
                    settled[result.inbound_id] = result
        except StorageUnavailable:
            _give_back(pool, [item.inbound_id for item in taken
                                if item.inbound_id not in settled])
            raise
        finally:
            in_hand(None)
    return [settled[i] for i in inbound_ids if i in settled]


def _settle(pool: Pool, settings: Settings, templates: Templates, clock: Clock,
            group: list[_Taken], in_hand: Callable[[int | None], None]) -> list[Settled]:
    results = []
    with pool.writing() as db:
        # Rows this worker has claimed, locked (waiting for any short transaction that holds
        # them).
        rows = {row["id"]: row for row in db.rows(
            f"SELECT id, source, message_id FROM inbound WHERE id IN "
            f"({id_list(item.inbound_id for item in group)}) AND state = :new "
            f"AND claimed_by = :me{db.row_lock}",
            new=InboundState.NEW.value, me=this_worker())}
        for item in group:
            row = rows.get(item.inbound_id)
            if row is None:  # our claim lapsed and another worker took it over
                results.append(_current(db, item.inbound_id))
                continue
            in_hand(item.inbound_id)
            results.append(_settle_one(db, pool, settings, templates, clock,
                                       Received(item.inbound_id, row["source"],
                                                row["message_id"]), item))
    for result in results:
        if result.state == InboundState.FAILED:
            log.warning("inbound %s failed: %s", result.inbound_id, result.reason)
    return results


def _settle_one(db: Reader, pool: Pool, settings: Settings, templates: Templates,
                clock: Clock, row: Received, item: _Taken) -> Settled:
    now = clock.now()
    if item.mail is not None:
        try:
            # The tickets and messages it touches are tracked objects (`maild.tracked`):
            # their changes are written before the savepoint ends, or dropped with it.
            with db.savepoint(), tracking(db, pool.reader) as tracker:
                return _apply(Context(tracker, settings, templates, now), row, item.mail)
        except StorageUnavailable:
            raise  # the database, not the message (`maild.dbapi`): the batch is given back
        except Exception as exc:  # this message's failure (a constraint it broke, ...): say why
            item.failure = _reason(exc)
    _record(db, row.id, InboundState.FAILED, None, item.failure, now)
    return Settled(row.id, InboundState.FAILED, reason=item.failure)


def _apply(ctx: Context, row: Received, mail: ParsedMail) -> Settled:
    earlier = _earlier_in_thread(ctx.db.sql, row, mail.thread_ids)
    if earlier is not None:
        # The message it answers is still being threaded (by another worker, or later in this
        # pass): thread that first, or this reply would open a ticket of its own. Waiting is no
        # attempt of this message's.
        ctx.db.sql.execute(_WAITING, id=row.id)
        return Settled(row.id, InboundState.NEW,
                       reason=f"waits for inbound {earlier}, which it answers")
    applied = apply_message(ctx, row, mail)
    ticket = applied.ticket
    reason = "" if ticket else "staff mail about no ticket: refused, sender told"
    _record(ctx.db.sql, row.id, InboundState.DONE, ticket.id if ticket else None, reason, ctx.now)
    log.info("inbound %s message-id=<%s> -> %s%s", row.id, mail.message_id or "-",
             f"ticket {ticket.number}" if ticket else "no ticket (refused staff mail)",
             " (new)" if applied.created else "")
    return Settled(row.id, InboundState.DONE, ticket.number if ticket else None,
                   ticket.id if ticket else None, reason=reason, created=applied.created)


# How a message's row ends its attempt: settled (done or failed), or back to waiting uncounted.
# Both free the claim.
_SETTLED = ("UPDATE inbound SET state = :state, ticket_id = :ticket, reason = :reason, "
            "processed_at = :at, claimed_by = '', claimed_at = NULL WHERE id = :id")
_WAITING = ("UPDATE inbound SET attempts = attempts - 1, claimed_by = '', claimed_at = NULL "
            "WHERE id = :id")


def _record(db: Reader, inbound_id: int, state: InboundState, ticket_id: int | None,
            reason: str, now: datetime) -> None:
    db.execute(_SETTLED, id=inbound_id, state=state.value, ticket=ticket_id,
               reason=reason[:1000], at=now)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def _take(pool: Pool, settings: Settings, inbound_ids: list[int],
          first: bool) -> list[_Taken | Settled]:
    """Claim `new` rows for this worker and count the attempt — committed before any work, so
    that a message that crashes or hangs the worker is counted too (SPEC §9). With `first`,
    only rows no attempt has been made on (the others are left for later, untouched). Each row
    comes back as its bytes to work on; or as how it stands when it is not ours to take:
    settled already, held by another live worker, or given up after `MAX_ATTEMPTS`."""
    if not inbound_ids:
        return []
    # Claims are about processes, not business time: the wall clock, whatever `--at` says.
    now = datetime.now(UTC)
    taken: list[_Taken | Settled] = []
    with pool.writing() as db:
        rows = {row["id"]: row for row in db.rows(
            f"{_CLAIMABLE} AND id IN ({id_list(inbound_ids)}){db.claim_lock}",
            new=InboundState.NEW.value)}
        attempted = []
        for inbound_id in inbound_ids:
            row = rows.get(inbound_id)
            if first and row is not None and row["attempts"] > 0:
                continue  # taken alone, in its own round
            if row is None:
                taken.append(_current(db, inbound_id))
            elif held_elsewhere(row["claimed_by"], instant(row["claimed_at"]), now,
                                _lease(settings)):
                taken.append(Settled(inbound_id, InboundState.NEW,
                                     reason=f"in hand of {row['claimed_by']}"))
            elif row["attempts"] >= MAX_ATTEMPTS:
                reason = (f"given up after {row['attempts']} attempts that did not finish (the "
                          "worker crashed, was killed or hung on it)"
                          + (f"; last: {row['reason']}" if row["reason"] else ""))[:1000]
                db.execute(_SETTLED, id=inbound_id, state=InboundState.FAILED.value,
                           ticket=None, reason=reason, at=now)
                log.error("inbound %s message-id=<%s> failed: %s", inbound_id,
                          row["message_id"] or "-", reason)
                taken.append(Settled(inbound_id, InboundState.FAILED, reason=reason))
            else:
                attempted.append(inbound_id)
                taken.append(_Taken(inbound_id, bytes(row["raw"]), row["envelope_from"]))
        if attempted:
            db.execute(f"{_ATTEMPTED} WHERE id IN ({id_list(attempted)})", me=this_worker(),
                       at=now)
    return taken


# The claim of `_take`: the rows still `new`, then each attempt counted and claimed at once.
_CLAIMABLE = ("SELECT id, attempts, claimed_by, claimed_at, reason, message_id, raw, "
              "envelope_from FROM inbound WHERE state = :new")
_ATTEMPTED = "UPDATE inbound SET attempts = attempts + 1, claimed_by = :me, claimed_at = :at"


def _give_back(pool: Pool, inbound_ids: list[int]) -> None:
    """The database failed under the work, not the messages: uncount their attempts, if the
    database lets us (else the claims lapse, and the counts stand)."""
    if not inbound_ids:
        return
    try:
        with pool.writing() as db:
            db.execute("UPDATE inbound SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 "
                       "ELSE 0 END, claimed_by = '', claimed_at = NULL "
                       f"WHERE id IN ({id_list(inbound_ids)}) "
                       "AND state = :new AND claimed_by = :me",
                       new=InboundState.NEW.value, me=this_worker())
    except Exception as exc:
        log.debug("inbound %s: attempts not given back: %s", inbound_ids, exc)


def _lease(settings: Settings) -> timedelta:
    """How long a claim holds: longer than any message may take (`mail.processing_timeout`)."""
    return settings.mail.processing_timeout + timedelta(minutes=1)


def process_pending(
    pool: Pool,
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
    with pool.reader() as db:
        ids = db.column("SELECT id FROM inbound WHERE state = :new ORDER BY id LIMIT :limit",
                        new=InboundState.NEW.value, limit=limit)
    settled: list[Settled] = []
    for start in range(0, len(ids), MESSAGES_PER_TRANSACTION):
        if should_stop():
            break
        batch = [i for i in ids[start:start + MESSAGES_PER_TRANSACTION] if i is not None]
        settled.extend(process_batch(pool, settings, templates, clock, batch, in_hand))
    return settled


def retry_failed(pool: Pool, inbound_ids: list[int] | None = None) -> list[int]:
    """Put failed rows (all, or the given ones) back to `new` with a fresh count of attempts
    (the operator fixed the cause); returns their ids."""
    chosen = "" if inbound_ids is None else f" AND id IN ({id_list(inbound_ids)})"
    with pool.writing() as db:
        ids: list[int] = db.column(f"SELECT id FROM inbound WHERE state = :failed{chosen} "
                                   "ORDER BY id", failed=InboundState.FAILED.value)
        db.execute(f"UPDATE inbound SET state = :new, attempts = 0 WHERE id IN ({id_list(ids)})",
                   new=InboundState.NEW.value)
        return ids


def _earlier_in_thread(db: Reader, row: Received,
                       thread_ids: tuple[str, ...]) -> int | None:
    """An older inbound row, not yet threaded, whose Message-ID this message refers to."""
    if not thread_ids:
        return None
    listed, ids = bound_list("id", thread_ids)
    return db.value(
        f"SELECT id FROM inbound WHERE message_id IN ({listed}) AND state = :new "
        "AND id < :row LIMIT 1", **ids, new=InboundState.NEW.value, row=row.id)


def _current(db: Reader, inbound_id: int) -> Settled:
    row = db.first("SELECT inbound.state, inbound.ticket_id, inbound.reason, ticket.number "
                   "FROM inbound LEFT JOIN ticket ON ticket.id = inbound.ticket_id "
                   "WHERE inbound.id = :id", id=inbound_id)
    if row is None:
        raise LookupError(f"no inbound message {inbound_id}")
    return Settled(inbound_id, InboundState(row["state"]), row["number"], row["ticket_id"],
                   row["reason"])
