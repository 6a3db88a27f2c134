"""The business calendar (maild/sla/calendar.py) and the `sla.business_hours` syntax."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild import config
from maild.errors import ConfigError
from maild.sla.calendar import BusinessCalendar, parse_business_hours

MINUTE = timedelta(minutes=1)
MICRO = timedelta(microseconds=1)

MOSCOW = BusinessCalendar.parse("Mon-Fri 09:00-18:00", "Europe/Moscow")
BERLIN_HOLIDAYS = (date(2026, 3, 29), date(2026, 5, 1), date(2026, 10, 25), date(2026, 12, 24),
                   date(2026, 12, 25), date(2027, 1, 1), date(2027, 10, 31))
BERLIN = BusinessCalendar.parse(
    # the Sunday night ranges start and end inside skipped and repeated local hours
    "Mon-Fri 09:00-13:00,14:00-18:00; Sat 10:00-14:00; Sun 00:30-02:30,02:45-03:30",
    "Europe/Berlin", BERLIN_HOLIDAYS)
ALWAYS = BusinessCalendar.parse("24x7", "UTC")
NEW_YORK = BusinessCalendar.parse("Mon-Fri 08:00-17:00; Sun 00:00-04:00,22:00-24:00",
                                  "America/New_York", (date(2026, 7, 3), date(2026, 11, 26)))
# Havana changes its clocks at midnight: 00:00 -> 01:00 in March, 01:00 -> 00:00 in November
HAVANA = BusinessCalendar.parse("Mon-Fri 09:00-18:00; Sat 20:00-24:00; Sun 00:00-02:00",
                                "America/Havana")
CALENDARS = {"moscow": MOSCOW, "berlin": BERLIN, "24x7": ALWAYS, "new_york": NEW_YORK,
             "havana": HAVANA}


def at(zone: str, *fields: int, fold: int = 0) -> datetime:
    """A local wall time in `zone` as an aware UTC instant."""
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def msk(*fields: int) -> datetime:
    return at("Europe/Moscow", *fields)


def _dst_change_days(zone: str) -> list[datetime]:
    """Midnight UTC of each day on which the zone's UTC offset changes, 2000-2045."""
    tz, day, found = ZoneInfo(zone), datetime(2000, 1, 1, tzinfo=UTC), []
    while day.year < 2046:
        if day.astimezone(tz).utcoffset() != (day + timedelta(days=1)).astimezone(tz).utcoffset():
            found.append(day)
        day += timedelta(days=1)
    return found


DST_DAYS = [day for zone in ("Europe/Berlin", "America/New_York", "America/Havana",
                              "America/Santiago") for day in _dst_change_days(zone)]

any_instant = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2045, 12, 31),
                           timezones=st.just(UTC))
near_dst = st.builds(lambda day, shift: day + shift, st.sampled_from(DST_DAYS),
                     st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=3)))
near_holiday = st.builds(lambda day, shift: datetime.combine(day, datetime.min.time(), UTC)
                         + shift, st.sampled_from(BERLIN_HOLIDAYS),
                         st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=2)))
instants = st.one_of(any_instant, near_dst, near_holiday)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60))
calendars = pytest.mark.parametrize("calendar", CALENDARS.values(), ids=CALENDARS.keys())
examples = settings(max_examples=200, deadline=None)


# -- the syntax of sla.business_hours -------------------------------------------------------

WEEKDAYS_9_TO_6 = (((540, 1080),),) * 5 + ((),) * 2


@pytest.mark.parametrize(
    ("text", "week"),
    [
        ("Mon-Fri 09:00-18:00", WEEKDAYS_9_TO_6),
        ("  mon-FRI   9:00 - 18:00 ", WEEKDAYS_9_TO_6),
        ("24x7", (((0, 1440),),) * 7),
        (" 24X7 ", (((0, 1440),),) * 7),
        ("Mon-Fri 09:00-13:00,14:00-18:00; Sat 10:00-14:00",
         (((540, 780), (840, 1080)),) * 5 + (((600, 840),), ())),
        ("Sat-Sun 10:00-14:00", ((),) * 5 + (((600, 840),),) * 2),
        ("Fri-Mon 10:00-11:00", (((600, 660),), (), (), ()) + (((600, 660),),) * 3),
        ("Mon,Wed, Fri 09:00-10:00", (((540, 600),), (), ((540, 600),), (), ((540, 600),), (),
                                      ())),
        ("Mon 22:00-24:00; Tue 00:00-06:00", (((1320, 1440),), ((0, 360),)) + ((),) * 5),
    ],
)
def test_good_business_hours_parse_to_minutes_per_weekday(
    text: str, week: tuple[tuple[tuple[int, int], ...], ...]
) -> None:
    assert parse_business_hours(text) == week


def test_overlapping_or_touching_ranges_of_one_day_are_merged() -> None:
    week = parse_business_hours("Mon 09:00-12:00,11:00-13:00; Mon-Tue 13:00-14:00,16:00-17:00")
    assert week[0] == ((540, 840), (960, 1020))
    assert week[1] == ((780, 840), (960, 1020))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["is empty", "Mon-Fri"]),
        ("   ", ["is empty"]),
        ("Mon-Fri 18:00-09:00", ["'18:00-09:00'", "does not end after it starts",
                                 "overnight shift as two ranges"]),
        ("Mon 09:00-09:00", ["does not end after it starts"]),
        ("Funday 09:00-10:00", ["unknown day 'Funday'", "Mon, Tue, Wed, Thu, Fri, Sat, Sun"]),
        ("Mon-Fir 09:00-10:00", ["unknown day 'Fir'", "'Mon-Fir 09:00-10:00'"]),
        ("Mon 9-17", ["'9-17'", "not a time range", "HH:MM-HH:MM"]),
        ("Mon 09:00-25:00", ["25:00", "not a time of day"]),
        ("Mon 09:60-10:00", ["09:60", "not a time of day"]),
        ("Mon 24:00-24:00", ["does not end after it starts"]),
        ("Mon-Fri", ["'Mon-Fri' has no hours", "'Mon-Fri 09:00-18:00'"]),
        ("09:00-18:00", ["does not start with days"]),
        ("Mon 09:00-10:00;", ["empty day group", "stray ';'"]),
        ("24x7; Sat 10:00-12:00", ["'24x7' cannot be combined"]),
        ("Mon-Mon 09:00-10:00", ["starts and ends on the same day"]),
        ("Mon 09:00-10:00 11:00-12:00", ["'09:00-10:00 11:00-12:00'", "not a time range"]),
        ("always", ["unknown day 'always'"]),
    ],
)
def test_bad_business_hours_say_what_is_wrong(text: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        parse_business_hours(text)
    for word in words:
        assert word in str(raised.value)


MAIL = {"mail": {"support_address": "support@example.com"}}


def test_a_bad_business_hours_setting_is_a_config_problem_naming_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping({**MAIL, "sla": {"business_hours": "Mon-Fri 18:00-09:00"}},
                            "maild.toml")
    [problem] = raised.value.problems
    assert problem.startswith("maild.toml:sla.business_hours: range '18:00-09:00'")


def test_the_config_keeps_good_business_hours_as_written() -> None:
    hours = "Mon-Fri 09:00-13:00,14:00-18:00; Sat 10:00-14:00"
    settings_ = config.from_mapping({**MAIL, "sla": {"business_hours": hours}})
    assert settings_.sla.business_hours == hours


def test_the_calendar_of_the_settings_is_built_once() -> None:
    sla = config.SlaSettings(holidays=(date(2026, 12, 31),))
    calendar = BusinessCalendar.from_settings(sla)
    assert calendar is BusinessCalendar.from_settings(config.SlaSettings(
        holidays=(date(2026, 12, 31),)))
    assert calendar.zone == ZoneInfo("Europe/Moscow")
    assert calendar.week == WEEKDAYS_9_TO_6
    assert calendar.holidays == {date(2026, 12, 31)}


# -- worked examples ------------------------------------------------------------------------


def test_half_an_hour_before_closing_ends_at_closing() -> None:
    assert MOSCOW.add_business_time(msk(2026, 11, 27, 17, 30), 30 * MINUTE) == \
        msk(2026, 11, 27, 18, 0)


def test_what_does_not_fit_on_friday_continues_on_monday() -> None:
    assert MOSCOW.add_business_time(msk(2026, 11, 27, 17, 50), 30 * MINUTE) == \
        msk(2026, 11, 30, 9, 20)


def test_a_monday_holiday_pushes_it_to_tuesday() -> None:
    calendar = BusinessCalendar.parse("Mon-Fri 09:00-18:00", "Europe/Moscow",
                                      (date(2026, 11, 30),))
    assert calendar.add_business_time(msk(2026, 11, 27, 17, 50), 30 * MINUTE) == \
        msk(2026, 12, 1, 9, 20)
    assert calendar.business_seconds(msk(2026, 11, 27, 17, 50), msk(2026, 12, 1, 9, 20)) == 1800


def test_results_are_utc() -> None:
    result = MOSCOW.add_business_time(msk(2026, 11, 27, 17, 50), 30 * MINUTE)
    assert result.tzinfo is UTC
    assert result == datetime(2026, 11, 30, 6, 20, tzinfo=UTC)


def test_a_week_of_business_hours_is_five_working_days() -> None:
    assert MOSCOW.business_seconds(msk(2026, 11, 23, 0, 0), msk(2026, 11, 30, 0, 0)) == 5 * 9 * 3600
    assert MOSCOW.add_business_time(msk(2026, 11, 23, 9, 0), timedelta(hours=45)) == \
        msk(2026, 11, 27, 18, 0)


def test_adding_nothing_returns_the_start_even_outside_business_hours() -> None:
    saturday = msk(2026, 11, 28, 12, 0)
    assert MOSCOW.add_business_time(saturday, timedelta(0)) == saturday


def test_24x7_is_plain_addition() -> None:
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert ALWAYS.add_business_time(start, timedelta(days=3, seconds=7)) == \
        start + timedelta(days=3, seconds=7)
    assert ALWAYS.business_seconds(start, start + timedelta(hours=5)) == 5 * 3600


def test_24x7_in_a_dst_zone_is_still_plain_elapsed_time() -> None:
    berlin = BusinessCalendar.parse("24x7", "Europe/Berlin")
    start = at("Europe/Berlin", 2026, 3, 28, 12, 0)
    assert berlin.add_business_time(start, timedelta(hours=24)) == \
        at("Europe/Berlin", 2026, 3, 29, 13, 0)


def test_a_business_range_counts_its_start_but_not_its_end() -> None:
    assert MOSCOW.is_business_time(msk(2026, 11, 27, 9, 0))
    assert MOSCOW.is_business_time(msk(2026, 11, 27, 18, 0) - MICRO)
    assert not MOSCOW.is_business_time(msk(2026, 11, 27, 18, 0))
    assert not MOSCOW.is_business_time(msk(2026, 11, 28, 12, 0))


def test_the_next_business_instant_is_now_or_the_next_opening() -> None:
    inside = msk(2026, 11, 27, 12, 0)
    assert MOSCOW.next_business_instant(inside) == inside
    assert MOSCOW.next_business_instant(msk(2026, 11, 27, 18, 0)) == msk(2026, 11, 30, 9, 0)


def test_instants_may_be_given_in_any_zone_but_not_naive() -> None:
    assert MOSCOW.is_business_time(datetime(2026, 11, 27, 9, 0, tzinfo=ZoneInfo("Europe/Moscow")))
    with pytest.raises(ValueError, match="timezone-aware"):
        MOSCOW.business_seconds(datetime(2026, 11, 27, 9, 0), datetime(2026, 11, 27, 10, 0))


def test_measuring_backwards_gives_zero() -> None:
    assert MOSCOW.business_seconds(msk(2026, 11, 27, 12, 0), msk(2026, 11, 27, 10, 0)) == 0


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        MOSCOW.add_business_time(msk(2026, 11, 27, 12, 0), -MINUTE)


def test_a_calendar_without_business_time_gives_up_after_ten_years() -> None:
    mondays = tuple(date(2026, 11, 30) + timedelta(weeks=n) for n in range(53 * 11))
    never = BusinessCalendar.parse("Mon 09:00-10:00", "Europe/Moscow", mondays)
    start = msk(2026, 11, 27, 12, 0)
    with pytest.raises(ValueError, match="3653 days"):
        never.add_business_time(start, MINUTE)
    with pytest.raises(ValueError, match="no business time"):
        never.next_business_instant(start)
    assert never.business_seconds(start, start + timedelta(days=3000)) == 0


def test_a_long_duration_is_counted_in_whole_days() -> None:
    start = msk(2026, 1, 1, 0, 0)
    end = MOSCOW.add_business_time(start, timedelta(days=30))  # 80 working days of 9 hours
    assert MOSCOW.business_seconds(start, end) == 30 * 86400
    assert end == msk(2026, 4, 22, 18, 0)


# -- daylight saving time -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "whole_day_hours"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("Europe/Moscow", date(2026, 3, 29), 24),
        ("America/Havana", date(2026, 3, 8), 23),  # midnight itself is skipped
        ("America/Havana", date(2026, 10, 31), 24),
        ("America/Havana", date(2026, 11, 1), 25),  # 00:00-01:00 runs twice
        ("America/Santiago", date(2026, 4, 4), 25),  # 23:00-24:00 runs twice
        ("America/Santiago", date(2026, 9, 5), 24),
        ("America/Santiago", date(2026, 9, 6), 23),  # midnight itself is skipped
    ],
)
def test_a_dst_change_day_counts_real_elapsed_time(
    zone: str, day: date, whole_day_hours: int
) -> None:
    whole = BusinessCalendar.parse(f"{day:%a} 00:00-24:00", zone)
    office = BusinessCalendar.parse(f"{day:%a} 09:00-18:00", zone)
    around = (at(zone, day.year, day.month, day.day) - timedelta(hours=12),
              at(zone, day.year, day.month, day.day) + timedelta(hours=36))
    assert whole.business_seconds(*around) == whole_day_hours * 3600
    assert office.business_seconds(*around) == 9 * 3600


@pytest.mark.parametrize(
    ("hours", "day", "expected"),
    [
        ("Sun 02:00-03:00", date(2026, 3, 29), timedelta(0)),  # skipped entirely
        ("Sun 02:30-04:00", date(2026, 3, 29), timedelta(hours=1)),  # from the jump at 03:00
        ("Sun 01:00-02:30", date(2026, 3, 29), timedelta(hours=1)),  # until the jump
        ("Sun 02:00-03:00", date(2026, 10, 25), timedelta(hours=2)),  # the hour runs twice
        ("Sun 01:00-02:30", date(2026, 10, 25), timedelta(hours=2, minutes=30)),  # to 2nd 02:30
        ("Sun 02:30-04:00", date(2026, 10, 25), timedelta(hours=2, minutes=30)),  # from 1st 02:30
    ],
)
def test_ranges_in_skipped_or_repeated_hours_follow_the_documented_rule(
    hours: str, day: date, expected: timedelta
) -> None:
    calendar = BusinessCalendar.parse(hours, "Europe/Berlin")
    start = datetime.combine(day, datetime.min.time(), UTC) - timedelta(hours=3)
    assert calendar.business_time(start, start + timedelta(days=1)) == expected


def test_business_time_in_a_repeated_hour_is_counted_in_real_time() -> None:
    calendar = BusinessCalendar.parse("Sun 02:00-03:00", "Europe/Berlin")
    first = at("Europe/Berlin", 2026, 10, 25, 2, 15, fold=0)
    second = at("Europe/Berlin", 2026, 10, 25, 2, 15, fold=1)
    assert calendar.business_seconds(first, second) == 3600
    assert calendar.add_business_time(first, timedelta(hours=1)) == second


def test_a_night_shift_across_midnight_is_written_as_two_ranges() -> None:
    shift = BusinessCalendar.parse("Sat 22:00-24:00; Sun 00:00-06:00", "Europe/Berlin")
    start = at("Europe/Berlin", 2026, 3, 28, 23, 0)
    # 1 h on Saturday, then 2 h from midnight: Sunday 02:00 winter time, the instant the clock
    # jumps to 03:00 summer time
    assert shift.add_business_time(start, timedelta(hours=3)) == \
        at("Europe/Berlin", 2026, 3, 29, 3, 0)
    # 2 h on Saturday and 00:00-06:00 on Sunday, which is 5 real hours that night
    assert shift.business_seconds(at("Europe/Berlin", 2026, 3, 28, 12, 0),
                                  at("Europe/Berlin", 2026, 3, 29, 12, 0)) == 7 * 3600


# -- properties -----------------------------------------------------------------------------


@calendars
@examples
@given(start=instants, duration=durations)
def test_adding_then_measuring_business_time_round_trips(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    end = calendar.add_business_time(start, duration)
    assert end >= start
    assert calendar.business_time(start, end) == duration
    assert abs(calendar.business_seconds(start, end) - duration.total_seconds()) <= 1e-6
    if duration:
        assert calendar.business_time(start, end - MICRO) < duration  # the earliest such end


@calendars
@examples
@given(start=instants, gaps=st.lists(st.timedeltas(min_value=timedelta(0),
                                                   max_value=timedelta(days=20)),
                                     min_size=2, max_size=2))
def test_business_time_is_additive_and_monotonic(
    calendar: BusinessCalendar, start: datetime, gaps: list[timedelta]
) -> None:
    a, b = start, start + gaps[0]
    c = b + gaps[1]
    assert calendar.business_time(a, c) == calendar.business_time(a, b) + \
        calendar.business_time(b, c)
    assert abs(calendar.business_seconds(a, c) - calendar.business_seconds(a, b)
               - calendar.business_seconds(b, c)) <= 1e-6
    assert calendar.business_time(a, b) <= calendar.business_time(a, c) <= c - a


def _inside(window: tuple[datetime, datetime], fractions: tuple[float, float]
            ) -> tuple[datetime, datetime]:
    low, high = sorted(fractions)
    start, end = window
    return start + (end - start) * low, start + (end - start) * high


def _moscow_off_hours(day: date) -> tuple[datetime, datetime]:
    """From closing on `day` (or its midnight at a weekend) to the next opening."""
    opening = day + timedelta(days=1)
    while opening.weekday() >= 5:
        opening += timedelta(days=1)
    closing = msk(day.year, day.month, day.day, 18 if day.weekday() < 5 else 0)
    return closing, msk(opening.year, opening.month, opening.day, 9)


def _berlin_holiday(day: date) -> tuple[datetime, datetime]:
    following = day + timedelta(days=1)
    return (at("Europe/Berlin", day.year, day.month, day.day),
            at("Europe/Berlin", following.year, following.month, following.day))


fractions = st.tuples(st.floats(0, 1), st.floats(0, 1))
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2045, 12, 31))


@examples
@given(day=days, part=fractions)
def test_nights_and_weekends_never_count(day: date, part: tuple[float, float]) -> None:
    start, end = _inside(_moscow_off_hours(day), part)
    assert MOSCOW.business_seconds(start, end) == 0
    assert not MOSCOW.is_business_time(start) or start == end


@examples
@given(day=st.sampled_from(BERLIN_HOLIDAYS), part=fractions)
def test_holidays_never_count(day: date, part: tuple[float, float]) -> None:
    start, end = _inside(_berlin_holiday(day), part)
    assert BERLIN.business_seconds(start, end) == 0
    assert not BERLIN.is_business_time(start)


# An independent oracle: step minute by minute and read the local clock. It agrees with the
# calendar wherever no range boundary falls inside a repeated hour, as in these calendars.
ORACLE_CALENDARS = {
    "moscow": MOSCOW,
    "new_york": NEW_YORK,
    "berlin_nights": BusinessCalendar.parse(
        "Mon-Fri 09:00-13:00,14:00-18:00; Sat 22:00-24:00; Sun 00:00-01:30,01:45-03:15,04:00-06:00",
        "Europe/Berlin", BERLIN_HOLIDAYS),
    "havana": HAVANA,
    "santiago": BusinessCalendar.parse("Mon-Fri 09:00-18:00; Sat 20:00-24:00; Sun 00:00-02:00",
                                       "America/Santiago"),
}


def _oracle_is_business(calendar: BusinessCalendar, instant: datetime) -> bool:
    local = instant.astimezone(calendar.zone)
    minute = local.hour * 60 + local.minute
    return local.date() not in calendar.holidays and any(
        lo <= minute < hi for lo, hi in calendar.week[local.weekday()])


@pytest.mark.parametrize("calendar", ORACLE_CALENDARS.values(), ids=ORACLE_CALENDARS.keys())
@settings(max_examples=40, deadline=None)
@given(start=st.one_of(near_dst, near_holiday),
       minutes=st.integers(min_value=0, max_value=3 * 24 * 60))
def test_business_time_agrees_with_reading_the_clock_minute_by_minute(
    calendar: BusinessCalendar, start: datetime, minutes: int
) -> None:
    start = start.replace(second=0, microsecond=0)
    steps = [start + n * MINUTE for n in range(minutes)]
    expected = sum(_oracle_is_business(calendar, t) for t in steps)
    assert calendar.business_time(start, start + minutes * MINUTE) == expected * MINUTE
    for t in steps[::37]:
        assert calendar.is_business_time(t) == _oracle_is_business(calendar, t)
        opening = calendar.next_business_instant(t)
        assert calendar.is_business_time(opening)
        assert calendar.business_time(t, opening) == timedelta(0)


@examples
@given(start=instants, duration=durations)
def test_24x7_utc_adds_and_measures_plain_time(start: datetime, duration: timedelta) -> None:
    assert ALWAYS.add_business_time(start, duration) == start + duration
    assert ALWAYS.business_time(start, start + duration) == duration
