"""The kill campaign of issue #13: SMTP, IMAP (Dovecot), the pipe and the web form at once into
`maild run`, killed -9 at random moments while its relay fails, refuses and comes back; then
every promise checked from the database, Dovecot and the relay's record.

    .venv/bin/python bench/kill_campaign.py --kills 100 --mails 10000 --seed 13   # long form
    .venv/bin/python bench/kill_campaign.py --kills 5 --mails 200                 # short form

`--kills N`: kills -9, each of the worker, the intake, or both as a process group (drawn at
random), each when the count of answered mails passes a point drawn at random in its share;
`--mails M`: mails sent, each a new ticket, spread over the channels by the seed; `--seed S`:
the mail plan, the kill points and targets, and the relay's moods (up / 4xx / 5xx / down) come
from it (what the threads race to stays the machine's). `--keep DIR` keeps the installation
(database, logs) there for a look afterwards. What is sent, what is killed and what must hold
are described in tests/campaign.py; bench/README.md has the counts of the runs so far.

Prints the counts (mails per channel answered, stored, duplicates, lost, acknowledgements,
doubled acknowledgements, kills, restarts) and every violation; exits 1 on any violation.
Needs Dovecot (scripts/install-test-services). Run it niced on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.campaign import Campaign  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--settle-timeout", type=float, default=1800.0,
                        help="seconds the daemon may take to finish its backlog at the end")
    parser.add_argument("--keep", help="keep the installation in this folder")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="kill-campaign."))
    root.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    try:
        report = Campaign(root, kills=args.kills, mails=args.mails, seed=args.seed,
                          settle_timeout=args.settle_timeout, say=say).run()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps({"counts": report.counts, "violations": report.violations}, indent=2))
    else:
        print("\n".join(report.lines()))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
