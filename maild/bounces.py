"""Is this inbound message a bounce, and of what? One pure function, `detect` (SPEC §9).

A message in, a `Verdict` out: whether the message reports that mail could not be delivered,
each failed recipient with its RFC 3463 status, whether that failure is permanent, the
diagnostic the remote server gave, and the Message-ID of the returned mail when the report
quotes it. The message is the MIME tree `maild.parsing` built (`ParsedMail.message`: the worker
parses each mail once); `detect(raw)` builds the same tree from bytes. No database and no
settings, so it can be measured alone (`bench/bounce_agreement.py`); threading decides what a
verdict does to the tickets.

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

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from flufl.bounce import all_failures

from maild.headers import single_line
from maild.parsing import MessageTooComplex, message_tree

# flufl.bounce logs each of its ~17 detectors at INFO for every automatic mail: under journald
# an autoresponder storm would be nothing but that. Its warnings still come through.
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)

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
# flufl.bounce's detectors match every line of every part against their patterns, about 25 µs
# a line here: a "bounce" of 25 MB of short lines took two minutes, past the worker's
# `mail.processing_timeout` (bench/hostile_campaign.py --threading found it). The formats it
# knows say what failed in the MTA's own words at the top, before the returned mail, so it
# reads the first lines only.
_MAX_FLUFL_LINES = 2000
_MAX_DIAGNOSTIC = 500

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"^\s*([245]\d\d)(?:[\s-]|$)")
# A Message-ID between brackets: no space and no control character (a NUL is no id, and
# PostgreSQL refuses it in a look-up).
_BRACKETED_ID = r"<([^<>\s\x00-\x1f\x7f]+@[^<>\s\x00-\x1f\x7f]+)>"
_QUOTED_MESSAGE_ID = re.compile(rf"^[ \t>]*Message-ID:\s*{_BRACKETED_ID}",
                                re.IGNORECASE | re.MULTILINE)
_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"']+@[a-z0-9-]+(?:\.[a-z0-9-]+)+", re.IGNORECASE)
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

    def __post_init__(self) -> None:
        # A report is a stranger's text, and all of this is stored (events, the undeliverable
        # mark) and shown to staff: on one line, no NUL (PostgreSQL refuses it in text) nor any
        # other control character, whichever detector read it.
        for name in ("recipient", "status", "reply_code", "diagnostic", "action"):
            object.__setattr__(self, name, single_line(getattr(self, name)))


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
    """The verdict on one raw message (RFC 5322 bytes, any line endings), parsed as the worker
    parses it (`maild.parsing.message_tree`)."""
    try:
        msg = message_tree(raw)
    except MessageTooComplex:  # the worker keeps such a message as failed, unread
        return Verdict(False, why="not parseable")
    return detect_message(msg)


def detect_message(msg: Message) -> Verdict:
    """The verdict on a message as `maild.parsing` parses it (`ParsedMail.message`): compat32,
    header values the raw strings, 8-bit bytes in them as surrogate escapes (`_header`)."""
    parts = list(_parts(msg))
    types = {_content_type(p) for p in parts}
    report_type = str(msg.get_param("report-type", "", header="content-type") or "").lower() \
        if _content_type(msg) == "multipart/report" else ""
    if report_type == "feedback-report" or types & _FEEDBACK_TYPES:
        return Verdict(False, why="feedback report")
    returned = _returned_message_id(msg, parts)
    blocks = [b for p in parts if _content_type(p) in _DSN_TYPES for b in _field_blocks(p)]
    if not any(_names_recipient(b) for b in blocks):
        # A report whose MIME structure is broken (a boundary with a leading space), or that
        # has no MIME headers at all, still carries its per-recipient fields in its text.
        blocks += [b for b in _text_blocks(_all_text(msg, parts)) if _names_recipient(b)]
    if blocks:
        failures, delivered = _dsn_failures(blocks)
        if failures:
            return Verdict(True, _with_text_status(failures, msg, parts), returned, "dsn")
        if delivered:
            return Verdict(False, why="delivery report: delivered")
    if report_type == "disposition-notification" or types & _RECEIPT_TYPES:
        return Verdict(False, why="read receipt")
    if not _from_mail_system(msg):
        # flufl.bounce was made for a list's bounce address, where only machines write; a
        # support address gets people's replies, whose quoted "To:" lines its loosest
        # heuristics take for failed recipients. Only mail a mail system sent is asked.
        return Verdict(False)
    head = _head(msg)
    failures = _flufl_failures(msg, parts, head) if head is not None else []
    if failures:
        return Verdict(True, tuple(failures), returned, "flufl.bounce")
    failures = _notice_failures(msg, parts)
    if failures:
        return Verdict(True, tuple(failures), returned, "notice")
    return Verdict(False)


# --- the message ------------------------------------------------------------------------------


def _header(msg: Message, name: str) -> str:
    """A header's value as text: `maild.parsing` keeps 8-bit bytes as surrogate escapes (to
    decode them by the message's charset); here they are read as UTF-8, anything else replaced
    — the codes and addresses a report is read for are ASCII."""
    return _text_of(str(msg.get(name, "")))


def _text_of(value: str) -> str:
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _head(msg: Message) -> Message | None:
    """The message cut after its first `_MAX_FLUFL_LINES` lines, for flufl.bounce, whose
    detectors cost about 25 µs a line: a 12 MB "bounce" of short lines took a minute of CPU.
    None when it cannot be made (then flufl.bounce is not asked)."""
    try:
        data = msg.as_bytes()
        cut = -1
        for _ in range(_MAX_FLUFL_LINES):
            cut = data.find(b"\n", cut + 1)
            if cut < 0:
                return msg  # short enough as it is
        return message_tree(data[:cut + 1])
    except Exception:  # a tree the generator cannot write back, a cut too complex to parse
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
        payload = _payload(part)
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))


def _payload(part: Message) -> str | list[Any]:
    """A part's payload as compat32 holds it: the list of its parts, or its text undecoded.

    compat32 decodes the 8-bit bytes of a text payload by the charset parameter even when not
    asked to decode, and raises for a codec that takes no "replace" (idna), fails whatever it
    is given (undefined) or is not named by a string (an RFC 2231 parameter); such a text is
    read as UTF-8 instead, as `_text` does."""
    try:
        payload = part.get_payload()
    except Exception:
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            return ""
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return payload if isinstance(payload, (str, list)) else ""


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
        except (LookupError, UnicodeError, ValueError):  # no such codec; or one that takes no
            # "replace" (idna) or fails whatever it is given (undefined)
            return payload[:_MAX_TEXT].decode("utf-8", "replace")
    raw = _payload(part)
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


def _names_recipient(block: dict[str, str]) -> bool:
    return bool({"final-recipient", "original-recipient"} & block.keys()
                and {"action", "status"} & block.keys())


def _dsn_failures(blocks: list[dict[str, str]]) -> tuple[list[Failure], bool]:
    """The failed and delayed recipients of a report's field blocks; and whether any recipient
    was delivered (a report that names only those is a success notice)."""
    failures: list[Failure] = []
    delivered = False
    for block in blocks:
        recipient = _address(block.get("final-recipient", "")) \
            or _address(block.get("original-recipient", "")) \
            or _address(block.get("x-actual-recipient", ""))
        action = block.get("action", "").strip().lower()
        status = _status(block.get("status", ""))
        diagnostic = _diagnostic(block.get("diagnostic-code", ""))
        reply_code = _reply_code(diagnostic)
        if not (action or status) or not (recipient or _names_recipient(block)):
            continue  # the per-message block (Reporting-MTA, Arrival-Date ...)
        if action.startswith(_DELIVERED_ACTIONS) or (not action and status[:1] == "2"):
            delivered = True
            continue
        # opensmtpd writes "Action: error"; some MTAs comment the action ("failed (...)"), or
        # say "expired" for a delivery given up when its retry time ran out (4.4.7).
        failed = action.startswith(("fail", "error"))
        if not (failed or action.startswith(("delay", "expired"))
                or status[:1] in ("4", "5")):
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
    payload = _payload(report)
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for block in payload:
            if not isinstance(block, Message):
                continue
            blocks.append({k.lower(): _unfold(_text_of(str(v))) for k, v in block.items()})
            rest = _payload(block)
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
    """The address of a recipient field (`rfc822; user@example.org`, `Name <user@host>`),
    lower-case; "" when it is not one Internet address."""
    kind, _, address = value.partition(";")
    if not address:
        address, kind = kind, "rfc822"
    if kind.strip().lower() not in ("rfc822", "utf-8", "utf8", "x400", "unknown", ""):
        return ""
    address = address.strip()
    bracketed = re.search(r"<([^<>]*)>", address)
    address = (bracketed.group(1) if bracketed else address).strip().strip("'\"").lower()
    return address if _ADDRESS.fullmatch(address) else ""


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
    own = _message_id(_header(msg, "message-id"))
    for part in parts:
        ctype = _content_type(part)
        if part is msg or ctype not in _RETURNED_TYPES:
            continue
        payload = _payload(part)
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found = _message_id(_header(payload[0], "message-id"))
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
    found = re.search(_BRACKETED_ID, value)
    return found.group(1) if found else None


# --- other formats ----------------------------------------------------------------------------


def _flufl_failures(msg: Message, parts: list[Message], head: Message) -> list[Failure]:
    try:
        temporary, permanent = all_failures(head)
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
        if not recipient:
            continue  # a heuristic matched something that is not an address (JSON, prose)
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


# --- a non-delivery notice in prose -----------------------------------------------------------

# What the subject of a non-delivery notice says, in the words of the MTAs of the corpus.
_NOTICE_SUBJECT = re.compile(
    r"undeliver|undelivered|non[- ]?deliver|delivery (?:status notification|fail|has failed|"
    r"problem|error)|delivery[_ ]status|failure notice|returned mail|mail delivery failed|"
    r"mail failure|could not be delivered|returned to sender|mail system error|"
    r"error sending your mail|delivery notification|メールエラー|エラーメール|配信エラー|"
    r"unzustellbar|non remis|non recapitabile|no entregado|недостав",
    re.IGNORECASE)
# What its text says about the mail (or an SMTP reply, or an RFC 3463 status code).
_NOTICE_TEXT = re.compile(
    r"could not be delivered|couldn't be delivered|was not delivered|cannot be delivered|"
    r"can't be delivered|undeliverable|delivery (?:to the following|has failed|failed)|"
    r"error (?:delivering|sending)|permanent(?:ly)? (?:fatal )?error|failed permanently|"
    r"did not reach|not be delivered|unable to deliver|user unknown|no such user|"
    r"mailbox (?:is )?(?:full|unavailable)|over quota|rejected|delivery problems|"
    r"giving up|delivery temporarily suspended|delayed|retry timeout|attempting to deliver|"
    r"failed to deliver|unsent message|^\s*[45]\d\d[ -]|[45]\.\d{1,3}\.\d{1,3}",
    re.IGNORECASE | re.MULTILINE)
_DAEMONS = ("mailer-daemon", "mailer_daemon", "postmaster", "post_master", "mmsc",
            "mail delivery", "mailer daemon", "no-reply", "noreply", "sysadmin")
_TEMPORARY_TEXT = re.compile(
    r"delayed|will (?:be )?retr|still trying|not yet been delivered|deferred|warning",
    re.IGNORECASE)
_ANY_ADDRESS = re.compile(r"[\w.+'=-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+", re.IGNORECASE)
# Where a prose notice starts quoting the mail it returns: its header lines.
_RETURNED_HEADERS = re.compile(
    r"^[ \t>]*(?:Received|Return-Path|Message-ID|DKIM-Signature|Delivered-To|X-Mailer):",
    re.IGNORECASE | re.MULTILINE)


def _notice_failures(msg: Message, parts: list[Message]) -> list[Failure]:
    """A non-delivery notice that is neither a DSN nor a format flufl.bounce knows: it comes
    from a mailer daemon, its subject says the mail was not delivered, its text says so too and
    names the addresses. Those named in the notice — not in the returned mail, not the notice's
    own From/To — are the failed recipients; the first status code, or the first SMTP reply,
    says whether for good."""
    if not (_from_daemon(msg) and _NOTICE_SUBJECT.search(_subject(msg))):
        return []
    text = _all_text(msg, parts)
    cut = _RETURNED_HEADERS.search(text)
    notice = text[:cut.start()] if cut else text
    if not _NOTICE_TEXT.search(notice):
        return []
    own = {a.lower() for h in ("from", "to", "cc", "sender", "return-path", "reply-to")
           for a in _ANY_ADDRESS.findall(_header(msg, h))}
    recipients = [a for a in dict.fromkeys(_address(a) for a in _ANY_ADDRESS.findall(notice))
                  if a and a not in own and a.partition("@")[0] not in _DAEMONS]
    if not recipients:
        return []
    status = _status(notice)
    reply = re.search(r"(?<![\d.])([45]\d\d)(?=[\s-])", notice)
    reply_code = reply.group(1) if reply else ""
    if status or reply_code:
        permanent = (status or reply_code)[:1] == "5"
    else:
        permanent = not _TEMPORARY_TEXT.search(notice)
    return [Failure(r, permanent, status, reply_code, _diagnostic_near(notice, r))
            for r in recipients[:10]]


def _from_mail_system(msg: Message) -> bool:
    """Sent by a mail system, not a person: a mailer daemon's (or the null) sender, an
    RFC 3834 Auto-Submitted mark, or the subject of a non-delivery notice."""
    auto = _header(msg, "auto-submitted").strip().lower()
    return _from_daemon(msg) or (bool(auto) and not auto.startswith("no")) \
        or bool(_NOTICE_SUBJECT.search(_subject(msg)))


def _from_daemon(msg: Message) -> bool:
    sender = " ".join(_header(msg, h) for h in ("from", "sender", "return-path")).lower()
    return "<>" in sender or any(d in sender for d in _DAEMONS)


def _subject(msg: Message) -> str:
    value = _header(msg, "subject")
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value
