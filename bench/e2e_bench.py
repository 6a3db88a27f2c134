"""End-to-end benchmark: mail over SMTP into a real `maild run`, acknowledgements out.

Two servers are measured in the same run, on the same generated mails:

- **ceiling**: an aiosmtpd listener that only commits each message's bytes to SQLite (WAL,
  synchronous=FULL, one transaction per message) — the most any SMTP-to-SQLite service can do on
  this machine;
- **maild**: `maild run` as a subprocess (SMTP listener, threading, Maildir outbox).

For each: N mails from C client connections as fast as they go (accepted messages/s, CPU ms per
message of the server process — for maild, the intake — p50/p99 from DATA to 250), then a paced
run at `--rate` messages/s for the accept latency under a steady load. For maild, also the time
until every acknowledgement is written (an outbox row, committed: the issue #12
"acknowledgements per second"; how many were written when the last mail was accepted, and the
rate after that, when the worker has the machine to itself), the time until every mail (the
acknowledgement and two staff notices a ticket) is delivered into the Maildir, and the
worker's and the sender's CPU per message. (Before 2026-12-03 the line said "all acks in
outbox after" for what is now "every mail delivered after".) Numbers only; nothing here passes
or fails.

    .venv/bin/python bench/e2e_bench.py [--count 2000] [--clients 4] [--rate 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.servers import ServiceManager, wait_port  # noqa: E402
from tests.smtp_sink import free_port  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import machine  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MAILS_PER_NEW = 3  # the acknowledgement and a notice to each of the two staff members

CEILING_SERVER = r'''
import signal, sqlite3, sys, threading
from aiosmtpd.controller import Controller
db = sqlite3.connect(sys.argv[1], isolation_level=None, check_same_thread=False)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE inbound (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
lock = threading.Lock()
class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO inbound (raw) VALUES (?)", (envelope.original_content,))
            db.execute("COMMIT")
        return "250 OK"
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[2]),
                        decode_data=False)
controller.start()
signal.sigwait({signal.SIGTERM, signal.SIGINT})
controller.stop()
'''

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]

[smtp]
listen = "127.0.0.1:{port}"

[outbound]
transport = "maildir"
maildir = "{root}/outbox"

# Two staff members: a new ticket owes the customer's acknowledgement and a staff notice to each
# (the issue #12 workload), so outgoing mail is measured as it is in use.
[[staff]]
email = "alice@example.com"
name = "Alice"

[[staff]]
email = "bob@example.com"
name = "Bob"
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mib(pid: int) -> tuple[float, float, float]:
    """(current, peak, proportional) resident set size of `pid` in MiB, from /proc (VmRSS,
    VmHWM, and Pss: each page shared with other processes, as the interpreter's are, counted
    as its share)."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = {key: int(value.split()[0]) for key, value in
           (line.split(":", 1) for line in status.splitlines()) if key in ("VmRSS", "VmHWM")}
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    pss = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return kib["VmRSS"] / 1024, kib["VmHWM"] / 1024, pss / 1024


def family(intake: int) -> list[int]:
    """`maild run` and every process it started (the worker): all maild processes, as the
    issue counts memory."""
    children = [int(child) for task in Path(f"/proc/{intake}/task").iterdir()
                for child in (task / "children").read_text().split()]
    return [intake, *children]


def worker_pid(intake: int) -> int:
    """The worker process `maild run` starts: its child `python -P -m maild.daemon.worker`
    (in checkouts before 2026-12-02, its multiprocessing child; `--source` measures those)."""
    pid = child_pid(intake, (b"maild.daemon.worker", b"spawn_main"), 30.0)
    if pid is None:
        raise TimeoutError("maild run started no worker process")
    return pid


def sender_pid(intake: int) -> int | None:
    """The sender process `maild run` starts (`python -P -m maild.daemon.sender`); None in
    checkouts before 2026-12-06, where the worker delivered."""
    return child_pid(intake, (b"maild.daemon.sender",), 5.0)


def child_pid(intake: int, names: tuple[bytes, ...], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{intake}/task").iterdir():
            for child in (task / "children").read_text().split():
                command = Path(f"/proc/{child}/cmdline").read_bytes()
                if any(name in command for name in names):
                    return int(child)
        time.sleep(0.1)
    return None


def make_mails(count: int, tag: str) -> list[bytes]:
    mails = []
    for i in range(count):
        msg = EmailMessage()
        msg["From"] = f"Customer {i} <customer{i}@example.org>"
        msg["To"] = "support@example.com"
        msg["Subject"] = (f"Принтер {i} не печатает" if i % 3 == 0
                          else f"Problem {i}: the export fails")
        msg["Message-ID"] = f"<bench-{tag}-{i}@example.org>"
        msg.set_content(("Здравствуйте! Не работает печать.\n" if i % 3 == 0
                         else "Hello, the export fails with error 42.\n") * 20)
        mails.append(msg.as_bytes(policy=SMTP))
    return mails


def send_all(port: int, mails: list[bytes], clients: int, rate: float | None) -> dict[str, Any]:
    """Send `mails` over `clients` connections; returns wall time and DATA->250 latencies."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic()

    def client(index: int) -> None:
        mine = list(range(index, len(mails), clients))
        local: list[float] = []
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as conn:
            conn.ehlo()
            for n in mine:
                if rate:  # paced: message n is due at start + n / rate
                    delay = start + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                conn.mail("customer@example.org")
                conn.rcpt("support@example.com")
                t0 = time.perf_counter()
                code, reply = conn.data(mails[n])
                local.append(time.perf_counter() - t0)
                if code != 250:
                    with lock:
                        errors.append(f"{code} {reply!r}")
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    latencies.sort()
    return {
        "messages": len(mails),
        "seconds": wall,
        "per_second": len(mails) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": errors[:5],
    }


def measure(pid: int, port: int, mails: list[bytes], clients: int) -> dict[str, Any]:
    cpu0 = cpu_seconds(pid)
    result = send_all(port, mails, clients, None)
    result["cpu_ms_per_message"] = 1000 * (cpu_seconds(pid) - cpu0) / len(mails)
    return result


def ceiling(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", CEILING_SERVER, str(root / "ceiling.db"),
                               str(port)])
    try:
        wait_port(port)
        fast = measure(server.pid, port, make_mails(args.count, "c-fast"), args.clients)
        paced = send_all(port, make_mails(args.paced, "c-paced"), args.clients, args.rate)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {"fast": fast, "paced": paced}


class AckWatch(threading.Thread):
    """Counts the acknowledgements in maild's outbox every 20 ms (a reader of the WAL database
    never holds up its writer) until `count` are written: when, and how many at any moment."""

    def __init__(self, database: Path, count: int, start: float) -> None:
        super().__init__(daemon=True)
        self.database, self.count = database, count
        self.written, self.done_at = 0, start
        self.start()

    def run(self) -> None:
        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            while self.written < self.count:
                time.sleep(0.02)
                self.written = db.execute(
                    "SELECT count(*) FROM outbox WHERE kind = 'ack'").fetchone()[0]
            self.done_at = time.monotonic()
        finally:
            db.close()


def maild(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    (root / "maild.toml").write_text(CONFIG.format(root=root, port=port))
    outbox = root / "outbox" / "new"
    log = open(root / "maild.log", "wb")  # noqa: SIM115
    subprocess.run([sys.executable, "-m", "maild", "--config", str(root / "maild.toml"),
                    "init"], check=True, stdout=log, stderr=log, cwd=REPO)
    manager = ServiceManager()  # measured from READY=1: the daemon's start is not a mail's
    server = subprocess.Popen([sys.executable, "-m", "maild", "--config",
                               str(root / "maild.toml"), "run"], stdout=log, stderr=log,
                              cwd=REPO, env={**os.environ, "NOTIFY_SOCKET": manager.address})
    try:
        manager.wait_ready()
        wait_port(port)
        worker, sender = worker_pid(server.pid), sender_pid(server.pid)
        cpu0, worker_cpu0 = cpu_seconds(server.pid), cpu_seconds(worker)
        sender_cpu0 = cpu_seconds(sender) if sender else 0.0
        mails = make_mails(args.count, "m-fast")  # built first: no part of maild's time
        start = time.monotonic()
        acks = AckWatch(root / "maild.db", args.count, start)
        fast = send_all(port, mails, args.clients, None)
        fast["acks_when_accepted"] = acks.written  # what the worker had done meanwhile
        accepted = time.monotonic()
        profiler = _profile(worker, args.profile) if args.profile else None
        while len(os.listdir(outbox) if outbox.exists() else []) < args.count * MAILS_PER_NEW:
            if time.monotonic() - start > 600:
                raise TimeoutError("the mails did not all arrive within 10 minutes")
            time.sleep(0.05)
        fast["all_delivered_after_s"] = time.monotonic() - start
        acks.join()
        fast["acks_written_after_s"] = acks.done_at - start
        after = max(acks.done_at - accepted, 1e-9)
        fast["acks_per_second_after_accept"] = \
            (args.count - fast["acks_when_accepted"]) / after
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        fast["cpu_ms_per_message"] = 1000 * (cpu_seconds(server.pid) - cpu0) / args.count
        fast["worker_cpu_ms_per_message"] = \
            1000 * (cpu_seconds(worker) - worker_cpu0) / args.count
        fast["sender_cpu_ms_per_message"] = \
            1000 * (cpu_seconds(sender) - sender_cpu0) / args.count if sender else 0.0
        after_fast = [rss_mib(pid) for pid in family(server.pid)]
        paced = send_all(port, make_mails(args.paced, "m-paced"), args.clients, args.rate)
        time.sleep(2)  # the worker threads the paced mail's tail
        processes = family(server.pid)
        after_paced = [rss_mib(pid) for pid in processes]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
        manager.close()
    # Flat means: the paced run, after the fast one, did not grow what the processes hold.
    memory = {"intake_rss_mib": after_paced[0][0],
              "worker_rss_mib": after_paced[processes.index(worker)][0],
              "processes": len(processes),
              "rss_after_fast_mib": sum(rss for rss, _, _ in after_fast),
              "rss_after_paced_mib": sum(rss for rss, _, _ in after_paced),
              "pss_after_paced_mib": sum(pss for _, _, pss in after_paced),
              "peak_rss_sum_mib": sum(peak for _, peak, _ in after_paced)}
    return {"fast": fast, "paced": paced, "memory": memory}


def _profile(pid: int, path: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the worker until SIGINT, its collapsed stacks written to `path`
    (`bench/profile_top.py` turns them into the table in bench/README.md)."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "250",
                             "--format", "raw", "--output", path, "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="mails in the fast run")
    parser.add_argument("--paced", type=int, default=2000, help="mails in the paced run")
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s in the paced run")
    parser.add_argument("--clients", type=int, default=4, help="SMTP client connections")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", metavar="PATH",
                        help="sample maild's worker with py-spy during the fast run")
    args = parser.parse_args()
    file_system = machine.FileSystemProbe()
    with tempfile.TemporaryDirectory(prefix="maild-e2e-") as tmp:
        root = Path(tmp)
        (root / "c").mkdir()
        (root / "m").mkdir()
        results = {"ceiling": ceiling(root / "c", args), "maild": maild(root / "m", args)}
    results["ratio"] = results["maild"]["fast"]["per_second"] / \
        results["ceiling"]["fast"]["per_second"]
    results["file_system"] = file_system.line()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(results["file_system"])
    for name in ("ceiling", "maild"):
        fast, paced = results[name]["fast"], results[name]["paced"]
        print(f"{name:8} fast: {fast['per_second']:7.1f} msg/s accepted, "
              f"{fast['cpu_ms_per_message']:5.2f} CPU ms/msg, DATA->250 p50 "
              f"{fast['p50_ms']:6.2f} ms p99 {fast['p99_ms']:6.2f} ms"
              + (f", every acknowledgement written after {fast['acks_written_after_s']:.1f} s"
                 f" ({fast['acks_when_accepted']} when the last mail was accepted, then "
                 f"{fast['acks_per_second_after_accept']:.0f}/s), every mail delivered after "
                 f"{fast['all_delivered_after_s']:.1f} s"
                 f" (worker {fast['worker_cpu_ms_per_message']:.2f}, sender "
                 f"{fast['sender_cpu_ms_per_message']:.2f} CPU ms/msg)"
                 if "all_delivered_after_s" in fast else "")
              + (f", errors {fast['errors']}" if fast["errors"] else ""))
        print(f"{name:8} paced at {args.rate:.0f}/s: achieved {paced['per_second']:6.1f} msg/s, "
              f"DATA->250 p50 {paced['p50_ms']:6.2f} ms p99 {paced['p99_ms']:6.2f} ms")
    memory = results["maild"]["memory"]
    print(f"maild RSS: intake {memory['intake_rss_mib']:.0f} MiB, worker "
          f"{memory['worker_rss_mib']:.0f} MiB; all {memory['processes']} processes after the "
          f"fast run {memory['rss_after_fast_mib']:.0f} MiB, after the paced run "
          f"{memory['rss_after_paced_mib']:.0f} MiB (PSS {memory['pss_after_paced_mib']:.0f}"
          f" MiB); sum of the peaks {memory['peak_rss_sum_mib']:.0f} MiB")
    print(f"maild / ceiling (accepted msg/s, fast run): {100 * results['ratio']:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
