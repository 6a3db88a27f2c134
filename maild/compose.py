"""Rendering outgoing mail: Jinja2 templates in, RFC 5322 bytes out.

A template is `templates/<language>/<kind>.txt`; its first line is `Subject: ...`, then a
blank line, then the plain-text body. Templates see only the context they are given
(StrictUndefined: a typo in a template is an error, not an empty string). The rendered subject
and every name taken from customer text pass through `single_line` before reaching a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2

from maild.config import Settings
from maild.headers import MAX_SUBJECT, bracketed, single_line

BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MAX_REFERENCES = 20


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


@dataclass(frozen=True)
class Envelope:
    """Everything about one outgoing message except its text."""

    message_id: str
    to_address: str
    to_name: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: str | None = None
    ticket_number: str | None = None
    from_name: str | None = None  # display name; the support name when None


class Templates:
    """The template set of one installation (config `mail.templates_dir` or the built-in one)."""

    def __init__(self, settings: Settings) -> None:
        folder = Path(settings.mail.templates_dir) if settings.mail.templates_dir \
            else BUILTIN_TEMPLATES
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text; an HTML part, when there is one, escapes itself
            keep_trailing_newline=True,
        )

    def render(self, kind: str, language: str, context: dict[str, Any]) -> Rendered:
        text = self.env.get_template(f"{language}/{kind}.txt").render(**context)
        head, _, body = text.partition("\n\n")
        if not head.startswith("Subject:"):
            raise ValueError(f"template {language}/{kind}.txt must start with 'Subject: ...'")
        subject = single_line(head.removeprefix("Subject:"), limit=MAX_SUBJECT)
        return Rendered(subject=subject, body=body.strip("\n") + "\n")


def build_message(
    settings: Settings, rendered: Rendered, envelope: Envelope, now: datetime
) -> bytes:
    """The complete outgoing message, ready for any transport."""
    msg = EmailMessage(policy=policy.SMTP)
    from_name = settings.mail.support_name if envelope.from_name is None else envelope.from_name
    msg["From"] = _address(single_line(from_name), settings.mail.support_address)
    msg["To"] = _address(single_line(envelope.to_name), envelope.to_address)
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = bracketed(envelope.message_id)
    if envelope.in_reply_to and _header_safe(envelope.in_reply_to):
        msg["In-Reply-To"] = bracketed(envelope.in_reply_to)
    references = [r for r in envelope.references if _header_safe(r)][-MAX_REFERENCES:]
    if references:
        msg["References"] = " ".join(bracketed(r) for r in references)
    if envelope.auto_submitted:
        msg["Auto-Submitted"] = envelope.auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"  # ask Exchange not to answer us automatically
    if envelope.ticket_number:
        msg["X-Maild-Ticket"] = envelope.ticket_number
    msg.set_content(rendered.body)
    return msg.as_bytes(policy=policy.SMTP)


def _address(name: str, address: str) -> Address | str:
    try:
        return Address(display_name=name, addr_spec=address)
    except Exception:  # an address the header model refuses still gets a plain header
        return single_line(address)


def _header_safe(message_id: str) -> bool:
    return message_id.isascii() and message_id.isprintable() and " " not in message_id \
        and len(message_id) < 250
