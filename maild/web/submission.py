"""A web form's submission as an RFC 5322 message, the way maild stores every contact.

From maild's own address with the visitor in Reply-To — SPEC §5's "written on a customer's
behalf" — so the worker takes the Reply-To as the customer and never takes the mail for a staff
member's, whatever address the visitor typed. The Message-ID, the Date and the MIME boundary
come from the form's token, so the same form sent twice is the same message, byte for byte,
and stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from maild.compose import OutgoingFile
from maild.config import Settings
from maild.headers import single_line
from maild.parsing import PRIORITY_HEADER


def message_id(settings: Settings, nonce: str) -> str:
    return f"web.{nonce}@{settings.mail.domain}"


def build(settings: Settings, *, nonce: str, issued: datetime, name: str, email: str,
          subject: str, body: str, files: Sequence[OutgoingFile] = (),
          priority: str = "") -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    name = single_line(name)
    msg["From"] = formataddr((f"{name} (web form)" if name else "Web form",
                              settings.mail.support_address))
    msg["Reply-To"] = formataddr((name, email))
    msg["To"] = settings.mail.support_address
    msg["Subject"] = single_line(subject)
    msg["Date"] = format_datetime(issued)
    msg["Message-ID"] = f"<{message_id(settings, nonce)}>"
    if priority:
        msg[PRIORITY_HEADER] = priority
    msg.set_content(body.replace("\r\n", "\n"))
    for file in files:
        maintype, _, subtype = file.content_type.partition("/")
        msg.add_attachment(file.data, maintype=maintype or "application",
                           subtype=subtype or "octet-stream", filename=file.filename)
    if files:
        msg.set_boundary(f"maild-web-{nonce}")
    return msg.as_bytes()
