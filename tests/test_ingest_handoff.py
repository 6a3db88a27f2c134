"""`maild ingest` beside a running `maild run`: the pipe stores the message, hands it to the
daemon through the hand-off socket and prints the ticket number the daemon's worker gave it;
without a listening daemon it threads and delivers the mail itself, as it always did."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from maild.ingest.handoff import knock
from tests.conftest import mail
from tests.servers import MaildProcess, wait_until
from tests.test_cli import loaded

CONFIG = """
[database]
url = "{url}"
[mail]
support_address = "support@example.com"
subject_tag = "Ticket"
secret_file = "{root}/maild.key"
{handoff}
[outbound]
transport = "maildir"
maildir = "{root}/outbox"
"""


def installation(root: Path, url: str = "", handoff: str = "") -> MaildProcess:
    return MaildProcess(root, CONFIG.format(
        url=url or f"sqlite:///{root}/maild.db", root=root,
        handoff=f'handoff_socket = "{handoff}"' if handoff else ""), own_group=True)


def pipe(daemon: MaildProcess, message: EmailMessage | bytes) -> subprocess.CompletedProcess[str]:
    """`maild ingest` as Postfix's pipe runs it: the message on stdin."""
    raw = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
    done = subprocess.run([sys.executable, "-m", "maild", "--config", str(daemon.config),
                           "ingest", "--source", "postfix"], input=raw, capture_output=True,
                          env=daemon.env, cwd=daemon.root, timeout=60)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode(errors="replace"))


def started(daemon: MaildProcess, socket: Path) -> MaildProcess:
    daemon.start()
    assert wait_until(lambda: knock(socket), timeout=30), daemon.log()
    return daemon


def outbox(daemon: MaildProcess) -> list[dict[str, Any]]:
    done = daemon.cli("outbox", "list", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def inbound(daemon: MaildProcess) -> list[dict[str, Any]]:
    done = daemon.cli("inbound", "list", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def delivered(daemon: MaildProcess) -> list[Path]:
    folder = daemon.root / "outbox" / "new"
    return sorted(folder.iterdir()) if folder.exists() else []


def messages_in(daemon: MaildProcess, number: str) -> list[str]:
    """The Message-IDs of a ticket's incoming mail."""
    done = daemon.cli("ticket", "show", number, "--json")
    assert done.returncode == 0, done.stderr
    return [m["message_id"] for m in json.loads(done.stdout)["messages"]
            if m["direction"] == "in"]


@pytest.fixture
def daemon(tmp_path: Path) -> Any:
    running = started(installation(tmp_path), tmp_path / "maild.db.handoff")
    yield running
    if running.running():
        running.stop()


def test_the_daemon_threads_and_acknowledges_what_the_pipe_stored(
    daemon: MaildProcess,
) -> None:
    first = mail(message_id="<handed-off@example.org>")
    done = pipe(daemon, first)
    assert done.returncode == 0, done.stderr
    number = done.stdout.strip()
    assert [t["number"] for t in daemon.tickets()] == [number]
    assert "sent" not in done.stderr  # the pipe delivered nothing: the daemon does
    assert wait_until(lambda: [r["state"] for r in outbox(daemon)] == ["sent"]), daemon.log()
    [ack] = delivered(daemon)
    assert b"In-Reply-To: <handed-off@example.org>" in ack.read_bytes()
    assert f"[Ticket#{number}]" in ack.read_text()
    assert "outbox 1 " in daemon.log() and "sent" in daemon.log()

    # A follow-up carrying the ticket's tag joins the ticket, through the daemon too.
    again = pipe(daemon, mail(subject=f"Re: [Ticket#{number}] Printer does not print",
                              message_id="<follow-up@example.org>", body="Still broken.\n"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == number
    assert messages_in(daemon, number) == ["handed-off@example.org", "follow-up@example.org"]

    # The same message piped again (an MTA retry) is stored once and names its ticket again.
    retried = pipe(daemon, first)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == number
    assert len(inbound(daemon)) == 2
    assert len(daemon.tickets()) == 1
    assert [r["kind"] for r in outbox(daemon)] == ["ack"]  # acknowledged once, and only once
    assert len(delivered(daemon)) == 1


def test_the_hand_off_imports_no_orm_and_no_templates(daemon: MaildProcess) -> None:
    heavy = loaded(daemon.config, "ingest", cwd=daemon.root, stdin=bytes(mail()))
    assert not {"sqlalchemy", "sqlmodel", "jinja2", "pydantic"} & set(heavy), heavy
    assert wait_until(lambda: len(daemon.tickets()) == 1), daemon.log()


def test_without_a_daemon_the_pipe_threads_and_delivers_itself(tmp_path: Path) -> None:
    alone = installation(tmp_path)
    assert alone.cli("init").returncode == 0
    done = pipe(alone, mail(message_id="<alone@example.org>"))
    assert done.returncode == 0, done.stderr
    assert [t["number"] for t in alone.tickets()] == [done.stdout.strip()]
    [ack] = delivered(alone)  # delivered before the pipe exited
    assert b"In-Reply-To: <alone@example.org>" in ack.read_bytes()
    assert not (tmp_path / "maild.db.handoff").exists()


def test_a_socket_left_by_a_killed_daemon_is_no_daemon(tmp_path: Path) -> None:
    """SIGKILL leaves the socket file behind; nobody listens on it, so the pipe works alone
    (connection refused), and the next `maild run` binds it again."""
    socket = tmp_path / "maild.db.handoff"
    daemon = started(installation(tmp_path), socket)
    daemon.kill_group()
    assert socket.is_socket() and not knock(socket)
    done = pipe(daemon, mail(message_id="<after-the-kill@example.org>"))
    assert done.returncode == 0, done.stderr
    assert [t["number"] for t in daemon.tickets()] == [done.stdout.strip()]
    assert len(delivered(daemon)) == 1
    started(daemon, socket)
    try:
        second = pipe(daemon, mail(message_id="<restarted@example.org>"))
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() in {t["number"] for t in daemon.tickets()}
        assert "sent" not in second.stderr
    finally:
        daemon.stop()
    assert not socket.exists()  # a clean stop takes it away


def test_the_worker_killed_while_the_pipe_waits_still_means_stored(daemon: MaildProcess) -> None:
    """Exit 0 whatever happens to the worker once the row is committed; the restarted worker
    threads the message, and its acknowledgement goes out once."""
    worker = daemon.worker_pid()
    _stop_between_transactions(worker, daemon.root / "maild.db")  # it cannot take the mail
    message = daemon.root / "while-killed.eml"
    message.write_bytes(mail(message_id="<while-killed@example.org>").as_bytes(policy=policy.SMTP))
    waiting = subprocess.Popen(
        [sys.executable, "-m", "maild", "--config", str(daemon.config), "ingest", str(message)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    database = daemon.root / "maild.db"
    assert wait_until(lambda: _inbound_rows(database) == 1, timeout=30)
    os.kill(worker, signal.SIGKILL)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert wait_until(lambda: len(daemon.tickets()) == 1, timeout=60), daemon.log()
    [ticket] = daemon.tickets()
    assert out.decode().strip() in ("", ticket["number"])  # a number only once it had one
    if not out.strip():
        assert b"maild run` will thread it" in err
    assert daemon.worker_pid() != worker
    assert wait_until(lambda: [r["state"] for r in outbox(daemon)] == ["sent"]), daemon.log()
    assert len(delivered(daemon)) == 1
    [row] = inbound(daemon)
    assert row["state"] == "done"


def test_on_postgresql_through_the_configured_socket(tmp_path: Path, pg_url: str) -> None:
    socket = tmp_path / "handoff.sock"
    daemon = started(installation(tmp_path, url=pg_url, handoff=str(socket)), socket)
    try:
        done = pipe(daemon, mail(message_id="<on-postgres@example.org>"))
        assert done.returncode == 0, done.stderr
        assert [t["number"] for t in daemon.tickets()] == [done.stdout.strip()]
        assert "sent" not in done.stderr
        assert wait_until(lambda: len(delivered(daemon)) == 1), daemon.log()
    finally:
        daemon.stop()


def _inbound_rows(database: Path) -> int:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM inbound").fetchone()[0])


def _stop_between_transactions(pid: int, database: Path) -> None:
    """SIGSTOP the worker at a moment it holds no write lock (stopped inside a transaction, it
    would keep the pipe from storing at all: exit 75, a different test)."""
    lock = os.open(f"{database}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            os.kill(pid, signal.SIGSTOP)
            assert wait_until(lambda: _state(pid) == "T", timeout=10, interval=0.01)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.kill(pid, signal.SIGCONT)
                time.sleep(0.05)
                continue
            fcntl.flock(lock, fcntl.LOCK_UN)
            return
    finally:
        os.close(lock)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
