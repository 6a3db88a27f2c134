"""A stored ticket's SLA at one instant, and how it is shown.

Reads the ticket's status history and its priority's target from the database, lets `clock`
compute the state, and renders that state twice: as the `sla` block of `--json` (SPEC §3,
ISO 8601 instants) and as the text people read in the plain output of `ticket show` and
`ticket list` (SPEC §6: in `sla.timezone`, to the minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from sqlmodel import Session, col, select

from maild.clock import duration_for_people, iso, time_for_people
from maild.config import Settings, priority_name
from maild.models import StatusChange, Ticket, TicketStatus
from maild.sla.calendar import BusinessCalendar
from maild.sla.clock import SlaState, sla_state


@dataclass(frozen=True)
class TicketSla:
    state: SlaState
    status: str
    flagged: bool  # the timer marked the ticket breached (`ticket.breached`)

    @property
    def breached(self) -> bool:
        """Breached now, or marked so by the timer — under an earlier, shorter target (the
        priority changed since) or at a later instant than the one asked about (`--at`)."""
        return self.state.breached or self.flagged

    def as_json(self) -> dict[str, object]:
        """The `sla` block of SPEC §3."""
        return {"net_seconds": int(self.state.net.total_seconds()),
                "resolve_by": iso(self.state.resolve_by), "breached": self.breached}

    def for_people(self, zone: tzinfo) -> str:
        """One line for `ticket show`: `net 2h 15m of 8h; resolve by 2026-12-02 13:00 MSK`."""
        state = self.state
        net = f"net {duration_for_people(state.net)} of {duration_for_people(state.target)}"
        if state.breached:
            at = f" at {time_for_people(state.resolve_by, zone)}" if state.resolve_by else ""
            return f"BREACHED{at} ({net})"
        if self.status == TicketStatus.CLOSED:
            return f"{'BREACHED earlier' if self.flagged else 'closed within the target'} " \
                   f"({net})"
        if not state.running or state.resolve_by is None:
            now = f"paused ({self.status}), {duration_for_people(state.left)} left ({net})"
        else:
            now = f"{net}; resolve by {time_for_people(state.resolve_by, zone)}"
        return f"BREACHED earlier; {now}" if self.flagged else now

    def in_brief(self, zone: tzinfo) -> str:
        """The SLA column of `ticket list`: the deadline, `BREACHED`, `paused` or `met`."""
        if self.breached:
            return "BREACHED"
        if self.status == TicketStatus.CLOSED:
            return "met"
        if not self.state.running or self.state.resolve_by is None:
            return "paused"
        return time_for_people(self.state.resolve_by, zone)


def ticket_sla(session: Session, settings: Settings, ticket: Ticket,
               now: datetime) -> TicketSla:
    calendar = BusinessCalendar.from_settings(settings.sla)
    state = sla_state(calendar, status_history(session, ticket), now,
                      resolve_target(settings, ticket))
    return TicketSla(state, ticket.status, ticket.breached)


def status_history(session: Session, ticket: Ticket) -> list[tuple[datetime, str]]:
    """The ticket's (instant, status) rows in order, as `clock` reads them."""
    rows = session.exec(select(StatusChange).where(StatusChange.ticket_id == ticket.id)
                        .order_by(col(StatusChange.at), col(StatusChange.id)))
    return [(row.at, row.status) for row in rows]


def resolve_target(settings: Settings, ticket: Ticket) -> timedelta:
    """The net working time the ticket's priority allows to resolution."""
    return settings.sla.priorities[priority_name(ticket.priority)].resolve_within
