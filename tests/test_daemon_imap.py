"""`maild run` polling a real Dovecot: mail in by LMTP or IMAP APPEND, stored, then moved.

The module shares one Dovecot, emptied before each test (INBOX cleared, other folders deleted);
tests that stop the server get their own. Every test has its own SQLite database, so no test
sees another's mail or cursor.
"""

from __future__ import annotations

import json
import re
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest

from maild import config
from maild.config import ImapSettings
from maild.dbapi import Pool
from maild.dedupe import identify
from maild.ingest import imap
from maild.ingest.accept import Accepted
from maild.ingest.imap import ImapPoller
from maild.ingest.spool import spool_path
from tests.conftest import Helpdesk, mail
from tests.servers import Dovecot, MaildProcess, make_certificate, wait_until
from tests.smtp_sink import free_port

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"
busy_timeout = "{busy}"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]

[outbound]
transport = "maildir"
maildir = "{root}/outbox"

[[imap]]
name = "main"
host = "127.0.0.1"
port = {port}
security = "{security}"
tls_ca_file = "{ca}"
username = "support"
password_env = "MAILD_IMAP_PASSWORD"
folder = "{folder}"
processed_folder = "Processed"
idle = {idle}
poll_seconds = {poll}
batch_size = {batch}

[[staff]]
email = "alice@example.com"
name = "Alice"
"""

POLLER_DOWN = "reconnecting with back-off"  # the poller's one warning per outage

StartMaild = Callable[..., MaildProcess]


@pytest.fixture(scope="module")
def shared_dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dovecot(shared_dovecot: Dovecot) -> Dovecot:
    """The module's Dovecot, emptied: no message in INBOX, no other folder."""
    with shared_dovecot.client() as client:
        for _flags, _separator, name in client.list_folders():
            if name != "INBOX":
                client.delete_folder(name)
        client.select_folder("INBOX")
        if uids := client.search("ALL"):
            client.delete_messages(uids)
            client.expunge()
    return shared_dovecot


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    """A Dovecot for this test alone, for tests that stop it."""
    server = Dovecot()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_maild(tmp_path: Path, dovecot: Dovecot) -> Iterator[StartMaild]:
    """Start `maild run` against a Dovecot (the test's emptied one unless `server` is given);
    every daemon is stopped at the end."""
    daemons: list[MaildProcess] = []

    def start(security: str = "none", idle: bool = False, poll: int = 1, batch: int = 50,
              busy: str = "5s", folder: str = "INBOX", ca: Path | None = None,
              server: Dovecot = dovecot) -> MaildProcess:
        port = server.imaps_port if security == "tls" else server.imap_port
        daemon = MaildProcess(tmp_path, CONFIG.format(
            root=tmp_path, port=port, security=security, ca=ca or server.cert, folder=folder,
            idle=str(idle).lower(), poll=poll, batch=batch, busy=busy))
        daemon.start()
        daemons.append(daemon)
        assert wait_until(lambda: "maild running" in daemon.log() or not daemon.running()), \
            daemon.log()
        assert daemon.running(), daemon.log()
        return daemon

    yield start
    for daemon in daemons:
        if daemon.running():
            daemon.stop()


# --- helpers ------------------------------------------------------------------------------


def customer_mail(n: int, tag: str = "t") -> bytes:
    return mail(subject=f"Problem {tag}-{n}", sender=f"Customer {n} <c{n}-{tag}@example.org>",
                message_id=f"<{tag}-{n}@example.org>",
                body=f"Message {n} of {tag}.\n").as_bytes(policy=policy.SMTP)


def count(root: Path, query: str, db_name: str = "maild.db") -> int:
    """One number from maild's SQLite database, or from its intake spool (read-only; WAL lets
    it run beside maild)."""
    db = root / db_name
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not created yet
        return 0
    finally:
        conn.close()


def stored(root: Path) -> int:
    return count(root, "SELECT count(*) FROM inbound")


def received(root: Path) -> int:
    """Messages the intake has committed: in `inbound`, or still in the spool."""
    spool = spool_path(Path("maild.db")).name
    return stored(root) + count(root, "SELECT count(*) FROM spool", spool)


def tickets_in_db(root: Path) -> int:
    return count(root, "SELECT count(*) FROM ticket")


def subjects(root: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{root / 'maild.db'}?mode=ro", uri=True, timeout=5)
    try:
        return {subject for (subject,) in conn.execute("SELECT subject FROM ticket")}
    finally:
        conn.close()



def in_folder(dovecot: Dovecot, folder: str) -> int:
    with dovecot.client() as client:
        if not client.folder_exists(folder):
            return 0
        return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])


def message_ids(dovecot: Dovecot, folder: str) -> list[str]:
    with dovecot.client() as client:
        client.select_folder(folder, readonly=True)
        fetched = client.fetch(client.search("ALL"), [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    parser = BytesHeaderParser()
    return sorted(str(parser.parsebytes(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])["Message-ID"])
                  for data in fetched.values())


def drained(dovecot: Dovecot, root: Path, n: int, folder: str = "INBOX") -> Callable[[], bool]:
    """True once maild stored `n` messages, threaded them into tickets, and moved them."""
    return lambda: (stored(root) == n and tickets_in_db(root) == n
                    and in_folder(dovecot, folder) == 0 and in_folder(dovecot, "Processed") == n)


def assert_healthy(daemon: MaildProcess) -> None:
    log = daemon.log()
    assert daemon.running(), log
    assert "Traceback" not in log and "unexpected error" not in log, log


# --- the tests ----------------------------------------------------------------------------


def test_lmtp_delivered_mail_is_polled_into_a_ticket_and_moved_to_processed(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    daemon = start_maild(security="none", idle=False, poll=1)
    dovecot.deliver(customer_mail(1, "lmtp"), sender="c1-lmtp@example.org")

    assert wait_until(drained(dovecot, tmp_path, 1), timeout=15), daemon.log()
    [ticket] = daemon.tickets()
    assert ticket["customer"] == "c1-lmtp@example.org"
    assert ticket["subject"] == "Problem lmtp-1"
    assert ticket["channel"] == "email"
    assert message_ids(dovecot, "Processed") == ["<lmtp-1@example.org>"]
    assert in_folder(dovecot, "INBOX") == 0
    # The stored bytes are the delivered message, LMTP trace headers included.
    inbound = json.loads(daemon.cli("inbound", "list", "--json").stdout)
    assert [(row["source"], row["message_id"]) for row in inbound] == \
        [("imap:main", "lmtp-1@example.org")]
    raw = daemon.cli("ticket", "show", str(ticket["number"]), "--raw").stdout
    assert "Delivered-To: support@example.com" in raw
    assert "Message 1 of lmtp." in raw
    assert_healthy(daemon)


def test_one_message_by_smtp_imap_and_the_pipe_is_stored_once_and_a_reused_id_is_not_lost(
    tmp_path: Path, dovecot: Dovecot,
) -> None:
    """SPEC §5: the same message is the same whatever trace headers each path added; a
    different message under its Message-ID is stored and threaded on its own."""
    listen = free_port()
    daemon = MaildProcess(tmp_path, CONFIG.format(
        root=tmp_path, port=dovecot.imap_port, security="none", ca=dovecot.cert,
        folder="INBOX", idle="true", poll=1, batch=50, busy="5s")
        + f'\n[smtp]\nlisten = "127.0.0.1:{listen}"\n')
    daemon.start(wait_for=listen)
    try:
        original = customer_mail(1, "paths")
        with smtplib.SMTP("127.0.0.1", listen, timeout=30) as client:
            client.sendmail("c1-paths@example.org", ["support@example.com"], original)
        dovecot.deliver(original, sender="c1-paths@example.org")  # + Return-Path, Received...
        piped = subprocess.run(
            [sys.executable, "-m", "maild", "--config", str(daemon.config), "ingest"],
            input=b"Received: from mx.example.org by mail.example.com\n"
                  + original.replace(b"\r\n", b"\n"), capture_output=True, timeout=60)
        assert piped.returncode == 0, piped.stderr
        assert wait_until(lambda: in_folder(dovecot, "Processed") == 1
                          and received(tmp_path) == 1 and tickets_in_db(tmp_path) == 1,
                          timeout=20), daemon.log()
        [ticket] = daemon.tickets()
        assert piped.stdout.decode().strip() == ticket["number"]

        # Another customer's mail under the same Message-ID, by SMTP and again by IMAP.
        other = original.replace(b"Customer 1 <c1-paths@example.org>",
                                 b"Olga <olga@example.org>").replace(b"Message 1", b"Other")
        with smtplib.SMTP("127.0.0.1", listen, timeout=30) as client:
            client.sendmail("olga@example.org", ["support@example.com"], other)
        dovecot.deliver(other, sender="olga@example.org")
        assert wait_until(lambda: in_folder(dovecot, "Processed") == 2
                          and received(tmp_path) == 2 and tickets_in_db(tmp_path) == 2,
                          timeout=20), daemon.log()
        by_customer = {t["customer"]: t["number"] for t in daemon.tickets()}
        assert set(by_customer) == {"c1-paths@example.org", "olga@example.org"}
        shown = json.loads(daemon.cli("ticket", "show", by_customer["olga@example.org"],
                                      "--json").stdout)
        assert any(e["type"] == "message_id_reused" for e in shown["events"])
        assert count(tmp_path, "SELECT count(DISTINCT message_id) FROM inbound") == 1
        assert_healthy(daemon)
    finally:
        daemon.stop()


def test_idle_picks_up_a_new_message_within_seconds(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    # poll_seconds = 60: only an IDLE notification can explain a pick-up within seconds.
    daemon = start_maild(security="none", idle=True, poll=60)
    dovecot.deliver(customer_mail(1, "idle"))
    assert wait_until(drained(dovecot, tmp_path, 1), timeout=10), daemon.log()
    time.sleep(1)  # the poller has moved message 1 and is back in IDLE

    dovecot.deliver(customer_mail(2, "idle"))
    assert wait_until(lambda: stored(tmp_path) == 2, timeout=10, interval=0.05), daemon.log()
    assert wait_until(drained(dovecot, tmp_path, 2), timeout=10), daemon.log()
    assert subjects(tmp_path) == {"Problem idle-1", "Problem idle-2"}
    assert_healthy(daemon)


def test_idle_keeps_up_with_a_burst(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    # Mail that lands while a pass runs, or just before IDLE starts, is announced outside IDLE;
    # with poll_seconds = 60 it would wait a minute unless maild notices those announcements.
    daemon = start_maild(security="starttls", idle=True, poll=60)
    dovecot.deliver(customer_mail(0, "burst"))
    assert wait_until(drained(dovecot, tmp_path, 1), timeout=10), daemon.log()

    for n in range(1, 31):
        dovecot.deliver(customer_mail(n, "burst"))
        time.sleep(0.01 * (n % 7))  # uneven gaps, so arrivals hit every phase of a pass
    assert wait_until(lambda: stored(tmp_path) == 31, timeout=10, interval=0.05), \
        daemon.log()[-3000:]
    assert wait_until(drained(dovecot, tmp_path, 31), timeout=10), daemon.log()[-3000:]
    assert_healthy(daemon)


def test_a_message_is_moved_only_after_it_is_stored(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    daemon = start_maild(security="none", idle=False, poll=1, busy="300ms")
    # The intake stores into its spool (maild.ingest.spool): make that refuse every writer.
    locker = sqlite3.connect(spool_path(tmp_path / "maild.db"), isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        dovecot.deliver(customer_mail(1, "locked"))
        # The poller tries, cannot store, and leaves the message where it is.
        assert wait_until(lambda: "maild.imap: main: StorageUnavailable" in daemon.log(),
                          timeout=15), daemon.log()
        time.sleep(1.5)  # and tries again meanwhile
        assert message_ids(dovecot, "INBOX") == ["<locked-1@example.org>"]
        assert in_folder(dovecot, "Processed") == 0
        assert locker.execute("SELECT count(*) FROM spool").fetchone()[0] == 0
        assert stored(tmp_path) == 0
        assert daemon.running(), daemon.log()
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    assert wait_until(drained(dovecot, tmp_path, 1), timeout=15), daemon.log()
    assert message_ids(dovecot, "Processed") == ["<locked-1@example.org>"]
    assert subjects(tmp_path) == {"Problem locked-1"}
    # One warning for the whole outage, though the poller tried again and again.
    assert daemon.log().count(POLLER_DOWN) == 1, daemon.log()
    assert count(tmp_path, "SELECT count(*) FROM inbound WHERE message_id = "
                           "'locked-1@example.org'") == 1
    assert_healthy(daemon)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_with_a_verified_certificate(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path, security: str
) -> None:
    mark = len(dovecot.log())
    daemon = start_maild(security=security, idle=True, poll=60)
    dovecot.deliver(customer_mail(1, security))
    assert wait_until(drained(dovecot, tmp_path, 1), timeout=10), daemon.log()
    assert POLLER_DOWN not in daemon.log()
    # Dovecot saw maild log in over TLS (the tests' own IMAP sessions are plain).
    assert re.search(r"Login: user=<support>,.*\bTLS\b", dovecot.log()[mark:]), \
        dovecot.log()[mark:]
    assert_healthy(daemon)


def test_an_untrusted_certificate_is_refused_logged_once_and_survived(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    other_ca, _key = make_certificate(tmp_path)  # a different self-signed certificate
    mark = len(dovecot.log())
    daemon = start_maild(security="tls", idle=False, poll=1, ca=other_ca)
    dovecot.deliver(customer_mail(1, "badca"))

    assert wait_until(lambda: POLLER_DOWN in daemon.log(), timeout=10), daemon.log()
    time.sleep(1.5)  # the retry at +1 s fails the same way
    log = daemon.log()
    [warning] = [line for line in log.splitlines() if POLLER_DOWN in line]
    assert "WARNING" in warning and "certificate verify failed" in warning, warning
    assert daemon.running(), log
    assert "Traceback" not in log
    assert in_folder(dovecot, "INBOX") == 1
    assert stored(tmp_path) == 0
    # Dovecot saw maild give up during the handshake, and no TLS login.
    served = dovecot.log()[mark:]
    assert "TLS handshaking" in served, served
    assert not re.search(r"Login: user=<support>,.*\bTLS\b", served), served


def test_kill_9_in_the_middle_of_a_big_mailbox_loses_and_duplicates_nothing(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    total = 500
    with dovecot.client() as client:
        client.multiappend("INBOX", [customer_mail(n, "bulk") for n in range(total)])
    assert in_folder(dovecot, "INBOX") == total

    daemon = start_maild(security="none", idle=True, poll=60, batch=20)
    # 70 is mid-batch: some messages are stored but not yet moved when the kill lands.
    assert wait_until(lambda: received(tmp_path) >= 70, timeout=30, interval=0.01), daemon.log()
    daemon.kill()
    at_kill = received(tmp_path)
    assert at_kill < total, "maild finished before the kill: the test proves nothing"
    assert in_folder(dovecot, "INBOX") > 0

    daemon.start()
    assert wait_until(drained(dovecot, tmp_path, total), timeout=60, interval=0.5), \
        daemon.log()[-3000:]
    assert count(tmp_path, "SELECT count(DISTINCT dedupe_key) FROM inbound") == total
    assert count(tmp_path, "SELECT count(*) FROM inbound WHERE state = 'done'") == total
    listed = daemon.tickets()
    assert len(listed) == total
    assert len({t["customer"] for t in listed}) == total
    assert len(message_ids(dovecot, "Processed")) == total
    assert len(set(message_ids(dovecot, "Processed"))) == total
    assert in_folder(dovecot, "INBOX") == 0
    assert_healthy(daemon)


def test_the_poller_reconnects_after_the_server_comes_back(
    own_dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    dovecot = own_dovecot
    daemon = start_maild(security="starttls", idle=True, poll=60, server=dovecot)
    dovecot.deliver(customer_mail(1, "outage"))
    assert wait_until(drained(dovecot, tmp_path, 1), timeout=10), daemon.log()

    # The server crashes: maild's IDLE connection drops without a BYE.
    dovecot.crash()  # same folder and ports for the restart
    assert wait_until(lambda: POLLER_DOWN in daemon.log(), timeout=10), daemon.log()
    time.sleep(1.5)  # an attempt or two is refused meanwhile
    dovecot.start()
    dovecot.deliver(customer_mail(2, "outage"))

    assert wait_until(drained(dovecot, tmp_path, 2), timeout=30), daemon.log()
    log = daemon.log()
    assert "connected again" in log
    assert log.count(POLLER_DOWN) == 1  # one warning per outage, not one per attempt
    assert_healthy(daemon)


def test_the_poller_waits_for_a_server_that_is_not_up_yet(tmp_path: Path) -> None:
    dovecot = Dovecot()  # ports chosen, server not started
    daemon = MaildProcess(tmp_path, CONFIG.format(
        root=tmp_path, port=dovecot.imap_port, security="none", ca=dovecot.cert,
        folder="INBOX", idle="true", poll=60, batch=50, busy="5s"))
    daemon.start()
    try:
        assert wait_until(lambda: "ConnectionRefusedError" in daemon.log(), timeout=10), \
            daemon.log()
        dovecot.start()
        dovecot.deliver(customer_mail(1, "late"))
        assert wait_until(drained(dovecot, tmp_path, 1), timeout=30), daemon.log()
        assert "connected again" in daemon.log()
        assert_healthy(daemon)
    finally:
        if daemon.running():
            daemon.stop()
        dovecot.stop()


def test_a_uidvalidity_change_resets_the_cursor(
    dovecot: Dovecot, start_maild: StartMaild, tmp_path: Path
) -> None:
    # INBOX cannot be deleted, so this mailbox polls a folder of its own.
    with dovecot.client() as client:
        client.create_folder("Incoming")
        for n in range(3):
            client.append("Incoming", customer_mail(n, "before"))
        old_validity = client.folder_status("Incoming", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    daemon = start_maild(security="none", idle=False, poll=1, folder="Incoming")
    assert wait_until(drained(dovecot, tmp_path, 3, folder="Incoming"), timeout=15), \
        daemon.log()

    with dovecot.client() as client:  # the folder is recreated: UIDs start again at 1
        client.delete_folder("Incoming")
        client.create_folder("Incoming")
        new_validity = client.folder_status("Incoming", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        answer = client.append("Incoming", customer_mail(1, "after"))
    assert new_validity != old_validity
    appended = re.search(rb"APPENDUID \d+ (\d+)", answer)
    assert appended is not None, answer
    assert int(appended.group(1)) <= 3  # at or below the old cursor: only a reset finds it

    assert wait_until(drained(dovecot, tmp_path, 4, folder="Incoming"), timeout=15), \
        daemon.log()
    assert "UIDVALIDITY of Incoming changed" in daemon.log()
    assert subjects(tmp_path) == {
        "Problem before-0", "Problem before-1", "Problem before-2", "Problem after-1"}
    assert_healthy(daemon)



# Dovecot 2.3's capabilities after login, less MOVE: a server maild must not MOVE on.
WITHOUT_MOVE = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
                "THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL "
                "CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
                "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
                "BINARY SPECIAL-USE")


def test_without_move_messages_are_flagged_in_place_and_never_stored_twice(
    start_maild: StartMaild, tmp_path: Path
) -> None:
    server = Dovecot(capabilities=WITHOUT_MOVE)
    server.start()
    try:
        with server.client() as client:
            assert not client.has_capability("MOVE")
        for n in range(3):
            server.deliver(customer_mail(n, "nomove"), sender=f"c{n}-nomove@example.org")
        daemon = start_maild(security="none", idle=False, poll=1, server=server)
        assert wait_until(lambda: stored(tmp_path) == 3 and tickets_in_db(tmp_path) == 3,
                          timeout=15), daemon.log()
        with server.client() as client:
            client.select_folder("INBOX", readonly=True)
            assert len(client.search(["KEYWORD", "$MaildStored"])) == 3
        assert in_folder(server, "Processed") == 0
        daemon.stop()

        daemon = start_maild(security="none", idle=False, poll=1, server=server)
        server.deliver(customer_mail(9, "nomove"), sender="c9-nomove@example.org")
        assert wait_until(lambda: stored(tmp_path) == 4, timeout=15), daemon.log()
        time.sleep(2)  # a few more polls: the flagged ones must not come back
        assert stored(tmp_path) == 4 and tickets_in_db(tmp_path) == 4
        assert_healthy(daemon)
    finally:
        server.stop()


def test_big_messages_are_fetched_a_few_at_a_time(
    dovecot: Dovecot, helpdesk_readers: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poller holds a whole fetch batch in memory: its size is bounded in bytes, by the
    sizes the server reports, as well as in messages."""
    monkeypatch.setattr(imap, "FETCH_BYTES", 1_000_000)
    with dovecot.client() as client:
        client.multiappend("INBOX", [mail(subject=f"Big {n}", body="x" * 400_000,
                                          message_id=f"<big-{n}@example.org>").as_bytes()
                                     for n in range(5)])
    settings = ImapSettings(name="main", port=dovecot.imap_port, security="none",
                            username="support", batch_size=50)
    stored: list[bytes] = []

    def keep(raw: bytes, source: str) -> Accepted:
        stored.append(raw)
        return Accepted(len(stored), False, "test", identify(raw))

    poller = ImapPoller(settings, "supportpw", helpdesk_readers, keep, lambda: None,
                        threading.Event())
    fetched_bodies: list[int] = []
    with poller._connect() as client:
        fetch = client.fetch

        def counting_fetch(uids: list[int], items: list[bytes]) -> Any:
            if b"BODY.PEEK[]" in items:
                fetched_bodies.append(len(uids))
            return fetch(uids, items)

        client.fetch = counting_fetch
        client.select_folder("INBOX")
        poller._ensure_folder(client, "Processed")
        assert poller.drain(client, can_move=True) == 5
    assert fetched_bodies == [2, 2, 1]
    assert [len(raw) > 400_000 for raw in stored] == [True] * 5
    assert in_folder(dovecot, "INBOX") == 0 and in_folder(dovecot, "Processed") == 5


@pytest.fixture
def helpdesk_readers(helpdesk: Helpdesk) -> Iterator[Pool]:
    readers = Pool(config.load(helpdesk.config).database)
    yield readers
    readers.close()
