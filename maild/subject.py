"""Ticket tags in subjects: `[Ticket#2026112500042]` — formatting and finding.

Finding follows SPEC §5: anywhere in the (already RFC 2047-decoded) subject, case-insensitive,
whatever reply or forward prefixes stand before it. The configured tag is matched literally
(`re.escape`), so a tag such as `Help.Desk+` cannot turn into a pattern, and the number must be
digits standing alone between `#` and `]`.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Reply and forward prefixes of common mail clients in English, German, Russian and others.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|wg|fw|fwd|sv|vs|antw|odp|ynt|rif|tr|ответ|отв|пересл|fw\d*)"
    r"(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)


@lru_cache(maxsize=8)
def _tag_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(r"\[\s*" + re.escape(tag) + r"\s*#\s*([0-9]{1,40})\s*\]", re.IGNORECASE)


def format_tag(tag: str, number: str) -> str:
    return f"[{tag}#{number}]"


def find_numbers(subject: str, tag: str) -> list[str]:
    """Every ticket number tagged in `subject`, in order of appearance, without repeats."""
    return list(dict.fromkeys(_tag_pattern(tag).findall(subject)))


def strip_prefixes(subject: str) -> str:
    """`Re: AW: Fwd: Printer` -> `Printer`."""
    return _PREFIX.sub("", subject).strip()


def strip_tags(subject: str, tag: str) -> str:
    """The subject without any `[Tag#N]` and without reply prefixes."""
    stripped = _tag_pattern(tag).sub(" ", strip_prefixes(subject))
    return strip_prefixes(" ".join(stripped.split()))


def tagged_subject(tag: str, number: str, subject: str) -> str:
    """`[Tag#N] subject`: the tag first, reply prefixes and older tags removed."""
    rest = strip_tags(subject, tag)
    return f"{format_tag(tag, number)} {rest}".strip()
