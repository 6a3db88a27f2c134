"""Time as a parameter: every rule that depends on time takes a Clock.

All instants inside maild are timezone-aware UTC datetimes. `FixedClock` serves tests and
`maild tick --at`, so the timer duties are the same code whatever the source of "now".
"""

from __future__ import annotations

from datetime import UTC, datetime
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
