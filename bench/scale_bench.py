"""Several `maild run` on one PostgreSQL database: 1 worker against 3, on the same mails.

A private PostgreSQL cluster (tests/pg.py; durable by default: fsync and synchronous commit
on, as in production) and, for each round, a fresh database and `--workers` instances of
`maild run`, each with its own config, log and SMTP listener, all delivering into one outbox
Maildir (as the instances of systemd/maild@.service share /var/lib/maild). `--count` mails go
out from `--clients` connections spread over the listeners as fast as they are answered, of
one kind a round:

- `new`: each from a customer of its own, a new ticket each; done when every acknowledgement
  is in the Maildir. Each takes a ticket number from the day's counter row.
- `reply`: first `--count` new tickets (untimed), then one reply from each ticket's customer
  naming it by its tag; done when every inbound row is threaded. No number, no mail sent.

Reported per round: accepted msg/s (the last 250), end-to-end msg/s (until the last
acknowledgement), CPU ms per message of all maild processes (intakes and workers) and of the
PostgreSQL server, how many database sessions were running a statement on average and how many
of them were waiting for a row lock, and the load average. Each round is checked: every inbound
row done, one ticket and one sent acknowledgement per mail. Numbers only; nothing here passes or
fails.

    .venv/bin/python bench/scale_bench.py [--count 1500] [--clients 6] [--workers 1,3]
                                          [--kinds new,reply] [--rounds 2] [--no-durable]
                                          [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.e2e_bench import TICK, make_mails, send_all  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402
from tests.servers import wait_port  # noqa: E402
from tests.smtp_sink import free_port  # noqa: E402

CONFIG = """
[database]
url = "{url}"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]
secret_file = "{outbox}.key"

[smtp]
listen = "127.0.0.1:{port}"

[outbound]
transport = "maildir"
maildir = "{outbox}"

[notify]
new_ticket = false
follow_up = false

[[staff]]
email = "alice@example.com"
name = "Alice"
"""


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu(pids: list[int], reaped: bool = False) -> float:
    """CPU seconds of the processes (with `reaped`: also of their children already waited
    for, which is how PostgreSQL's ended backends count)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if reaped:
            total += int(fields[13]) + int(fields[14])
    return total / TICK


def postgres_cpu(cluster: PostgresCluster) -> float:
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    return cpu([postmaster], reaped=True) + cpu(tree(postmaster)[1:])


class LockSampler:
    """Samples pg_stat_activity of the database every 20 ms while the round runs: how many
    maild connections are running a statement, and how many of them wait for a lock another
    transaction holds (a row lock: `transactionid` or `tuple`)."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url.replace("postgresql+psycopg", "postgresql")
        self.samples: list[tuple[int, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            while not self.stop.wait(0.02):
                row = connection.execute(
                    "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE "
                    "state = 'active' AND wait_event_type = 'Lock') FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                if row is not None:
                    self.samples.append((int(row[0]), int(row[1])))

    def __enter__(self) -> LockSampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def summary(self) -> dict[str, float]:
        n = len(self.samples) or 1
        return {"active_mean": sum(a for a, _ in self.samples) / n,
                "lock_wait_mean": sum(w for _, w in self.samples) / n}


def one_round(cluster: PostgresCluster, workers: int, kind: str, args: argparse.Namespace,
              work: Path, tag: str) -> dict[str, Any]:
    """One round: `kind` "new" times new tickets (each acknowledged); "reply" first makes
    `--count` tickets (untimed), then times one customer reply on each (no mail sent)."""
    url = cluster.create_database()
    outbox = work / tag / "outbox"
    instances: list[tuple[subprocess.Popen[bytes], int, Any]] = []
    try:
        for index in range(workers):
            root = work / tag / f"w{index}"
            root.mkdir(parents=True)
            port = free_port()
            config = root / "maild.toml"
            config.write_text(CONFIG.format(url=url, port=port, outbox=outbox))
            log = open(root / "maild.log", "wb")  # noqa: SIM115
            subprocess.run([sys.executable, "-m", "maild", "--config", str(config), "init"],
                           check=True, stdout=log, stderr=log, cwd=REPO)
            process = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config),
                                        "run"], stdout=log, stderr=log, cwd=REPO)
            instances.append((process, port, log))
        for _, port, _ in instances:
            wait_port(port, timeout=60)
        time.sleep(1.0)  # every worker started and idle
        ports = [port for _, port, _ in instances]
        mails = make_mails(args.count, tag)
        if kind == "reply":
            send_all_spread(ports, mails, args.clients)
            wait_for(lambda: acks(outbox) >= args.count)
            mails = replies(url, tag)
        load_before = os.getloadavg()[0]
        xacts0 = transactions(url)
        pg0 = postgres_cpu(cluster)
        maild0 = sum(cpu(tree(p.pid)) for p, _, _ in instances)
        start = time.monotonic()
        with LockSampler(url) as sampler:
            sent = send_all_spread(ports, mails, args.clients)
            if kind == "new":
                wait_for(lambda: acks(outbox) >= args.count)
            else:
                wait_for(lambda: rows(url, "SELECT count(*) FROM inbound WHERE state <> 'done'")
                         == [(0,)], interval=0.1)
            done_after = time.monotonic() - start
        maild_cpu = sum(cpu(tree(p.pid)) for p, _, _ in instances) - maild0
        pg_cpu = postgres_cpu(cluster) - pg0
        xacts = transactions(url) - xacts0
        result = {
            "workers": workers, "kind": kind, "messages": args.count, "clients": args.clients,
            "accepted_per_second": args.count / sent["seconds"],
            "p50_ms": sent["p50_ms"], "p99_ms": sent["p99_ms"], "errors": sent["errors"],
            "all_done_after_s": done_after, "end_to_end_per_second": args.count / done_after,
            "maild_cpu_ms_per_message": 1000 * maild_cpu / args.count,
            "postgres_cpu_ms_per_message": 1000 * pg_cpu / args.count,
            "transactions_per_message": xacts / args.count,
            "load_before": load_before, "load_after": os.getloadavg()[0],
            **sampler.summary(),
        }
    finally:
        for process, _, _ in instances:
            process.send_signal(signal.SIGTERM)
        for process, _, log in instances:
            process.wait(timeout=120)
            log.close()
    result["check"] = check(url, args.count, kind)
    cluster.drop_database(url)
    return result


def acks(outbox: Path) -> int:
    new = outbox / "new"
    return len(os.listdir(new)) if new.exists() else 0


def wait_for(done: Callable[[], bool], interval: float = 0.05) -> None:
    deadline = time.monotonic() + 900
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the round did not finish within 15 minutes")
        time.sleep(interval)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as connection:
        return connection.execute(sql).fetchall()


def transactions(url: str) -> int:
    """Transactions the database has committed or rolled back so far (the statistics lag
    by up to a second: read after the round has been quiet for a moment)."""
    time.sleep(1.0)
    [(count,)] = rows(url, "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = current_database()")
    return int(count)


def replies(url: str, tag: str) -> list[bytes]:
    """One reply from each ticket's customer, naming the ticket by its tag."""
    mails = []
    for n, (number, customer) in enumerate(rows(url, "SELECT number, customer FROM ticket "
                                                     "ORDER BY id")):
        msg = EmailMessage()
        msg["From"] = customer
        msg["To"] = "support@example.com"
        msg["Subject"] = f"Re: [Ticket#{number}] more details"
        msg["Message-ID"] = f"<bench-{tag}-reply-{n}@example.org>"
        msg.set_content("It still fails, here is the log.\n" * 20)
        mails.append(msg.as_bytes(policy=SMTP))
    return mails


def send_all_spread(ports: list[int], mails: list[bytes], clients: int) -> dict[str, Any]:
    """`clients` connections, client i to listener i mod len(ports); mails dealt round-robin."""
    from concurrent.futures import ThreadPoolExecutor

    groups = [mails[i::clients] for i in range(clients)]
    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(lambda i: send_all(ports[i % len(ports)], groups[i], 1, None),
                              range(clients)))
    seconds = time.monotonic() - start
    p50 = sorted(p["p50_ms"] for p in parts)[len(parts) // 2]
    return {"seconds": seconds, "p50_ms": p50, "p99_ms": max(p["p99_ms"] for p in parts),
            "errors": [e for p in parts for e in p["errors"]][:5]}


def check(url: str, count: int, kind: str) -> str:
    inbound = rows(url, "SELECT state, count(*) FROM inbound GROUP BY state")
    [tickets] = rows(url, "SELECT count(*), count(DISTINCT number) FROM ticket")
    sent = rows(url, "SELECT kind, state, count(*) FROM outbox GROUP BY kind, state")
    stored = count * (2 if kind == "reply" else 1)
    ok = inbound == [("done", stored)] and tickets == (count, count) and \
        sent == [("ack", "sent", count)]
    return "OK" if ok else f"FAILED: inbound {inbound}, tickets {tickets}, outbox {sent}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1500, help="mails per round")
    parser.add_argument("--clients", type=int, default=6, help="SMTP client connections")
    parser.add_argument("--workers", default="1,3", help="instances per round, in turn")
    parser.add_argument("--kinds", default="new,reply",
                        help="new: new tickets, acknowledged; reply: a reply on each ticket")
    parser.add_argument("--rounds", type=int, default=2, help="times through --workers")
    parser.add_argument("--no-durable", action="store_true",
                        help="PostgreSQL with fsync off, as the tests run it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    cluster = PostgresCluster(durable=not args.no_durable)
    results = []
    try:
        cluster.start()
        with tempfile.TemporaryDirectory(prefix="maild-scale-") as tmp:
            for round_ in range(args.rounds):
                for kind in args.kinds.split(","):
                    for workers in counts:
                        result = one_round(cluster, workers, kind, args, Path(tmp),
                                           f"r{round_}-{kind}-{workers}")
                        results.append(result)
                        if not args.json:
                            print(line(result), flush=True)
    finally:
        cluster.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all(r["check"] == "OK" for r in results) else 1


def line(r: dict[str, Any]) -> str:
    what = "new tickets" if r["kind"] == "new" else "replies"
    return (f"{r['workers']} worker(s), {r['messages']} {what} from {r['clients']} clients: "
            f"accepted {r['accepted_per_second']:6.1f} msg/s (DATA->250 p50 {r['p50_ms']:.1f} ms,"
            f" p99 {r['p99_ms']:.1f} ms); all done after {r['all_done_after_s']:5.1f} s = "
            f"{r['end_to_end_per_second']:6.1f} msg/s end to end; CPU ms/msg maild "
            f"{r['maild_cpu_ms_per_message']:.1f}, postgres {r['postgres_cpu_ms_per_message']:.1f};"
            f" {r['transactions_per_message']:.1f} transactions/msg;"
            f" database sessions active {r['active_mean']:.2f}, of them waiting for a lock "
            f"{r['lock_wait_mean']:.2f}; load {r['load_before']:.1f}->{r['load_after']:.1f};"
            f" check {r['check']}"
            + (f"; errors {r['errors']}" if r["errors"] else ""))


if __name__ == "__main__":
    sys.exit(main())
