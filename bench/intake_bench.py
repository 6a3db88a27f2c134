"""The intake alone: what `maild run`'s SMTP listener spends per message, the worker held still.

For each `--source` (a checkout; default this one), in turns, `--runs` times: a fresh
installation (e2e_bench's config), `maild run` of that checkout, its worker stopped with
SIGSTOP so that only the intake works (mail waits in the spool), `--count` mails from
`--clients` connections as fast as they go; printed: the intake's CPU ms per message (utime +
stime from /proc), accepted messages/s and the p99 from DATA to 250. The worker is let go and
the daemon stopped after each run. Numbers only; nothing here passes or fails.

`--workload peer` sends peer_bench's new-ticket mails (bench/workload.py: 8 KB on average,
HTML alternatives, 5 % with a 100 KB attachment) instead of e2e_bench's short plain ones.

    .venv/bin/python bench/intake_bench.py [--count 4000] [--clients 4] [--runs 2]
                                           [--source DIR ...] [--workload plain|peer]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_bench import (
    CONFIG,
    REPO,
    cpu_seconds,
    free_port,
    make_mails,
    send_all,
    wait_port,
    worker_pid,
)


def mails_of(workload_name: str, count: int, tag: str) -> list[bytes]:
    if workload_name == "peer":
        import workload  # bench/workload.py
        return [workload.render(m) for m in workload.new_tickets(count, 1)]
    return make_mails(count, tag)


def run_once(source: Path, mails: list[bytes], clients: int) -> dict[str, float]:
    count = len(mails)
    with tempfile.TemporaryDirectory(prefix="maild-intake-bench-") as tmp:
        root, port = Path(tmp), free_port()
        config = root / "maild.toml"
        config.write_text(CONFIG.format(root=root, port=port))
        env = {**os.environ, "PYTHONPATH": str(source)}
        maild = [sys.executable, "-m", "maild", "--config", str(config)]
        subprocess.run([*maild, "init"], check=True, env=env, cwd=root,
                       stdout=subprocess.DEVNULL)
        with open(root / "maild.log", "wb") as log:
            server = subprocess.Popen([*maild, "run"], env=env, cwd=root, stdout=log,
                                      stderr=log)
        try:
            wait_port(port)
            worker = worker_pid(server.pid)
            os.kill(worker, signal.SIGSTOP)
            try:
                before = cpu_seconds(server.pid)
                sent = send_all(port, mails, clients, None)
                spent = cpu_seconds(server.pid) - before
            finally:
                os.kill(worker, signal.SIGCONT)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    return {"cpu_ms": 1000 * spent / count, "per_second": sent["per_second"],
            "p99_ms": sent["p99_ms"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--source", action="append", type=Path, default=[])
    parser.add_argument("--workload", choices=("plain", "peer"), default="plain")
    args = parser.parse_args()
    sources = [s.resolve() for s in args.source] or [REPO]
    for run in range(args.runs):
        for source in sources:
            mails = mails_of(args.workload, args.count, f"i{run}-{source.name}")
            result = run_once(source, mails, args.clients)
            print(f"{source!s:40} intake {result['cpu_ms']:5.2f} CPU ms/msg, "
                  f"{result['per_second']:6.1f} msg/s accepted, "
                  f"DATA->250 p99 {result['p99_ms']:6.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
