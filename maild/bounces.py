"""Is this inbound message a bounce, and of what? One pure function, `detect` (SPEC §9).

Bytes in, a `Verdict` out: whether the message reports that mail could not be delivered, each
failed recipient with its RFC 3463 status, whether that failure is permanent, the diagnostic the
remote server gave, and the Message-ID of the returned mail when the report quotes it. No
database and no settings, so it can be measured alone (`bench/bounce_agreement.py`); threading
decides what a verdict does to the tickets.

Order of the evidence, most authoritative first:
1. a feedback report (RFC 5965, ARF) or a read receipt (RFC 8098) is never a bounce;
2. an RFC 3464 delivery status report (`message/delivery-status`, also RFC 6533's
   `message/global-delivery-status`): its per-recipient blocks say everything. `Action: failed`
   or `delayed` is a bounce; a report whose every recipient was `delivered`, `relayed` or
   `expanded` is not. A failure is permanent when its status is 5.x.x (or, without a status,
   when the SMTP reply is 5xx or the action is `failed`): a 4.x.x failure — `delayed`, or
   `failed` after the retry time expired — is temporary;
3. the non-standard formats of older MTAs and providers (Exim, qmail, Yahoo, Exchange ...):
   flufl.bounce, GNU Mailman's bounce detectors, read from the same message. Its verdict of
   permanent or temporary is kept, except that a 4.x.x status in the text makes it temporary.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parseaddr

from flufl.bounce import all_failures

# Actions of RFC 3464 §2.3.3 that say the mail went on, or arrived: not a failure.
_DELIVERED_ACTIONS = ("delivered", "relayed", "expanded")
_DSN_TYPES = {"message/delivery-status", "message/global-delivery-status"}
# Where a report returns the mail it is about (RFC 3462, RFC 6533), whole or its headers.
_RETURNED_TYPES = {"message/rfc822", "message/global", "text/rfc822-headers",
                   "message/global-headers", "message/rfc822-headers"}
_FEEDBACK_TYPES = {"message/feedback-report"}
_RECEIPT_TYPES = {"message/disposition-notification", "message/global-disposition-notification"}
_MAX_PARTS = 200      # a report has a handful of parts; hostile mail is refused elsewhere
_MAX_DEPTH = 10
_MAX_TEXT = 256 * 1024  # the text scanned for a status code or a quoted Message-ID
_MAX_DIAGNOSTIC = 500

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"^\s*([245]\d\d)(?:[\s-]|$)")
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:\s*<([^<>\s]+@[^<>\s]+)>",
                                re.IGNORECASE | re.MULTILINE)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s?(.*)$")


@dataclass(frozen=True)
class Failure:
    """One recipient the report says was not delivered to."""

    recipient: str        # lower-case address; "" when the report does not name it
    permanent: bool       # 5.x.x: the address does not work; 4.x.x: it may again
    status: str = ""      # RFC 3463 enhanced status code, e.g. "5.1.1"; "" when not given
    reply_code: str = ""  # the SMTP reply, e.g. "550"; "" when not given
    diagnostic: str = ""  # what the remote server said, on one line
    action: str = ""      # RFC 3464 Action (failed, delayed); "" for a non-DSN bounce


@dataclass(frozen=True)
class Verdict:
    bounce: bool
    failures: tuple[Failure, ...] = ()
    original_message_id: str | None = None  # of the returned mail, without angle brackets
    detector: str = ""    # "dsn", "flufl.bounce", or "" when no bounce
    why: str = ""         # what the message is instead, when it is not a bounce

    @property
    def permanent(self) -> bool:
        """Some recipient failed for good: that address is to be marked undeliverable."""
        return any(f.permanent for f in self.failures)

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.recipient for f in self.failures if f.recipient))

    @property
    def permanent_recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.recipient for f in self.failures
                                   if f.recipient and f.permanent))

    def summary(self) -> str:
        """One line for a ticket's history."""
        if not self.bounce:
            return f"not a bounce ({self.why})" if self.why else "not a bounce"
        parts = []
        for f in self.failures:
            code = " ".join(c for c in (f.status, f.reply_code) if c)
            kind = "permanent" if f.permanent else "temporary"
            parts.append(f"{f.recipient or 'unnamed recipient'}: {kind}"
                         + (f" {code}" if code else "")
                         + (f" ({f.diagnostic})" if f.diagnostic else ""))
        return "; ".join(parts)[:1000] or "bounce"


def detect(raw: bytes) -> Verdict:
    """The verdict on one raw message (RFC 5322 bytes, any line endings)."""
    msg = _parse(raw)
    if msg is None:
        return Verdict(False, why="not parseable")
    return detect_message(msg)


def detect_message(msg: Message) -> Verdict:
    """The verdict on a message parsed with the stdlib `email` package (compat32 policy)."""
    parts = list(_parts(msg))
    types = {_content_type(p) for p in parts}
    report_type = str(msg.get_param("report-type", "", header="content-type") or "").lower() \
        if _content_type(msg) == "multipart/report" else ""
    if report_type == "feedback-report" or types & _FEEDBACK_TYPES:
        return Verdict(False, why="feedback report")
    returned = _returned_message_id(msg, parts)
    reports = [p for p in parts if _content_type(p) in _DSN_TYPES]
    if reports:
        failures, delivered = _dsn_failures(reports)
        if failures:
            return Verdict(True, _with_text_status(failures, msg, parts), returned, "dsn")
        if delivered:
            return Verdict(False, why="delivery report: delivered")
    if report_type == "disposition-notification" or types & _RECEIPT_TYPES:
        return Verdict(False, why="read receipt")
    failures = _flufl_failures(msg, parts)
    if failures:
        return Verdict(True, tuple(failures), returned, "flufl.bounce")
    return Verdict(False)


# --- the message ------------------------------------------------------------------------------


def _parse(raw: bytes) -> Message | None:
    # The stdlib parser wants one kind of line ending; real bounces have CR-only and mixed ones.
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return BytesParser(policy=compat32).parsebytes(data)
    except Exception:  # the feedparser is built never to raise; a report must not crash us
        return None


def _parts(msg: Message) -> Iterator[Message]:
    """Every part, depth first, the message itself first; bounded in count and depth."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < _MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        yield part
        if depth >= _MAX_DEPTH or _content_type(part) in _DSN_TYPES:
            continue  # a delivery-status payload is its field blocks, not parts
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _text(part: Message) -> str:
    """A leaf part's content, transfer-decoded, as text (ASCII is all the codes need)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload[:_MAX_TEXT].decode(charset, "replace")
        except LookupError:
            return payload[:_MAX_TEXT].decode("utf-8", "replace")
    raw = part.get_payload()
    return raw[:_MAX_TEXT] if isinstance(raw, str) else ""


def _all_text(msg: Message, parts: list[Message]) -> str:
    """The text of the report's own text parts (not of the returned mail), bounded."""
    texts: list[str] = []
    size = 0
    for part in parts:
        if part is not msg and _content_type(part) in _RETURNED_TYPES:
            break  # the returned mail comes last; its text is the customer's, not the MTA's
        if part.get_content_maintype() == "text" and not part.is_multipart():
            text = _text(part)
            texts.append(text)
            size += len(text)
            if size > _MAX_TEXT:
                break
    return "\n".join(texts)[:_MAX_TEXT]


# --- RFC 3464 ---------------------------------------------------------------------------------


def _dsn_failures(reports: list[Message]) -> tuple[list[Failure], bool]:
    """The failed and delayed recipients of the reports; and whether any recipient was
    delivered (a report that names only those is a success notice)."""
    failures: list[Failure] = []
    delivered = False
    for report in reports:
        for block in _field_blocks(report):
            recipient = _address(block.get("final-recipient", "")) \
                or _address(block.get("original-recipient", "")) \
                or _address(block.get("x-actual-recipient", ""))
            action = block.get("action", "").strip().lower()
            status = _status(block.get("status", ""))
            diagnostic = _diagnostic(block.get("diagnostic-code", ""))
            reply_code = _reply_code(diagnostic)
            if not (action or status or recipient):
                continue  # the per-message block (Reporting-MTA, Arrival-Date ...)
            if action.startswith(_DELIVERED_ACTIONS) or (not action and status[:1] == "2"):
                delivered = True
                continue
            # opensmtpd writes "Action: error"; some MTAs comment the action ("failed (...)").
            failed = action.startswith(("fail", "error"))
            if not (failed or action.startswith("delay") or status[:1] in ("4", "5")):
                continue
            if not status:
                status = _status(diagnostic)
            permanent = _permanent(status, reply_code, failed)
            failures.append(Failure(recipient, permanent, status, reply_code, diagnostic,
                                    action.split()[0] if action else ""))
    return failures, delivered


def _field_blocks(report: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part, each as lower-case name -> value.

    compat32 parses `message/delivery-status` into one Message per block; any other report
    type (global-delivery-status, or a report whose MIME structure is broken) stays text."""
    payload = report.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for block in payload:
            if not isinstance(block, Message):
                continue
            blocks.append({k.lower(): _unfold(str(v)) for k, v in block.items()})
            rest = block.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks.extend(_text_blocks(rest))
        return blocks
    return _text_blocks(_text(report))


def _text_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, name = {}, ""
        elif line[:1] in (" ", "\t") and name:
            current[name] += " " + line.strip()
        elif (field := _FIELD.match(line)) is not None:
            name = field.group(1).lower()
            current.setdefault(name, field.group(2).strip())
    if current:
        blocks.append(current)
    return blocks


def _address(value: str) -> str:
    """The address of a recipient field (`rfc822; user@example.org`), lower-case; "" when it
    is not an Internet address."""
    kind, _, address = value.partition(";")
    if not address:
        address, kind = kind, "rfc822"
    if kind.strip().lower() not in ("rfc822", "utf-8", "utf8", "x400", "unknown", ""):
        return ""
    address = parseaddr(address.strip())[1] or address.strip().strip("<>")
    address = address.strip().strip("<>").lower()
    local, at, domain = address.rpartition("@")
    return address if at and local and "." in domain and " " not in address else ""


def _status(value: str) -> str:
    found = _STATUS.search(value)
    return ".".join(found.groups()) if found else ""


def _diagnostic(value: str) -> str:
    """The remote server's words, without the `smtp;` type."""
    kind, sep, rest = value.partition(";")
    text = rest if sep and kind.strip().lower() in ("smtp", "x-unix", "x-postfix", "x-local",
                                                  "x-exim", "x-notes", "x-smtp") else value
    return " ".join(text.split())[:_MAX_DIAGNOSTIC]


def _reply_code(diagnostic: str) -> str:
    found = _REPLY_CODE.match(diagnostic)
    return found.group(1) if found else ""


def _permanent(status: str, reply_code: str, failed: bool) -> bool:
    """5.x.x is permanent, 4.x.x temporary (RFC 3463); without a status the SMTP reply, and
    without either the action: a `failed` delivery was given up."""
    if status[:1] in ("4", "5"):
        return status[:1] == "5"
    if reply_code[:1] in ("4", "5"):
        return reply_code[:1] == "5"
    return failed


def _unfold(value: str) -> str:
    return " ".join(value.split())


# --- the returned mail ------------------------------------------------------------------------


def _returned_message_id(msg: Message, parts: list[Message]) -> str | None:
    """The Message-ID of the mail a report returns: from its returned part, or else quoted in
    the report's text (non-MIME bounces paste the headers into the body)."""
    own = _message_id(str(msg.get("message-id", "")))
    for part in parts:
        ctype = _content_type(part)
        if part is msg or ctype not in _RETURNED_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found = _message_id(str(payload[0].get("message-id", "")))
        else:
            found = next(iter(_QUOTED_MESSAGE_ID.findall(_text(part))), None)
        if found and found != own:
            return found
    for part in parts:
        if part.get_content_maintype() == "text" and not part.is_multipart():
            for found in _QUOTED_MESSAGE_ID.findall(_text(part)):
                if found != own:
                    return str(found)
    return None


def _message_id(value: str) -> str | None:
    found = re.search(r"<([^<>\s]+@[^<>\s]+)>", value)
    return found.group(1) if found else None


# --- other formats ----------------------------------------------------------------------------


def _flufl_failures(msg: Message, parts: list[Message]) -> list[Failure]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector's regex met a shape it did not expect: no verdict
        return []
    if not (temporary or permanent):
        return []
    text = _all_text(msg, parts)
    status = _status(text)
    reply_code = next((m.group(1) for m in re.finditer(r"(?<!\d)([45]\d\d)(?=[\s-])", text)),
                      "")
    failures = []
    for address, is_permanent in [(a, False) for a in sorted(temporary)] + \
            [(a, True) for a in sorted(permanent - temporary)]:
        recipient = _address(address.decode("ascii", "replace"))
        # flufl.bounce cannot always tell (it then says permanent); a 4.x.x in the text can.
        if status[:1] == "4":
            is_permanent = False
        failures.append(Failure(recipient, is_permanent, status, reply_code,
                                _diagnostic_near(text, recipient)))
    return failures


def _diagnostic_near(text: str, recipient: str) -> str:
    """The line after the failed address in a non-DSN bounce, which usually says why."""
    if not recipient:
        return ""
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if recipient in line.lower():
            rest = [x for x in lines[i:i + 4] if x]
            return " ".join(" ".join(rest).split())[:_MAX_DIAGNOSTIC]
    return ""


def _with_text_status(failures: list[Failure], msg: Message,
                      parts: list[Message]) -> tuple[Failure, ...]:
    """A DSN block without any status or reply code: take the one the human-readable part
    gives (some MTAs put it only there)."""
    if all(f.status or f.reply_code for f in failures):
        return tuple(failures)
    text_status = _status(_all_text(msg, parts))
    return tuple(f if f.status or f.reply_code or not text_status else
                 Failure(f.recipient, text_status[:1] == "5", text_status, f.reply_code,
                         f.diagnostic, f.action) for f in failures)
