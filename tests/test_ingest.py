"""`maild ingest` as an MTA pipe: exit 0 only once stored, 75 when it could not store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from maild.dedupe import identify
from maild.ingest.smtp import unstuff_bare_lf_lines
from tests.conftest import Helpdesk, mail


def _maild(helpdesk: Helpdesk, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maild", "--config", str(helpdesk.config),
                           *args], input=stdin, capture_output=True, timeout=60)


def test_ingest_reads_stdin_like_an_mta_pipe(helpdesk: Helpdesk) -> None:
    done = _maild(helpdesk, "ingest", stdin=bytes(mail()))
    assert done.returncode == 0, done.stderr
    number = done.stdout.decode().strip()
    assert helpdesk.ticket(number)["customer"] == "ivan@example.org"


@pytest.mark.sqlite
def test_a_locked_database_gives_exit_75_and_stores_nothing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    helpdesk = Helpdesk(tmp_path, capsys, busy="200ms")
    locker = sqlite3.connect(tmp_path / "var" / "maild.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past our busy timeout
    try:
        done = _maild(helpdesk, "ingest", stdin=bytes(mail()))
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert done.returncode == 75, done.stderr
    assert b"try again later" in done.stderr
    assert helpdesk.run("inbound", "list", "--json").json() == []


def test_a_broken_config_gives_exit_75_so_the_mta_keeps_the_mail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[mail]\nlanguage = "xx"\n')
    done = subprocess.run([sys.executable, "-m", "maild", "--config", str(bad), "ingest"],
                          input=bytes(mail()), capture_output=True, timeout=60)
    assert done.returncode == 75
    assert b"mail.language" in done.stderr


def test_empty_input_is_bad_input(helpdesk: Helpdesk) -> None:
    done = _maild(helpdesk, "ingest", stdin=b"  \r\n")
    assert done.returncode == 2
    assert b"empty message" in done.stderr


def test_an_oversized_message_is_refused(helpdesk: Helpdesk) -> None:
    text = helpdesk.config.read_text().replace("[mail]\n", "[mail]\nmax_message_bytes = 1000\n")
    helpdesk.config.write_text(text)
    done = _maild(helpdesk, "ingest", stdin=bytes(mail(body="x" * 5000)))
    assert done.returncode == 2
    assert b"exceeds the limit" in done.stderr


def test_the_raw_bytes_are_kept_exactly(helpdesk: Helpdesk) -> None:
    raw = (b"From: =?koi8-r?b?8NLP18XSy8E=?= <a@example.org>\n"
           b"Subject: bare LF, 8-bit \xd0\xd2\xc9\xd7\xc5\xd4\n\n\x00\xff body\n")
    helpdesk.ingest(raw)
    [row] = helpdesk.run("inbound", "list", "--json").json()
    shown = _maild(helpdesk, "inbound", "show", str(row["id"]), "--raw")
    assert shown.stdout == raw


def test_an_unthreadable_message_is_kept_as_failed_with_its_reason(helpdesk: Helpdesk) -> None:
    raw = b"Subject: nobody sent this\r\n\r\nno sender anywhere\r\n"
    result = helpdesk.ingest(raw)
    assert result.code == 0  # stored is stored: the MTA must not retry or bounce
    assert "failed" in result.err
    [row] = helpdesk.run("inbound", "list", "--state", "failed", "--json").json()
    assert "no sender" in row["reason"]
    assert row["dedupe_key"] == identify(raw).key
    assert "failed and wait for attention" in helpdesk.run("ticket", "list").err


def test_a_failed_message_can_be_run_again_once_the_cause_is_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty_templates = tmp_path / "no-templates"
    empty_templates.mkdir()
    helpdesk = Helpdesk(tmp_path, capsys, templates=str(empty_templates))
    result = helpdesk.ingest(mail())
    [row] = helpdesk.run("inbound", "list", "--state", "failed", "--json").json()
    assert "TemplateNotFound" in row["reason"]
    assert helpdesk.tickets() == []  # the transaction rolled back: no half-made ticket

    helpdesk.config.write_text(helpdesk.config.read_text().replace(
        f'templates_dir = "{empty_templates}"', 'templates_dir = ""'))
    retried = helpdesk.run("inbound", "retry", "--json")

    assert retried.code == 0, retried.err
    [outcome] = retried.json()
    assert outcome["state"] == "done" and outcome["ticket"]
    assert helpdesk.tickets()[0]["number"] == outcome["ticket"]
    assert result.code == 0


def test_tick_threads_stored_mail_and_delivers_what_is_owed(helpdesk: Helpdesk) -> None:
    helpdesk.ingest(mail(), "--no-deliver")
    assert helpdesk.outbox() == []
    ticked = helpdesk.run("tick", "--json")
    assert ticked.code == 0
    assert ticked.json()["sent"] == 1
    assert len(helpdesk.outbox()) == 1
    assert helpdesk.run("tick", "--json").json()["sent"] == 0  # nothing twice


def test_tick_at_a_given_instant(helpdesk: Helpdesk) -> None:
    ticked = helpdesk.run("tick", "--at", "2026-11-30T09:00:00+03:00", "--json")
    assert ticked.json()["at"] == "2026-11-30T06:00:00+00:00"
    assert helpdesk.run("tick", "--at", "next tuesday").code == 2


@pytest.mark.parametrize(("received", "stored"), [
    (b"a\n..b\n...c\n..\nd\n", b"a\n.b\n..c\n.\nd\n"),  # after bare LF: one dot removed
    (b"a\r\n.b\r\n", b"a\r\n.b\r\n"),                # after CRLF aiosmtpd has done it already
    (b"no dots\nhere\n", b"no dots\nhere\n"),
    (b"a.b\n.\r\n", b"a.b\n\r\n"),
])
def test_dot_stuffing_after_a_bare_lf_is_undone(received: bytes, stored: bytes) -> None:
    assert unstuff_bare_lf_lines(received) == stored
