"""Safe header values: customer text never reaches a header unsanitised.

`single_line` removes every line-break character Python's `str.splitlines` knows (not only CR
and LF: VT, FF, FS, GS, RS, NEL, LS, PS), which is exactly the set that makes the stdlib refuse
to build a header, and the set an attacker would use to inject one.
"""

from __future__ import annotations

import os.path
import re
import unicodedata
from functools import lru_cache

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
MAX_SUBJECT = 200
_MSGID = re.compile(r"<([^<>]+)>")
_COMMENT = re.compile(r"\([^()]*\)")
_MAX_MSGID = 900  # longer is no Message-ID (and would not fit a PostgreSQL index entry)


def single_line(text: str, limit: int | None = None) -> str:
    """Text folded onto one line, control characters removed, whitespace collapsed."""
    flat = " ".join(" ".join(text.splitlines()).split())
    flat = _CONTROL.sub("", flat)
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


MAX_FILENAME_BYTES = 200  # in UTF-8; file systems take 255, and a saving client adds " (2)"
_NOT_IN_FILENAMES = set('"<>:|?*/\\')
_WINDOWS_DEVICES = re.compile(r"(?i)(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)$")


def safe_filename(name: str, fallback: str = "file") -> str:
    """A customer's file name reduced to one that names a file and nothing else, wherever it
    is saved, served or sent: the last part of any path (`/` or `\\`, so `../` and absolute
    names stay in the folder they are saved to), no control, format (bidi overrides) or
    line-break characters, none of `"<>:|?*` (Windows refuses them; `"` would end a header
    parameter), no leading or trailing dots or spaces (`..`, hidden files), not a Windows
    device name (`CON`, `nul.txt`), at most `MAX_FILENAME_BYTES` in UTF-8 with its extension
    kept; `fallback` when nothing is left. The one such rule: parsing, the web download and
    outgoing mail all use it."""
    last = single_line(name).replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in last
                   if c not in _NOT_IN_FILENAMES and unicodedata.category(c)[0] != "C")
    kept = " ".join(kept.split()).strip(". ")
    if _WINDOWS_DEVICES.match(kept.split(".", 1)[0].strip()):
        kept = "_" + kept
    if len(kept.encode()) > MAX_FILENAME_BYTES:
        stem, ext = os.path.splitext(kept)
        ext = ext if len(ext.encode()) <= 20 else ""
        room = MAX_FILENAME_BYTES - len(ext.encode())
        stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip(". ")
        kept = stem + ext
    return kept or fallback


@lru_cache(maxsize=4096)  # the same few addresses, a dozen times for each mail threaded
def deliverable(address: str) -> str | None:
    """The address as maild can send to it, or None: domains are IDNA-encoded; a local part
    outside ASCII would need SMTPUTF8 end to end, and `name@invalid` (a sender without a
    domain, see maild.parsing) reaches nobody."""
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain or domain.lower() == "invalid" or not local.isascii():
        return None
    try:
        ascii_domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    result = f"{local}@{ascii_domain}"
    return result if single_line(result) == result and " " not in result else None


def message_ids(text: str) -> list[str]:
    """The ids in a Message-ID, In-Reply-To or References value, in order, without brackets;
    obsolete spaces and comments inside the brackets removed. The one reading of a Message-ID:
    threading and de-duplication must agree on it."""
    found = [re.sub(r"\s+", "", _COMMENT.sub("", m)) for m in _MSGID.findall(text)]
    if not found:
        # Some clients omit the angle brackets; take bare tokens that look like ids.
        found = [t for t in text.split() if re.fullmatch(r"[^@]+@[^@]+", t.strip("<>"))]
    # No control character stays in an id: a NUL is no part of one, and PostgreSQL refuses it
    # in text (a look-up by it failed the mail).
    ids = [_CONTROL.sub("", normalize_message_id(m)) for m in found]
    return [i for i in ids if i and len(i) <= _MAX_MSGID]


def normalize_message_id(value: str) -> str:
    """A Message-ID as maild stores and compares it: no brackets, no surrounding space."""
    return value.strip().strip("<>").strip()


def bracketed(message_id: str) -> str:
    return f"<{normalize_message_id(message_id)}>"
