"""A stored ticket's SLA at one instant, and how it is shown.

Reads the ticket's status history (SQL over a `maild.dbapi.Reader`, so the read commands need
no ORM) and its priority's target, lets `clock` compute the state, and renders that state
twice: as the `sla` block of `--json` (SPEC §3, ISO 8601 instants) and as the text people read
in the plain output of `ticket show` and `ticket list` (SPEC §6: in `sla.timezone`, to the
minute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from maild.clock import duration_for_people, iso, time_for_people
from maild.config import Settings, priority_name
from maild.dbapi import Reader, id_list, instant
from maild.sla.calendar import BusinessCalendar
from maild.sla.clock import SlaState, sla_state
from maild.states import TicketStatus


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


def ticket_sla(settings: Settings, history: Sequence[tuple[datetime, str]], now: datetime, *,
               status: str, priority: int, breached: bool) -> TicketSla:
    """The SLA of a ticket with this status, priority and `ticket.breached`, from its status
    history (`status_history`, `status_histories`): plain values, so that a command reading
    rows over DB-API and a writer holding an ORM ticket compute it alike."""
    calendar = BusinessCalendar.from_settings(settings.sla)
    state = sla_state(calendar, history, now, resolve_target(settings, priority))
    return TicketSla(state, status, bool(breached))


_HISTORY = "SELECT ticket_id, at, status FROM status_change WHERE ticket_id {} ORDER BY at, id"


def status_history(reader: Reader, ticket_id: int) -> list[tuple[datetime, str]]:
    """The ticket's (instant, status) rows in order, as `clock` reads them."""
    return status_histories(reader, [ticket_id]).get(ticket_id, [])


def status_histories(reader: Reader,
                     ticket_ids: Sequence[int]) -> dict[int, list[tuple[datetime, str]]]:
    """`status_history` of many tickets at once, in one query or a few, not one per ticket
    (`ticket list` and `sla report` show thousands): the range of their ids when they fill
    most of it, as an unfiltered list does, else the ids themselves, 500 at a time."""
    found: dict[int, list[tuple[datetime, str]]] = {}
    if not ticket_ids:
        return found
    wanted = set(ticket_ids)
    low, high = min(wanted), max(wanted)
    if 2 * len(wanted) >= high - low + 1:
        batches = [reader.rows(_HISTORY.format("BETWEEN :low AND :high"), low=low, high=high)]
    else:
        ids = sorted(wanted)
        batches = [reader.rows(_HISTORY.format(
            f"IN ({id_list(ids[i:i + 500])})"))
            for i in range(0, len(ids), 500)]
    for rows in batches:
        for row in rows:
            if row["ticket_id"] in wanted:
                at = instant(row["at"])
                assert at is not None
                found.setdefault(int(row["ticket_id"]), []).append((at, str(row["status"])))
    return found


def resolve_target(settings: Settings, priority: int) -> timedelta:
    """The net working time a priority (1-5) allows to resolution."""
    return settings.sla.priorities[priority_name(priority)].resolve_within
