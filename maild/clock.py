"""Time as a parameter, and time as people read it.

Every rule that depends on time takes a Clock. All instants inside maild are timezone-aware UTC
datetimes. `FixedClock` serves tests and `maild tick --at`, so the timer duties are the same
code whatever the source of "now".

Two forms leave maild: `iso` for machines (`--json`, SPEC §3), and `time_for_people` /
`duration_for_people` for everything a person reads — mails, `why` texts, plain command output
(SPEC §6: in `sla.timezone`, to the minute, never raw ISO instants).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it is told; `advance` moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = as_utc(at)

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = as_utc(at)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC for any datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant as given to `--at`; without an offset it is UTC."""
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def iso(moment: datetime | None) -> str | None:
    """The ISO 8601 form maild prints: UTC with an explicit offset."""
    return None if moment is None else as_utc(moment).isoformat()


def time_for_people(moment: datetime, zone: tzinfo) -> str:
    """`2026-12-01 20:54 MSK`: wall time in `zone`, to the minute (seconds are dropped, not
    rounded: a deadline shown as 13:00 has not passed at 13:00:40), with the zone's
    abbreviation — which also tells the two 02:30 of a fall-back night apart. Zones without an
    abbreviation show their offset (`+05`)."""
    return as_utc(moment).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


_MINUTE = timedelta(minutes=1)
# (day, hour, minute) unit names in each style, and the text for less than a minute. Russian
# keeps its abbreviations in the long style too: "7 дн." reads right after any preposition
# ("в течение", "через"), which spelled-out words (день, дня, дней, дню) would not.
_SHORT_UNITS = {"en": (("d", "h", "m"), "", "under a minute"),
                "ru": ((" дн.", " ч", " мин"), "", "меньше минуты")}
_LONG_UNITS = {"en": ((" day", " hour", " minute"), "s", "under a minute"),
               "ru": ((" дн.", " ч", " мин"), "", "меньше минуты")}


def duration_for_people(duration: timedelta, language: str = "en", *,
                        long: bool = False) -> str:
    """A duration to the minute, largest unit first, zero parts left out: `1d 3h 5m`, `2h 15m`,
    `45m`, `0m`; `under a minute` for a positive duration shorter than that. `long` spells the
    units out for customers (`7 days`, `1 day 12 hours`). A day is 24 hours, as in the config
    (`resolve_within = "2d"`). `language` is a template language (en, ru; others get en)."""
    table = _LONG_UNITS if long else _SHORT_UNITS
    units, plural, under_a_minute = table.get(language, table["en"])
    if duration < timedelta(0):
        return "-" + duration_for_people(-duration, language, long=long)
    if timedelta(0) < duration < _MINUTE:
        return under_a_minute
    minutes = duration // _MINUTE
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{count}{unit}{plural if count != 1 else ''}"
             for count, unit in zip((days, hours, minutes), units, strict=True) if count]
    return " ".join(parts) or f"0{units[2]}{plural}"
