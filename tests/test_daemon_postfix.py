"""A real MTA on either side: maild hands its mail to Postfix, Postfix to the sink; and Postfix
in front of maild, delivering to its listener by LMTP."""

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


LMTP_CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"
[mail]
support_address = "support@example.com"
[smtp]
listen = "127.0.0.1:{port}"
protocol = "lmtp"
[outbound]
transport = "maildir"
maildir = "{root}/outbox"
"""


def test_postfix_in_front_delivers_to_maild_by_lmtp(tmp_path: Path, sink: SmtpSink) -> None:
    port = free_port()
    daemon = MaildProcess(tmp_path, LMTP_CONFIG.format(root=tmp_path, port=port))
    relay = PostfixRelay(sink.port, lmtp_port=port)
    try:
        daemon.start(wait_for=port)
        relay.start()
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            client.send_message(mail(message_id="<through-postfix@example.org>"))
        assert wait_until(lambda: "status=sent" in relay.log(), timeout=30), \
            relay.log() + daemon.log()
        assert "250 2.0.0 OK stored as spool" in relay.log()  # maild's LMTP answer
        assert wait_until(lambda: len(daemon.tickets()) == 1), daemon.log()
        [ack] = wait_for_files(tmp_path / "outbox" / "new", 1)
        assert b"In-Reply-To: <through-postfix@example.org>" in ack.read_bytes()
        assert sink.messages == []  # nothing went the relay's other way
    finally:
        relay.stop()
        daemon.stop()



def wait_for_files(folder: Path, count: int) -> list[Path]:
    assert wait_until(lambda: folder.exists() and len(list(folder.iterdir())) >= count)
    return sorted(folder.iterdir())
