"""Turning raw inbound bytes into the facts maild needs: one function, `parse_message`.

Built on the stdlib `email` package with `policy.default` (measured against mail-parser in
`bench/parse_compare.py`; see the README). Real mail is broken in every possible way, so every
step has a fallback: a header the structured parser chokes on is decoded by hand, an unknown or
wrong charset is decoded with replacement characters, HTML-only mail is converted to text.
Only a message with no sender address anywhere is unparseable for maild's purposes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

from maild.errors import UnparseableMessage
from maild.headers import normalize_message_id, single_line
from maild.htmltext import html_to_text

_MSGID = re.compile(r"<([^<>\s]+)>")
_AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_REPORT_TYPES = {"delivery-status", "disposition-notification", "feedback-report"}
_NULL_SENDERS = {"", "<>", "mailer-daemon", "postmaster"}


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None          # without angle brackets
    subject: str                    # decoded, on one line
    sender: str                     # lower-case address the ticket belongs to
    sender_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()
    automatic_reason: str = ""      # why this is automatic mail, "" when a person wrote it
    defects: tuple[str, ...] = field(default=())

    @property
    def automatic(self) -> bool:
        return bool(self.automatic_reason)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message answers, most specific first."""
        seen: dict[str, None] = dict.fromkeys(self.in_reply_to)
        seen.update(dict.fromkeys(reversed(self.references)))
        return tuple(seen)


def parse_message(raw: bytes, envelope_from: str | None = None) -> ParsedMail:
    """Parse raw RFC 5322 bytes; raises UnparseableMessage only when no sender can be found."""
    msg = BytesParser(policy=policy.default).parsebytes(_normal_line_endings(raw))
    defects = [type(d).__name__ for d in msg.defects]
    sender_name, sender = _first_address(msg, "from", "sender", "reply-to", "return-path")
    if not sender and envelope_from:
        sender_name, sender = "", envelope_from.strip("<>").lower()
    if not sender:
        raise UnparseableMessage("no sender address in From, Sender, Reply-To or Return-Path")
    text, html, attachments = _bodies(msg, defects)
    if not text.strip() and html:
        text = html_to_text(html)
    own_ids = _message_ids(header_text(msg, "message-id"))
    return ParsedMail(
        message_id=own_ids[0] if own_ids else None,
        subject=single_line(header_text(msg, "subject")),
        sender=sender,
        sender_name=single_line(sender_name),
        to=_addresses(msg, "to"),
        cc=_addresses(msg, "cc"),
        in_reply_to=tuple(_message_ids(header_text(msg, "in-reply-to"))),
        references=tuple(_message_ids(header_text(msg, "references"))),
        text=text,
        html=html,
        attachments=tuple(attachments),
        automatic_reason=_automatic_reason(msg, sender, envelope_from),
        defects=tuple(defects),
    )


def header_text(msg: Message, name: str) -> str:
    """A header decoded to text, never raising; "" when absent."""
    try:
        value = msg.get(name)
        if value is None:
            return ""
        return str(value)
    except Exception:  # the structured header parser has many ways to fail on broken input
        raw = _raw_header(msg, name)
        try:
            return str(make_header(decode_header(raw)))
        except Exception:
            return raw


def _raw_header(msg: Message, name: str) -> str:
    for key, value in msg.raw_items() if isinstance(msg, EmailMessage) else msg.items():
        if key.lower() == name:
            return value if isinstance(value, str) else str(value)
    return ""


def _normal_line_endings(raw: bytes) -> bytes:
    """CR-only mail (old Macs, some gateways) parses as one giant header otherwise."""
    if b"\r" in raw and b"\n" not in raw:
        return raw.replace(b"\r", b"\n")
    return raw


def _message_ids(text: str) -> list[str]:
    found = _MSGID.findall(text)
    if found:
        return [normalize_message_id(m) for m in found]
    # Some clients omit the angle brackets; take bare tokens that look like ids.
    return [normalize_message_id(t) for t in text.split() if "@" in t]


def _addresses(msg: Message, name: str) -> tuple[str, ...]:
    text = header_text(msg, name)
    if not text:
        return ()
    pairs = getaddresses([text])
    return tuple(addr.lower() for _, addr in pairs if "@" in addr)


def _first_address(msg: Message, *names: str) -> tuple[str, str]:
    for name in names:
        text = header_text(msg, name)
        if not text:
            continue
        display, addr = parseaddr(text)
        if not addr or "@" not in addr:
            pairs = [p for p in getaddresses([text]) if "@" in p[1]]
            if not pairs:
                continue
            display, addr = pairs[0]
        return display, addr.strip().lower()
    return "", ""


def _bodies(msg: Message, defects: list[str]) -> tuple[str, str, list[Attachment]]:
    text_parts: list[str] = []
    html_parts: list[str] = []
    attachments: list[Attachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        if disposition == "attachment" or (filename and ctype not in ("text/plain", "text/html")):
            payload = part.get_payload(decode=True)
            attachments.append(Attachment(filename=single_line(filename or "unnamed"),
                                          content_type=ctype,
                                          size=len(payload) if isinstance(payload, bytes) else 0))
            continue
        if ctype == "text/plain":
            text_parts.append(_decoded_text(part, defects))
        elif ctype == "text/html":
            html_parts.append(_decoded_text(part, defects))
        elif ctype.startswith("text/") or ctype in ("message/delivery-status",):
            text_parts.append(_decoded_text(part, defects))
        else:
            payload = part.get_payload(decode=True)
            attachments.append(Attachment(filename="unnamed", content_type=ctype,
                                          size=len(payload) if isinstance(payload, bytes) else 0))
    return "\n\n".join(p.strip("\n") for p in text_parts if p.strip()), \
        "\n".join(html_parts), attachments


def _filename(part: Message) -> str:
    try:
        return part.get_filename() or ""
    except Exception:
        return ""


def _decoded_text(part: Message, defects: list[str]) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        # message/* sub-parts and the like: keep their text form.
        body = part.get_payload()
        return body if isinstance(body, str) else ""
    charset = _charset(part)
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        defects.append(f"UnknownCharset({charset})")
        return payload.decode("utf-8", errors="replace")


def _charset(part: Message) -> str:
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        return "utf-8"
    aliases = {"unknown-8bit": "utf-8", "x-unknown": "utf-8", "us-ascii": "utf-8",
               "ascii": "utf-8", "iso-8859-8-i": "iso-8859-8"}
    return aliases.get(charset.lower(), charset)


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
    if msg.get_content_type() == "multipart/report":
        return "delivery or disposition report (multipart/report)"
    if any(p.get_content_type().split("/")[-1] in _REPORT_TYPES for p in msg.walk()):
        return "delivery or disposition report"
    null_sender = envelope_from is not None and envelope_from.strip().lower() in _NULL_SENDERS
    return_path = header_text(msg, "return-path").strip()
    if null_sender or return_path == "<>":
        return "null envelope sender"
    if sender.partition("@")[0] in _NULL_SENDERS:
        return f"sender is {sender.partition('@')[0]}"
    return ""
