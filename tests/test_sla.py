"""SPEC §8 scenarios through `maild tick --at`: net working time, escalation to every staff
member, once per unattended period, paused while waiting for the customer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from maild import config, tickets
from maild.app import App
from maild.clock import FixedClock
from maild.sla.calendar import BusinessCalendar
from maild.sla.clock import sla_state
from maild.sla.duties import TickReport, run_duties
from maild.tracked import tracking
from tests.conftest import Helpdesk
from tests.sla_helpers import arrive, at, escalation_mails, tick, with_sla


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Helpdesk:
    return with_sla(Helpdesk(tmp_path, capsys))


def act(desk: Helpdesk, when: datetime, number: str, operation: str, *args: str) -> None:
    """A staff operation at `when`, as the CLI or a staff mail would run it."""
    app = App(config.load(desk.config), clock=FixedClock(when))
    try:
        with app.pool.writing() as db, tracking(db, app.pool.reader) as tracker:
            ctx = tickets.Context(tracker, app.settings, app.templates, when)
            getattr(tickets, operation)(ctx, tickets.find(tracker, number), *args)
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
    for breach in breach_mails:  # it has an owner: nobody is asked to take it
        text = breach.get_body(("plain",)).get_content()
        assert "#assign me" not in text and "Start your reply with #reply" in text
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



def test_a_customer_mail_cannot_reach_is_not_asked_and_the_other_duties_go_on(
    desk: Helpdesk
) -> None:
    """A sender address without a domain is kept as `b@invalid`: nothing can be sent to it.
    Answered and silent for 3 days, that ticket is not asked to close — asking raised, and
    the exception stopped every duty of the tick, each tick again (found by
    bench/hostile_campaign.py --threading) — and the other ticket's close request goes out."""
    lost = arrive(desk, at("2026-11-30 10:00"), sender="b")
    other = arrive(desk, at("2026-11-30 10:00"))
    assert desk.ticket(lost)["customer"] == "b@invalid"
    for number in (lost, other):
        act(desk, at("2026-11-30 11:00"), number, "answer", "alice@example.com", "Try A.")
    assert tick(desk, at("2026-12-03 11:01"))["close_requested"] == [other]
    assert desk.ticket(lost)["status"] == "waiting"
    assert tick(desk, at("2026-12-03 11:02"))["close_requested"] == []

# --- times and durations as people read them (SPEC §6), the deadline kept after a breach ------

ISO_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|[+-]\d\d:\d\d\b")


def text(message: EmailMessage) -> str:
    return str(message.get_body(("plain",)).get_content()).replace("\r\n", "\n")


def bodies(desk: Helpdesk) -> list[str]:
    return [text(m) for m in desk.outbox()]


def mails_to(desk: Helpdesk, address: str, marker: str = "") -> list[str]:
    return [text(m) for m in desk.outbox()
            if marker in m["Subject"] and m["To"].addresses[0].addr_spec == address]


def test_escalation_mails_show_moscow_time_to_the_minute(desk: Helpdesk) -> None:
    arrive(desk, at("2026-11-30 10:00"))
    tick(desk, at("2026-11-30 10:31"))
    tick(desk, at("2026-11-30 14:05"))  # 4 h of net time passed at 14:00
    [escalation] = mails_to(desk, "alice@example.com", "[escalated]")
    assert "Unattended since: 2026-11-30 10:00 MSK" in escalation
    assert "needs attention:\nunattended for 31m of business time since 2026-11-30 10:00 MSK " \
        "(escalated after 30m).\n" in escalation
    [breach] = mails_to(desk, "bob@example.com", "[SLA breached]")
    assert "resolution target of 4h net working time missed (due 2026-11-30 14:00 MSK)" \
        in breach
    for body in bodies(desk):
        assert not ISO_INSTANT.search(body), body


def test_an_escalation_found_late_says_how_long_the_ticket_really_waited(
        desk: Helpdesk) -> None:
    """SPEC §6: the escalation says how long the ticket was unattended — the business time
    until the timer found it (a daemon stopped over the weekend), not the configured limit."""
    arrive(desk, at("2026-11-30 10:00"))  # Monday
    tick(desk, at("2026-12-02 11:15"))  # Wednesday: 8 + 9 + 2.25 business hours later
    [escalation] = mails_to(desk, "alice@example.com", "[escalated]")
    assert "unattended for 19h 15m of business time since 2026-11-30 10:00 MSK (escalated " \
        "after 30m)" in escalation


def test_the_why_of_an_event_shows_moscow_time(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 10:00"))
    tick(desk, at("2026-11-30 10:31"))
    [escalated] = [e for e in desk.ticket(number)["events"] if e["type"] == "escalated"]
    assert escalated["detail"].startswith(
        "unattended for 31m of business time since 2026-11-30 10:00 MSK (escalated after 30m); "
        "notified ")
    assert escalated["at"] == at("2026-11-30 10:31").astimezone(UTC).isoformat()  # JSON: ISO


def test_russian_mails_say_times_and_durations_in_russian(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    desk = with_sla(Helpdesk(tmp_path, capsys, language="ru"))
    number = arrive(desk, at("2026-11-30 10:00"))
    tick(desk, at("2026-11-30 10:31"))
    tick(desk, at("2026-11-30 14:05"))
    [escalation] = mails_to(desk, "alice@example.com", "[эскалация]")
    assert "требует внимания:\nбез внимания 31 мин рабочего времени с 2026-11-30 10:00 MSK\n" \
        "(эскалация после 30 мин).\n" \
        in escalation
    assert "Без внимания с: 2026-11-30 10:00 MSK" in escalation
    [breach] = mails_to(desk, "alice@example.com", "[SLA нарушен]")
    assert "требует внимания:\nсрок решения (4 ч чистого рабочего времени) нарушен.\n" \
        "Он истёк 2026-11-30 14:00 MSK.\n" in breach
    assert desk.run("ticket", "close-request", number).code == 0
    question = mails_to(desk, "ivan@example.org")[-1]
    assert "Можно ли закрыть обращение?" in question
    assert "в течение 7 дн., обращение будет закрыто" in question
    for body in bodies(desk):
        assert not ISO_INSTANT.search(body), body


def test_a_breached_ticket_keeps_the_deadline_it_missed(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 09:00"))                         # Monday
    act(desk, at("2026-11-30 10:00"), number, "answer", "alice@example.com", "Try this.")
    arrive(desk, at("2026-11-30 14:30"), subject=f"Re: [Ticket#{number}] no luck")
    # 1 h before the answer, and 3 h more from 14:30: the 4 h target is reached at 17:30.
    assert tick(desk, at("2026-12-01 10:00"))["breached"] == [number]     # Tuesday
    state = sla(desk, number, at("2026-12-01 10:00"))
    assert state["breached"] is True
    assert datetime.fromisoformat(str(state["resolve_by"])) == at("2026-11-30 17:30")
    assert state["net_seconds"] == int(5.5 * 3600)  # 09-10, 14:30-18:00, Tuesday 09-10
    shown = desk.run("ticket", "show", number, "--at", at("2026-12-01 10:00").isoformat())
    assert "  SLA: BREACHED at 2026-11-30 17:30 MSK (net 5h 30m of 4h)\n" in shown.out
    # The deadline stays after the ticket waits again.
    act(desk, at("2026-12-01 11:00"), number, "answer", "alice@example.com", "And this?")
    later = sla(desk, number, at("2026-12-03 12:00"))
    assert datetime.fromisoformat(str(later["resolve_by"])) == at("2026-11-30 17:30")
    assert later["breached"] is True


def test_the_past_deadline_of_a_breach_never_makes_the_timer_spin(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 09:00"))
    assert tick(desk, at("2026-11-30 13:00"))["breached"] == [number]
    # The breach duty is done; an operator clears the flag in the database and the ticket is
    # due again: the timer looks once, sends nothing, and does not come back to it.
    desk.set_ticket(number, breached=False, next_due_at=at("2026-11-30 13:30"))
    assert duties_at(desk, at("2026-11-30 14:00")).examined == 1
    assert duties_at(desk, at("2026-11-30 14:01")).examined == 0
    assert tick(desk, at("2026-11-30 15:00"))["breached"] == []


def duties_at(desk: Helpdesk, when: datetime) -> TickReport:
    app = App(config.load(desk.config), clock=FixedClock(when))
    try:
        return run_duties(app.pool, app.settings, app.templates, app.clock)
    finally:
        app.close()


def test_ticket_show_prints_the_sla_and_times_in_moscow_time(desk: Helpdesk) -> None:
    number = arrive(desk, at("2026-11-30 09:00"))

    def show(when: str) -> str:
        result = desk.run("ticket", "show", number, "--at", at(when).isoformat())
        assert result.code == 0, result.err
        return result.out

    running = show("2026-11-30 11:15")
    assert "  SLA: net 2h 15m of 4h; resolve by 2026-11-30 13:00 MSK\n" in running
    assert "created 2026-11-30 09:00 MSK" in running
    assert "<- 2026-11-30 09:00 MSK customer from ivan@example.org" in running
    assert "  2026-11-30 09:00 MSK  created " in running
    act(desk, at("2026-11-30 11:15"), number, "answer", "alice@example.com", "Try this.")
    assert "  SLA: paused (waiting), 1h 45m left (net 2h 15m of 4h)\n" in show("2026-12-02 10:00")
    act(desk, at("2026-12-02 10:00"), number, "close", "alice@example.com")
    closed = show("2026-12-02 10:00")
    assert "  SLA: closed within the target (net 2h 15m of 4h)\n" in closed
    assert not ISO_INSTANT.search(closed.replace(f"Ticket#{number}", "")), closed


def test_ticket_list_has_an_sla_column(desk: Helpdesk) -> None:
    late = arrive(desk, at("2026-11-30 09:00"))
    fresh = arrive(desk, at("2026-11-30 12:50"), subject="Another one")
    waiting = arrive(desk, at("2026-11-30 11:00"), subject="Waits")
    act(desk, at("2026-11-30 12:00"), waiting, "answer", "alice@example.com", "Try this.")
    tick(desk, at("2026-11-30 13:00"))
    listed = desk.run("ticket", "list", "--at", at("2026-11-30 13:00").isoformat())
    assert listed.code == 0, listed.err
    head, *rows = listed.out.splitlines()
    assert head.split()[:4] == ["number", "status", "priority", "SLA"]
    sla_column = {row.split()[0]: row[head.index("SLA"):].split("  ")[0].strip() for row in rows}
    assert sla_column == {late: "BREACHED", fresh: "2026-11-30 16:50 MSK", waiting: "paused"}
    # Columns as wide as their content: with the SLA column added, the free-text subject still
    # starts no later than it did (column 115) when queue, owner and customer had fixed widths.
    assert head.index("subject") <= 115


def test_the_sla_report_prints_no_iso_instants(desk: Helpdesk) -> None:
    late = arrive(desk, at("2026-11-30 09:00"))
    arrive(desk, at("2026-11-30 12:50"), subject="Another one")
    tick(desk, at("2026-11-30 13:00"))
    text = desk.run("sla", "report", "--at", at("2026-11-30 13:10").isoformat()).out
    assert text.startswith("SLA report at 2026-11-30 13:10 MSK\n")
    assert f"{late}  new      net 4h 10m of 4h" in text
    assert "BREACHED at 2026-11-30 13:00 MSK" in text
    assert "net 20m of 4h" in text and "resolve by 2026-11-30 16:50 MSK" in text
    assert "  2026-11-30 13:00 MSK  " + late in text  # the escalations
    assert not ISO_INSTANT.search(text), text


# --- the SLA clock itself -------------------------------------------------------------------

CALENDAR = BusinessCalendar.parse("Mon-Fri 09:00-18:00", "Europe/Moscow")
FOUR_HOURS = timedelta(hours=4)


def test_the_clock_names_the_instant_the_target_was_reached() -> None:
    history = [(at("2026-11-30 09:00"), "new"), (at("2026-11-30 10:00"), "waiting"),
               (at("2026-11-30 16:00"), "open")]  # 1 h, then 2 h on Monday, 1 h on Tuesday
    state = sla_state(CALENDAR, history, at("2026-12-01 12:00"), FOUR_HOURS)
    assert (state.breached, state.resolve_by, state.net, state.left) == \
        (True, at("2026-12-01 10:00"), timedelta(hours=6), timedelta(0))


def test_a_running_clock_names_its_deadline_and_a_paused_one_none() -> None:
    history = [(at("2026-11-30 09:00"), "new")]
    running = sla_state(CALENDAR, history, at("2026-11-30 17:00"), FOUR_HOURS)
    assert (running.breached, running.resolve_by) == (True, at("2026-11-30 13:00"))
    early = sla_state(CALENDAR, history, at("2026-11-30 10:00"), FOUR_HOURS)
    assert (early.breached, early.resolve_by, early.left) == \
        (False, at("2026-11-30 13:00"), timedelta(hours=3))
    paused = sla_state(CALENDAR, [*history, (at("2026-11-30 10:00"), "waiting")],
                       at("2026-12-04 10:00"), FOUR_HOURS)
    assert (paused.breached, paused.resolve_by, paused.running, paused.left) == \
        (False, None, False, timedelta(hours=3))
