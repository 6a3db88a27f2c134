"""The floor under the worker's cost: the least that threading and delivering these mails
takes in Python on this machine, with none of maild's rules.

`worker_bench.py --floor` runs this beside maild's worker, on the same mails and in the same
turns, so the two figures share the machine's load. It does, per mail, only the work no
helpdesk can skip, each step with the standard library's cheapest tool:

- thread: read the stored bytes; parse them (`email`, compat32); decode From and Subject; take
  the first text part (or an HTML-only body with its tags dropped) and the attachments; find a
  follow-up's ticket by the number in its subject; insert the ticket (new) or update it
  (follow-up), insert the message, mark the stored row done; build each mail the ticket owes —
  the acknowledgement and a notice to each of two staff members for a new ticket, the two
  notices for a follow-up — written out as bytes directly (encoded words, base64 bodies: a
  fifth of what compat32 `MIMEText`/`Header` cost), the notices carrying the customer's
  attachments, and insert each into an outbox; one transaction per 25 mails (SQLite
  WAL, `synchronous=FULL`, as maild runs it);
- deliver: write each outbox row into a Maildir (tmp, then new), one fsync of the folder per
  batch of 100, and mark the rows sent in one statement.

What it leaves out is what maild adds: templates, signed Message-IDs, threading headers of
staff mail, dedupe, the undeliverable and auto-reply checks, events, participants, SLA fields,
claims that survive a kill -9, savepoints, a correspondence copy of each sent mail. The gap
between the two rows is the price of those; the floor is what no rewrite gets below.

    python bench/floor_worker.py ROOT COUNT BENCH_DIR    (peer mails; prints one JSON line)
"""

from __future__ import annotations

import base64
import email
import json
import os
import re
import secrets
import sqlite3
import sys
import time
from email.header import decode_header, make_header
from email.utils import formatdate, parseaddr
from pathlib import Path
from urllib.parse import quote

SCHEMA = """
CREATE TABLE inbound (id INTEGER PRIMARY KEY, raw BLOB NOT NULL, state TEXT NOT NULL,
                      ticket_id INTEGER);
CREATE INDEX ix_inbound_state ON inbound (state);
CREATE TABLE ticket (id INTEGER PRIMARY KEY, number TEXT UNIQUE NOT NULL, subject TEXT,
                     customer TEXT, status TEXT, updated_at REAL);
CREATE TABLE message (id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL, sender TEXT,
                      subject TEXT, body TEXT, message_id TEXT);
CREATE INDEX ix_message_ticket ON message (ticket_id);
CREATE INDEX ix_message_message_id ON message (message_id);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, ticket_id INTEGER, rcpt_to TEXT NOT NULL,
                     raw BLOB NOT NULL, state TEXT NOT NULL);
CREATE INDEX ix_outbox_state ON outbox (state);
"""
STAFF = [("alice@example.com", "Alice"), ("bob@example.com", "Bob")]
SUPPORT = "support@example.com"
NUMBER = re.compile(r"\[Ticket#(\d+)\]")
TAGS = re.compile(r"<[^>]*>")
BATCH = 25


def text(value: str | None) -> str:
    return str(make_header(decode_header(value))) if value else ""


def parse(raw: bytes) -> tuple[str, str, str, str, list[tuple[str, bytes]]]:
    """Sender, subject, Message-ID, text and attachments of one mail."""
    msg = email.message_from_bytes(raw)
    body, html, files = None, None, []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        if filename:
            files.append((text(filename), payload))
        elif part.get_content_type() == "text/plain" and body is None:
            body = payload.decode(part.get_content_charset() or "utf-8", "replace")
        elif part.get_content_type() == "text/html" and html is None:
            html = payload.decode(part.get_content_charset() or "utf-8", "replace")
    if body is None:
        body = TAGS.sub("", html or "")
    return (parseaddr(text(msg["From"]))[1].lower(), text(msg["Subject"]),
            msg["Message-ID"] or "", body, files)


def word(value: str) -> str:
    """A header value as RFC 2047 encoded words when it is not ASCII (about 40 characters
    each, so no line grows past 78)."""
    if value.isascii():
        return value
    chunks = [value[i:i + 40] for i in range(0, len(value), 40)]
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(c.encode()).decode()}?=" for c in chunks)


def build(to: str, name: str, subject: str, body: str, files: list[tuple[str, bytes]]) -> bytes:
    """One outgoing mail, its bytes written out directly: base64 bodies, encoded words."""
    headers = [f"From: Support <{SUPPORT}>", f"To: {word(name)} <{to}>",
               f"Subject: {word(subject)}", f"Date: {formatdate()}",
               f"Message-ID: <{secrets.token_hex(16)}@example.com>",
               "Auto-Submitted: auto-replied", "MIME-Version: 1.0"]
    text = base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")
    plain = b"Content-Type: text/plain; charset=utf-8\r\n" \
            b"Content-Transfer-Encoding: base64\r\n\r\n" + text
    if not files:
        return "\r\n".join(headers).encode() + b"\r\n" + plain
    boundary = secrets.token_hex(12)
    parts = [plain] + [
        (f"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
         f"Content-Disposition: attachment; filename*=utf-8''{quote(filename)}\r\n\r\n"
         ).encode() + base64.encodebytes(data).replace(b"\n", b"\r\n")
        for filename, data in files]
    headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    separator = f"\r\n--{boundary}\r\n".encode()
    return ("\r\n".join(headers).encode() + b"\r\n" + separator + separator.join(parts)
            + f"\r\n--{boundary}--\r\n".encode())


def thread(db: sqlite3.Connection) -> int:
    """One transaction: up to BATCH stored mails threaded; how many."""
    rows = db.execute("SELECT id, raw FROM inbound WHERE state = 'new' ORDER BY id LIMIT ?",
                      (BATCH,)).fetchall()
    for row_id, raw in rows:
        sender, subject, message_id, body, files = parse(raw)
        found = NUMBER.search(subject)
        ticket = found and db.execute("SELECT id, number FROM ticket WHERE number = ?",
                                      (found[1],)).fetchone()
        if ticket:
            ticket_id, number = ticket
            db.execute("UPDATE ticket SET status = 'open', updated_at = ? WHERE id = ?",
                       (time.time(), ticket_id))
            owed = [(address, name, f"[Ticket#{number}] {subject}",
                     f"Dear {name},\n\n{sender} wrote:\n\n{body}") for address, name in STAFF]
        else:
            ticket_id = db.execute("INSERT INTO ticket (number, subject, customer, status, "
                                   "updated_at) VALUES ('', ?, ?, 'new', ?)",
                                   (subject, sender, time.time())).lastrowid
            number = f"{20261201:08d}{ticket_id:05d}"
            db.execute("UPDATE ticket SET number = ? WHERE id = ?", (number, ticket_id))
            owed = [(sender, sender, f"[Ticket#{number}] {subject}",
                     f"We received your message; your ticket is {number}.\n")]
            owed += [(address, name, f"[Ticket#{number}] {subject}",
                      f"Dear {name},\n\nnew ticket from {sender}:\n\n{body}")
                     for address, name in STAFF]
        db.execute("INSERT INTO message (ticket_id, sender, subject, body, message_id) "
                   "VALUES (?, ?, ?, ?, ?)", (ticket_id, sender, subject, body, message_id))
        for address, name, out_subject, out_body in owed:
            attached = files if address != sender else []
            db.execute("INSERT INTO outbox (ticket_id, rcpt_to, raw, state) "
                       "VALUES (?, ?, ?, 'pending')",
                       (ticket_id, address, build(address, name, out_subject, out_body,
                                                  attached)))
        db.execute("UPDATE inbound SET state = 'done', ticket_id = ? WHERE id = ?",
                   (ticket_id, row_id))
    db.commit()
    return len(rows)


def deliver(db: sqlite3.Connection, maildir: Path, serial: list[int]) -> int:
    """One batch of up to 100 outbox rows into the Maildir, synced, then marked sent."""
    rows = db.execute("SELECT id, raw FROM outbox WHERE state = 'pending' ORDER BY id "
                      "LIMIT 100").fetchall()
    for _, raw in rows:
        serial[0] += 1
        name = f"{time.time():.6f}.{os.getpid()}_{serial[0]}.floor"
        (maildir / "tmp" / name).write_bytes(raw)
        os.rename(maildir / "tmp" / name, maildir / "new" / name)
    if rows:
        folder = os.open(maildir / "new", os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        db.execute(f"UPDATE outbox SET state = 'sent' WHERE id IN "
                   f"({', '.join(str(r[0]) for r in rows)})")
        db.commit()
    return len(rows)


def main() -> None:
    root, count = Path(sys.argv[1]), int(sys.argv[2])
    sys.path.insert(0, sys.argv[3])
    import workload  # bench/workload.py: the same mails as worker_bench's
    db = sqlite3.connect(root / "floor.db", isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    maildir = root / "floor-outbox"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    serial = [0]

    def phase(mails: list[bytes]) -> dict[str, float]:
        db.executemany("INSERT INTO inbound (raw, state) VALUES (?, 'new')",
                       [(raw,) for raw in mails])
        db.commit()
        start = time.process_time()
        while thread(db):
            pass
        threaded = time.process_time()
        while deliver(db, maildir, serial):
            pass
        done = time.process_time()
        return {"thread_ms": 1000 * (threaded - start) / len(mails),
                "deliver_ms": 1000 * (done - threaded) / len(mails)}

    originals = workload.new_tickets(count, 1)
    new = phase([workload.render(m) for m in originals])
    numbers = [r[0] for r in db.execute("SELECT number FROM ticket ORDER BY id")]
    follow = phase([workload.render(f, subject=f"Re: [Ticket#{n}] {f.subject}")
                    for f, n in zip(workload.follow_ups(originals, 1), numbers, strict=True)])

    def one(sql: str) -> int:
        return int(db.execute(sql).fetchone()[0])

    states = dict(db.execute("SELECT state, count(*) FROM inbound GROUP BY state").fetchall())
    print(json.dumps({"new": new, "follow_up": follow, "inbound": states,
                      "followed": one("SELECT count(*) FROM message")
                      - one("SELECT count(*) FROM ticket"),
                      "sent": one("SELECT count(*) FROM outbox WHERE state = 'sent'")}))

if __name__ == "__main__":
    main()
