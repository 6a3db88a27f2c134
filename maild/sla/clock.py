"""The SLA clock of one ticket: net working time, recomputed from its status history.

Time counts only while the status is `new` or `open`, and only within business hours
(`BusinessCalendar`); `waiting` and `closed` pause it (SPEC §8). Because it is computed from the
`status_change` rows and never accumulated by the timer, it is auditable and the same whatever
the timer's rhythm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from maild.models import TicketStatus
from maild.sla.calendar import BusinessCalendar

RUNNING = (TicketStatus.NEW, TicketStatus.OPEN)


@dataclass(frozen=True)
class SlaState:
    net: timedelta                # net working time so far
    resolve_by: datetime | None   # when the target falls due if nothing pauses it
    breached: bool


def net_time(calendar: BusinessCalendar, history: Sequence[tuple[datetime, str]],
             now: datetime) -> timedelta:
    """Business time spent in a running status, from (instant, status) rows in order."""
    total = timedelta()
    for (start, status), end in zip(history, [*[at for at, _ in history[1:]], now], strict=True):
        if status in RUNNING and end > start:
            total += calendar.business_time(start, min(end, now))
    return total


def sla_state(calendar: BusinessCalendar, history: Sequence[tuple[datetime, str]],
              now: datetime, target: timedelta) -> SlaState:
    net = net_time(calendar, history, now)
    running = bool(history) and history[-1][1] in RUNNING
    if net >= target:
        return SlaState(net, None, True)
    resolve_by = calendar.add_business_time(now, target - net) if running else None
    return SlaState(net, resolve_by, False)
