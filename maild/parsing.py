"""Turning raw inbound bytes into the facts maild needs: one function, `parse_message`.

Built on the stdlib `email` package, but only for the MIME structure: the message is parsed with
a lenient `compat32` policy (lazy headers, so parsing itself never raises, plus two repairs of
real-world Content-Type headers), and every header is decoded here by hand from its raw value
(8-bit bytes, RFC 2047 words with unknown or mislabelled charsets, broken base64), because the
structured header parser of `policy.default` raises on broken input — during parsing as well as
on access — and turns 8-bit header text into replacement characters.

Real mail is broken in every possible way (see tests/test_corpus.py), so every step has a
fallback: an unknown or wrong charset is decoded with a compatible superset or replacement
characters, an obsolete `Name :` header is accepted, a header block with a stray line is
repaired, HTML-only mail is converted to text, uuencoded files inside text become attachments,
delivery reports are rendered as text. A bounce with a null sender (`<>`, `MAILER-DAEMON`) gets
`mailer-daemon@<its host>` as sender, so it is stored on a ticket like any automatic mail.
Only a message with no sender address anywhere — From, Sender, Reply-To, Return-Path, the
envelope sender or an mbox `From ` line — is unparseable for maild's purposes. Automatic mail
keeps the MIME tree it was read from (`ParsedMail.message`): the bounce detector reads that
tree (`maild.bounces.detect_message`), so no message is parsed twice.

Hostile mail is bounded here (SPEC §9): the parser stops as soon as a message has more MIME
parts or deeper nesting than `mail.max_mime_parts` / `mail.max_mime_depth` allow — before the
whole tree is built, so a bomb costs no more than its limit — and `MessageTooComplex` says
which limit, so the message is kept as `failed` with that reason and can be retried once the
limit is raised. How many Message-IDs a message may refer to is bounded too, and every file
name is made safe to save or send (`maild.headers.safe_filename`) before anything stores it.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import email.feedparser
import mimetypes
import quopri
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.errors import MessageDefect
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import Compat32
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from typing import Any

from maild.config import MailSettings
from maild.errors import UnparseableMessage
from maild.headers import message_ids, safe_filename, single_line
from maild.htmltext import html_to_text

PRIORITY_HEADER = "X-Maild-Priority"  # the web form's priority field, carried in its message
_AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_REPORT_TYPES = {"delivery-status", "disposition-notification", "feedback-report"}
_NULL_SENDERS = {"", "<>", "mailer-daemon", "postmaster"}
_SENDER_HEADERS = ("from", "sender", "reply-to", "return-path")
# The defaults of the config keys, for callers without settings (the status page's downloads).
MAX_MIME_PARTS: int = MailSettings.max_mime_parts
MAX_MIME_DEPTH: int = MailSettings.max_mime_depth
_MAX_ADDRESS_HEADER = 20_000  # characters of From, To, Cc... read: a few hundred addresses
_MAX_THREAD_IDS = 100  # Message-IDs kept of In-Reply-To and of References (RFC 5322 §3.6.4)


class MessageTooComplex(UnparseableMessage):
    """More MIME parts, or deeper nesting, than the config allows; the text names the key."""


class _LenientPolicy(Compat32):
    """compat32 (headers stay raw strings, nothing is parsed eagerly) that unfolds header
    values, keeps 8-bit bytes for us to decode, and repairs a Content-Type that lost the ';'
    before its parameters: the parser then finds the boundary of `boundary="a\\r\\n b"` and
    of `multipart/mixed boundary="x"`."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if not isinstance(value, str):
            return super().header_fetch_parse(name, value)
        value = _unfold(value)
        if name.lower() in ("content-type", "content-disposition"):
            value = _MISSING_SEMICOLON.sub(r"\1; ", value, count=1)
        # 8-bit bytes stay surrogate escapes (compat32 would turn them into U+FFFD), so that
        # a filename or a charset can still be decoded here
        return value


_MISSING_SEMICOLON = re.compile(r"^(\s*[\w.+-]+(?:/[\w.+-]+)?)\s+(?=[\w*-]+\s*=)")
_POLICY = _LenientPolicy()


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    data: bytes = field(default=b"", repr=False)  # the decoded content
    charset: str = ""  # a text file's declared charset, as a MIME token ("" when none or unsafe)


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None          # without angle brackets
    subject: str                    # decoded, on one line
    sender: str                     # lower-case address the ticket belongs to
    sender_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[tuple[str, str], ...]  # (display name, lower-case address) of Reply-To
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()
    automatic_reason: str = ""      # why this is automatic mail, "" when a person wrote it
    defects: tuple[str, ...] = field(default=())
    authentication_results: tuple[str, ...] = ()  # every Authentication-Results header (RFC 8601)
    requested_priority: str = ""    # `X-Maild-Priority`: honoured only from the web form
    # The MIME tree it was read from, for the bounce detector (`maild.bounces.detect_message`),
    # which asks only of automatic mail: kept for that alone, so that a person's mail does not
    # hold its tree alive beside its text and files while it waits to be threaded.
    message: Message | None = field(default=None, repr=False, compare=False)

    @property
    def automatic(self) -> bool:
        return bool(self.automatic_reason)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message answers, most specific first."""
        seen: dict[str, None] = dict.fromkeys(self.in_reply_to)
        seen.update(dict.fromkeys(reversed(self.references)))
        return tuple(seen)


def parse_message(raw: bytes, envelope_from: str | None = None, *,
                  max_parts: int = MAX_MIME_PARTS, max_depth: int = MAX_MIME_DEPTH) -> ParsedMail:
    """Parse raw RFC 5322 bytes; raises UnparseableMessage when no sender can be found, and
    MessageTooComplex when the MIME tree has more than `max_parts` parts below the message
    or a part nested deeper than `max_depth` (`mail.max_mime_parts`, `mail.max_mime_depth`)."""
    data = _prepared(raw)
    limits = (max_parts, max_depth)
    msg = _parse(data, limits)
    sender_name, sender = _sender(msg, envelope_from)
    if not sender:
        # A stray line inside the header block ends the headers for the stdlib parser, and the
        # From: below it is lost; drop such lines and look again.
        repaired = _obsolete_header_names(_without_stray_header_lines(data))
        if repaired != data:
            again = _parse(repaired, limits)
            sender_name, sender = _sender(again, envelope_from)
            if sender:
                msg = again
    if not sender:
        raise UnparseableMessage("no sender address in From, Sender, Reply-To, Return-Path, "
                                 "the envelope sender or an mbox From line")
    defects = [type(d).__name__ for d in msg.defects]
    text, html, attachments = _bodies(msg, defects)
    if not text.strip() and html:
        text = html_to_text(html)
    own_ids = message_ids(header_text(msg, "message-id"))
    automatic_reason = _automatic_reason(msg, sender, envelope_from)
    return ParsedMail(
        message_id=own_ids[0] if own_ids else None,
        subject=single_line(header_text(msg, "subject")),
        sender=sender,
        sender_name=single_line(sender_name),
        to=_addresses(msg, "to"),
        reply_to=tuple((single_line(name), addr.lower()) for name, addr
                       in _address_pairs(msg, "reply-to") if _qualified(addr)),
        cc=_addresses(msg, "cc"),
        in_reply_to=_thread_ids(header_text(msg, "in-reply-to")),
        references=_thread_ids(header_text(msg, "references")),
        text=_clean(text),
        html=_clean(html),
        attachments=tuple(attachments),
        automatic_reason=automatic_reason,
        defects=tuple(defects),
        authentication_results=_all_raw_headers(msg, "authentication-results"),
        requested_priority=header_text(msg, PRIORITY_HEADER.lower()).strip().lower(),
        message=msg if automatic_reason else None,
    )


def message_tree(raw: bytes, *, max_parts: int = MAX_MIME_PARTS,
                 max_depth: int = MAX_MIME_DEPTH) -> Message:
    """The MIME tree of raw bytes as `parse_message` reads it (`ParsedMail.message`), for a
    caller that needs no more (`maild.bounces.detect`); MessageTooComplex as there. Unlike
    `parse_message` it does not look for a sender, so it neither fails for want of one nor
    repairs a header block to find one."""
    return _parse(_prepared(raw), (max_parts, max_depth))


# --- the message and its headers -------------------------------------------------------------


def _prepared(raw: bytes) -> bytes:
    return _obsolete_header_names(_normal_line_endings(raw))


def _parse(data: bytes, limits: tuple[int, int]) -> Message:
    try:
        parser = _BoundedParser(*limits)
        parser.feed(data)
        return parser.close()
    except MessageTooComplex:
        raise
    except Exception:  # the feedparser is built never to raise; should it, keep the headers
        try:
            head = BytesHeaderParser(policy=_POLICY).parsebytes(data)
        except Exception:
            head = Message(policy=_POLICY)
        head.defects.append(_BodyNotParsed("the body could not be parsed"))
        return head


class _BodyNotParsed(MessageDefect):
    """The MIME structure could not be parsed; only the headers were read."""


class _BoundedParser(BytesFeedParser):
    """The stdlib's feed parser, stopped at the first part over the limits. It starts every
    part (the message itself, each MIME part, each message/rfc822 inside) in `_new_message`,
    with the parts it is inside on `_msgstack` — private names, unchanged since Python 2.4;
    tests/test_hostile.py fails should they change. Counting there bounds the work before the
    tree exists: a 50,000-part bomb stops after `max_parts`, and a nesting a thousand deep
    stops at `max_depth`, long before the parser's own recursion could run out of stack."""

    def __init__(self, max_parts: int, max_depth: int) -> None:
        super().__init__(policy=_POLICY)
        self._max_parts = max_parts
        self._max_depth = max_depth
        self._parts = -1  # the message itself is no part

    def _new_message(self) -> None:
        self._parts += 1
        if self._parts > self._max_parts:
            raise MessageTooComplex(
                f"more than {self._max_parts} MIME parts (mail.max_mime_parts); raise it and "
                "run `maild inbound retry` to take this message")
        if len(self._msgstack) > self._max_depth:  # type: ignore[attr-defined]
            raise MessageTooComplex(
                f"MIME parts nested more than {self._max_depth} deep (mail.max_mime_depth); "
                "raise it and run `maild inbound retry` to take this message")
        super()._new_message()  # type: ignore[misc]


class _FeedparserRe:
    """The `re` that `email.feedparser` sees (set below): the module itself, except for the
    boundary line of a multipart. The feed parser compiles a pattern for each multipart's
    boundary — a new one each message, so re's cache never holds it — and compiling it costs
    about 0.14 ms, more than parsing the rest of an average part (bench/README, issue #12,
    thirteenth part). `_BoundaryLine` answers that pattern's `match` without compiling the
    boundary; any other pattern, or a boundary pattern of another shape (should a Python
    release change it), is compiled by `re` as before."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: Any, flags: int = 0) -> Any:
        separator = _boundary_separator(pattern) if not flags else None
        return re.compile(pattern, flags) if separator is None else _BoundaryLine(separator)


# The boundary pattern of email/feedparser.py (Python 3.11-3.13): `(?P<sep>` + re.escape of
# `--` and the boundary + `)` + this.
_BOUNDARY_HEAD = "(?P<sep>"
_BOUNDARY_REST = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_AFTER_SEPARATOR = re.compile(_BOUNDARY_REST[1:])
_ESCAPED_CHARACTER = re.compile(r"\\(.)", re.DOTALL)


def _boundary_separator(pattern: Any) -> str | None:
    """The separator (`--boundary`) a feed parser boundary pattern matches; None for any other
    pattern."""
    if not (isinstance(pattern, str) and pattern.startswith(_BOUNDARY_HEAD)
            and pattern.endswith(_BOUNDARY_REST)):
        return None
    escaped = pattern[len(_BOUNDARY_HEAD):-len(_BOUNDARY_REST)]
    separator = _ESCAPED_CHARACTER.sub(r"\1", escaped)
    return separator if re.escape(separator) == escaped else None


class _BoundaryLine:
    """The compiled boundary pattern, for its one use: `match(line)` gives what the pattern's
    match would, with its groups `end`, `ws` and `linesep` (the feed parser reads `end` and
    `linesep`)."""

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        if not line.startswith(self.separator):
            return None
        return _AFTER_SEPARATOR.match(line, len(self.separator))


email.feedparser.re = _FeedparserRe()  # type: ignore[attr-defined]


def _normal_line_endings(raw: bytes) -> bytes:
    """CR-only mail (old Macs, some gateways) parses as one giant header otherwise; a CR doubled
    by a gateway (CR CR LF) in the header block is an empty line that ends it too early."""
    if b"\r" in raw and b"\n" not in raw:
        return raw.replace(b"\r", b"\n")
    end = _BLANK_LINE.search(raw)
    head_end = end.start() if end else len(raw)
    if b"\r\r\n" in raw[:head_end]:
        return raw[:head_end].replace(b"\r\r\n", b"\r\n") + raw[head_end:]
    return raw


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_OBSOLETE_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:")
_CONTINUATION = re.compile(rb"^[ \t]")


def _header_block(data: bytes) -> tuple[list[bytes], bytes]:
    """The lines of the header block (up to the first empty line) and everything after it."""
    if data.startswith((b"\n", b"\r\n")):
        return [], data
    end = _BLANK_LINE.search(data)
    if end is None:
        return data.splitlines(keepends=True), b""
    cut = end.start() + (2 if data[end.start():end.start() + 2] == b"\r\n" else 1)
    return data[:cut].splitlines(keepends=True), data[cut:]


def _obsolete_header_names(data: bytes) -> bytes:
    """RFC 5322 §4.5.3 allows space before the colon (`Subject :`); the stdlib ends the header
    block there. Rewritten only in a block that is otherwise all header lines."""
    head, rest = _header_block(data)
    if not any(_OBSOLETE_NAME.match(line) for line in head):
        return data
    for i, line in enumerate(head):
        ok = _HEADER_LINE.match(line) or _OBSOLETE_NAME.match(line) or \
            _CONTINUATION.match(line) or (i == 0 and line.startswith(b"From "))
        if not ok:
            return data
    return b"".join(_OBSOLETE_NAME.sub(rb"\1:", line, count=1) for line in head) + rest


def _without_stray_header_lines(data: bytes) -> bytes:
    """Drop lines in the header block that are neither header nor continuation when header lines
    follow them (`quite Delivered-To: x` in the middle of the Received: lines)."""
    head, rest = _header_block(data)
    starts = {i for i, line in enumerate(head)
              if _HEADER_LINE.match(line) or _OBSOLETE_NAME.match(line)}
    if not starts:
        return data
    last = max(starts)
    kept = [line for i, line in enumerate(head)
            if i > last or i in starts or _CONTINUATION.match(line)
            or (i == 0 and line.startswith(b"From "))]
    return b"".join(kept) + rest


def header_text(msg: Message, name: str) -> str:
    """A header decoded to text (8-bit bytes, RFC 2047 words), unfolded, on one line (a line
    break of any kind a space) without NUL or other control characters — what reads a header
    may store it, an automatic mail's reason for one; "" when absent. Never raises."""
    raw = _raw_header(msg, name)
    if not raw:
        return ""
    try:
        text = _decode_words(raw, msg)
    except Exception:  # a decoder bug must not cost the message: keep what can be read
        text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _clean(" ".join(text.splitlines()))


def _raw_header(msg: Message, name: str) -> str:
    """The first `name` header exactly as it arrived (8-bit bytes as surrogate escapes)."""
    values = _header_index(msg).get(name.lower())
    return _unfold(values[0]) if values else ""


def _all_raw_headers(msg: Message, name: str) -> tuple[str, ...]:
    return tuple(_unfold(value) for value in _header_index(msg).get(name.lower(), ()))


def _header_index(msg: Message) -> dict[str, list[str]]:
    """The part's headers by lower-case name, each name's values in order, built once a part:
    a message is asked for twenty-odd headers by name, and walking its whole list for each was
    a tenth of parsing it (and a header block of thousands of lines, thousands of times that)."""
    index = _INDEXES.get(msg)
    if index is None:
        index = {}
        try:
            for key, value in msg.raw_items():
                index.setdefault(key.strip().lower(), []).append(
                    value if isinstance(value, str) else str(value))
        except Exception:  # a header list that cannot be read: what is past it is absent
            pass
        _INDEXES[msg] = index
    return index


_INDEXES: weakref.WeakKeyDictionary[Message, dict[str, list[str]]] = weakref.WeakKeyDictionary()


def _unfold(value: str) -> str:
    if "\n" not in value and "\r" not in value:
        return value  # most header values are one line: no regex for them (every header read)
    return _FOLD.sub("", value).strip("\r\n")


_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")


def _thread_ids(value: str) -> tuple[str, ...]:
    """The Message-IDs of In-Reply-To or References, at most `_MAX_THREAD_IDS`: the first (the
    thread's root) and the latest, as RFC 5322 §3.6.4 trims them. Thousands of ids would be
    thousands of parameters of one look-up (PostgreSQL's protocol carries 65,535 at most)."""
    ids = message_ids(value)
    if len(ids) > _MAX_THREAD_IDS:
        ids = ids[:1] + ids[-(_MAX_THREAD_IDS - 1):]
    return tuple(ids)


def _from_8bit(value: str, msg: Message | None = None) -> str:
    """Turn 8-bit header bytes (surrogate escapes after parsing) into text: UTF-8 when it is
    valid UTF-8, else the charset the message declares for its text, else windows-1252."""
    if not _ESCAPED.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        hint = _charset_hint(msg) if msg is not None else None
        return _decode_bytes(data, hint or "unknown-8bit", [])


_ESCAPED = re.compile(r"[\udc80-\udcff]")


def _charset_hint(msg: Message) -> str | None:
    """The first charset the message declares for a part, looked up once a message: a header
    of 36,000 pieces of 8-bit bytes between encoded words asked for it once a piece, a walk of
    the MIME tree each, 10 s of CPU (bench/hostile_campaign.py --threading found it)."""
    if msg in _HINTS:
        return _HINTS[msg]
    found = None
    for part in _leaves(msg):
        charset = _declared_charset(part)
        if charset and _codec(charset) not in (None, "ascii"):
            found = charset
            break
    _HINTS[msg] = found
    return found


_HINTS: weakref.WeakKeyDictionary[Message, str | None] = weakref.WeakKeyDictionary()


# --- RFC 2047 and charsets --------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_PSEUDO_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "none", "default", "x-user-defined",
                    "charset", "8bit", "binary", "us-ascii-8bit", "x-binary"}
_SUPERSETS = {
    # what senders write : what they mean (the WHATWG encoding standard's choices)
    "us-ascii": "ascii", "ascii": "ascii", "ansi_x3.4-1968": "ascii", "iso646-us": "ascii",
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "l1": "cp1252", "iso_8859-1": "cp1252",
    "iso-8859-8-i": "iso-8859-8", "iso-8859-6-i": "iso-8859-6",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "cp936": "gb18030", "chinese": "gb18030", "csgb2312": "gb18030", "gb_2312-80": "gb18030",
    "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "ksc5601": "cp949", "euc-kr": "cp949",
    "korean": "cp949", "ks_c_5601-1989": "cp949", "ksc_5601": "cp949",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "ms_kanji": "cp932", "windows-31j": "cp932", "csshiftjis": "cp932",
    "big5": "big5hkscs", "x-x-big5": "big5hkscs", "cn-big5": "big5hkscs",
    "tis-620": "cp874", "iso-8859-11": "cp874", "windows-874": "cp874",
    "iso-8859-9": "cp1254", "latin5": "cp1254",
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
}
# Tried in turn after the declared charset fails strictly, before giving up with U+FFFD.
_ALTERNATIVES = {
    "iso2022_jp": ("iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_3", "euc_jp", "cp932"),
    "euc_jp": ("euc_jis_2004", "cp932"), "cp932": ("euc_jp",), "cp949": ("johab",),
}


def _codec(charset: str | None) -> str | None:
    """The Python codec for a charset name as mail writes it; None when unknown or not one."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    if name in _PSEUDO_CHARSETS:
        return None
    candidates = [_SUPERSETS.get(name, name)]
    if name.startswith("x-"):
        candidates.append(name[2:])
    if name.startswith("cs"):
        candidates.append(name[2:])
    if name.startswith("windows-"):
        candidates.append("cp" + name[len("windows-"):])
    for candidate in candidates:
        try:
            info = codecs.lookup(candidate)
        except (LookupError, ValueError):
            continue
        # bytes-to-bytes codecs (hex, base64, rot13...) are no charsets
        return info.name if getattr(info, "_is_text_encoding", True) else None
    return None


def _decode_bytes(data: bytes, charset: str | None, defects: list[str]) -> str:
    """Bytes to text, never raising: the declared charset (or its usual superset) strictly,
    then its variants, then UTF-8, then the declared one with U+FFFD for what does not fit.
    With no usable charset (or US-ASCII and 8-bit bytes): UTF-8 when the bytes are mostly
    UTF-8, else windows-1252."""
    codec = _codec(charset)
    if codec is None and charset and charset.strip().strip("\"'").lower() not in _PSEUDO_CHARSETS:
        defects.append(f"UnknownCharset({single_line(charset)[:40]})")
    for name in ([codec, *_ALTERNATIVES.get(codec, ())] if codec else []) + ["utf-8"]:
        try:
            return data.decode(name)
        except (UnicodeError, LookupError, ValueError):
            continue
    if codec and codec != "ascii":
        with contextlib.suppress(UnicodeError, LookupError, ValueError):
            return data.decode(codec, errors="replace")
    as_utf8 = data.decode("utf-8", errors="replace")
    bad = as_utf8.count("\ufffd")
    if sum(ord(c) > 127 for c in as_utf8) - bad > 2 * bad:
        return as_utf8  # UTF-8 with a few broken bytes
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_words(text: str, msg: Message | None = None) -> str:
    """Decode a raw header value: RFC 2047 encoded words, forgiving (unknown charsets, bad
    padding, a character split over two words, blanks or 8-bit bytes inside a word), and 8-bit
    bytes outside them (see `_from_8bit`). Whitespace between two encoded words goes."""
    matches = list(_ENCODED_WORD.finditer(text))
    if not matches:
        return _from_8bit(text, msg)
    out: list[str] = []
    pos = 0
    run: list[tuple[str, bytes]] = []  # adjacent words, decoded together (split characters)

    def flush() -> None:
        if not run:
            return
        charset = run[0][0]
        joined = b"".join(chunk for _, chunk in run)
        out.append(_decode_bytes(joined, charset, []))
        run.clear()

    for match in matches:
        between = text[pos:match.start()]
        if between.strip() or not run:
            flush()
            out.append(_from_8bit(between, msg))
        charset = match.group(1).split("*", 1)[0].lower()
        chunk = _word_bytes(match.group(2), match.group(3))
        if run and run[0][0] != charset:
            flush()
        run.append((charset, chunk))
        pos = match.end()
    flush()
    out.append(_from_8bit(text[pos:], msg))
    return "".join(out)


def _word_bytes(encoding: str, payload: str) -> bytes:
    if encoding.lower() == "q":  # raw 8-bit bytes inside a Q word are kept as they are
        return quopri.decodestring(payload.encode("utf-8", "surrogateescape"), header=True)
    clean = re.sub(r"[^A-Za-z0-9+/]", "", payload)
    if len(clean) % 4 == 1:  # a dangling sixth of a byte: drop it
        clean = clean[:-1]
    try:
        return binascii.a2b_base64(clean + "=" * (-len(clean) % 4))
    except binascii.Error:
        return payload.encode("utf-8", "surrogateescape")


# --- addresses --------------------------------------------------------------------------------


def _address_pairs(msg: Message, name: str, keep_empty: bool = False) -> list[tuple[str, str]]:
    """(display name, address) pairs of a header; names decoded, addresses as written.
    With keep_empty, a name without address (`MAILER-DAEMON <>`) is kept too."""
    raw = _raw_header(msg, name)
    if not raw:
        return []
    if len(raw) > _MAX_ADDRESS_HEADER:  # the stdlib reads addresses at ~4 µs a character
        cut = raw.rfind(",", 0, _MAX_ADDRESS_HEADER)
        raw = raw[:cut if cut > 0 else _MAX_ADDRESS_HEADER]
    try:
        pairs = list(_short_addresses(raw)) if len(raw) <= 200 else getaddresses([raw])
    except Exception:
        pairs = []
    if not any(_qualified(addr.strip()) for _, addr in pairs):
        with contextlib.suppress(Exception):
            pairs.append(parseaddr(raw))
        # `a@b c@d`, stray brackets...: take whatever looks like an address
        pairs.extend(("", addr) for addr in _BARE_ADDRESS.findall(raw))
    result: list[tuple[str, str]] = []
    for display, addr in pairs:
        addr = _ADDRESS_CONTROLS.sub("", _from_8bit(addr, msg)).strip()
        if addr or (keep_empty and display.strip()):
            result.append((_decode_words(display, msg), addr))
    return result


@lru_cache(maxsize=512)
def _short_addresses(raw: str) -> tuple[tuple[str, str], ...]:
    """`getaddresses` of a short header, which recurs (the To of every mail to support): the
    stdlib reads one twice over, in about 50 µs."""
    return tuple(getaddresses([raw]))


# A NUL or other control character inside an address (sprinkled in transit, or put there to
# make a customer address nobody can write to and PostgreSQL cannot store) is no part of it.
_ADDRESS_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\]\",;:@]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _addresses(msg: Message, name: str) -> tuple[str, ...]:
    return tuple(addr.lower() for _, addr in _address_pairs(msg, name) if _qualified(addr))


def _qualified(addr: str) -> bool:
    """local@domain, the local part plain or quoted."""
    return _QUALIFIED.fullmatch(addr) is not None


_QUALIFIED = re.compile(r'(?:"[^"]*"|[^@\s"<>]+)@[^@\s"<>]+')


def _sender(msg: Message, envelope_from: str | None) -> tuple[str, str]:
    """(display name, address) of whoever the ticket belongs to; ("", "") when nobody at all.

    In order: the first qualified address of From, Sender, Reply-To, Return-Path; the envelope
    sender; the address of an mbox `From ` line. Then the null sender of a bounce (`<>`,
    `MAILER-DAEMON` without a domain) becomes `mailer-daemon@<host>`, and any other address
    without a domain (`From: root`) is kept as `<name>@invalid` — reachable by nobody, so no
    automatic answer can go to a guessed address.
    """
    unqualified: tuple[str, str] | None = None
    for name in _SENDER_HEADERS:
        for display, addr in _address_pairs(msg, name, keep_empty=True):
            addr = addr.strip("<>").strip()
            if _qualified(addr):
                return display, addr.lower()
            if unqualified is None and (addr or display):
                unqualified = (display, addr)
    envelope = _ADDRESS_CONTROLS.sub("", envelope_from or "").strip().strip("<>").strip()
    if _qualified(envelope):
        return "", envelope.lower()
    mbox = _mbox_sender(msg)
    if _qualified(mbox):
        return "", mbox.lower()
    if unqualified is None and (envelope or mbox):
        unqualified = ("", envelope or mbox)
    if _null_sender(msg, envelope_from) or mbox.lower() in _NULL_SENDERS - {""}:
        display = unqualified[0] if unqualified else ""
        return display, f"mailer-daemon@{_origin_host(msg)}"
    if unqualified is not None:
        display, local = unqualified
        if local.lower() in _NULL_SENDERS:
            return display, f"mailer-daemon@{_origin_host(msg)}"
        local = re.sub(r"[\s@<>(),;:\"\\\[\]]+", "", local).lower()
        if local:
            return display, f"{local}@invalid"
    return "", ""


def _mbox_sender(msg: Message) -> str:
    """The address of the mbox `From sender date` line the message was saved with, or ""."""
    unixfrom = msg.get_unixfrom() or ""
    parts = unixfrom.split()
    if len(parts) >= 2 and parts[0] == "From":
        return _ADDRESS_CONTROLS.sub("", _from_8bit(parts[1])).strip("<>")
    return ""


def _null_sender(msg: Message, envelope_from: str | None) -> bool:
    """An explicit null reverse-path: `<>` in Return-Path, From or Sender, or as envelope."""
    if envelope_from is not None and envelope_from.strip().strip("<>").strip() == "":
        return True
    for name in ("return-path", "from", "sender"):
        raw = _raw_header(msg, name).strip()
        if raw == "<>" or raw.endswith("<>") or raw.lower() in _NULL_SENDERS - {""}:
            return True
    return False


def _origin_host(msg: Message) -> str:
    """The host that wrote the message, as far as its Message-ID tells; else "invalid"."""
    for mid in message_ids(header_text(msg, "message-id")):
        host = mid.rpartition("@")[2].strip().lower().rstrip(".")
        if re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host):
            return host
    return "invalid"


# --- bodies -----------------------------------------------------------------------------------


def _leaves(msg: Message) -> Iterator[Message]:
    """Every part that holds content, depth first, without recursion (the parser bounded the
    depth already); a report part (message/delivery-status and its kin) is yielded whole
    instead of descending into it."""
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop()
        if _content_type(part) in _REPORT_CONTENT_TYPES or not _is_multipart(part):
            yield part
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend(c for c in reversed(children) if isinstance(c, Message))


_REPORT_CONTENT_TYPES = {f"message/{t}" for t in _REPORT_TYPES} | {"message/global-delivery-status"}


def _is_multipart(part: Message) -> bool:
    try:
        return part.is_multipart()
    except Exception:
        return False


def _content_type(part: Message) -> str:
    """`type/subtype`, lower-case; the part's default type when the header is unusable."""
    raw = _raw_header(part, "content-type")
    match = re.match(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+)", raw)
    if match:
        return match.group(1).lower()
    try:
        return part.get_default_type()
    except Exception:
        return "text/plain"


def _bodies(msg: Message, defects: list[str]) -> tuple[str, str, list[Attachment]]:
    text_parts: list[str] = []
    html_parts: list[str] = []
    attachments: list[Attachment] = []
    for part in _leaves(msg):
        ctype = _content_type(part)
        if ctype in _REPORT_CONTENT_TYPES:
            text_parts.append(_report_text(part, msg))
            continue
        disposition = _disposition(part)
        filename = _filename(part, msg)
        textual = ctype.startswith("text/") or (ctype.startswith("multipart/")
                                                and not _is_multipart(part))
        if disposition == "attachment" or (filename and ctype not in ("text/plain", "text/html")) \
                or not textual:
            payload = _payload(part) or b""
            attachments.append(Attachment(
                filename=safe_filename(filename, "unnamed"), content_type=ctype,
                size=len(payload), data=payload,
                charset=_token(_declared_charset(part)) if ctype.startswith("text/") else ""))
            continue
        body = _decoded_text(part, defects)
        if ctype == "text/html":
            html_parts.append(body)
            continue
        body, files = _uuencoded(body)
        attachments.extend(files)
        text_parts.append(body)
    text = "\n\n".join(p.strip("\r\n") for p in text_parts if p.strip())
    return text, "\n".join(html_parts), attachments


def _disposition(part: Message) -> str:
    raw = _raw_header(part, "content-disposition")
    return raw.split(";", 1)[0].strip().lower()


def _filename(part: Message, msg: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        match = re.search(r"""(?:file)?name\*?=\s*"?([^";]+)""",
                          _raw_header(part, "content-disposition")
                          + ";" + _raw_header(part, "content-type"), re.IGNORECASE)
        name = match.group(1) if match else ""
    return _decode_words(str(name), msg).strip()


def _payload(part: Message) -> bytes | None:
    """The decoded content of a leaf part; None when there is none."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    body = part.get_payload()
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return None


def _declared_charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    if not charset:
        match = re.search(r"charset\s*=\s*[\"']?([^\s\"';]+)", _raw_header(part, "content-type"),
                          re.IGNORECASE)
        charset = match.group(1).lower() if match else None
    return charset


_MIME_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,39}")


def _token(charset: str | None) -> str:
    """A declared charset fit to be written into another message's header (a short MIME token,
    RFC 2045 5.1), else ""."""
    return charset.lower() if charset and _MIME_TOKEN.fullmatch(charset) else ""


def _decoded_text(part: Message, defects: list[str]) -> str:
    payload = _payload(part)
    if payload is None:
        return ""
    charset = _declared_charset(part)
    if not charset and _content_type(part) == "text/html":
        match = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", payload[:4096],
                          re.IGNORECASE)
        charset = match.group(1).decode("ascii") if match else None
    return _decode_bytes(payload, charset, defects)


def _report_text(part: Message, msg: Message) -> str:
    """A delivery-status (or MDN, feedback) report as `Field: value` lines, one block each."""
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return _decoded_text(part, [])
    rendered: list[str] = []
    for block in blocks:
        if not isinstance(block, Message):
            continue
        lines = [f"{key.strip()}: {single_line(_decode_words(str(value), msg))}"
                 for key, value in block.raw_items()]
        body = block.get_payload()
        if isinstance(body, str) and body.strip():
            lines.append(body.strip("\r\n"))
        if lines:
            rendered.append("\n".join(lines))
    return "\n\n".join(rendered)


_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\r\n]+)\r?$", re.MULTILINE)
_UU_END = re.compile(r"^end\s*$", re.MULTILINE)
_UU_LINE = re.compile(r"[\x20-\x60]+")


def _uuencoded(text: str) -> tuple[str, list[Attachment]]:
    """Files uuencoded into plain text (old clients, some gateways) become attachments."""
    if "begin " not in text:
        return text, []
    files: list[Attachment] = []
    kept: list[str] = []
    pos = 0
    for match in _UU_BEGIN.finditer(text):
        if match.start() < pos:
            continue
        end = _UU_END.search(text, match.end())
        if end is None:
            break
        lines = text[match.end():end.start()].splitlines()
        if not all(_UU_LINE.fullmatch(line.rstrip("\r")) for line in lines if line.strip()):
            continue  # prose that happens to start with "begin 644", not a uuencoded file
        filename = safe_filename(match.group(1), "unnamed")
        data = b"".join(_uu_line(line) for line in lines)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        files.append(Attachment(filename=filename, content_type=content_type, size=len(data),
                                data=data))
        kept.append(text[pos:match.start()])
        pos = end.end()
    kept.append(text[pos:])
    return "".join(kept), files


def _uu_line(line: str) -> bytes:
    data = line.strip("\r\n").encode("ascii", "replace")
    if not data or data in (b"`", b" "):
        return b""
    try:
        return binascii.a2b_uu(data)
    except binascii.Error:
        nbytes = (((data[0] - 32) & 63) * 4 + 5) // 3  # what the uu module does with bad padding
        try:
            return binascii.a2b_uu(data[:nbytes])
        except binascii.Error:
            return b""


def _clean(text: str) -> str:
    """Line ends as \\n; no NUL (PostgreSQL refuses it in text), no other control character
    but tab (an escape sequence in a customer's text would reach a staff member's terminal in
    `maild ticket show`), no lone surrogate (no database takes one)."""
    text = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if re.search(r"[\ud800-\udfff]", text):
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# --- automatic mail ---------------------------------------------------------------------------


def _automatic_reason(msg: Message, sender: str, envelope_from: str | None) -> str:
    """Why this message is machine-made (RFC 3834 and common practice), or ""."""
    auto_submitted = header_text(msg, "auto-submitted").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return f"Auto-Submitted: {auto_submitted}"
    precedence = header_text(msg, "precedence").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    if header_text(msg, "list-id") or header_text(msg, "list-unsubscribe"):
        return "mailing list (List-Id/List-Unsubscribe)"
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress"):
        value = header_text(msg, name).strip().lower()
        if value and (name != "x-auto-response-suppress" or value in ("all", "oof")):
            return f"{name}: {value}"
    if _content_type(msg) == "multipart/report":
        return "delivery or disposition report (multipart/report)"
    if any(_content_type(p).split("/")[-1] in _REPORT_TYPES for p in _leaves(msg)):
        return "delivery or disposition report"
    null_sender = envelope_from is not None and envelope_from.strip().lower() in _NULL_SENDERS
    return_path = header_text(msg, "return-path").strip()
    if null_sender or return_path == "<>":
        return "null envelope sender"
    if sender.partition("@")[0] in _NULL_SENDERS:
        return f"sender is {sender.partition('@')[0]}"
    return ""
