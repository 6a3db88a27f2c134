"""`maild status`: the queues at a glance, and what needs an operator's attention.

Counts come from the indexed state columns (SQL over a `maild.dbapi.Reader`: the command needs
no ORM), so this is cheap enough for a monitoring check every minute. "Attention" lists only
what means maild is not doing its work, or lost a fight with the outside world recently —
never old history an operator cannot clear:

- mail stored but not threaded for more than `STUCK_AFTER` (the worker is down or stuck),
  in the intake spool or in `inbound`;
- outgoing mail due for more than `STUCK_AFTER` and not sent (delivery is not running), or
  deferred (the relay refuses or is unreachable: the last error is shown);
- messages that failed to thread, and mail given up as undeliverable, within `RECENT`.

The counts and instants are for machines (`--json`: ISO 8601); the attention sentences are for
operators, so the instants in them are in `sla.timezone`, to the minute (SPEC §6).
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from maild.clock import duration_for_people, iso, time_for_people
from maild.dbapi import Reader, instant
from maild.states import InboundState, OutboxState, TicketStatus

STUCK_AFTER = timedelta(minutes=5)
RECENT = timedelta(hours=24)


class Backlog(Protocol):
    """What waits in the intake spool (`maild.ingest.spool.backlog_at` tells)."""

    @property
    def waiting(self) -> int: ...

    @property
    def oldest(self) -> datetime | None: ...


def counts(reader: Reader, table: str, column: str) -> dict[str, int]:
    """Rows per value of a state column, e.g. `counts(reader, "inbound", "state")`."""
    return {str(row["value"]): int(row["n"]) for row in reader.rows(
        f"SELECT {column} AS value, count(*) AS n FROM {table} GROUP BY {column}")}


def status(reader: Reader, now: datetime, spool: Backlog,
           zone: tzinfo) -> dict[str, Any]:
    inbound = counts(reader, "inbound", "state")
    outbox = counts(reader, "outbox", "state")
    tickets = counts(reader, "ticket", "status")
    oldest_new = instant(reader.value(
        "SELECT min(received_at) FROM inbound WHERE state = :new", new=InboundState.NEW.value))
    failed_recently = reader.value(
        "SELECT count(*) FROM inbound WHERE state = :failed AND processed_at > :since",
        failed=InboundState.FAILED.value, since=now - RECENT)
    overdue = reader.value(
        "SELECT count(*) FROM outbox WHERE state IN (:pending, :deferred) "
        "AND next_attempt_at < :before", pending=OutboxState.PENDING.value,
        deferred=OutboxState.DEFERRED.value, before=now - STUCK_AFTER)
    # A dead row's next_attempt_at is the attempt that gave up.
    dead_recently = reader.value(
        "SELECT count(*) FROM outbox WHERE state = :dead AND next_attempt_at > :since",
        dead=OutboxState.DEAD.value, since=now - RECENT)
    last_error = reader.value(
        "SELECT last_error FROM outbox WHERE state = :deferred ORDER BY id DESC LIMIT 1",
        deferred=OutboxState.DEFERRED.value)
    breached = reader.value(
        "SELECT count(*) FROM ticket WHERE breached = :yes AND status != :closed",
        yes=True, closed=TicketStatus.CLOSED.value)

    attention: list[str] = []
    if spool.oldest is not None and spool.oldest < now - STUCK_AFTER:
        attention.append(f"{spool.waiting} message(s) in the intake spool, the oldest since "
                         f"{time_for_people(spool.oldest, zone)}: is the worker of `maild run` "
                         "running?")
    if oldest_new is not None and oldest_new < now - STUCK_AFTER:
        attention.append(f"{inbound.get(InboundState.NEW, 0)} inbound message(s) not threaded, "
                         f"the oldest since {time_for_people(oldest_new, zone)}: is `maild run` "
                         "running?")
    if overdue:
        attention.append(f"{overdue} outgoing mail(s) overdue by more than "
                         f"{duration_for_people(STUCK_AFTER, long=True)}")
    if outbox.get(OutboxState.DEFERRED, 0):
        attention.append(f"{outbox[OutboxState.DEFERRED]} outgoing mail(s) deferred, "
                         f"last error: {last_error or '-'}")
    if failed_recently:
        attention.append(f"{failed_recently} inbound message(s) failed in the last 24 h: "
                         "maild inbound list --state failed")
    if dead_recently:
        attention.append(f"{dead_recently} outgoing mail(s) given up in the last 24 h: "
                         "maild outbox list --state dead; maild outbox retry once fixed")
    return {
        "at": iso(now),
        "spool": {"waiting": spool.waiting, "oldest": iso(spool.oldest)},
        "inbound": {**_all(InboundState, inbound), "oldest_new": iso(oldest_new),
                    "failed_last_24h": int(failed_recently)},
        "outbox": {**_all(OutboxState, outbox), "overdue": int(overdue),
                   "dead_last_24h": int(dead_recently)},
        "tickets": {**_all(TicketStatus, tickets), "breached_open": int(breached)},
        "attention": attention,
    }


def _all(states: Any, found: dict[str, int]) -> dict[str, int]:
    """Every state of the enum, zero when no row has it."""
    return {str(state): found.get(str(state), 0) for state in states}
