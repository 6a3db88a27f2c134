"""Ticket numbers in subjects and texts: the tag maild writes, and every form a person may use
to name a ticket (SPEC §5, rules 1 and 3) — the one place these forms are defined.

maild writes `[Ticket#2026112500042]` (`format_tag`, `tagged_subject`) and finds a number in
any of these forms, anywhere in an (already RFC 2047-decoded) subject or text, case-insensitive,
whatever reply or forward prefixes stand before it (`find_numbers`):

- after the configured tag word or a word for a ticket — "ticket(s)", "тикет", "заявка" and
  "обращение" in any case ending: `[Ticket#N]`, `Ticket#N`, `Ticket N`, `Ticket: N`,
  `ticket #N`, `заявка №N`, `по заявке № N`, `обращение N`;
- with a word for "number" between them: `ticket no. N`, `ticket number N`, `Ticket-Nr. N`,
  `Ticketnummer: N`, `заявка номер N`;
- after a `#` or `№` that starts a word: `#N`, `(#N)`, `№ N`.

The configured tag is matched literally (`re.escape`), so a tag such as `Help.Desk+` cannot turn
into a pattern. A marker glued to a preceding word is another word: `XTicket#N`, `[Support#N]`
(another system's tag) and `HelpXDesk+#N` name nothing. The number is a whole run of 13 to 20
ASCII digits (`YYYYMMDD` and a counter of at least five): never a piece of a longer run of
digits, never followed by a letter. A bare number without a marker is not a ticket reference —
a phone or order number must not move mail between tickets.
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

# Words for a ticket besides the configured tag, with the Russian case endings customers use
# ("заявка", "по заявке", "на заявку", "заявкой", "номер заявки"...).
_TICKET_WORDS = (
    r"tickets?"
    r"|тикет(?:ы|а|у|ом|е|ов|ам|ами|ах)?"
    r"|заявк(?:а|и|е|у|ой|ою|ам|ами|ах)"
    r"|обращени(?:е|я|ю|ем|и|й|ям|ями|ях)"
)
# A word for "number" between the ticket word and the number: "no.", "Nr.", "number", "n°"...
_NUMBER_WORD = r"(?:(?:no|nr|num|number|nummer|номер)(?!\w)\.?|n[°º])"
_DASHES = r"[\s:\-‐‑–—]{0,10}"
# `[0-9]`, not `\d`: full-width or Arabic-Indic digits are not ticket numbers; but no digit of
# any script may stand right before or after the run, nor a letter after it.
_NUMBER = r"(?<!\d)([0-9]{13,20})(?!\w)"
# `#` and `№` count on their own only where a word starts: at the start, after a space or an
# opening bracket, quote or `>` quote mark — "(#N)", "«№N»", ">#N" — not glued to a word
# ("Support#N", "+#N").
_STANDALONE = r"(?<![^\s(\[{<>\"'«„“‘])[#№]\s{0,3}"
_DIGIT_RUN = re.compile(r"[0-9]{13}")  # what every number `_NUMBER` matches contains


@lru_cache(maxsize=8)
def _number_pattern(tag: str) -> re.Pattern[str]:
    word = rf"(?<!\w)(?:{re.escape(tag)}|{_TICKET_WORDS})"
    after_word = rf"{_DASHES}(?:{_NUMBER_WORD}{_DASHES})?(?:[#№]\s{{0,3}})?"
    return re.compile(rf"(?:{word}{after_word}|{_STANDALONE}){_NUMBER}", re.IGNORECASE)


@lru_cache(maxsize=8)
def _tag_pattern(tag: str) -> re.Pattern[str]:
    """maild's own tag, `[Tag#N]`, as `strip_tags` removes it from a subject."""
    return re.compile(r"\[\s*" + re.escape(tag) + r"\s*#\s*([0-9]{1,40})\s*\]", re.IGNORECASE)


def format_tag(tag: str, number: str) -> str:
    return f"[{tag}#{number}]"


def find_numbers(text: str, tag: str) -> list[str]:
    """Every ticket number named in `text` in one of the forms above, in order of appearance,
    without repeats. Whether such a ticket exists is for the caller."""
    if not _DIGIT_RUN.search(text):
        return []  # most text names no number: a plain scan is an eighth of the full pattern's
    return list(dict.fromkeys(_number_pattern(tag).findall(text)))


def find_tags(text: str, tag: str) -> list[str]:
    """The numbers of maild's own tag in `text`, `[Tag#N]` or `Tag#N`, in order, no repeats:
    how staff name a ticket (SPEC §7), never by the looser forms a customer may use."""
    return list(dict.fromkeys(_own_tag_pattern(tag).findall(text)))


@lru_cache(maxsize=8)
def _own_tag_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)\[?\s*{re.escape(tag)}\s*#\s*{_NUMBER}", re.IGNORECASE)


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
