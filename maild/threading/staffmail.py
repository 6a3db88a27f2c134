"""Staff mail (SPEC §7): the command block, the new text, and the customers a forward names.

This module owns reading the plain text of a message a staff member wrote:

- `read_staff_mail` splits it into the `#command argument` lines at its top, one error sentence
  per bad command line, and the new text that may be relayed to the customer;
- `new_text` removes what mail clients add around a reply: quoted history (`>` lines, the
  "On ... wrote:" / "Am ... schrieb ...:" / "... написал:" attribution, Outlook's
  "-----Original Message-----" and "From:/Sent:/To:/Subject:" header blocks, the underscore
  separator) and the signature ("-- " and everything after it, "Sent from my iPhone" and the
  like at the end). A forwarded message is not quoted history: it stays;
- `forwarded_addresses` lists the From/Reply-To addresses of the messages forwarded in the text.

Everything here is a pure function of its text argument: no database, no configuration, no I/O.
Whether an `#assign` address is a staff member or a `#queue` name exists is for the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["COMMANDS", "Command", "StaffMail", "forwarded_senders", "new_text",
           "read_staff_mail"]


@dataclass(frozen=True)
class Command:
    name: str        # one of COMMANDS; `#take` is read as `assign` with the argument "me"
    argument: str    # "" when none; "me" for `#assign me`
    line: str        # the line as written


@dataclass(frozen=True)
class StaffMail:
    commands: tuple[Command, ...]
    errors: tuple[str, ...]    # one English sentence per bad command line, "line N: ..."
    text: str                  # the new text: no command lines, no quoted history, no signature


# name -> usage; the order is the order of the "known:" list in error messages.
COMMANDS: dict[str, str] = {
    "assign": "#assign EMAIL | #assign me",
    "take": "#take",
    "queue": "#queue NAME",
    "priority": "#priority NAME",
    "note": "#note",
    "reply": "#reply",
    "cc": "#cc EMAIL",
    "uncc": "#uncc EMAIL",
    "close-request": "#close-request",
    "close": "#close",
}
_KNOWN = ", ".join(COMMANDS.values())

# `#` directly followed by a letter (any script) starts a command line; "#1" or "# x" do not.
_COMMAND_LINE = re.compile(r"^\s*#([^\W\d_]\S*)(?:\s+(.*?))?\s*$")
_EMAIL = re.compile(r"^[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+\.[^@\s<>\"(),;:.]+$")

_QUOTED = re.compile(r"^>")
_SIGNATURE = re.compile(r"^--[ \t]*$")
_DATE_LIKE = re.compile(
    r"\d{1,2}:\d{2}|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|(?<!\d)(?:19|20)\d{2}(?!\d)"
)
# Attribution lines. "Strong" forms are unmistakable once they also carry a date or time: they
# end the new text even when no `>` quote follows (everything below is history). "Weak" forms
# (no date, or a client-neutral shape) count only when a `>` quote follows; then just the
# attribution goes and the unquoted lines after the quote stay (bottom-posting, inline replies).
_STRONG_ATTRIBUTION = [
    re.compile(r"^[-\s]*On\s.{3,}\swrote\s*:$", re.IGNORECASE),
    re.compile(r"^[-\s]*Am\s.{3,}\sschrieb\s.{0,200}:$", re.IGNORECASE),
    re.compile(r"^.{1,200}\sschrieb am\s.{3,}:$", re.IGNORECASE),
    re.compile(r"^[-\s]*Le\s.{3,}\sa écrit\s*:$", re.IGNORECASE),
    re.compile(r"^[-\s]*El\s.{3,}\sescribió\s*:$", re.IGNORECASE),
    re.compile(r"^.{3,200}\s(?:пишет|написала?|написал\(а\)|писала?|писал\(а\))\s*:$",
               re.IGNORECASE),
]
_VERB = r"(?:wrote|schrieb|пишет|написала?|написал\(а\)|писала?|писал\(а\)|a écrit|escribió)"
_WEAK_ATTRIBUTION = re.compile(
    r"^.*\S\s+" + _VERB + r"\s*:$|^.*\S.*<[^<>\s@]+@[^<>\s]+>\s*:$",
    re.IGNORECASE,
)
_WRAP_TAIL = re.compile(
    r"^(?:(?:[^\s<>]+\s+){0,3}<?[^\s<>@]*@[^\s<>]+>?\s*" + _VERB + r"?|" + _VERB + r")\s*:$",
    re.IGNORECASE,
)
_WRAP_HEAD = re.compile(r"^[-\s]*(?:On|Am|Le|El)\s", re.IGNORECASE)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:original message|ursprüngliche nachricht|исходное сообщение"
    r"|message d'origine|mensaje original)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FORWARD_MARKER = re.compile(
    r"^\s*-{2,}\s*(?:forwarded message|weitergeleitete nachricht|пересылаемое сообщение"
    r"|пересланное сообщение|message transféré|mensaje reenviado)\s*-{2,}\s*$"
    r"|^\s*(?:begin forwarded message|anfang der weitergeleiteten nachricht"
    r"|начало переадресованного сообщения|début du message réexpédié)\s*:\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
# Header lines as mail clients print them above quoted or forwarded mail, "*From:*" included.
_HEADER = re.compile(r"^\s*\*?([^\W\d_][\w\- ]{0,30}?)\*?\s*:\*?(?:\s|$)")
_FROM_KEYS = frozenset({"from", "von", "от", "de"})
_SENT_KEYS = frozenset({"sent", "date", "gesendet", "datum", "отправлено", "дата", "envoyé",
                        "enviado", "fecha"})
_SUBJECT_KEYS = frozenset({"subject", "betreff", "тема", "objet", "asunto"})
_ADDRESS_KEYS = _FROM_KEYS | {"reply-to", "reply to", "antwort an", "ответить"}
_MOBILE_SIGNATURE = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"sent from my \S.{0,60}",
        r"sent from (?:outlook|mail|yahoo mail|aol|samsung|blackberry|proton ?mail)\b.{0,60}",
        r"sent (?:with|via) (?:sparrow|proton ?mail|blackberry|samsung)\b.{0,60}",
        r"get outlook for (?:ios|android)\b.{0,60}",
        r"отправлено (?:с|из) .{1,60}",
        r"(?:gesendet von|von meinem) .{1,60}",
        r"envoyé de mon .{1,60}",
        r"enviado desde mi .{1,60}",
    )
]
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ANGLE = re.compile(r"<([^<>]*)>")

_Lines = list[tuple[int, str]]   # (index of the line in the original text, the line)


def read_staff_mail(text: str) -> StaffMail:
    """The commands at the top of a staff message, the errors in them, and its new text.

    Quoted history and the signature are removed first (`new_text`), so commands are also found
    at the top of a bottom-posted reply. The command block is the run of `#command` lines
    before the first other line; blank lines inside it are skipped (so a `#close` after a
    blank line is never sent to the customer). Error line numbers count the lines of `text`.
    """
    lines = _clean(text)
    commands: list[Command] = []
    errors: list[str] = []
    position = 0
    while position < len(lines):
        index, line = lines[position]
        if line.strip():
            match = _COMMAND_LINE.match(line)
            if match is None:
                break
            command, error = _command(match.group(1), match.group(2) or "", line)
            if command is not None:
                commands.append(command)
            if error:
                errors.append(f"line {index + 1}: {error}")
        position += 1
    return StaffMail(tuple(commands), tuple(errors), _join(lines[position:]))


@lru_cache(maxsize=64)
def new_text(text: str) -> str:
    """`text` without quoted history and signature; no leading or trailing blank lines.
    Remembered for the last few texts: resolving a mail and telling staff of it both ask."""
    return _join(_clean(text))


def forwarded_senders(text: str) -> dict[str, str]:
    """The senders of the messages forwarded inside `text`: lower-cased address -> display name
    ("" when the line gives none), in order, no repeats.

    A forward starts at a client's marker ("---------- Forwarded message ---------",
    "Begin forwarded message:", "-------- Пересылаемое сообщение --------",
    "-----Original Message-----", an Outlook "____" line over a From: line, ...); its header
    block is the run of lines up to the first blank line; its From and Reply-To lines count.
    """
    lines = [_unquote(line) for line in _split(text)]
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        if not (_is_forward(line) or _ORIGINAL_MESSAGE.match(line)
                or (_UNDERSCORES.match(line) and _next_is_from(lines, i))):
            continue
        for header in _header_block(lines, i + 1):
            key, value = _header_key(header), header.split(":", 1)[-1]
            if key in _ADDRESS_KEYS:
                for address in _addresses(value):
                    found.setdefault(address.lower(), _display_name(value))
    return found


# -- commands ------------------------------------------------------------------------------


def _command(word: str, argument: str, line: str) -> tuple[Command | None, str]:
    """The command of one `#word argument` line, or the sentence saying what is wrong."""
    name = word.lower()
    if name not in COMMANDS:
        return None, f"unknown command '#{word}' (known: {_KNOWN})"
    usage = COMMANDS[name]
    if name == "take":
        if argument:
            return None, f"#take takes no argument, but got '{argument}' ({usage})"
        return Command("assign", "me", line), ""
    if name in ("assign", "cc", "uncc"):
        if name == "assign" and argument.strip().lower() == "me":
            return Command(name, "me", line), ""
        parts = argument.split()
        if not parts:
            return None, f"#{name} needs an email address ({usage})"
        if len(parts) > 1:
            return None, f"#{name} takes exactly one email address, not '{argument}' ({usage})"
        address = parts[0].removeprefix("<").removesuffix(">")
        if address.lower().startswith("mailto:"):
            address = address[len("mailto:"):]
        if not _EMAIL.match(address):
            return None, f"#{name} needs an email address, not '{argument}' ({usage})"
        return Command(name, address, line), ""
    if name == "queue":
        if not argument:
            return None, f"#queue needs a queue name ({usage})"
        return Command(name, " ".join(argument.split()), line), ""
    if name == "priority":
        if not argument:
            return None, f"#priority needs a priority ({usage})"
        if len(argument.split()) > 1:
            return None, f"#priority takes one priority, not '{argument}' ({usage})"
        return Command(name, argument, line), ""
    if argument:
        return None, f"#{name} takes no argument, but got '{argument}' ({usage})"
    return Command(name, "", line), ""


# -- new text ------------------------------------------------------------------------------


def _split(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _clean(text: str) -> _Lines:
    """The kept lines of `text` with their original indexes (see `new_text`)."""
    lines = _split(text)
    exempt = _forward_headers(lines)
    kept: _Lines = []
    gap = False   # lines were just removed: blank lines around the hole collapse into one

    def keep(i: int) -> None:
        nonlocal gap
        if not lines[i].strip():
            if gap and (not kept or not kept[-1][1].strip()):
                return
        else:
            gap = False
        kept.append((i, lines[i]))

    i = 0
    while i < len(lines):
        line = lines[i]
        if _QUOTED.match(line):
            gap = True
            i += 1
            continue
        if _SIGNATURE.match(line):
            # The signature runs to the end, or to a forwarded message below it (Gmail puts the
            # sender's signature above the forwarded one).
            following = next((j for j in range(i + 1, len(lines)) if _is_forward(lines[j])),
                             None)
            if following is None:
                break
            while following - 1 > i and not lines[following - 1].strip():
                following -= 1   # keep the blank lines that set the forward apart
            gap, i = True, following
            continue
        if i not in exempt and (
            _ORIGINAL_MESSAGE.match(line)
            or (_UNDERSCORES.match(line) and _next_is_from(lines, i))
            or _outlook_headers(lines, i)
        ):
            break
        attribution = _attribution(lines, i)
        if attribution:
            size, strong = attribution
            if _quote_follows(lines, i + size):
                gap = True
                i += size
                continue
            if strong:
                break
        keep(i)
        i += 1
    return _strip_mobile_signature(kept)


def _attribution(lines: Sequence[str], i: int) -> tuple[int, bool] | None:
    """(number of lines, strong) when an attribution line starts at `i`, else None."""
    one = _attribution_kind(lines[i])
    if one is not None:
        return 1, one
    if i + 1 >= len(lines) or not lines[i].strip() or _QUOTED.match(lines[i + 1]):
        return None
    # Clients wrap long attributions: "On ..., Name <\naddress> wrote:". Only a second line
    # that is just the end of one (address and/or verb), or a first line that starts like one,
    # joins; otherwise the line above an attribution would be swallowed with it.
    first, second = lines[i].strip(), lines[i + 1].strip()
    if not (_WRAP_TAIL.match(second) or (_WRAP_HEAD.match(first) and _DATE_LIKE.search(first))):
        return None
    if _attribution_kind(second):
        return None   # the second line is a strong attribution on its own
    joined = _attribution_kind(first + " " + second)
    return None if joined is None else (2, joined)


def _attribution_kind(line: str) -> bool | None:
    """True for a strong attribution, False for a weak one, None for other lines."""
    line = line.strip()
    if not line.endswith(":") or len(line) > 300:
        return None
    if _DATE_LIKE.search(line) and any(p.match(line) for p in _STRONG_ATTRIBUTION):
        return True
    if _WEAK_ATTRIBUTION.match(line):
        return False
    return None


def _quote_follows(lines: Sequence[str], i: int) -> bool:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i < len(lines) and bool(_QUOTED.match(lines[i]))


def _outlook_headers(lines: Sequence[str], i: int) -> bool:
    """An Outlook block "From: / Sent: / To: / Subject:" (any language) starts at line `i`."""
    if _header_key(lines[i]) not in _FROM_KEYS or not lines[i].split(":", 1)[1].strip():
        return False
    keys = {_header_key(line) for line in _header_block(lines, i, limit=10)}
    return bool(keys & _SENT_KEYS) and bool(keys & _SUBJECT_KEYS)


def _strip_mobile_signature(kept: _Lines) -> _Lines:
    kept = list(kept)
    while kept:
        line = kept[-1][1].strip()
        if not line or any(p.fullmatch(_ANGLE.sub("", line).strip()) for p in _MOBILE_SIGNATURE):
            kept.pop()
        else:
            break
    return kept


def _join(lines: _Lines) -> str:
    texts = [line for _, line in lines]
    while texts and not texts[0].strip():
        texts.pop(0)
    return "\n".join(texts).rstrip()


# -- forwards and header blocks ------------------------------------------------------------


def _is_forward(line: str) -> bool:
    return bool(_FORWARD_MARKER.match(line))


def _unquote(line: str) -> str:
    return re.sub(r"^(?:\s*>)+ ?", "", line)


def _header_key(line: str) -> str | None:
    match = _HEADER.match(line)
    return " ".join(match.group(1).lower().split()) if match else None


def _header_block(lines: Sequence[str], start: int, limit: int = 30) -> list[str]:
    """The header lines from `start` (leading blank lines skipped) to the next blank line."""
    while start < len(lines) and not lines[start].strip():
        start += 1
    block: list[str] = []
    for line in lines[start:start + limit]:
        if not line.strip():
            break
        if _header_key(line) is not None:
            block.append(line)
        elif block:
            block[-1] += " " + line.strip()   # a wrapped header line
        else:
            break
    return block


def _next_is_from(lines: Sequence[str], i: int) -> bool:
    block = _header_block(lines, i + 1, limit=1)
    return bool(block) and _header_key(block[0]) in _FROM_KEYS


def _forward_headers(lines: Sequence[str]) -> set[int]:
    """Indexes of the header lines under each forward marker: they are not quoted history."""
    exempt: set[int] = set()
    for i, line in enumerate(lines):
        if _is_forward(line):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            end = j
            while end < len(lines) and lines[end].strip() and end < j + 30:
                end += 1
            exempt.update(range(j, end))
    return exempt


def _display_name(value: str) -> str:
    """The name before the address: `Bob Smith <bob@…>`, `"Smith, Bob" <bob@…>`,
    Outlook's `Bob Smith [mailto:bob@…]`; "" for a bare address."""
    cuts = [i for i in (value.find("<"), value.lower().find("[mailto:")) if i >= 0]
    name = value[:min(cuts)].strip().strip("\"'").strip() if cuts else ""
    return "" if "@" in name else name


def _addresses(value: str) -> list[str]:
    """Addresses in a header value: those in <...> when there are any, else the bare ones."""
    inside = [a for part in _ANGLE.findall(value) for a in _ADDRESS.findall(part)]
    return inside or _ADDRESS.findall(value)
