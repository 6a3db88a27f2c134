"""The SLA clock of one ticket: net working time, recomputed from its status history.

Time counts only while the status is `new` or `open`, and only within business hours
(`BusinessCalendar`); `waiting` and `closed` pause it (SPEC §8). Because it is computed from the
`status_change` rows and never accumulated by the timer, it is auditable and the same whatever
the timer's rhythm — and the instant a breached ticket reached its target can be told exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from maild.sla.calendar import BusinessCalendar
from maild.states import TicketStatus

RUNNING = (TicketStatus.NEW, TicketStatus.OPEN)


@dataclass(frozen=True)
class SlaState:
    net: timedelta                # net working time so far
    target: timedelta             # the priority's `resolve_within`
    running: bool                 # the status counts time (`new`, `open`)
    # Not breached: when the target falls due if nothing pauses the clock; None while paused,
    # as nothing falls due while the clock stands still. Breached: the instant the net working
    # time reached the target, so the missed deadline stays visible after the breach.
    resolve_by: datetime | None
    breached: bool

    @property
    def left(self) -> timedelta:
        """Net working time left to the target; zero once it is reached."""
        return max(timedelta(0), self.target - self.net)


def _running_spans(history: Sequence[tuple[datetime, str]],
                   now: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The [start, end) spans of a running status up to `now`, from (instant, status) rows."""
    for (start, status), end in zip(history, [*[at for at, _ in history[1:]], now], strict=True):
        end = min(end, now)
        if status in RUNNING and end > start:
            yield start, end


def sla_state(calendar: BusinessCalendar, history: Sequence[tuple[datetime, str]],
              now: datetime, target: timedelta) -> SlaState:
    """The clock at `now`: net working time is the business time spent in a running status,
    from the (instant, status) rows in order."""
    running = bool(history) and history[-1][1] in RUNNING
    net = timedelta()
    reached_at: datetime | None = None
    for start, end in _running_spans(history, now):
        spent = calendar.business_time(start, end)
        if reached_at is None and net + spent >= target:
            reached_at = calendar.add_business_time(start, target - net)
        net += spent
    if net >= target:  # reached_at is None only for a zero target never run against
        return SlaState(net, target, running, reached_at, True)
    resolve_by = calendar.add_business_time(now, target - net) if running else None
    return SlaState(net, target, running, resolve_by, False)
