"""The real-world corpus: every message goes through `maild ingest`, and through the SMTP
listener of `maild run`, and none is lost.

The corpus (about 1,100 messages from the public test suites of mail libraries and helpdesks:
bounces, broken charsets, Outlook, TNEF, CR-only line endings, 8-bit headers, missing From,
Date or Message-ID...) is test data that stays outside this repository; CI points at it with
`MAILD_CORPUS=../shared/corpus`. Without the variable this module is skipped.

Each message is ingested exactly as an MTA pipe would (`maild ingest --no-deliver FILE`, run
in-process against a fresh SQLite database). Afterwards every message must be in `inbound`:
`done` on a ticket, or `failed` with a reason — and the only acceptable reason is a message
that names no sender address anywhere. Duplicates (the same Message-ID) collapse in `inbound`,
so a second test runs `parse_message` over every file, duplicates included. The summary
(counts and the failure reasons) is printed to the terminal and written to
`corpus-summary.txt` in the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from maild import config
from maild.db import make_engine
from maild.dedupe import identify
from maild.errors import UnparseableMessage
from maild.models import Inbound, InboundState
from maild.parsing import MessageTooComplex, parse_message
from tests.conftest import Helpdesk
from tests.servers import MaildProcess, wait_until
from tests.smtp_sink import free_port

CORPUS = os.environ.get("MAILD_CORPUS", "")

pytestmark = pytest.mark.skipif(not CORPUS, reason="MAILD_CORPUS is not set")

# The one legitimate failure (SPEC §9 keeps it, failed, with its reason): no sender at all.
NO_SENDER = "UnparseableMessage: no sender address"
# flanker's enclosed-endless.eml, a forwarding loop of 3,042 MIME parts: over mail.max_mime_parts
# (SPEC §9), see tests/test_hostile.py
TOO_MANY_PARTS = "MessageTooComplex: more than 1000 MIME parts (mail.max_mime_parts)"
SENDER_LINE = re.compile(rb"^(from|sender|reply-to|return-path)[ \t]*:", re.I | re.M)


def corpus_files(root: Path) -> list[Path]:
    paths: list[Path] = []
    with (root / "manifest.jsonl").open(encoding="utf-8") as manifest:
        for line in manifest:
            if line.strip():
                paths.append(root / json.loads(line)["file"])
    return paths


def test_every_corpus_message_is_stored_and_settled(
    helpdesk: Helpdesk, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    root = Path(CORPUS)
    files = corpus_files(root)
    assert files, f"{root}/manifest.jsonl lists no messages"

    started = time.monotonic()
    exits: dict[str, tuple[int, str]] = {}
    keys: dict[str, str] = {}
    for path in files:
        keys[str(path)] = identify(path.read_bytes()).key
        result = helpdesk.run("ingest", "--no-deliver", str(path))
        if result.code != 0:
            exits[str(path.relative_to(root))] = (result.code, result.err.strip()[-300:])
    elapsed = time.monotonic() - started

    engine = make_engine(config.load(helpdesk.config).database)
    try:
        with Session(engine) as session:
            rows = list(session.exec(select(Inbound)))
    finally:
        engine.dispose()

    by_state = Counter(row.state for row in rows)
    reasons = Counter(row.reason for row in rows if row.state == InboundState.FAILED)
    expected = set(keys.values())
    summary = [
        f"corpus: {len(files)} messages, {len(expected)} distinct, "
        f"{len(files) - len(expected)} duplicates collapsed; "
        f"done {by_state[InboundState.DONE]}, failed {by_state[InboundState.FAILED]}, "
        f"new {by_state[InboundState.NEW]}; non-zero exits {len(exits)}; {elapsed:.1f}s",
        *(f"  failed x{count}: {reason}" for reason, count in reasons.most_common()),
    ]
    text = "\n".join(summary)
    (helpdesk.root / "corpus-summary.txt").write_text(text + "\n", encoding="utf-8")
    request.node.add_report_section("call", "corpus summary", text)
    with capsys.disabled():
        print("\n" + text)

    assert not exits, f"maild ingest did not exit 0 for: {exits}"
    assert {row.dedupe_key for row in rows} == expected, "a message is missing from inbound"
    assert len(rows) == len(expected), "a message was stored twice"
    for row in rows:
        if row.state == InboundState.DONE and row.ticket_id is None:
            # The one way to be settled without a ticket: a staff member's mail about no
            # ticket, naming no customer — refused with a reply to the staff member (SPEC §7).
            # The corpus has mail From alice@example.com, a staff address of the test config.
            assert row.reason.startswith("staff mail about no ticket"), \
                f"inbound {row.id} is done without a ticket: {row.reason!r}"
        elif row.state == InboundState.DONE:
            assert row.ticket_id is not None
        else:
            assert row.state == InboundState.FAILED, f"inbound {row.id} was left {row.state}"
            assert row.reason.strip(), f"inbound {row.id} failed without a reason"
    unexpected = {r: n for r, n in reasons.items()
                  if not r.startswith(NO_SENDER) and not (r.startswith(TOO_MANY_PARTS) and n == 1)}
    assert not unexpected, f"failures other than a missing sender (or the one MIME bomb): " \
        f"{unexpected}"


def test_every_corpus_file_parses_to_storable_facts() -> None:
    """parse_message over every file, duplicates too: a ParsedMail whose text any database
    stores, or UnparseableMessage (no sender) — never another exception."""
    root = Path(CORPUS)
    for path in corpus_files(root):
        name = str(path.relative_to(root))
        raw = path.read_bytes()
        try:
            mail = parse_message(raw)
        except MessageTooComplex as exc:  # the one MIME bomb of the corpus, see TOO_MANY_PARTS
            assert f"{type(exc).__name__}: {exc}".startswith(TOO_MANY_PARTS), name
            mail = parse_message(raw, max_parts=10_000)  # and under a raised limit, it parses
        except UnparseableMessage:
            # legitimate only when the file names no sender anywhere, not even in a broken
            # header block or an mbox "From " line
            assert not SENDER_LINE.search(raw) and not raw.startswith(b"From "), name
            continue
        assert "@" in mail.sender and mail.sender == mail.sender.lower(), name
        assert len(mail.subject.splitlines()) <= 1 and len(mail.sender_name.splitlines()) <= 1
        for value in (mail.subject, mail.sender_name, mail.text, mail.html,
                      *(a.filename for a in mail.attachments)):
            assert "\x00" not in value, name
            value.encode("utf-8")  # no lone surrogate


SMTP_CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]
max_mime_parts = 10000  # the corpus's one MIME bomb too: this is about storing and threading

[smtp]
listen = "127.0.0.1:{port}"

[outbound]
transport = "maildir"
maildir = "{root}/outbox"
"""


def test_every_corpus_message_sent_over_smtp_is_stored_byte_for_byte(tmp_path: Path) -> None:
    """The whole corpus through `maild run`'s listener, as a script would send it: smtplib,
    one connection, the files' bytes as they are (bare LF, 8-bit, lines starting with a dot).
    Every message is answered 250, stored exactly as sent, and threaded (the envelope sender
    stands in where a message names none)."""
    files = corpus_files(Path(CORPUS))
    port = free_port()
    daemon = MaildProcess(tmp_path, SMTP_CONFIG.format(root=tmp_path, port=port))
    daemon.start(wait_for=port)
    sent: dict[str, bytes] = {}
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo()
            for path in files:
                raw = path.read_bytes()
                client.mail("corpus-sender@example.org")
                client.rcpt("support@example.com")
                code, reply = client.data(raw)
                assert code == 250, f"{path}: {code} {reply!r}"
                # What smtplib puts on the wire ends with CRLF; maild keeps exactly that.
                wire = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
                sent.setdefault(identify(wire).key, wire)  # the first of duplicates is kept

        def settled() -> bool:
            states = _query(tmp_path, "SELECT state, count(*) FROM inbound GROUP BY state")
            return sum(n for _, n in states) == len(sent) and dict(states).get("new") is None

        assert wait_until(settled, timeout=300, interval=1.0), daemon.log()[-3000:]
    finally:
        assert daemon.stop() == 0
    stored = dict(_query(tmp_path, "SELECT dedupe_key, raw FROM inbound"))
    assert stored.keys() == sent.keys()
    changed = [key for key, wire in sent.items() if stored[key] != wire]
    assert not changed, f"{len(changed)} messages not stored as sent, e.g. {changed[:3]}"
    assert _query(tmp_path, "SELECT state, count(*) FROM inbound GROUP BY state") == \
        [("done", len(sent))]
    assert "Traceback" not in daemon.log()


def _query(root: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(root / "maild.db", timeout=10)) as db:
        return db.execute(sql).fetchall()


def test_every_corpus_message_splits_as_with_the_stdlib_boundary_pattern() -> None:
    """maild's boundary matcher (`maild.parsing._FeedparserRe`) against the pattern the stdlib
    compiles for each multipart, on every real message: the same MIME tree, part for part."""
    from tests.test_parsing import split_both_ways

    files = corpus_files(Path(CORPUS))
    differ = []
    for path in files:
        ours, theirs = split_both_ways(path.read_bytes())
        if ours != theirs:
            differ.append(str(path))
    assert not differ, differ[:10]
    assert sum(b"multipart/" in path.read_bytes().lower() for path in files) > 100  # split
