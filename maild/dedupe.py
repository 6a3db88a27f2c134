"""When are two deliveries the same message? The dedupe key of SPEC §5, built here only.

The same message reaches maild more than once: by SMTP and from an IMAP mailbox, through the
pipe again after an MTA retried, addressed to two accepted addresses, fetched again after a
crash. Each path adds trace header fields of its own and may change the line endings, so the
bytes differ. And a *different* message may carry a Message-ID seen before (broken mailers,
some ticketing systems reuse them): it must never be dropped as a duplicate.

So a message with a Message-ID is keyed by a digest of that Message-ID together with its
content — every header field but the trace fields (`TRACE_FIELDS`, and any `X-…`), unfolded,
and the body, with CRLF read as LF and the blank lines at its end dropped. A message without a
Message-ID is keyed by its exact bytes (SPEC §5). The key is what `inbound` and the intake
spool hold unique; the Message-ID is stored beside it, for threading and for telling a reused
Message-ID (`message_id_reused`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from maild.headers import message_ids

# Header fields that mail systems add on the way (RFC 5321 §4.4 trace fields, delivery and
# verification results, mailbox bookkeeping): they tell how a copy travelled, not what the
# message is. Every `X-` field counts as one too.
TRACE_FIELDS = frozenset({
    "received", "return-path", "delivered-to", "envelope-to", "original-recipient",
    "authentication-results", "received-spf", "dkim-signature", "arc-seal",
    "arc-message-signature", "arc-authentication-results", "status", "content-length", "lines",
})
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


@dataclass(frozen=True)
class Identity:
    key: str         # `mid:<sha256>` (Message-ID and content) or `sha256:<sha256 of the bytes>`
    message_id: str  # without angle brackets; "" when the message has none


def identify(raw: bytes) -> Identity:
    """The dedupe key and the Message-ID of a raw message."""
    head, body = _split(raw)
    fields = _fields(head)
    message_id = next((ids[0] for name, value in fields if name == "message-id"
                       for ids in [message_ids(value.decode("utf-8", "replace"))] if ids), "")
    if not message_id:
        return Identity("sha256:" + hashlib.sha256(raw).hexdigest(), "")
    digest = hashlib.sha256(message_id.encode("utf-8", "replace"))  # as threading reads it
    for name, value in fields:
        if name not in TRACE_FIELDS and name != "message-id" and not name.startswith("x-"):
            digest.update(b"\n" + name.encode("ascii") + b":" + value)
    digest.update(b"\n\n" + body.replace(b"\r\n", b"\n").rstrip(b"\r\n"))
    return Identity("mid:" + digest.hexdigest(), message_id)


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """The header block and the body; an mbox `From ` line before the headers is no field."""
    if raw.startswith(b"From "):
        raw = raw.partition(b"\n")[2]
    ends = [m for m in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if m >= 0]
    if not ends:
        return raw, b""
    cut = min(ends)
    return raw[:cut], raw[cut:].lstrip(b"\r\n")


def _fields(head: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, unfolded value with runs of white space made one space) per field."""
    found: list[tuple[str, bytearray]] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if found:
                found[-1][1].extend(b" " + line.strip())
            continue
        match = _FIELD_NAME.match(line)
        if match:
            name = match.group(1).decode("ascii").lower()  # the pattern admits ASCII only
            found.append((name, bytearray(line[match.end():].strip())))
    return [(name, b" ".join(bytes(value).split())) for name, value in found]
