"""`maild run` as a real process: mail in over SMTP (smtplib, swaks, LMTP), mail out to a sink."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from maild.ingest.spool import Spool, spool_path
from tests.conftest import mail
from tests.servers import SWAKS, MaildProcess, make_certificate, wait_until
from tests.smtp_sink import SmtpSink, free_port

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"
busy_timeout = "500ms"

[mail]
support_address = "support@example.com"
accept = ["support@example.com", "help@example.com"]

[smtp]
listen = "127.0.0.1:{port}"
protocol = "{protocol}"
max_message_bytes = 20000
tls_cert = "{cert}"
tls_key = "{key}"

[outbound]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {sink_port}
smtp_timeout = "{smtp_timeout}"
retry_initial = "1s"
retry_max = "2s"

[[staff]]
email = "alice@example.com"
name = "Alice"

[notify]              # these tests count what reaches the customer: no staff notices
new_ticket = false
follow_up = false
"""


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def start_maild(root: Path, sink: SmtpSink, certificate: tuple[Path, Path],
                protocol: str = "smtp", smtp_timeout: str = "5s") -> MaildProcess:
    port = free_port()
    daemon = MaildProcess(root, CONFIG.format(
        root=root, port=port, protocol=protocol, sink_port=sink.port, smtp_timeout=smtp_timeout,
        cert=certificate[0], key=certificate[1]))
    daemon.port = port
    daemon.start(wait_for=port)
    return daemon


@pytest.fixture
def maild(tmp_path: Path, sink: SmtpSink, certificate: tuple[Path, Path]
          ) -> Iterator[MaildProcess]:
    daemon = start_maild(tmp_path, sink, certificate)
    yield daemon
    if daemon.running():
        daemon.stop()



def test_a_mail_sent_with_smtplib_becomes_a_ticket_and_its_ack_reaches_the_sink(
    maild: MaildProcess, sink: SmtpSink
) -> None:
    with smtplib.SMTP("127.0.0.1", maild.port) as client:
        client.send_message(mail(message_id="<smtp-1@example.org>"))

    assert wait_until(lambda: len(sink.messages) == 1), maild.log()
    [ticket] = maild.tickets()
    ack = BytesParser(policy=policy.default).parsebytes(sink.messages[0].data)
    assert sink.messages[0].rcpt_tos == ["ivan@example.org"]
    assert ack["Subject"].startswith(f"[Ticket#{ticket['number']}]")
    assert ack["In-Reply-To"] == "<smtp-1@example.org>"
    # The intake's log line names the message, so an operator can follow it to its ticket.
    assert re.search(r"spool \d+ stored from .* message-id=<smtp-1@example\.org>",
                     maild.log()), \
        maild.log()


def test_a_mail_sent_with_swaks_becomes_a_ticket(maild: MaildProcess, sink: SmtpSink) -> None:
    done = subprocess.run(
        [SWAKS, "-s", f"127.0.0.1:{maild.port}", "-f", "olga@example.org",
         "-t", "help@example.com", "--header", "Subject: Не работает экспорт",
         "--body", "Export fails since the update."],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 OK stored as spool" in done.stdout
    assert wait_until(lambda: len(sink.messages) == 1), maild.log()
    [ticket] = maild.tickets()
    assert ticket["customer"] == "olga@example.org"


def test_starttls_with_a_verified_certificate(
    maild: MaildProcess, sink: SmtpSink, certificate: tuple[Path, Path]
) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    with smtplib.SMTP("127.0.0.1", maild.port) as client:
        client.starttls(context=context)
        client.send_message(mail())
    assert wait_until(lambda: len(maild.tickets()) == 1)


def test_a_foreign_recipient_gets_550_and_nothing_is_stored(maild: MaildProcess) -> None:
    with smtplib.SMTP("127.0.0.1", maild.port) as client, \
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail("spammer@example.net", ["victim@elsewhere.example"], bytes(mail()))
    code, _text = refused.value.recipients["victim@elsewhere.example"]
    assert code == 550
    assert maild.cli("inbound", "list", "--json").stdout.strip() == "[]"


def test_an_oversized_message_gets_552(maild: MaildProcess) -> None:
    big = mail(body="x" * 30000)
    with smtplib.SMTP("127.0.0.1", maild.port) as client:
        client.ehlo()
        client.esmtp_features.pop("size", None)  # send it anyway, as a careless client would
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("c@example.org", ["support@example.com"],
                            big.as_bytes(policy=policy.SMTP))
    assert refused.value.smtp_code == 552
    assert maild.cli("inbound", "list", "--json").stdout.strip() == "[]"


def test_an_unwritable_intake_spool_gets_451_and_nothing_half_stored(
    maild: MaildProcess, tmp_path: Path
) -> None:
    locker = sqlite3.connect(spool_path(tmp_path / "maild.db"), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # the spool refuses every other writer
    try:
        with smtplib.SMTP("127.0.0.1", maild.port) as client, \
                pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(mail(message_id="<locked@example.org>"))
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert refused.value.smtp_code == 451
    assert maild.cli("inbound", "list", "--json").stdout.strip() == "[]"
    # The sender retries once the spool is writable again, and the mail is taken.
    with smtplib.SMTP("127.0.0.1", maild.port) as client:
        client.send_message(mail(message_id="<locked@example.org>"))
    assert wait_until(lambda: len(maild.tickets()) == 1), maild.log()


def test_mail_is_taken_at_once_while_the_database_is_locked_and_threaded_after(
    maild: MaildProcess, tmp_path: Path
) -> None:
    locker = sqlite3.connect(tmp_path / "maild.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # e.g. a long `maild sla report` or an operator's shell
    try:
        with smtplib.SMTP("127.0.0.1", maild.port) as client:
            refused = client.sendmail("c@example.org", ["support@example.com"],
                                      bytes(mail(message_id="<while-locked@example.org>")))
        assert refused == {}  # 250: the intake spool took it; the database was not needed
        assert wait_until(lambda: "database unavailable, will retry" in maild.log()), maild.log()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert wait_until(lambda: len(maild.tickets()) == 1), maild.log()
    assert [t["subject"] for t in maild.tickets()] == ["Printer does not print"]


def test_mail_left_in_the_spool_is_threaded_at_the_next_start(
    tmp_path: Path, sink: SmtpSink, certificate: tuple[Path, Path]
) -> None:
    daemon = start_maild(tmp_path, sink, certificate)
    daemon.stop()
    # As if `maild run` had answered 250 and been killed before its worker moved the mail.
    spool = Spool(spool_path(tmp_path / "maild.db"), busy_timeout=1.0)
    spool.store(bytes(mail(message_id="<left@example.org>")), source="smtp",
                now=datetime.now(UTC))
    spool.close()
    daemon.start(wait_for=daemon.port)
    try:
        assert wait_until(lambda: len(daemon.tickets()) == 1), daemon.log()
        assert wait_until(lambda: len(sink.messages) == 1), daemon.log()
    finally:
        daemon.stop()


def test_a_bare_lf_message_is_stored_as_received(maild: MaildProcess, tmp_path: Path) -> None:
    # smtplib, handed bytes with bare LF, stuffs a dot before every line that starts with one
    # (".hidden" goes out as "..hidden", "." as ".."): maild must store the original.
    raw = (b"From: lf@example.org\nSubject: bare LF\n\n" + b"a line\n" * 500
           + b".hidden\n..two dots\n.\nlast\n")
    with smtplib.SMTP("127.0.0.1", maild.port) as client:
        client.sendmail("lf@example.org", ["support@example.com"], raw)
    assert wait_until(lambda: len(maild.tickets()) == 1), maild.log()
    with sqlite3.connect(tmp_path / "maild.db") as db:
        [(stored,)] = db.execute("SELECT raw FROM inbound").fetchall()
    assert stored == raw + b"\r\n"  # smtplib ends the data with CRLF before the final dot


def test_sigterm_stops_the_daemon_cleanly(maild: MaildProcess) -> None:
    assert maild.stop(signal.SIGTERM) == 0
    assert "maild stopped" in maild.log()


def test_lmtp_mode_answers_once_per_recipient(
    tmp_path: Path, sink: SmtpSink, certificate: tuple[Path, Path]
) -> None:
    daemon = start_maild(tmp_path, sink, certificate, protocol="lmtp")
    try:
        # smtplib.LMTP reads one reply after DATA, RFC 2033 wants one per recipient: talk raw.
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as conn:
            replies = conn.makefile("rb")
            assert replies.readline().startswith(b"220")
            conn.sendall(b"LHLO test.example\r\n")
            while not replies.readline().startswith(b"250 "):
                pass
            for command in (b"MAIL FROM:<c@example.org>", b"RCPT TO:<support@example.com>",
                            b"RCPT TO:<help@example.com>", b"DATA"):
                conn.sendall(command + b"\r\n")
                assert replies.readline()[:3] in (b"250", b"354")
            conn.sendall(mail().as_bytes(policy=policy.SMTP) + b".\r\n")
            after_data = [replies.readline(), replies.readline()]
            conn.sendall(b"QUIT\r\n")
            assert replies.readline().startswith(b"221")
        assert all(r.startswith(b"250 2.0.0 OK stored") for r in after_data), after_data
        assert wait_until(lambda: len(daemon.tickets()) == 1), daemon.log()
    finally:
        daemon.stop()


def test_the_sink_down_defers_mail_and_delivers_it_once_when_back(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    sink = SmtpSink()  # not started: the relay is down
    daemon = start_maild(tmp_path, sink, certificate)
    try:
        with smtplib.SMTP("127.0.0.1", daemon.port) as client:
            for i in range(3):
                client.send_message(mail(subject=f"outage {i}", sender=f"o{i}@example.org"))
        assert wait_until(lambda: daemon.cli("inbound", "list", "--json").stdout.count(
            '"done"') == 3), daemon.log()
        assert wait_until(lambda: "cannot reach the relay" in daemon.log()), daemon.log()
        sink.start()
        assert wait_until(lambda: len(sink.messages) == 3, timeout=20), daemon.log()
        assert sorted(m.rcpt_tos[0] for m in sink.messages) == \
            ["o0@example.org", "o1@example.org", "o2@example.org"]
        assert daemon.log().count("cannot reach the relay") == 1  # one line per outage
    finally:
        daemon.stop()
        sink.stop()
    assert len(sink.messages) == 3  # nothing sent twice


def test_a_550_from_the_sink_is_recorded_and_not_retried(
    maild: MaildProcess, sink: SmtpSink
) -> None:
    sink.handler.reply = lambda rcpt: "550 5.1.1 mailbox unknown"
    with smtplib.SMTP("127.0.0.1", maild.port) as client:
        client.send_message(mail(sender="gone@example.org"))
    assert wait_until(lambda: "failed permanently" in maild.log()), maild.log()
    [ticket] = maild.tickets()
    shown = maild.cli("ticket", "show", str(ticket["number"]), "--json").stdout
    assert "delivery_failed" in shown and "550" in shown
    sink.handler.reply = lambda rcpt: "250 OK"
    maild.stop()
    assert maild.log().count("failed permanently") == 1
    assert sink.messages == []


def test_a_relay_that_never_answers_holds_up_delivery_alone_not_threading(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """The sender process waits on the relay (`maild.daemon.sender`); the worker goes on
    threading new mail and giving out ticket numbers meanwhile."""
    stalled = socket.socket()  # accepts the connection, never says 220
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)
    relay = SmtpSink()
    relay.port = stalled.getsockname()[1]
    daemon = start_maild(tmp_path, relay, certificate, smtp_timeout="120s")
    try:
        with smtplib.SMTP("127.0.0.1", daemon.port) as client:
            client.send_message(mail(subject="first", sender="first@example.org"))
        stalled.settimeout(30)
        connection, _ = stalled.accept()  # the sender, stuck before the greeting
        with smtplib.SMTP("127.0.0.1", daemon.port) as client:
            for i in range(5):
                client.send_message(mail(subject=f"later {i}", sender=f"l{i}@example.org"))
        assert wait_until(lambda: len(daemon.tickets()) == 6), daemon.log()
        with sqlite3.connect(tmp_path / "maild.db") as db:
            states = dict(db.execute("SELECT rcpt_to, state FROM outbox"))
        # Still stuck on the first: the later ones were threaded while it waited.
        assert states["first@example.org"] == "sending", states
        assert {states[f"l{i}@example.org"] for i in range(5)} == {"pending"}, states
        connection.close()
    finally:
        daemon.stop()
        stalled.close()


def test_a_sender_killed_9_mid_delivery_is_restarted_and_every_ack_arrives(
    tmp_path: Path, sink: SmtpSink, certificate: tuple[Path, Path]
) -> None:
    sink.handler.delay = 0.05  # a relay slow enough to be killed in the middle of
    daemon = start_maild(tmp_path, sink, certificate)
    try:
        worker, sender = daemon.worker_pid(), daemon.sender_pid()
        customers = [f"k{i}@example.org" for i in range(40)]
        with smtplib.SMTP("127.0.0.1", daemon.port) as client:
            for address in customers:
                client.send_message(mail(subject=f"kill {address}", sender=address))
        assert wait_until(lambda: len(sink.messages) >= 5, interval=0.01), daemon.log()
        os.kill(sender, signal.SIGKILL)
        at_kill = len(sink.messages)
        assert at_kill < len(customers), "all delivered before the kill: the test proves nothing"
        assert wait_until(lambda: "sender exited with killed by SIGKILL" in daemon.log()), \
            daemon.log()
        assert wait_until(lambda: daemon.sender_pid() != sender, timeout=30), daemon.log()
        assert wait_until(lambda: {r for m in sink.messages for r in m.rcpt_tos}
                          == set(customers), timeout=60), daemon.log()[-3000:]

        def states() -> list[str]:
            with sqlite3.connect(tmp_path / "maild.db") as db:
                return [state for (state,) in db.execute("SELECT state FROM outbox")]

        assert wait_until(lambda: states() == ["sent"] * len(customers)), states()
        assert daemon.worker_pid() == worker  # threading was not disturbed
    finally:
        daemon.stop()
    message_ids: dict[str, set[bytes]] = {}
    for received in sink.messages:
        [header] = re.findall(rb"^Message-ID: (.+?)\r?$", received.data, re.MULTILINE)
        message_ids.setdefault(received.rcpt_tos[0], set()).add(header)
    # One acknowledgement each. Sent again at most what the killed sender had sent and not yet
    # recorded (and the one in flight), under the same Message-ID: a receiver can tell.
    assert all(len(ids) == 1 for ids in message_ids.values()), message_ids
    assert len(sink.messages) - len(customers) <= at_kill + 1


def test_kill_9_while_mail_pours_in_loses_nothing_that_was_answered_250(
    tmp_path: Path, sink: SmtpSink, certificate: tuple[Path, Path]
) -> None:
    daemon = start_maild(tmp_path, sink, certificate)
    answered: list[int] = []
    in_flight: list[tuple[int, bytes]] = []

    def pour() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
                for n in range(2000):
                    raw = bytes(mail(subject=f"Pour {n}", sender=f"c{n}@example.org",
                                     message_id=f"<pour-{n}@example.org>"))
                    in_flight[:] = [(n, raw)]
                    client.sendmail(f"c{n}@example.org", ["support@example.com"], raw)
                    answered.append(n)
                    in_flight.clear()
        except (OSError, smtplib.SMTPException):
            pass  # the daemon is gone mid-conversation, as the test intends

    sender = threading.Thread(target=pour)
    sender.start()
    assert wait_until(lambda: len(answered) >= 60, timeout=30, interval=0.005), daemon.log()
    daemon.kill()
    sender.join(timeout=30)
    assert 60 <= len(answered) < 2000, "maild finished before the kill: the test proves nothing"

    daemon.start(wait_for=daemon.port)
    try:
        # A real client retries what got no answer, byte for byte; the same message is then
        # stored once, whether or not it was stored before the kill.
        with smtplib.SMTP("127.0.0.1", daemon.port) as client:
            for n, raw in in_flight:
                client.sendmail(f"c{n}@example.org", ["support@example.com"], raw)
        expected = {f"Pour {n}" for n in answered + [n for n, _ in in_flight]}
        assert wait_until(lambda: len(daemon.tickets()) >= len(expected), timeout=60), \
            daemon.log()[-3000:]
        subjects = [t["subject"] for t in daemon.tickets()]
        assert sorted(subjects) == sorted(expected)  # every answered mail, each once
        assert wait_until(lambda: {r for m in sink.messages for r in m.rcpt_tos}
                          >= {f"c{n}@example.org" for n in answered}, timeout=60)
    finally:
        daemon.stop()


def test_the_log_says_what_needs_attention(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """Every 10 minutes, and at start, the worker logs the queue sizes and, as warnings, what
    `maild status` says needs attention: a daemon nobody watches still says what is wrong."""
    port = free_port()
    daemon = MaildProcess(tmp_path, CONFIG.format(
        root=tmp_path, port=port, protocol="smtp", sink_port=free_port(),  # nobody listens
        smtp_timeout="5s", cert=certificate[0], key=certificate[1]))
    daemon.start(wait_for=port)
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(mail())
        assert wait_until(lambda: "deferring mail" in daemon.log()), daemon.log()
        daemon.stop()
        daemon.start(wait_for=port)
        assert wait_until(lambda: "attention: 1 outgoing mail(s) deferred" in daemon.log()), \
            daemon.log()
        assert re.search(r"queues: spool 0; inbound done 1; outbox deferred 1", daemon.log())
    finally:
        daemon.stop()


ADDRESS_ARGUMENTS = [
    "<anna@example.org>", "<anna@example.org> SIZE=1234 BODY=8BITMIME",
    "<Anna.Smirnova+tag@mail.example.co.uk>", "<o'brien@example.ie>", "<a@b>x",
    "<a@example.org>\tSIZE=1", "<user@-domain.example>", "<>", '<"quoted local"@example.org>',
    "anna@example.org", " <anna@example.org>", "<anna@example.org", "<a..b@example.org>",
    "<.a@example.org>", "<a.@example.org>", "<a@[127.0.0.1]>", "<(comment)a@example.org>",
    "<анна@пример.рф>", "<a@b@c>", "<a@b> (comment) SIZE=1", "<a@b>(c)", "<a@b>  \t SIZE=2",
    "<@relay:a@example.org>", "<" + "x" * 70 + "@example.org>",
]


@pytest.mark.parametrize("limit", [0, 64])
def test_the_plain_address_shortcut_answers_as_aiosmtpd_does(limit: int) -> None:
    """`maild.ingest.smtp` reads MAIL FROM and RCPT TO addresses itself when they are plain
    (aiosmtpd's own reading was a fifth of the intake's CPU): for every argument, what the
    listener's server makes of it is what aiosmtpd's `SMTP._getaddr` does."""
    import asyncio

    from aiosmtpd.smtp import SMTP

    from maild.ingest.smtp import _server_class, plain_address

    async def both() -> list[tuple[object, object]]:
        ours = _server_class("smtp", 10_000)(handler=object())
        theirs = SMTP(handler=object())
        ours.local_part_limit = theirs.local_part_limit = limit
        return [(ours._getaddr(arg), theirs._getaddr(arg)) for arg in ADDRESS_ARGUMENTS]

    for arg, (ours, theirs) in zip(ADDRESS_ARGUMENTS, asyncio.run(both()), strict=True):
        assert ours == theirs, arg
    assert sum(plain_address(arg) is not None for arg in ADDRESS_ARGUMENTS) >= 7  # it is used


DATA_CASES = [
    b"", b".", b"..", b"...", b"a", b".a", b"..a", b"a.", b"\r\n", b"\r\n\r\n", b"a\r\n.",
    b"a\n.", b"a\n.\nb", b"a\r.\r\nb", b"a\n.\r\nb", b"a\r\n.\nb", b"a\r\n.\rb", b"a\r\n..\r\nb",
    b"line.\r\n.dot\r\n..\r\nend.", b"\n.\r\n", b"\r\n.\r", b".\n", b"\r", b"\n", b"\r\r\n.",
    b"Subject: x\r\n\r\n" + b"QUJD" * 19 + b"\r\n" + b"ok.\r\n" * 300,
    b"x" * 2500, b"y" * 6000 + b"\r\n.end", b"z" * 7000 + b".",
    b"\r\n".join([b"." * n for n in range(2, 60)]),
]


def _data_transcript(port: int, data: bytes, pieces: int) -> bytes:
    """What a server answers to one pipelined session: HELP and DATA out of place, then a
    transaction whose data goes in `pieces` sends, then the end line, NOOP and QUIT in one send
    (a command after the data must stay a command)."""
    head = (b"EHLO client\r\nHELP\r\nHELP DATA\r\nDATA\r\nMAIL FROM:<c@example.org>\r\n"
            b"DATA now\r\nRCPT TO:<support@example.com>\r\nDATA\r\n")
    step = max(1, len(data) // pieces)
    parts = [data[i:i + step] for i in range(0, len(data), step)]
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(head)
        for part in parts:
            conn.sendall(part)
        conn.sendall(b"\r\n.\r\nNOOP\r\nQUIT\r\n")
        conn.settimeout(10)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_the_data_reader_answers_and_stores_as_aiosmtpd_does() -> None:
    """`maild.ingest.smtp.read_data` reads DATA in runs up to `.CRLF` where aiosmtpd reads a
    line at a time: over real connections, for dots at every place a line can have them, bare
    CR and LF around the dot line (no smuggling), a message over the size limit, and the data
    arriving in one send or in many, maild's server answers what aiosmtpd's does and stores
    the same bytes; the NOOP pipelined after the data is answered as a command, and HELP, DATA
    before RCPT and DATA with an argument get aiosmtpd's answers."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    from maild.ingest.smtp import _server_class

    limit = 5000
    got: dict[str, list[bytes]] = {"ours": [], "theirs": []}

    class Keeper:
        def __init__(self, name: str) -> None:
            self.name = name

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            got[self.name].append(envelope.original_content)  # type: ignore[attr-defined]
            return "250 kept"

    ours_class = _server_class("smtp", limit + 1024)

    class Theirs(SMTP):
        line_length_limit = limit + 1024  # as maild's: only the size limit counts

    def controller(name: str, server_class: type[SMTP]) -> Controller:
        class Serving(Controller):
            def factory(self) -> SMTP:
                return server_class(self.handler, data_size_limit=limit, hostname="test")
        return Serving(Keeper(name), hostname="127.0.0.1", port=free_port())

    servers = {"ours": controller("ours", ours_class), "theirs": controller("theirs", Theirs)}
    for server in servers.values():
        server.start()
    try:
        for data in DATA_CASES:
            for pieces in (1, 3, 50):
                answers = {name: _data_transcript(server.port, data, pieces)
                           for name, server in servers.items()}
                # aiosmtpd's "line too long" is over the size limit here too: maild says so
                theirs = answers["theirs"].replace(
                    b"500 Line too long (see RFC5321 4.5.3.1.6)", b"552 Error: Too much mail data")
                assert answers["ours"] == theirs, (data[:80], pieces)
                assert got["ours"] == got["theirs"], (data[:80], pieces)
    finally:
        for server in servers.values():
            server.stop()
    assert len(got["ours"]) > 40  # stored: the cases under the limit
    assert any(b"\n.\r\n" in kept for kept in got["ours"])  # a dot after a bare LF is data
