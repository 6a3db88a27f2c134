"""The timer duties of SPEC §4, §6 and §8, run by the daemon's timer and by `maild tick`:

- **escalation**: a ticket unattended longer than its priority's `escalate_after` (business
  time) — one mail to every staff member, once per unattended period;
- **breach**: net working time past `resolve_within` — marked breached, escalated once more;
- **close request**: a `waiting` ticket whose customer stayed silent `close.request_after`;
- **auto-close**: no answer `close.close_after` after the close request.

Each duty done is a `duty` row unique per (ticket, kind, period), so running twice for the same
instant — or two workers at once — sends nothing twice. Each ticket carries `next_due_at`, the
earliest instant any of its duties falls due (an operation that changes the ticket sets it to
"now", meaning: look again), so a tick reads only the tickets that are due, through an index.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild import mailkinds, tickets
from maild.clock import Clock, duration_for_people, time_for_people
from maild.compose import Templates
from maild.config import PrioritySla, Settings, priority_name
from maild.dbapi import Pool, id_list, unique_violation
from maild.outbox import queue_mail
from maild.schema import DUTY, TICKET
from maild.sla.calendar import BusinessCalendar
from maild.sla.clock import RUNNING, sla_state
from maild.sla.state import status_history
from maild.states import Actor, EventType, TicketStatus
from maild.tickets import FAR_FUTURE, Context
from maild.tracked import tracking

if TYPE_CHECKING:
    from maild.models import Ticket

log = logging.getLogger("maild.sla")
TICKETS_PER_TRANSACTION = 50  # most due tickets only need their next instant computed (a
# status change sets it to "now"); a commit each was most of a tick's cost


@dataclass
class TickReport:
    examined: int = 0
    escalations: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    close_requests: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"escalated {len(self.escalations)}, breached {len(self.breaches)}, "
                f"close requests {len(self.close_requests)}, auto-closed {len(self.closed)} "
                f"(of {self.examined} due)")


def run_duties(pool: Pool, settings: Settings, templates: Templates, clock: Clock,
               limit: int = 1000) -> TickReport:
    """Do every duty due at `clock.now()`, for at most `limit` tickets."""
    now = clock.now()
    calendar = BusinessCalendar.from_settings(settings.sla)
    report = TickReport()
    with pool.reader() as db:
        due = db.column("SELECT id FROM ticket WHERE next_due_at <= :now "
                        "ORDER BY next_due_at LIMIT :limit", now=now, limit=limit)
    for start in range(0, len(due), TICKETS_PER_TRANSACTION):
        batch = due[start:start + TICKETS_PER_TRANSACTION]
        with pool.writing() as db, tracking(db, pool.reader) as tracker:
            ctx = Context(tracker, settings, templates, now)
            # Rows another worker has in hand are skipped (SKIP LOCKED on PostgreSQL); those
            # it has done since are no longer due.
            for ticket in tracker.where(TICKET, f"id IN ({id_list(batch)}) AND next_due_at "
                                        f"<= :now ORDER BY next_due_at{db.claim_lock}",
                                        now=now):
                report.examined += 1
                ticket.next_due_at = _run(ctx, calendar, ticket, report)
    return report


def _run(ctx: Context, calendar: BusinessCalendar, ticket: Ticket,
         report: TickReport) -> datetime:
    """Do what is due for one ticket; return when it next needs looking at."""
    if ticket.status == TicketStatus.CLOSED:
        return FAR_FUTURE
    upcoming: list[datetime] = []
    policy = ctx.settings.sla.priorities[priority_name(ticket.priority)]
    zone = ctx.settings.sla.zone

    if ticket.unattended_since is not None and ticket.status in RUNNING:
        due = escalation_due(calendar, ticket.unattended_since, policy.escalate_after)
        if due > ctx.now:
            upcoming.append(due)
        elif _once(ctx, ticket, "escalation", ticket.unattended_since):
            # How long it really was: a timer that did not run for a while (a stopped daemon,
            # `maild tick` from cron) finds it past its limit by more than the limit.
            unattended = calendar.business_time(ticket.unattended_since, ctx.now)
            _escalate(ctx, ticket, policy, breached=False, missed_at=None, unattended=unattended,
                      why=f"unattended for {duration_for_people(unattended)} of business time "
                          f"since {time_for_people(ticket.unattended_since, zone)} (escalated "
                          f"after {duration_for_people(policy.escalate_after)})")
            report.escalations.append(ticket.number)

    if not ticket.breached and ticket.status in RUNNING:
        assert ticket.id is not None
        state = sla_state(calendar, status_history(ctx.db.sql, ticket.id), ctx.now,
                          policy.resolve_within)
        if state.breached:
            # A breached state's resolve_by is the past instant the target was reached: never
            # a time to look again, or the timer would pick this ticket up on every tick.
            if _once(ctx, ticket, "breach", ticket.created_at):
                _breach(ctx, ticket, policy, state.net, state.resolve_by)
                report.breaches.append(ticket.number)
        elif state.resolve_by is not None:
            upcoming.append(state.resolve_by)

    if ticket.status == TicketStatus.WAITING and ticket.close_requested_at is None:
        silent_since = max(ticket.status_since, ticket.answered_at or ticket.status_since)
        due = silent_since + ctx.settings.close.request_after
        if due > ctx.now:
            upcoming.append(due)
        elif tickets.reachable(ticket) and _once(ctx, ticket, "close_request", silent_since):
            # Only a customer mail can reach is asked: `request_close` refuses the others (a
            # phone contact without an address, a sender address with no domain, kept as
            # `…@invalid`), and its refusal here stopped every duty of every ticket.
            tickets.request_close(ctx, ticket, Actor.SYSTEM)
            report.close_requests.append(ticket.number)
    if ticket.status == TicketStatus.WAITING and ticket.close_requested_at is not None:
        due = ticket.close_requested_at + ctx.settings.close.close_after
        if due > ctx.now:
            upcoming.append(due)
        elif _once(ctx, ticket, "auto_close", ticket.close_requested_at):
            tickets.close(ctx, ticket, Actor.SYSTEM,
                          f"no answer {duration_for_people(ctx.settings.close.close_after)} "
                          "after the close request")
            report.closed.append(ticket.number)
            return FAR_FUTURE
    return min(upcoming, default=FAR_FUTURE)


def escalation_due(calendar: BusinessCalendar, since: datetime, allowed: timedelta) -> datetime:
    """When a ticket unattended since `since` has been so *longer than* `allowed`: the first
    business instant after that much business time — a ticket created Friday 17:30 with 30
    minutes under Mon-Fri 09:00-18:00 escalates Monday 09:00, when someone is there to act."""
    return calendar.next_business_instant(calendar.add_business_time(since, allowed))


def _once(ctx: Context, ticket: Ticket, kind: str, period: datetime) -> bool:
    """Record the duty; False when it was done already (by an earlier tick or another worker)."""
    assert ticket.id is not None
    try:
        with ctx.db.sql.savepoint() as db:
            db.insert(DUTY, {"ticket_id": ticket.id, "kind": kind,
                             "period": period.isoformat(), "done_at": ctx.now})
    except Exception as exc:
        if unique_violation(exc):
            return False
        raise
    return True


def _breach(ctx: Context, ticket: Ticket, policy: PrioritySla, net: timedelta,
            reached_at: datetime | None) -> None:
    """Mark the ticket breached, record it and escalate once more."""
    ticket.breached = True
    tickets.event(ctx, ticket, EventType.BREACHED, Actor.SYSTEM,
                  f"net working time {duration_for_people(net)} passed resolve_within "
                  f"{duration_for_people(policy.resolve_within)}")
    due = f" (due {time_for_people(reached_at, ctx.settings.sla.zone)})" if reached_at else ""
    _escalate(ctx, ticket, policy, breached=True, missed_at=reached_at,
              why=f"resolution target of {duration_for_people(policy.resolve_within)} net "
                  f"working time missed{due}")


def _escalate(ctx: Context, ticket: Ticket, policy: PrioritySla, *, breached: bool,
              missed_at: datetime | None, why: str, unattended: timedelta | None = None) -> None:
    """One mail to every staff member (SPEC §6), and an event; `missed_at` is the instant the
    resolution target was reached, for a breach; `unattended` the business time the ticket was
    left unattended, for an escalation. `why` is the English sentence of the event;
    the mail's template has the same facts in the ticket's language to say it its own way."""
    staff = ctx.settings.staff
    tickets.event(ctx, ticket, EventType.ESCALATED, Actor.SYSTEM,
                  f"{why}; notified {', '.join(s.email for s in staff) or 'nobody (no staff)'}")
    zone, language = ctx.settings.sla.zone, ticket.language
    facts = {"why": why, "breached": breached,
             "priority": priority_name(ticket.priority),
             "queue": tickets.queue_name(ctx, ticket),
             "owner": ticket.owner or "",
             "unattended_since": time_for_people(ticket.unattended_since, zone)
             if ticket.unattended_since else "",
             "escalate_after": duration_for_people(policy.escalate_after, language),
             "unattended_for": duration_for_people(unattended, language) if unattended else "",
             "resolve_within": duration_for_people(policy.resolve_within, language),
             "missed_at": time_for_people(missed_at, zone) if missed_at else "",
             "excerpt": tickets.first_customer_text(ctx.db, ticket, 600)}
    for member in staff:
        queue_mail(ctx.db, ctx.settings, ctx.templates, ctx.now, mailkinds.ESCALATION,
                   ticket=ticket, to=member.email, to_name=member.name,
                   context={"staff_name": member.name, **facts})
    log.info("ticket %s escalated to %d staff: %s", ticket.number, len(staff), why)
