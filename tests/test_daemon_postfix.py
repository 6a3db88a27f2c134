"""A real MTA in the outbound path: maild hands its mail to Postfix, Postfix to the sink."""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.conftest import mail
from tests.servers import MaildProcess, PostfixRelay, wait_until
from tests.smtp_sink import SmtpSink, free_port

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"
[mail]
support_address = "support@example.com"
[smtp]
listen = "127.0.0.1:{port}"
[outbound]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {relay}
retry_initial = "1s"
"""


def test_the_acknowledgement_travels_through_postfix_to_the_sink(
    tmp_path: Path, sink: SmtpSink
) -> None:
    relay = PostfixRelay(sink.port)
    relay.start()
    port = free_port()
    daemon = MaildProcess(tmp_path, CONFIG.format(root=tmp_path, port=port, relay=relay.port))
    try:
        daemon.start(wait_for=port)
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(mail(message_id="<via-postfix@example.org>"))
        assert wait_until(lambda: len(sink.messages) == 1, timeout=30), \
            daemon.log() + relay.log()
        [received] = sink.messages
        assert received.mail_from == "support@example.com"
        assert received.rcpt_tos == ["ivan@example.org"]
        assert b"In-Reply-To: <via-postfix@example.org>" in received.data
        assert b"relay.test.invalid" in received.data  # Postfix's Received line
        assert "status=sent" in relay.log()
    finally:
        daemon.stop()
        relay.stop()
