"""`maild.clock`: instants and durations as people read them (SPEC §6), next to `iso` for
machines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from maild.clock import duration_for_people, iso, time_for_people

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


def test_an_instant_is_shown_in_the_zone_to_the_minute_with_its_abbreviation() -> None:
    instant = datetime(2026, 12, 1, 17, 54, 2, 703816, tzinfo=UTC)
    assert time_for_people(instant, MOSCOW) == "2026-12-01 20:54 MSK"
    assert iso(instant) == "2026-12-01T17:54:02.703816+00:00"  # the machine form stays


def test_seconds_are_dropped_not_rounded() -> None:
    assert time_for_people(datetime(2026, 12, 1, 9, 59, 59, tzinfo=UTC), UTC) == \
        "2026-12-01 09:59 UTC"


def test_a_zone_without_an_abbreviation_shows_its_offset() -> None:
    instant = datetime(2026, 12, 1, 17, 54, tzinfo=UTC)
    assert time_for_people(instant, ZoneInfo("Asia/Yekaterinburg")) == "2026-12-01 22:54 +05"


def test_the_abbreviation_tells_the_two_halves_of_a_fall_back_hour_apart() -> None:
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert time_for_people(first, BERLIN) == "2026-10-25 02:30 CEST"
    assert time_for_people(first + timedelta(hours=1), BERLIN) == "2026-10-25 02:30 CET"


def test_an_instant_in_another_zone_is_converted() -> None:
    moscow_noon = datetime(2026, 11, 30, 12, 0, tzinfo=MOSCOW)
    assert time_for_people(moscow_noon, BERLIN) == "2026-11-30 10:00 CET"


@pytest.mark.parametrize(("duration", "english", "russian", "in_words"), [
    (timedelta(0), "0m", "0 мин", "0 minutes"),
    (timedelta(seconds=30), "under a minute", "меньше минуты", "under a minute"),
    (timedelta(minutes=45), "45m", "45 мин", "45 minutes"),
    (timedelta(hours=2, minutes=15, seconds=59), "2h 15m", "2 ч 15 мин", "2 hours 15 minutes"),
    (timedelta(hours=1, minutes=1), "1h 1m", "1 ч 1 мин", "1 hour 1 minute"),
    (timedelta(days=1, hours=3), "1d 3h", "1 дн. 3 ч", "1 day 3 hours"),
    (timedelta(days=7), "7d", "7 дн.", "7 days"),
    (timedelta(hours=36), "1d 12h", "1 дн. 12 ч", "1 day 12 hours"),
    (timedelta(minutes=-90), "-1h 30m", "-1 ч 30 мин", "-1 hour 30 minutes"),
])
def test_durations_for_people(duration: timedelta, english: str, russian: str,
                              in_words: str) -> None:
    assert duration_for_people(duration) == english
    assert duration_for_people(duration, "ru") == russian
    assert duration_for_people(duration, long=True) == in_words
    # Russian abbreviations read right in any grammatical case, so its long style keeps them.
    assert duration_for_people(duration, "ru", long=True) == russian


def test_an_unknown_language_gets_english_units() -> None:
    assert duration_for_people(timedelta(hours=2), "de") == "2h"
