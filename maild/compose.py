"""Rendering outgoing mail: Jinja2 templates in, RFC 5322 bytes out.

A template is `templates/<language>/<kind>.txt`; its first line is `Subject: ...`, then a
blank line, then the plain-text body. Templates see only the context they are given
(StrictUndefined: a typo in a template is an error, not an empty string). The rendered subject
and every name taken from customer text pass through `single_line` before reaching a header.
"""

from __future__ import annotations

import base64
import contextlib
import html
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.charset import QP, Charset
from email.message import Message
from email.mime.base import MIMEBase
from email.policy import compat32
from email.utils import format_datetime, formataddr
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import jinja2

from maild.config import Settings
from maild.headers import MAX_SUBJECT, bracketed, safe_filename, single_line
from maild.mailkinds import TEMPLATES

_UTF8_8BIT = Charset("utf-8")
_UTF8_8BIT.body_encoding = 0  # neither QP nor base64, so 8bit: compact for Cyrillic
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # only for lines SMTP could not carry (over 998 bytes)
_SMTP_COMPAT32 = compat32.clone(linesep="\r\n")
_ASCII_PRINTABLE = "".join(chr(c) for c in range(32, 127))
BUILTIN_TEMPLATES = Path(__file__).resolve().parent / "templates"  # package data (SPEC §2)
MAX_REFERENCES = 20
LANGUAGES = ("en", "ru")  # every template exists in each
INCLUDES = ("_attachments", "_priority")  # pieces the templates include
TEMPLATE_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


@dataclass(frozen=True)
class OutgoingFile:
    """An attachment of an outgoing message."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    charset: str = ""  # of a text file, so its reader decodes it as it was written

    @cached_property
    def part(self) -> bytes:
        """Its MIME part, written once for every mail that carries it (a customer's file goes
        to each staff member's notice)."""
        return _file_part(self)


@dataclass(frozen=True)
class Envelope:
    """Everything about one outgoing message except its text."""

    message_id: str
    to_address: str
    to_name: str = ""
    cc: tuple[str, ...] = ()      # shown in Cc (each copy of the message has its own row)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: str | None = None
    ticket_number: str | None = None
    from_name: str | None = None  # display name; the support name when None
    html: bool = False            # add an HTML alternative (the customer wrote HTML)
    attachments: tuple[OutgoingFile, ...] = ()


class Templates:
    """The template set of one installation (config `mail.templates_dir` or the built-in one)."""

    def __init__(self, settings: Settings) -> None:
        self.folder = Path(settings.mail.templates_dir) if settings.mail.templates_dir \
            else BUILTIN_TEMPLATES
        folder = self.folder
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text; an HTML part, when there is one, escapes itself
            keep_trailing_newline=True,
            auto_reload=False,  # `_fresh` looks at the files instead
        )
        self.env.filters["size"] = _size_filter
        self._globals = dict(self.env.globals)  # what every template sees besides its context
        self._checked = 0.0  # when the files were last looked at (time.monotonic())

    def load_all(self) -> None:
        """Compile every template of the set now (the worker, before it says it is ready), so
        the first mail does not wait for it. One that is missing or broken is left to fail the
        message that needs it, with its reason (`check-config` lists them)."""
        for language in LANGUAGES:
            for template in (*TEMPLATES, *INCLUDES):
                with contextlib.suppress(jinja2.TemplateError):
                    self.env.get_template(f"{language}/{template}.txt")

    def _fresh(self) -> None:
        """Drop the compiled templates when a file of theirs changed, looking at most once a
        second. Jinja2's own `auto_reload` looks at the file of every template and every
        include it renders, for every mail; an operator who mends a template only needs the
        next mail to see it (README: mend it, then `maild inbound retry`)."""
        now = time.monotonic()
        if now - self._checked < TEMPLATE_RECHECK_SECONDS:
            return
        self._checked = now
        cache = self.env.cache
        if cache is not None and not all(t.is_up_to_date for t in cache.values()):
            cache.clear()

    def problems(self, languages: tuple[str, ...]) -> list[str]:
        """What is missing or broken in the set (for `check-config`): one line each."""
        found = []
        for language in languages:
            for template in (*TEMPLATES, *INCLUDES):
                name = f"{language}/{template}.txt"
                try:
                    source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
                    self.env.parse(source)
                except jinja2.TemplateNotFound:
                    found.append(f"no template {name} in {self.folder}")
                    continue
                except jinja2.TemplateSyntaxError as exc:
                    found.append(f"{name} line {exc.lineno}: {exc.message}")
                    continue
                if template in TEMPLATES and not source.startswith("Subject:"):
                    found.append(f"{name} must start with 'Subject: ...'")
        return found

    def render(self, kind: str, language: str, context: dict[str, Any]) -> Rendered:
        self._fresh()
        template = self.env.get_template(f"{language}/{kind}.txt")
        # What Template.render does, but with the globals merged in from a dict made once:
        # render() copies them out of the template's ChainMap for every mail, a quarter of
        # rendering a notice (`shared`: the context is taken as given, globals and all).
        variables = {**self._globals, **context, "language": language}
        try:
            text = self.env.concat(
                template.root_render_func(template.new_context(variables, shared=True)))
        except Exception:
            self.env.handle_exception()  # the template's own lines in the traceback, as render()
        head, _, body = text.partition("\n\n")
        if not head.startswith("Subject:"):
            raise ValueError(f"template {language}/{kind}.txt must start with 'Subject: ...'")
        subject = single_line(head.removeprefix("Subject:"), limit=MAX_SUBJECT)
        return Rendered(subject=subject, body=body.strip("\n") + "\n")


_SIZE_UNITS = {"en": ("bytes", "KB", "MB"), "ru": ("байт", "КБ", "МБ")}


def size_for_people(size: int, language: str = "en") -> str:
    """`532 bytes`, `14 KB`, `2.5 MB` (`532 байт`, `14 КБ`...): a file's size as people read it."""
    unit, kilo, mega = _SIZE_UNITS.get(language, _SIZE_UNITS["en"])
    if size < 1024:
        return f"{size} {unit}"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} {kilo}"
    return f"{size / (1024 * 1024):.1f} {mega}".replace(".0 ", " ")


@jinja2.pass_context
def _size_filter(context: jinja2.runtime.Context, size: int) -> str:
    return size_for_people(size, context.get("language", "en"))


def build_message(
    settings: Settings, rendered: Rendered, envelope: Envelope, now: datetime
) -> bytes:
    """The complete outgoing message, ready for any transport.

    Built with the compat32 classes: they produce the same RFC 5322 output here at a quarter of
    the cost of the header-registry ones, and this runs for every mail maild sends."""
    from_name = settings.mail.support_name if envelope.from_name is None else envelope.from_name
    headers = [
        ("From", _address(from_name, settings.mail.support_address)),
        ("To", _address(envelope.to_name, envelope.to_address)),
        ("Subject", _header_text(rendered.subject)),
        ("Date", _date(now)),
        ("Message-ID", bracketed(envelope.message_id)),
    ]
    if envelope.cc:
        headers.append(("Cc", ", ".join(_address("", a) for a in envelope.cc)))
    if envelope.in_reply_to and _header_safe(envelope.in_reply_to):
        headers.append(("In-Reply-To", bracketed(envelope.in_reply_to)))
    references = [r for r in envelope.references if _header_safe(r)][-MAX_REFERENCES:]
    if references:
        headers.append(("References", " ".join(bracketed(r) for r in references)))
    if envelope.auto_submitted:
        headers.append(("Auto-Submitted", envelope.auto_submitted))
        # Ask Exchange not to answer us automatically.
        headers.append(("X-Auto-Response-Suppress", "All"))
    if envelope.ticket_number:
        headers.append(("X-Maild-Ticket", envelope.ticket_number))
    # The header block is written here rather than by the generator, which folds every header
    # through email.header.Header (a third of building a message): the values are ASCII
    # already — encoded words where they came from customer text — so folding them at spaces
    # is all that is left. The MIME part's own headers follow, then its body.
    head = "".join(_header_line(name, value) for name, value in headers)
    return head.encode("ascii") + _body(rendered, envelope)


def _body(rendered: Rendered, envelope: Envelope) -> bytes:
    """The MIME part after the header block: the text, with its HTML alternative and the
    attachments when there are any.

    Written here, not by the generator: through it, a notice carrying a customer's 100 KB file
    took 9 ms (it splits and rewrites every line of the base64), against 40 µs for plain text;
    each file's part is now written once for all the notices that carry it."""
    part = _text_body(rendered.body)
    if envelope.html:
        part = _multipart("alternative", [part, _text_body(_as_html(rendered.body), "html")])
    if envelope.attachments:
        part = _multipart("mixed", [part, *(file.part for file in envelope.attachments)])
    return part


def _text_body(text: str, subtype: str = "plain") -> bytes:
    written = _plain_text(text, subtype)
    if written is not None:
        return written
    return _text_part(text, subtype).as_bytes(policy=_SMTP_COMPAT32)  # quoted-printable


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    """A multipart of `parts` (each a MIME part: its headers, a blank line, its body), as RFC
    2046 5.1.1 writes it and the generator would. The boundary cannot occur in base64 or
    quoted-printable text (neither has `=_`), and is checked against the rest."""
    boundary = ""
    while not boundary or any(boundary.encode() in part for part in parts):
        boundary = f"=_maild_{secrets.token_hex(12)}"
    delimiter = f"--{boundary}\r\n".encode()
    head = (f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'
            "MIME-Version: 1.0\r\n\r\n").encode()
    return b"".join([head, *(delimiter + part + b"\r\n" for part in parts),
                     f"--{boundary}--\r\n".encode()])


_LINE_END = re.compile(r"\r\n|\r|\n")
_PLAIN_HEAD = ('MIME-Version: 1.0\r\nContent-Type: text/{}; charset="utf-8"\r\n'
               "Content-Transfer-Encoding: {}\r\n\r\n")
_PLAIN_HEADS = {(subtype, cte): _PLAIN_HEAD.format(subtype, cte).encode("ascii")
                for subtype in ("plain", "html") for cte in ("7bit", "8bit")}


def _plain_text(text: str, subtype: str = "plain") -> bytes | None:
    """The MIME part of a text, for plain text byte for byte what compat32's generator writes
    for `_text_part(text)` (tests/test_compose.py compares them), at a tenth of its cost — most
    mail maild sends is this one part. None when the text needs quoted-printable (a line SMTP
    cannot carry): then the generator writes it."""
    if _long_lines(text):
        return None
    data = _LINE_END.sub("\r\n", text).encode("utf-8")
    return _PLAIN_HEADS[subtype, "7bit" if data.isascii() else "8bit"] + data


def _header_line(name: str, value: str, width: int = 78) -> str:
    """`Name: value` and CRLF, folded at spaces so lines stay within `width` where they can
    (RFC 5322 2.2.3). A value outside ASCII is made UTF-8 encoded words first."""
    if len(name) + 2 + len(value) <= width and value.isascii() and value.isprintable() \
            and "  " not in value and value.strip() == value:
        return f"{name}: {value}\r\n"  # most headers: one short line, nothing to fold
    value = " ".join(value.split())
    if not value.isascii():
        value = encoded_words(value)
    lines, line = [], f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > width and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _long_lines(text: str) -> bool:
    """Whether a line is longer than SMTP carries (RFC 5321 4.5.3.1.6: 998 bytes)."""
    lines = text.splitlines()
    # A character is at most 4 bytes of UTF-8: only a line of 250 characters or more can be
    # too long, and most texts have none, so most are never encoded here.
    return max(map(len, lines), default=0) > 998 // 4 \
        and any(len(line.encode()) > 998 for line in lines)


def _text_part(text: str, subtype: str = "plain") -> Message:
    part = Message()
    part.set_payload(text, _UTF8_QP if _long_lines(text) else _UTF8_8BIT)
    if subtype != "plain":
        part.set_type(f"text/{subtype}")
    return part


# Types a mail client may show as part of the mail rather than as a file: a customer's HTML
# page, SVG or forwarded message would be rendered inside maild's staff notice, and message/*
# and multipart/* may not be base64 at all (RFC 2046 5.1, 5.2). They go as plain files.
_SHOWN_INLINE = ("text/html", "application/xhtml+xml", "image/svg+xml", "message/", "multipart/")


def _file_part(attachment: OutgoingFile) -> bytes:
    """An attachment's MIME part, in base64; a file name outside ASCII in RFC 2231 form
    (`filename*=`), which every current mail client reads, plus the RFC 2047 form older
    Outlooks look for. (`OutgoingFile.part`: once per file, whatever mails carry it.)"""
    content_type = attachment.content_type.lower()
    if content_type.startswith(_SHOWN_INLINE):
        content_type = "application/octet-stream"
    maintype, _, subtype = content_type.partition("/")
    part = MIMEBase(maintype or "application", subtype or "octet-stream")
    if maintype == "text" and attachment.charset:
        part.set_param("charset", attachment.charset)
    part.set_payload("")  # the headers only: the base64 follows, its lines ended as SMTP's
    part["Content-Transfer-Encoding"] = "base64"
    name = safe_filename(attachment.filename, "attachment")
    if name.isascii():
        part.add_header("Content-Disposition", "attachment", filename=name)
    else:
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        part.set_param("name", encoded_words(name))
    return part.as_bytes(policy=_SMTP_COMPAT32) + \
        base64.encodebytes(attachment.data).replace(b"\n", b"\r\n")


def _as_html(text: str) -> str:
    """The plain text as a simple HTML page: paragraphs, line breaks, the indentation of
    indented lines (the subject quoted in an acknowledgement), web addresses as links."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    body = "\n".join(
        "<p>" + "<br>\n".join(_html_line(line) for line in p.strip("\n").split("\n")) + "</p>"
        for p in paragraphs)
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
            f'<body style="font-family: sans-serif">\n{body}\n</body></html>\n')


# A web address in maild's own text (the status page link): up to a space or an angle bracket,
# without the punctuation that ends a sentence around it.
_WEB_ADDRESS = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")


def _html_line(line: str) -> str:
    """One line of text in HTML: escaped, its leading spaces kept, its web addresses linked."""
    stripped = line.lstrip(" ")
    linked, position = [], 0
    for match in _WEB_ADDRESS.finditer(stripped):
        address = html.escape(match.group(), quote=True)
        linked += [html.escape(stripped[position:match.start()]),
                   f'<a href="{address}">{address}</a>']
        position = match.end()
    linked.append(html.escape(stripped[position:]))
    return "&nbsp;" * (len(line) - len(stripped)) + "".join(linked)


_WORD_BYTES = 45
"""UTF-8 bytes in one encoded word: 60 characters of base64, 72 with `=?utf-8?b?` and `?=`
(RFC 2047 2: at most 75)."""


def encoded_words(text: str) -> str:
    """`text` as RFC 2047 encoded words — base64 of its UTF-8, each word whole characters
    (5: a character is never split between words) — separated by spaces, which a reader drops
    between two encoded words (6.2). Written here: `email.header.Header` weighs quoted-printable
    against base64 byte by byte, and cost 0.2 ms for a Cyrillic subject, for every new one."""
    data = text.encode("utf-8", "replace")  # a lone surrogate of an undecodable byte: "?"
    words, start = [], 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character: back to its start
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return " ".join(words)


# The header values below are pure functions of their text, and the same text recurs: every
# mail has the same From, the notices of one message to each staff member the same Subject,
# all the mail one message owes the same Date.
@lru_cache(maxsize=1024)
def _header_text(value: str) -> str:
    """A header value: ASCII as it is; otherwise the ASCII lead (the ticket tag) kept readable
    and the rest in UTF-8 encoded words."""
    value = single_line(value)
    if value.isascii():
        return value
    lead = value[: len(value) - len(value.lstrip(_ASCII_PRINTABLE))]
    lead = lead[: lead.rfind(" ") + 1] if " " in lead else ""
    return lead + encoded_words(value[len(lead):])


@lru_cache(maxsize=1024)
def _address(name: str, address: str) -> str:
    name = single_line(name)
    address = single_line(address)
    if not name:
        return address
    # One encoded word, however long: Python's own address parser, for one, reads the space
    # between two words of a display name as part of the name (RFC 2047 6.2: it is not).
    return formataddr((name, address), charset="utf-8")


@lru_cache(maxsize=16)
def _date(now: datetime) -> str:
    return format_datetime(now)


def _header_safe(message_id: str) -> bool:
    return message_id.isascii() and message_id.isprintable() and " " not in message_id \
        and len(message_id) < 250
