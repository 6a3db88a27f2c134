"""A full disk under the database (issue #13): `maild run` answers 451 and `maild ingest` exits
75 for mail it cannot store, never 250 or 0; and once space returns the daemon goes on by itself
— no restart — taking and threading mail, including what it took before the disk filled.

The database and its intake spool live on a small tmpfs of their own (mounted by the test: it
runs as root, as the suite does in CI); the log and the outbox Maildir live outside it. A
locked database is the other way a store fails: tests/test_daemon_smtp.py (451 from a locked
spool, 250 and threaded later with a locked database) and tests/test_ingest.py (exit 75) cover
it.
"""

from __future__ import annotations

import errno
import os
import smtplib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import mail
from tests.servers import MaildProcess, wait_until
from tests.smtp_sink import free_port

pytestmark = pytest.mark.sqlite

CONFIG = """
[database]
url = "sqlite:///{fs}/maild.db"
busy_timeout = "2s"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]

[smtp]
listen = "127.0.0.1:{port}"

[outbound]
maildir = "{root}/outbox"

[[staff]]
email = "alice@example.com"
name = "Alice"

[notify]
new_ticket = false
follow_up = false
"""
BODY = "The export fails again, here is the whole log:\n" + "line of the log\n" * 400
MOST = 400  # mails tried before the disk must have said no


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the suite runs as root in CI)")
    folder = tmp_path / "fs"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem has no block left; returns it."""
    filler = folder / "filler"
    out = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(out, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(out)
    return filler


def stored_message_ids(folder: Path) -> list[str]:
    with sqlite3.connect(f"file:{folder}/maild.db?mode=ro", uri=True, timeout=30) as db:
        return [row[0] for row in db.execute("SELECT message_id FROM inbound")]


@dataclass
class Running:
    daemon: MaildProcess
    port: int
    pid: int  # of the intake: the same process at the end means nobody restarted it


@pytest.fixture
def running(tmp_path: Path, small_filesystem: Path) -> Iterator[Running]:
    """`maild run` with its database on the small filesystem and one mail threaded already
    (`before@example.org`), stopped afterwards."""
    port = free_port()
    daemon = MaildProcess(tmp_path, CONFIG.format(fs=small_filesystem, root=tmp_path,
                                                  port=port))
    daemon.start(wait_for=port)
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(mail(message_id="<before@example.org>", sender="a@example.org"))
        assert wait_until(lambda: len(daemon.tickets()) == 1, timeout=60), daemon.log()
        yield Running(daemon, port, daemon.process.pid if daemon.process else 0)
    finally:
        daemon.stop()


def test_a_full_disk_gives_451_and_exit_75_and_the_daemon_recovers_by_itself(
    running: Running, small_filesystem: Path
) -> None:
    daemon, port, pid = running.daemon, running.port, running.pid
    filler = fill(small_filesystem)
    # Pages SQLite has already (a WAL it reuses) may still take a mail or two: those are
    # stored, and get their 250. Then the disk says no, and the answer is 451.
    answered, refused = [], 0
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for n in range(MOST):
            try:
                client.sendmail(f"full{n}@example.org", ["support@example.com"], bytes(
                    mail(message_id=f"<full-{n}@example.org>", body=BODY,
                         sender=f"full{n}@example.org", subject=f"Full {n}")))
                answered.append(f"full-{n}@example.org")
            except smtplib.SMTPDataError as exc:
                assert exc.smtp_code == 451, exc
                refused += 1
                if refused == 3:
                    break
    assert refused == 3, f"the disk never filled: {len(answered)} mails answered 250"
    assert "could not store a message" in daemon.log()

    piped, tempfailed = [], 0
    for n in range(20):
        done = subprocess.run(
            [sys.executable, "-m", "maild", "--config", str(daemon.config), "ingest"],
            input=bytes(mail(message_id=f"<pipe-{n}@example.org>", body=BODY,
                             sender=f"pipe{n}@example.org", subject=f"Piped {n}")),
            capture_output=True, env=daemon.env, timeout=120)
        if done.returncode == 0:
            piped.append(f"pipe-{n}@example.org")
            continue
        assert done.returncode == 75, done.stderr
        assert b"try again later" in done.stderr, done.stderr
        tempfailed += 1
        if tempfailed == 2:
            break
    assert tempfailed == 2, f"the disk took {len(piped)} piped mails and never refused"

    # What was refused is nowhere; what was answered is stored, or still in the spool.
    stored = set(stored_message_ids(small_filesystem))
    assert not {m for m in stored if m.startswith(("full-", "pipe-"))} - {*answered, *piped}

    filler.unlink()  # space returns; nobody restarts anything
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.send_message(mail(message_id="<after@example.org>", sender="z@example.org",
                                 subject="After the disk was full"))
    expected = {"before@example.org", "after@example.org", *answered, *piped}
    assert wait_until(lambda: set(stored_message_ids(small_filesystem)) == expected,
                      timeout=120), daemon.log()[-3000:]
    assert wait_until(lambda: len(daemon.tickets()) == len(expected), timeout=120), \
        daemon.log()[-3000:]
    subjects = sorted(t["subject"] for t in daemon.tickets())
    assert "After the disk was full" in subjects and len(set(subjects)) == len(expected)
    assert daemon.running() and daemon.process is not None and daemon.process.pid == pid
    assert "worker exited" not in daemon.log()  # the worker waited, it did not crash


def test_mail_taken_before_the_disk_filled_is_threaded_once_space_returns(
    running: Running, small_filesystem: Path
) -> None:
    """The other side: mail answered 250 sits in the intake spool, and the worker cannot move
    it into the database because the disk is full. It waits and retries — the mail is neither
    lost nor failed — and moves and threads it once space returns."""
    daemon, port, pid = running.daemon, running.port, running.pid
    # Hold the database so the worker cannot move what the intake takes meanwhile; the
    # mails are bigger together than any WAL SQLite could reuse, so the move needs space.
    locker = sqlite3.connect(small_filesystem / "maild.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for n in range(8):
                client.sendmail(f"s{n}@example.org", ["support@example.com"], bytes(mail(
                    message_id=f"<spooled-{n}@example.org>", sender=f"s{n}@example.org",
                    subject=f"Spooled {n}", body=BODY * 25)))
        filler = fill(small_filesystem)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert wait_until(lambda: "database or disk is full" in daemon.log(), timeout=60), \
        daemon.log()[-3000:]
    assert stored_message_ids(small_filesystem) == ["before@example.org"]

    filler.unlink()
    expected = {"before@example.org", *(f"spooled-{n}@example.org" for n in range(8))}
    assert wait_until(lambda: set(stored_message_ids(small_filesystem)) == expected,
                      timeout=120), daemon.log()[-3000:]
    assert wait_until(lambda: len(daemon.tickets()) == 9, timeout=120), daemon.log()[-3000:]
    assert sorted(t["subject"] for t in daemon.tickets())[1:] == \
        [f"Spooled {n}" for n in range(8)]
    assert "database available again" in daemon.log()
    assert daemon.running() and daemon.process is not None and daemon.process.pid == pid
    assert "worker exited" not in daemon.log()
