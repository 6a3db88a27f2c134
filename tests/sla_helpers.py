"""Helpers for SLA scenarios: Moscow wall-clock instants, a calendar with a holiday, and mail
arriving or the timer ticking at a chosen instant (the real code paths, with a settable clock).
Shared by the SQLite and PostgreSQL suites."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from maild import config
from maild.app import App
from maild.clock import FixedClock
from maild.ingest.accept import accept
from maild.threading import process_inbound
from tests.conftest import Helpdesk, mail

MOSCOW = ZoneInfo("Europe/Moscow")
SLA = """
[sla]
timezone = "Europe/Moscow"
business_hours = "Mon-Fri 09:00-18:00"
holidays = ["2026-12-31"]

[sla.priorities.normal]
escalate_after = "30m"
resolve_within = "4h"
"""


def at(text: str) -> datetime:
    """A Moscow wall-clock time: '2026-11-27 17:30' (a Friday)."""
    return datetime.fromisoformat(text).replace(tzinfo=MOSCOW)


def with_sla(desk: Helpdesk) -> Helpdesk:
    """The desk with the calendar and targets above."""
    text = desk.config.read_text().replace('[sla]\ntimezone = "Europe/Moscow"\n', SLA)
    desk.config.write_text(text)
    assert desk.run("init").code == 0
    return desk


def arrive(desk: Helpdesk, when: datetime, **kwargs: Any) -> str:
    """A customer mail arriving at `when` (the real ingest path, with a settable clock)."""
    app = App(config.load(desk.config), clock=FixedClock(when))
    try:
        stored = accept(app.pool, bytes(mail(**kwargs)), source="test", now=when)
        settled = process_inbound(app.pool, app.settings, app.templates, app.clock,
                                  stored.row_id)
        assert settled.ticket_number is not None, settled.reason
        return settled.ticket_number
    finally:
        app.close()


def tick(desk: Helpdesk, when: datetime) -> dict[str, Any]:
    result = desk.run("tick", "--at", when.isoformat(), "--json")
    assert result.code == 0, result.err
    done: dict[str, Any] = result.json()
    return done


def escalation_mails(desk: Helpdesk) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in desk.outbox()
                  if "[escalated]" in m["Subject"])
