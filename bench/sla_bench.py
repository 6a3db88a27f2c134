"""SLA timer benchmark: how long one tick takes on a big database.

Builds a SQLite database of `--tickets` tickets (default 1,000,000) of which `--open` (default
100,000) are open, through maild's own schema (`maild init`), with bulk inserts. Then times
`run_duties` — the code `maild tick` and the daemon's timer run — twice:

1. nothing due: every open ticket's next duty lies in the future;
2. `--due` tickets (default 1,000) due for escalation: each is escalated (one mail per staff
   member into the outbox, an event, a duty row).

Numbers only; nothing passes or fails. `.venv/bin/python bench/sla_bench.py [--json]`
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maild import config
from maild.app import App
from maild.clock import FixedClock
from maild.db import init
from maild.sla.duties import run_duties

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday, inside business hours
CONFIG = """
[database]
url = "sqlite:///{root}/sla.db"
[mail]
support_address = "support@example.com"
[outbound]
transport = "maildir"
maildir = "{root}/outbox"
[[staff]]
email = "alice@example.com"
name = "Alice"
[[staff]]
email = "bob@example.com"
name = "Bob"
[sla]
timezone = "Europe/Moscow"
business_hours = "Mon-Fri 09:00-18:00"
"""


def naive(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def populate(path: Path, tickets: int, open_: int) -> None:
    """Bulk-insert tickets: the open ones due at staggered future hours, the rest closed."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    queue = db.execute("SELECT id FROM queue ORDER BY id").fetchone()[0]
    created = NOW - timedelta(days=30)
    far = "9999-12-31 00:00:00"
    rows = []
    for i in range(tickets):
        is_open = i < open_
        next_due = naive(NOW + timedelta(hours=1 + i % 500)) if is_open else far
        rows.append((f"20261030{i:07d}", f"ticket {i}", "open" if is_open else "closed", 3,
                     queue, None, f"c{i}@example.org", "", "email", "en", naive(created),
                     naive(created), naive(created), None, None, 0, next_due))
    db.executemany(
        "INSERT INTO ticket (number, subject, status, priority, queue_id, owner, customer,"
        " customer_name, channel, language, created_at, updated_at, status_since,"
        " unattended_since, close_requested_at, breached, next_due_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.execute("ANALYZE")
    db.close()


def timed(app: App) -> tuple[float, int]:
    start = time.perf_counter()
    report = run_duties(app.pool, app.settings, app.templates, FixedClock(NOW), limit=10_000)
    return time.perf_counter() - start, len(report.escalations)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="maild-sla-") as tmp:
        root = Path(tmp)
        (root / "maild.toml").write_text(CONFIG.format(root=root))
        app = App(config.load(root / "maild.toml"))
        init(app.engine, app.settings)
        t0 = time.perf_counter()
        populate(root / "sla.db", args.tickets, args.open)
        build = time.perf_counter() - t0
        idle, _ = timed(app)
        idle_again, _ = timed(app)
        db = sqlite3.connect(root / "sla.db")
        db.execute("UPDATE ticket SET next_due_at = ?, unattended_since = ?, status_since = ?"
                   " WHERE id <= ?", (naive(NOW - timedelta(minutes=1)),
                                      naive(NOW - timedelta(hours=5)),
                                      naive(NOW - timedelta(hours=5)), args.due))
        db.execute("INSERT INTO status_change (ticket_id, at, status)"
                   " SELECT id, status_since, status FROM ticket WHERE id <= ?", (args.due,))
        db.commit()
        db.close()
        busy, escalated = timed(app)
        app.close()
    result = {"tickets": args.tickets, "open": args.open, "build_s": build,
              "tick_nothing_due_ms": 1000 * min(idle, idle_again),
              "tick_due": args.due, "tick_due_ms": 1000 * busy, "escalated": escalated,
              "ms_per_due_ticket": 1000 * busy / max(1, escalated)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"database: {args.tickets} tickets, {args.open} open (built in {build:.1f} s)")
        print(f"tick with nothing due: {result['tick_nothing_due_ms']:.2f} ms")
        print(f"tick with {args.due} due: {result['tick_due_ms']:.0f} ms, {escalated} escalated "
              f"({result['ms_per_due_ticket']:.2f} ms per ticket, 2 staff mails each)")
    return 0 if escalated == args.due else 1


if __name__ == "__main__":
    sys.exit(main())
