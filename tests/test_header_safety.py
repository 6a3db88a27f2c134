"""Customer text never reaches a header unsanitised (README "Security by default").

A customer controls the subject and the display name of their mail, and both come back in the
headers of what maild sends (the acknowledgement's Subject and To). Encoded as RFC 2047 words
they can carry CR, LF and the other line breaks a mail reader honours; none of them may start a
header line of its own in the mail maild writes.
"""

from __future__ import annotations

import base64
from email import policy
from email.parser import BytesParser

import pytest

from tests.conftest import Helpdesk

BREAKS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\r\n\r\n"]


def word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


@pytest.mark.parametrize("evil", BREAKS, ids=[repr(b) for b in BREAKS])
def test_an_injected_line_break_stays_inside_the_acknowledgement_headers(
    helpdesk: Helpdesk, evil: str
) -> None:
    raw = (f"From: {word(f'Ivan{evil}Cc: victim-cc@example.net')} <ivan@example.org>\r\n"
           f"To: support@example.com\r\n"
           f"Subject: {word(f'Printer{evil}Bcc: victim-bcc@example.net')}\r\n"
           f"Message-ID: <evil@example.org>\r\n\r\nHello\r\n").encode()
    assert helpdesk.ingest(raw).code == 0
    [path] = (helpdesk.root / "var" / "outbox" / "new").iterdir()
    sent = path.read_bytes()
    head = sent.split(b"\r\n\r\n", 1)[0]
    starts = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")
              if line and line[:1] not in (b" ", b"\t")]
    assert b"cc" not in starts and b"bcc" not in starts, head
    assert all(b"victim" not in name for name in starts), head
    assert b"\r\n\r\n" not in head and b"\n\n" not in head.replace(b"\r\n", b"")
    ack = BytesParser(policy=policy.default).parsebytes(sent)
    assert ack["Cc"] is None and ack["Bcc"] is None
    assert "victim-bcc@example.net" in ack["Subject"]  # kept as text, on the Subject's line
    assert len(str(ack["Subject"]).splitlines()) == 1
    assert [a.addr_spec for a in ack["To"].addresses] == ["ivan@example.org"]
