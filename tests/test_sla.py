"""SPEC §8 scenarios through `maild tick --at`: net working time, escalation to every staff
member, once per unattended period, paused while waiting for the customer."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from maild import config, tickets
from maild.app import App
from maild.clock import FixedClock
from maild.db import transaction
from tests.conftest import Helpdesk
from tests.sla_helpers import arrive, at, escalation_mails, tick, with_sla


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Helpdesk:
    return with_sla(Helpdesk(tmp_path, capsys))


def act(desk: Helpdesk, when: datetime, number: str, operation: str, *args: str) -> None:
    """A staff operation at `when`, as the CLI or a staff mail would run it."""
    app = App(config.load(desk.config), clock=FixedClock(when))
    try:
        with transaction(app.engine) as session:
            ctx = tickets.Context(session, app.settings, app.templates, when)
            getattr(tickets, operation)(ctx, tickets.find(session, number), *args)
    finally:
        app.close()


def sla(desk: Helpdesk, number: str, when: datetime) -> dict[str, object]:
    shown = desk.run("ticket", "show", number, "--json", "--at", when.isoformat())
    return shown.json()["sla"]  # type: ignore[no-any-return]


def test_friday_evening_ticket_escalates_monday_morning(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-27 17:30"))  # a Friday
    for quiet in ("2026-11-27 17:59", "2026-11-27 18:30", "2026-11-28 12:00",
                  "2026-11-30 08:59"):
        assert tick(desk, at(quiet))["escalated"] == [], quiet
    assert escalation_mails(desk) == []

    assert tick(desk, at("2026-11-30 09:00"))["escalated"] == [number]

    assert sorted(escalation_mails(desk)) == ["alice@example.com", "bob@example.com"]
    events = [e["type"] for e in desk.ticket(number)["events"]]
    assert events.count("escalated") == 1


def test_a_second_tick_at_the_same_instant_sends_nothing(desk: Helpdesk) -> None:
    arrive(desk, at("2026-11-30 10:00"))
    assert len(tick(desk, at("2026-11-30 10:31"))["escalated"]) == 1
    assert tick(desk, at("2026-11-30 10:31"))["escalated"] == []
    assert tick(desk, at("2026-11-30 11:00"))["escalated"] == []  # same unattended period
    assert len(escalation_mails(desk)) == 2  # one per staff member, once


def test_staff_acting_ends_the_unattended_period(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 10:00"))
    act(desk, at("2026-11-30 10:20"), number, "note", "alice@example.com", "looking into it")
    assert tick(desk, at("2026-11-30 12:00"))["escalated"] == []
    # A new customer message after staff acted begins a new unattended period.
    arrive(desk, at("2026-11-30 13:00"), subject=f"Re: [Ticket#{number}] more")
    assert tick(desk, at("2026-11-30 13:29"))["escalated"] == []
    assert tick(desk, at("2026-11-30 13:31"))["escalated"] == [number]


def test_three_days_waiting_add_nothing_to_net_time(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 09:00"))                      # Monday
    act(desk, at("2026-11-30 10:00"), number, "answer", "alice@example.com", "Try this.")
    arrive(desk, at("2026-12-03 10:00"), subject=f"Re: [Ticket#{number}] no luck")  # Thursday
    state = sla(desk, number, at("2026-12-03 11:00"))
    assert state["net_seconds"] == 2 * 3600  # Monday 09-10 and Thursday 10-11
    assert state["breached"] is False
    assert datetime.fromisoformat(str(state["resolve_by"])) == at("2026-12-03 13:00")


def test_the_clock_stops_while_waiting_and_resolve_by_is_null(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 09:00"))
    act(desk, at("2026-11-30 09:30"), number, "answer", "alice@example.com", "Done?")
    state = sla(desk, number, at("2026-12-04 17:00"))
    assert state == {"net_seconds": 1800, "resolve_by": None, "breached": False}


def test_passing_resolve_within_marks_breached_and_escalates_again(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 09:00"))
    act(desk, at("2026-11-30 09:10"), number, "assign", "bob@example.com", "alice@example.com")
    done = tick(desk, at("2026-11-30 13:00"))   # 4 h of net time
    assert done["breached"] == [number]
    assert sla(desk, number, at("2026-11-30 13:00"))["breached"] is True
    breach_mails = [m for m in desk.outbox() if "[SLA breached]" in m["Subject"]]
    assert sorted(m["To"].addresses[0].addr_spec for m in breach_mails) == \
        ["alice@example.com", "bob@example.com"]
    assert tick(desk, at("2026-11-30 14:00"))["breached"] == []


def test_a_reopened_ticket_restarts_its_unattended_period(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 09:00"))
    act(desk, at("2026-11-30 09:05"), number, "assign", "alice@example.com", "alice@example.com")
    act(desk, at("2026-11-30 09:10"), number, "close", "alice@example.com")
    assert tick(desk, at("2026-12-01 09:00"))["escalated"] == []
    arrive(desk, at("2026-12-07 11:00"), subject=f"Re: [Ticket#{number}] broken again")
    assert desk.ticket(number)["status"] == "open"
    assert tick(desk, at("2026-12-07 11:00"))["escalated"] == []  # not instantly
    assert tick(desk, at("2026-12-07 11:29"))["escalated"] == []
    assert tick(desk, at("2026-12-07 11:31"))["escalated"] == [number]


def test_holidays_do_not_count(desk: Helpdesk) -> None:
    arrive(desk, at("2026-12-30 17:50"))            # Wednesday; the 31st is a holiday
    assert tick(desk, at("2026-12-31 12:00"))["escalated"] == []
    assert len(tick(desk, at("2027-01-01 09:20"))["escalated"]) == 1


def test_a_priority_change_re_targets_the_ticket(desk: Helpdesk) -> None:
    text = desk.config.read_text() + '\n[sla.priorities.highest]\nescalate_after = "5m"\n' \
        'resolve_within = "1h"\n'
    desk.config.write_text(text)
    number = arrive(desk, at("2026-11-30 10:00"))
    act(desk, at("2026-11-30 10:01"), number, "prioritise", "highest", "alice@example.com")
    arrive(desk, at("2026-11-30 10:02"), subject=f"Re: [Ticket#{number}] urgent!")
    assert tick(desk, at("2026-11-30 10:08"))["escalated"] == [number]


def test_the_sla_report_lists_open_tickets_breaches_and_escalations(desk: Helpdesk) -> None:
    late = arrive(desk, at("2026-11-30 09:00"))
    fresh = arrive(desk, at("2026-11-30 12:50"), subject="Another one")
    tick(desk, at("2026-11-30 13:00"))
    report = desk.run("sla", "report", "--json", "--at", at("2026-11-30 13:00").isoformat())
    assert report.code == 0, report.err
    data = report.json()
    normal = {row["number"]: row for row in data["open"]["normal"]}
    assert normal[late]["breached"] is True and normal[late]["left_seconds"] == 0
    assert normal[fresh]["breached"] is False and normal[fresh]["net_seconds"] == 600
    assert data["breached"] == 1
    kinds = [(e["ticket"], e["type"]) for e in data["escalations"]]
    assert (late, "escalated") in kinds and (late, "breached") in kinds
    text = desk.run("sla", "report", "--at", at("2026-11-30 13:00").isoformat()).out
    assert "BREACHED" in text and late in text


def test_the_close_request_counts_silence_from_the_latest_answer(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 10:00"))
    act(desk, at("2026-11-30 11:00"), number, "answer", "alice@example.com", "Try A.")
    act(desk, at("2026-12-02 11:00"), number, "answer", "alice@example.com", "Or try B.")
    assert tick(desk, at("2026-12-03 12:00"))["close_requested"] == []  # 3 days after A only
    assert tick(desk, at("2026-12-05 11:01"))["close_requested"] == [number]
    assert tick(desk, at("2026-12-05 11:01"))["close_requested"] == []
