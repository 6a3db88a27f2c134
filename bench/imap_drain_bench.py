"""IMAP drain benchmark: a big mailbox emptied by `maild run`, with its memory watched.

Starts a private Dovecot (as the test suite does; needs root and dovecot-imapd), APPENDs
`--count` messages (default 20,000) to the support mailbox, then runs `maild run` with one
`[[imap]]` mailbox and samples the resident memory of the intake process (which holds the
poller) every half second until every message is stored (in `inbound` or the intake spool) and
moved to `Processed`. Prints the drain rate and the RSS at 10 %, 50 % and 100 % of the way:
flat memory means the poller never holds more than one batch.

    .venv/bin/python bench/imap_drain_bench.py [--count 20000] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from imapclient import IMAPClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from maild.ingest.spool import spool_path
from tests.servers import Dovecot, MaildProcess

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"
[mail]
support_address = "support@example.com"
[outbound]
transport = "maildir"
maildir = "{root}/outbox"
[[imap]]
name = "bench"
host = "127.0.0.1"
port = {port}
security = "none"
username = "support"
password_env = "MAILD_IMAP_PASSWORD"
idle = false
poll_seconds = 1
batch_size = {batch}
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fill(port: int, count: int) -> float:
    start = time.perf_counter()
    with IMAPClient("127.0.0.1", port=port, ssl=False) as client:
        client.login("support", "supportpw")
        for i in range(count):
            msg = EmailMessage()
            msg["From"] = f"customer{i}@example.org"
            msg["To"] = "support@example.com"
            msg["Subject"] = f"Problem number {i}"
            msg["Message-ID"] = f"<drain-{i}@example.org>"
            msg.set_content(f"Hello, problem {i}.\n" * 30)
            client.append("INBOX", msg.as_bytes(policy=SMTP))
    return time.perf_counter() - start


def stored(db: Path) -> int:
    """Messages committed by the intake: in `inbound`, or still in the intake spool."""
    return count(db, "inbound") + count(spool_path(db), "spool")


def count(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    dovecot = Dovecot()
    dovecot.start()
    try:
        filled = fill(dovecot.imap_port, args.count)
        with tempfile.TemporaryDirectory(prefix="maild-drain-") as tmp:
            root = Path(tmp)
            daemon = MaildProcess(root, CONFIG.format(root=root, port=dovecot.imap_port,
                                                      batch=args.batch))
            daemon.start()
            assert daemon.process is not None
            samples: list[tuple[int, int]] = []
            start = time.perf_counter()
            while True:
                done = stored(root / "maild.db")
                samples.append((done, rss_kib(daemon.process.pid)))
                if done >= args.count or time.perf_counter() - start > 1800:
                    break
                time.sleep(0.5)
            drained = time.perf_counter() - start
            daemon.stop()
            with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as client:
                client.login("support", "supportpw")
                left = client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"]
                moved = client.folder_status("Processed", [b"MESSAGES"])[b"MESSAGES"]
    finally:
        dovecot.stop()

    def rss_at(share: float) -> int:
        return next(r for d, r in samples if d >= share * args.count)

    result = {"messages": args.count, "append_s": filled, "drain_s": drained,
              "per_second": args.count / drained, "rss_kib_10": rss_at(0.1),
              "rss_kib_50": rss_at(0.5), "rss_kib_100": rss_at(1.0),
              "rss_kib_max": max(r for _, r in samples), "inbox_left": left,
              "processed": moved, "pid": os.getpid()}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.count} messages appended in {filled:.1f} s; drained by maild in "
              f"{drained:.1f} s ({result['per_second']:.0f} msg/s, batch {args.batch})")
        print(f"intake RSS: {result['rss_kib_10'] / 1024:.1f} MiB at 10 %, "
              f"{result['rss_kib_50'] / 1024:.1f} MiB at 50 %, "
              f"{result['rss_kib_100'] / 1024:.1f} MiB at 100 %, "
              f"max {result['rss_kib_max'] / 1024:.1f} MiB")
        print(f"INBOX left {left}, Processed {moved}")
    return 0 if left == 0 and moved == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
