"""The threading worker alone, in process: CPU per new ticket and per follow-up, on SQLite.

e2e_bench measures the whole daemon under SMTP load, where the figures move with whatever else
the machine runs. This one stores the mails first (`maild.ingest.accept.accept`, not measured),
then times only the worker's own calls with `time.process_time()`:

- **thread**: `process_pending` until no row is `new` (parse, resolve, apply, commit);
- **deliver**: `Deliverer.deliver_due` into a Maildir until the outbox is empty.

Two phases: `--count` new-ticket mails (two staff members, so each owes three mails: the
acknowledgement and two notices), then one follow-up from each customer to their ticket
(`Re: [Ticket#N] ...`, In-Reply-To the acknowledgement; each owes a notice to both staff, as the
tickets have no owner). Each `--source` (a checkout's folder; default this one) runs in a fresh
process with that checkout's `maild` first on PYTHONPATH; the sources take turns, `--runs`
times, and the least of each source's runs is printed: CPU time only grows with what else the
machine runs (caches, the other hyperthread), so the quietest run is the closest to the code's
own cost, and a before and an after measured in one run share the machine's load.

With `--workload peer` the mails are peer_bench's (bench/workload.py: four languages, HTML
alternatives and HTML-only bodies, 5 % with a 100 KB attachment, the follow-ups quoting the
first mail and answering the acknowledgement); the default `plain` is one short text/plain
body each, the shape of every figure in bench/README before issue #12's seventh part.

`--floor` (with `--workload peer`) adds a row in the same turns: bench/floor_worker.py, the
least that threading and delivering those mails costs in plain Python (parse, a few inserts,
each owed mail written out as bytes, Maildir files) without any of maild's rules — the floor
under any rewrite of the worker, and what the gap to it is made of.

    .venv/bin/python bench/worker_bench.py [--count 300] [--runs 3] [--source DIR ...]
                                           [--workload plain|peer] [--floor] [--json]
    git archive BASE | tar -x -C /tmp/base && \\
        .venv/bin/python bench/worker_bench.py --source /tmp/base --source .
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import machine  # noqa: E402

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]
language = "auto"

[outbound]
transport = "maildir"
maildir = "{root}/outbox"

[[staff]]
email = "alice@example.com"
name = "Alice"

[[staff]]
email = "bob@example.com"
name = "Bob"
"""

# Runs in the child, with the measured checkout's maild on sys.path. Prints one JSON line.
CHILD = r'''
import json, sqlite3, sys, time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from maild.app import App
from maild.config import load
from maild.db import init
from maild.ingest.accept import accept
from maild.threading import process_pending

root, count, shape = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, sys.argv[4])  # this checkout's bench/, for workload.py
import workload
app = App(load(root / "maild.toml"))
init(app.engine, app.settings)
deliverer = app.deliverer()
# Checkouts before 0acff4f (2026-12-07) took the SQLAlchemy engine where today's take the pool.
store = getattr(app, "pool", None) or app.engine


def mail(i, subject, body, message_id, in_reply_to=None):
    msg = EmailMessage()
    msg["From"] = f"Customer {i} <customer{i}@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = msg["References"] = f"<{in_reply_to}>"
    msg.set_content(body * 20)
    return msg.as_bytes(policy=SMTP)


def phase(mails):
    for raw in mails:
        accept(store, raw, source="smtp", now=datetime.now(UTC),
               envelope_from="customer@example.org")
    start = time.process_time()
    while process_pending(store, app.settings, app.templates, app.clock, 100):
        pass
    threaded = time.process_time()
    while deliverer.deliver_due(app.clock, limit=100):
        pass
    done = time.process_time()
    return {"thread_ms": 1000 * (threaded - start) / len(mails),
            "deliver_ms": 1000 * (done - threaded) / len(mails)}


if shape == "peer":
    originals = workload.new_tickets(count, 1)
    new = phase([workload.render(m) for m in originals])
else:
    new = phase([mail(i, f"Принтер {i} не печатает" if i % 3 == 0
                      else f"Problem {i}: export fails",
                      "Здравствуйте! Не работает печать.\n" if i % 3 == 0
                      else "Hello, the export fails with error 42.\n", f"new-{i}@example.org")
                 for i in range(count)])
db = sqlite3.connect(root / "maild.db")
acks = db.execute("SELECT t.customer, t.number, t.subject, o.message_id FROM outbox o "
                  "JOIN ticket t ON t.id = o.ticket_id WHERE o.kind = 'ack' "
                  "ORDER BY t.id").fetchall()
db.close()
if shape == "peer":
    by_address = {m.address: m for m in originals}
    follow = phase([workload.render(f, subject=f"Re: [Ticket#{number}] {f.subject}",
                                    in_reply_to=f"<{ack}>",
                                    references=[by_address[customer].message_id, f"<{ack}>"])
                    for f, (customer, number, subject, ack) in zip(
                        workload.follow_ups([by_address[a[0]] for a in acks], 1), acks,
                        strict=True)])
else:
    follow = phase([mail(int(customer.removeprefix("customer").split("@")[0]),
                         f"Re: [Ticket#{number}] {subject}", "Thank you, one more thing.\n",
                         f"follow-{number}@example.org", ack)
                    for customer, number, subject, ack in acks])
db = sqlite3.connect(root / "maild.db")
states = dict(db.execute("SELECT state, count(*) FROM inbound GROUP BY state").fetchall())
events = db.execute("SELECT count(*) FROM event WHERE type = 'message_received'").fetchone()[0]
mails = db.execute("SELECT count(*) FROM outbox WHERE state = 'sent'").fetchone()[0]
print(json.dumps({"new": new, "follow_up": follow, "inbound": states, "followed": events,
                  "sent": mails}))
'''


FLOOR = Path("floor (plain Python)")
"""The pseudo-source of `--floor`: bench/floor_worker.py instead of a checkout's maild."""


def run_once(source: Path, count: int, shape: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maild-worker-bench-") as tmp:
        root = Path(tmp)
        (root / "maild.toml").write_text(CONFIG.format(root=root))
        env = {**os.environ, "PYTHONPATH": str(source)}
        child = [str(REPO / "bench" / "floor_worker.py"), str(root), str(count)] \
            if source == FLOOR else ["-c", CHILD, str(root), str(count), shape]
        done = subprocess.run([sys.executable, *child, str(REPO / "bench")], env=env,
                              capture_output=True, text=True, cwd=root)
        if done.returncode != 0:
            raise RuntimeError(f"{source}: {done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {"done": 2 * count}
    if result["inbound"] != expected or result["followed"] != count \
            or result["sent"] != 3 * count + 2 * count:
        raise RuntimeError(f"{source}: not every mail threaded and sent: {result}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="new tickets (and follow-ups)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each source, in turns")
    parser.add_argument("--source", action="append", default=[],
                        help="a checkout whose maild to measure (repeatable; default: this one)")
    parser.add_argument("--workload", choices=("plain", "peer"), default="plain",
                        help="short text/plain mails, or peer_bench's (bench/workload.py)")
    parser.add_argument("--floor", action="store_true",
                        help="also run bench/floor_worker.py, the least Python can do for "
                             "these mails (peer mails only)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.floor and args.workload != "peer":
        parser.error("--floor runs on the peer mails: add --workload peer")
    sources = [Path(s).resolve() for s in args.source] or [REPO]
    if args.floor:
        sources.append(FLOOR)
    runs: dict[Path, list[dict[str, Any]]] = {s: [] for s in sources}
    file_system = machine.FileSystemProbe()
    for _ in range(args.runs):
        for source in sources:
            runs[source].append(run_once(source, args.count, args.workload))
    summary = {str(s): {phase: {part: min(r[phase][part] for r in found)
                                for part in ("thread_ms", "deliver_ms")}
                        for phase in ("new", "follow_up")}
               for s, found in runs.items()}
    probed = file_system.line()
    if args.json:
        print(json.dumps({**summary, "file_system": probed}, indent=2))
        return 0
    print(probed)
    print(f"CPU ms per mail, least of {args.runs} runs of {args.count} ({args.workload} mails):")
    print(f"{'source':40} {'new: thread':>12} {'deliver':>8} {'follow-up: thread':>18} "
          f"{'deliver':>8}")
    for source, found in summary.items():
        print(f"{source[-40:]:40} {found['new']['thread_ms']:12.2f} "
              f"{found['new']['deliver_ms']:8.2f} {found['follow_up']['thread_ms']:18.2f} "
              f"{found['follow_up']['deliver_ms']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
