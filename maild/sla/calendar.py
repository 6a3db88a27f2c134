"""The business calendar: which instants are business time, and how much lies between two.

Owns the arithmetic of SPEC §8's "net working time": `sla.business_hours` and `sla.holidays`
read in `sla.timezone`. Pure and immutable — no database, no clock; every input and output is
a timezone-aware datetime (results are UTC; a naive datetime is refused, as in `models`).
The syntax of `sla.business_hours` is parsed by `maild.config.parse_business_hours`, so that
config validation (the kernel) and this module (a stage) share one parser.

How local hours become real time, for each local date that is not a holiday:

- A range "S-E" runs from the first instant the local clock reads S to the last instant it
  reads E, and counts the real time elapsed between them. On a DST day that is what the office
  actually works: in Europe/Berlin "00:00-24:00" is 23 h on 2026-03-29 and 25 h on 2026-10-25.
- Skipped local time (spring forward) counts nothing: a bound that falls in the gap moves to
  the instant the clock jumps. Berlin "02:00-03:00" on 2026-03-29 is empty, "02:30-04:00" is 1 h.
- Repeated local time (fall back): the start takes the first occurrence, the end the second, so
  a range reaching into the repeated hour covers it in full: "02:00-03:00" on 2026-10-25 is 2 h,
  and "01:00-02:30" is 2.5 h (01:00 summer time to 02:30 winter time).
- A day's ranges never leave the day: they are clipped to [the first instant of the date, the
  first instant of the next date), so days tile the timeline without overlap even where the
  clock changes at midnight (America/Havana, America/Santiago); "24:00" is the day's end.

Instants are handled as whole microseconds since the epoch, so adding and then measuring
business time round-trips exactly. Each day's UTC intervals are computed once and cached.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo

from maild.config import SlaSettings, WeeklyHours, parse_business_hours

__all__ = ["SEARCH_LIMIT", "BusinessCalendar", "parse_business_hours"]

SEARCH_LIMIT = timedelta(days=3653)
"""How far ahead `add_business_time` and `next_business_instant` look (about 10 years)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_WHOLE_DAY = (0, 24 * 60)
_ONE_DAY = timedelta(days=1)

Interval = tuple[int, int]
"""[start, end) in microseconds since the epoch."""


@dataclass(frozen=True)
class _Day:
    """One local date: its real span [start, end) and its business intervals inside it."""

    start: int
    end: int
    intervals: tuple[Interval, ...]


@dataclass(frozen=True)
class BusinessCalendar:
    """Business hours per weekday (minutes, Monday first) in a zone, minus holidays."""

    zone: ZoneInfo
    week: WeeklyHours
    holidays: frozenset[date] = frozenset()
    _days: dict[date, _Day] = field(default_factory=dict, init=False, repr=False,
                                    compare=False, hash=False)

    @classmethod
    def from_settings(cls, sla: SlaSettings) -> BusinessCalendar:
        """The calendar of `[sla]`; the same settings give the same (warm-cached) calendar."""
        return _calendar(sla.timezone, sla.business_hours, tuple(sla.holidays))

    @classmethod
    def parse(cls, business_hours: str, timezone: str = "UTC",
              holidays: tuple[date, ...] = ()) -> BusinessCalendar:
        """A calendar from the config strings; ValueError on bad business hours."""
        return cls(ZoneInfo(timezone), parse_business_hours(business_hours),
                   frozenset(holidays))

    @cached_property
    def always_open(self) -> bool:
        """24x7 without holidays: business time is plain elapsed time."""
        return not self.holidays and all(day == (_WHOLE_DAY,) for day in self.week)

    def business_time(self, start: datetime, end: datetime) -> timedelta:
        """The business time between two instants, exactly; zero when end <= start."""
        a, b = _micros(start), _micros(end)
        if b <= a:
            return timedelta(0)
        if self.always_open:
            return (b - a) * _MICRO
        total = 0
        for day in self._days_from(a):
            if day.start >= b:
                break
            total += sum(max(0, min(e, b) - max(s, a)) for s, e in day.intervals)
        return total * _MICRO

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """`business_time` in seconds; 0.0 when end <= start."""
        return self.business_time(start, end).total_seconds()

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest instant t >= start with business_time(start, t) == duration.

        A zero duration returns `start` itself (in UTC), even outside business hours. A
        duration that ends exactly at the close of a range returns that close (Friday 17:30 +
        30 min under 09:00-18:00 is Friday 18:00), not the next opening. ValueError for a
        negative duration, or when `SEARCH_LIMIT` passes without enough business time.
        """
        if duration < timedelta(0):
            raise ValueError(f"business time to add must not be negative: {duration}")
        a, remaining = _micros(start), duration // _MICRO
        if remaining == 0 or self.always_open:
            return _instant(a + remaining)
        for day in self._days_within_limit(a):
            for s, e in day.intervals:
                s = max(s, a)
                if e <= s:
                    continue
                if e - s >= remaining:
                    return _instant(s + remaining)
                remaining -= e - s
        raise ValueError(f"the calendar has less than {duration} of business time in the "
                         f"{SEARCH_LIMIT.days} days after {_instant(a).isoformat()}")

    def is_business_time(self, instant: datetime) -> bool:
        """Whether the instant lies inside business hours (a range includes its start only)."""
        t = _micros(instant)
        for day in self._days_from(t):
            if day.start > t:
                return False
            if any(s <= t < e for s, e in day.intervals):
                return True
        return False  # pragma: no cover - the day iteration always passes t

    def next_business_instant(self, instant: datetime) -> datetime:
        """`instant` if it is business time, else the next opening; ValueError past the limit."""
        t = _micros(instant)
        for day in self._days_within_limit(t):
            for s, e in day.intervals:
                if e > t:
                    return _instant(max(s, t))
        raise ValueError(f"the calendar has no business time in the {SEARCH_LIMIT.days} days "
                         f"after {_instant(t).isoformat()}")

    def _days_from(self, t: int) -> Iterator[_Day]:
        """Local days in order, from the local date of `t` (no earlier day can hold `t`)."""
        day = _instant(t).astimezone(self.zone).date()
        while True:
            yield self._day(day)
            day += _ONE_DAY

    def _days_within_limit(self, t: int) -> Iterator[_Day]:
        limit = t + SEARCH_LIMIT // _MICRO
        for day in self._days_from(t):
            if day.start > limit:
                return
            yield day

    def _day(self, day: date) -> _Day:
        cached = self._days.get(day)
        if cached is None:
            if len(self._days) >= 4096:
                self._days.clear()
            cached = self._days[day] = self._compute_day(day)
        return cached

    def _compute_day(self, day: date) -> _Day:
        start, end = self._first(day, 0), self._first(day + _ONE_DAY, 0)
        if day in self.holidays:
            return _Day(start, end, ())
        intervals: list[Interval] = []
        for lo, hi in self.week[day.weekday()]:
            s = max(start, self._first(day, lo))
            e = min(end, self._last(day, hi))
            if s >= e:
                continue
            if intervals and s <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], e))
            else:
                intervals.append((s, e))
        return _Day(start, end, tuple(intervals))

    def _first(self, day: date, minute: int) -> int:
        """The first instant the local clock reads `minute` on `day` (or jumps past it)."""
        return self._local(day, minute)[0]

    def _last(self, day: date, minute: int) -> int:
        """The last instant the local clock reads `minute` on `day` (or jumps past it)."""
        return self._local(day, minute)[1]

    def _local(self, day: date, minute: int) -> tuple[int, int]:
        wall = datetime.combine(day, time()) + timedelta(minutes=minute)
        earlier = _micros(wall.replace(tzinfo=self.zone, fold=0))
        later = _micros(wall.replace(tzinfo=self.zone, fold=1))
        if earlier <= later:  # an ordinary time (equal) or a repeated one (fall back)
            return earlier, later
        jump = self._transition(later, earlier)  # skipped (spring forward): the clock jumps
        return jump, jump

    def _transition(self, before: int, after: int) -> int:
        """The instant in (before, after] where the zone's UTC offset changes."""
        offset_after = _instant(after).astimezone(self.zone).utcoffset()
        lo, hi = before // 1_000_000, -(-after // 1_000_000)  # whole seconds, as tzdata is
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _instant(mid * 1_000_000).astimezone(self.zone).utcoffset() == offset_after:
                hi = mid
            else:
                lo = mid
        return hi * 1_000_000


@lru_cache(maxsize=16)
def _calendar(timezone: str, business_hours: str,
              holidays: tuple[date, ...]) -> BusinessCalendar:
    return BusinessCalendar.parse(business_hours, timezone, holidays)


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the business calendar needs timezone-aware instants, got {moment}")
    return (moment - _EPOCH) // _MICRO


def _instant(micros: int) -> datetime:
    return _EPOCH + micros * _MICRO
