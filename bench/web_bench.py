"""Web channel benchmark: request forms through a real `maild run`, answered with the ticket.

Each submission is what a browser does: GET the form (its token and cookie), then POST it; the
timed answer is the POST's — stored, threaded by the worker, acknowledged, and the page with the
number back. Two runs on one daemon:

- **fast**: N submissions from C client threads as fast as they go: submissions/s, CPU ms per
  submission of all maild processes, p50/p99 answer time;
- **paced**: submissions started at `--rate` per second (default 20) for `--seconds`: p50/p99
  answer time under a steady load.

Every submission comes from another address (the hourly cap of acknowledgements to one address
would otherwise hold them back) and staff notices are off, so the run measures the form path.
Numbers only; nothing here passes or fails.

    .venv/bin/python bench/web_bench.py [--count 300] [--clients 4] [--rate 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.servers import wait_port  # noqa: E402
from tests.smtp_sink import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"
[mail]
support_address = "support@example.com"
[web]
listen = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"
secret_file = "web.key"
[outbound]
maildir = "{root}/outbox"
[[staff]]
email = "alice@example.com"
[notify]
new_ticket = false
follow_up = false
"""
TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def submit(client: httpx.Client, n: int, tag: str) -> float:
    """One submission, form and post; the seconds the post took (the answer time)."""
    token = TOKEN.search(client.get("/").text)
    assert token, "no form token"
    # The rate limit is per client address, and every client here is 127.0.0.1: each
    # submission comes "through a proxy" from an address of its own (maild trusts the
    # X-Forwarded-For of a peer on this machine).
    forwarded = {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}
    start = time.perf_counter()
    page = client.post("/", headers=forwarded, data={
        "csrf": token.group(1), "name": f"Customer {n}", "email": f"c{n}-{tag}@example.org",
        "subject": f"Request {n}", "body": "The printer prints nothing.\n" * 5,
        "priority": "normal"})
    elapsed = time.perf_counter() - start
    assert page.status_code == 200 and 'class="number"' in page.text, page.status_code
    return elapsed


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}


def fast(base: str, count: int, clients: int, pids: list[int]) -> dict[str, Any]:
    times: list[float] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for n in range(worker, count, clients):
                elapsed = submit(client, n, "fast")
                with lock:
                    times.append(elapsed)

    cpu0, start = cpu_seconds(pids), time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - start, cpu_seconds(pids) - cpu0
    return {"submissions": len(times), "per_second": len(times) / wall,
            "cpu_ms_per_submission": 1000 * cpu / len(times), **percentiles(times)}


def paced(base: str, rate: float, seconds: float) -> dict[str, Any]:
    times: list[float] = []
    lock = threading.Lock()
    total = int(rate * seconds)

    def one(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            elapsed = submit(client, n, "paced")
        with lock:
            times.append(elapsed)

    threads = []
    start = time.perf_counter()
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=one, args=(n,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return {"rate": rate, "submissions": len(times), **percentiles(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="maild-web-bench-") as tmp:
        root, port = Path(tmp), free_port()
        (root / "maild.toml").write_text(CONFIG.format(root=root, port=port))
        maild = [sys.executable, "-m", "maild", "--config", str(root / "maild.toml")]
        subprocess.run([*maild, "init"], check=True, capture_output=True)
        log = open(root / "maild.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([*maild, "run"], stdout=log, stderr=log, cwd=REPO)
        try:
            wait_port(port)
            time.sleep(1.0)
            pids = [server.pid, *children(server.pid)]
            base = f"http://127.0.0.1:{port}"
            result = {"fast": fast(base, args.count, args.clients, pids),
                      "paced": paced(base, args.rate, args.seconds)}
        finally:
            server.terminate()
            server.wait(timeout=60)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        f, p = result["fast"], result["paced"]
        print(f"web fast:  {f['submissions']} submissions from {args.clients} clients, "
              f"{f['per_second']:.1f}/s, {f['cpu_ms_per_submission']:.1f} CPU ms each, "
              f"answer p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms")
        print(f"web paced: {p['submissions']} submissions at {p['rate']:g}/s, "
              f"answer p50 {p['p50_ms']:.0f} ms, p99 {p['p99_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
