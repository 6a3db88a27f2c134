#!/usr/bin/env python3
"""Command start-up: wall and CPU time of single `maild` commands, each in a fresh process.

An operator's command and a Postfix pipe each start a new interpreter, so what they cost is
mostly what maild imports and builds before it does anything. This benchmark seeds one SQLite
installation with a realistic number of tickets (mail through `maild ingest`, then staff work
through `maild ticket assign|reply|note|close`, all in this process), then runs each command
`--runs` times as a fresh `python -m maild` process and prints the median wall and CPU
(user + system) milliseconds:

    maild --version
    maild ticket show N --json        (and plain; N a ticket with some correspondence)
    maild ticket list                 (and --json)
    maild status
    maild sla report
    maild ingest FILE                 (a new customer mail each run: stored, threaded,
                                       acknowledged, delivered to the Maildir)
    maild ingest FILE, maild run up   (the same with `maild run` running on the installation:
                                       the pipe hands the mail to the daemon's worker; the
                                       pipe's CPU, the daemon's CPU from the pipe's start until
                                       the three mails it owes are sent, and their sum)

and, for reference, a bare interpreter and one that only imports SQLAlchemy's ORM or SQLModel.
Children run with the environment an MTA or a shell gives them: bytecode cached, stdout
buffered (`PYTHONDONTWRITEBYTECODE` and `PYTHONUNBUFFERED` are dropped).

`--source DIR` (repeatable) runs the commands with another checkout's `maild` package on
`PYTHONPATH` — e.g. the branch point, extracted with `git archive` — against a copy of the same
seeded database, so before and after are measured in one run, under the same load:

    .venv/bin/python bench/cli_bench.py [--tickets 2000] [--runs 11] [--source DIR ...] [--json]

Numbers, never a pass or fail (DESIGN: speed goals are reported, not asserted).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import random
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_bench import CONFIG, TAG, NewTicket, Workload

from maild.cli import main as maild_main

REPO = Path(__file__).resolve().parent.parent


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`maild.cli.main(argv)` in this process, output captured (seeding only, not timed)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = maild_main(argv)
    return code, out.getvalue(), err.getvalue()


def seed(root: Path, tickets: int, seed_value: int) -> None:
    """An installation under `root` with `tickets` tickets, made the way maild makes them."""
    config = root / "maild.toml"
    config.write_text(CONFIG.format(root=root, tag=TAG), encoding="utf-8")
    cfg = ["--config", str(config)]
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.ERROR)
    code, _, err = run_main([*cfg, "init"])
    if code != 0:
        raise SystemExit(f"cli_bench: maild init failed: {err}")
    database = root / "var" / "maild.db"
    mails = root / "mails"
    mails.mkdir(exist_ok=True)

    def ack_of(ticket: NewTicket) -> str:
        if not ticket.ack_message_id:
            with contextlib.closing(sqlite3.connect(database)) as db:
                ticket.ack_message_id = db.execute(
                    "SELECT o.message_id FROM outbox o JOIN ticket t ON o.ticket_id = t.id "
                    "WHERE t.number = ? AND o.kind = 'ack' ORDER BY o.id LIMIT 1",
                    (ticket.number,)).fetchone()[0]
        return ticket.ack_message_id

    workload = Workload(seed_value, 0.3, 0.03, 100)
    numbers: list[str] = []
    started = time.monotonic()
    i = 0
    while len(numbers) < tickets:
        for new in workload.plan(min(200, 2 * (tickets - len(numbers)))):
            if len(numbers) >= tickets and new:
                continue
            mail = workload.new_ticket() if new else workload.follow_up(ack_of)
            path = mails / f"{i:06d}.eml"
            i += 1
            path.write_bytes(mail.raw)
            code, out, err = run_main([*cfg, "ingest", str(path)])
            if code != 0:
                raise SystemExit(f"cli_bench: ingest failed ({code}): {err}")
            if new:
                workload.tickets[-1].number = out.strip()
                numbers.append(out.strip())
        print(f"  seeded {len(numbers)} tickets from {i} mails "
              f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    shutil.rmtree(mails)

    # Staff work on them: most get an owner, many an answer, some a note, a quarter are closed.
    rng = random.Random(seed_value)
    for n, number in enumerate(numbers):
        staff = rng.choice(["alice@example.com", "bob@example.com"])
        steps: list[list[str]] = []
        if rng.random() < 0.6:
            steps.append(["ticket", "assign", number, staff])
        if rng.random() < 0.4:
            steps.append(["ticket", "reply", number, "--staff", staff, "--body",
                          "Thank you, we are looking into it. Could you send a screenshot?"])
        if rng.random() < 0.1:
            steps.append(["ticket", "note", number, "--staff", staff, "--body",
                          "Called the customer, waiting for the screenshot."])
        if rng.random() < 0.25:
            steps.append(["ticket", "close", number, "--staff", staff])
        for step in steps:
            code, _, err = run_main([*cfg, *step])
            if code != 0:
                raise SystemExit(f"cli_bench: {' '.join(step)} failed ({code}): {err}")
        if n % 500 == 499:
            print(f"  staff work on {n + 1} tickets ({time.monotonic() - started:.0f} s)",
                  file=sys.stderr)


def showcase_ticket(database: Path) -> str:
    """A ticket in the middle of the range with some correspondence (three messages or more)."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT t.number, count(m.id) FROM ticket t "
                          "JOIN message m ON m.ticket_id = t.id GROUP BY t.id "
                          "ORDER BY t.id").fetchall()
    busy = [number for number, messages in rows if messages >= 3] or [rows[0][0]]
    return str(busy[len(busy) // 2])


@dataclass
class Timing:
    wall_ms: list[float]
    cpu_ms: list[float]

    def summary(self) -> dict[str, float]:
        return {"wall_ms": round(statistics.median(self.wall_ms), 1),
                "cpu_ms": round(statistics.median(self.cpu_ms), 1),
                "wall_ms_min": round(min(self.wall_ms), 1),
                "cpu_ms_min": round(min(self.cpu_ms), 1)}


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """One fresh process: (wall ms, CPU ms of the child, stderr); fails loudly on exit != 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, cwd=cwd, check=False)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"cli_bench: {' '.join(argv)} exited {done.returncode}: "
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return 1000 * wall, 1000 * cpu, done.stderr.decode(errors="replace")


@dataclass
class Installation:
    """A copy of the seeded database, and how to run one checkout's maild on it."""

    source: Path
    work: Path
    env: dict[str, str]
    maild: list[str]
    number: str  # the ticket `ticket show` shows


def install(source: Path, seeded: Path, work: Path) -> Installation:
    work.mkdir(parents=True)
    (work / "var").mkdir()
    (work / "mails").mkdir()
    shutil.copy2(seeded / "var" / "maild.db", work / "var" / "maild.db")
    config = work / "maild.toml"
    config.write_text(CONFIG.format(root=work, tag=TAG), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(source)}
    # As an MTA or an operator's shell runs maild: bytecode cached, stdout buffered.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONUNBUFFERED", None)
    return Installation(source, work, env, [sys.executable, "-m", "maild", "--config",
                                            str(config)], showcase_ticket(work / "var" /
                                                                          "maild.db"))


def measure(installs: list[Installation], runs: int,
            seed_value: int) -> dict[str, dict[str, dict[str, float]]]:
    """Every command `runs` times for each installation, the installations taking turns run by
    run, so that the load of the machine drifting during the benchmark weighs on all alike."""
    def commands(at: Installation) -> dict[str, list[str]]:
        python = [sys.executable, "-c"]
        return {
            # what any command costs at least, and the ORM alone
            "(bare interpreter)": [*python, "pass"],
            "(import sqlalchemy)": [*python, "import sqlalchemy.orm"],
            "(import sqlmodel)": [*python, "import sqlmodel"],
            "--version": [*at.maild, "--version"],
            "ticket show N --json": [*at.maild, "ticket", "show", at.number, "--json"],
            "ticket show N": [*at.maild, "ticket", "show", at.number],
            "ticket list": [*at.maild, "ticket", "list"],
            "ticket list --json": [*at.maild, "ticket", "list", "--json"],
            "status": [*at.maild, "status"],
            "sla report": [*at.maild, "sla", "report"],
        }

    workload = Workload(seed_value + 1, 0.0, 0.0, 100)
    mails = iter(range(1_000_000))

    def ingest(at: Installation) -> list[str]:
        """`ingest` of a new customer mail, as a Postfix pipe runs it."""
        path = at.work / "mails" / f"{next(mails):06d}.eml"
        path.write_bytes(workload.new_ticket().raw)
        return [*at.maild, "ingest", str(path)]

    alone = "ingest (one mail)"
    handed = ("ingest, maild run up", "  maild run, that mail", "  pipe + maild run")
    names = [*commands(installs[0]), alone, *handed]
    timings = {at.source: {name: Timing([], []) for name in names} for at in installs}
    for name in names[:-len(handed)]:
        for run in range(runs + 1):  # the first run of each writes the bytecode: not counted
            for at in installs:
                argv = ingest(at) if name == alone else commands(at)[name]
                wall, cpu, _ = timed(argv, at.env, at.work)
                if run:
                    timings[at.source][name].wall_ms.append(wall)
                    timings[at.source][name].cpu_ms.append(cpu)
    daemons = [Daemon.start(at) for at in installs]
    try:
        for run in range(runs + 1):
            for at, daemon in zip(installs, daemons, strict=True):
                sent = daemon.sent()
                before = daemon.cpu_ns()
                wall0 = time.perf_counter()
                wall, cpu, _ = timed(ingest(at), at.env, at.work)
                daemon.wait_sent(sent + 3)  # the acknowledgement and two staff notices
                until_sent = 1000 * (time.perf_counter() - wall0)
                spent = (daemon.cpu_ns() - before) / 1e6
                if run:
                    for name, w, c in zip(handed, (wall, until_sent, until_sent),
                                          (cpu, spent, cpu + spent), strict=True):
                        timings[at.source][name].wall_ms.append(w)
                        timings[at.source][name].cpu_ms.append(c)
    finally:
        for daemon in daemons:
            daemon.stop()
    return {str(source): {name: t.summary() for name, t in found.items()}
            for source, found in timings.items()}


@dataclass
class Daemon:
    """`maild run` on an installation, and the CPU its processes (intake, worker) have used."""

    at: Installation
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, at: Installation) -> Daemon:
        log = open(at.work / "run.log", "ab")  # noqa: SIM115  (the child's, for its lifetime)
        process = subprocess.Popen([*at.maild, "run"], stdout=log, stderr=log, env=at.env,
                                   cwd=at.work)
        log.close()
        daemon = cls(at, process)
        deadline = time.monotonic() + 120
        while b"maild running" not in (at.work / "run.log").read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cli_bench: maild run did not start: "
                                 f"{(at.work / 'run.log').read_text()[-2000:]}")
            time.sleep(0.1)
        # Settled: the worker's first pass (timers over every ticket) is over.
        last = daemon.cpu_ns()
        while True:
            time.sleep(1.0)
            now = daemon.cpu_ns()
            if now - last < 20_000_000:  # under 2 % of a core
                return daemon
            last = now

    def pids(self) -> list[int]:
        """The intake and its descendants (the worker)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found = [self.process.pid]
        for pid in found:
            found.extend(child for child, parent in parents.items() if parent == pid)
        return found

    def cpu_ns(self) -> int:
        """CPU time of every thread of its processes, in ns (schedstat: finer than the 10 ms
        clock ticks of /proc/PID/stat, which a few milliseconds a mail would drown in)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError, ValueError):
                        total += int((task / "schedstat").read_text().split()[0])
        return total

    def sent(self) -> int:
        with contextlib.closing(sqlite3.connect(self.at.work / "var" / "maild.db",
                                                timeout=30)) as db:
            return int(db.execute("SELECT count(*) FROM outbox WHERE state = 'sent'")
                       .fetchone()[0])

    def wait_sent(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while self.sent() < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"cli_bench: maild run did not send the mail owed: "
                                 f"{(self.at.work / 'run.log').read_text()[-2000:]}")
            time.sleep(0.005)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def imported(source: Path, argv: list[str], config: Path) -> list[str]:
    """The heavy top-level packages a command leaves in sys.modules (for the report)."""
    heavy = ["sqlalchemy", "sqlmodel", "pydantic", "jinja2", "alembic", "starlette",
             "uvicorn", "aiosmtpd", "imapclient", "itsdangerous", "psycopg", "schedule"]
    script = ("import sys, runpy\n"
              f"sys.argv = ['maild', '--config', {str(config)!r}, *{argv!r}]\n"
              "try:\n    runpy.run_module('maild', run_name='__main__')\n"
              "except SystemExit:\n    pass\n"
              f"print(' '.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(source)}, cwd=config.parent,
                          check=False)
    return done.stderr.strip().splitlines()[-1].split() if done.stderr.strip() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=11, help="fresh processes per command")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--source", action="append", default=[],
                        help="a maild checkout to measure (default: this one); repeatable")
    parser.add_argument("--reuse", help="a work dir kept by --keep: skip seeding")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--dir", help="where the work dir goes (default: the system's temp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sources = [Path(s).resolve() for s in args.source] or [REPO]

    root = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="maild-cli-bench-",
                                                                     dir=args.dir))
    seeded = root / "seeded"
    try:
        if not (seeded / "var" / "maild.db").exists():
            seeded.mkdir(parents=True, exist_ok=True)
            print(f"seeding {args.tickets} tickets in {seeded}", file=sys.stderr)
            seed(seeded, args.tickets, args.seed)
        with contextlib.closing(sqlite3.connect(seeded / "var" / "maild.db")) as db:
            counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                      for table in ("ticket", "message", "event", "status_change", "outbox")}
        stamp = int(time.time())
        installs = [install(source, seeded, root / f"run-{k}-{stamp}")
                    for k, source in enumerate(sources)]
        print(f"measuring {', '.join(map(str, sources))}", file=sys.stderr)
        load_before = os.getloadavg()
        results: dict[str, Any] = measure(installs, args.runs, args.seed)
        modules: dict[str, dict[str, list[str]]] = {}
        for at in installs:
            modules[str(at.source)] = {
                " ".join(argv): imported(at.source, argv, at.work / "maild.toml")
                for argv in (["--version"], ["ticket", "show", at.number, "--json"],
                             ["ticket", "list"], ["status"], ["sla", "report"])}
            shutil.rmtree(at.work)
        report = {"python": platform.python_version(), "machine": platform.machine(),
                  "load_average": {"before": load_before, "after": os.getloadavg()},
                  "runs": args.runs, "database": counts,
                  "results": results, "heavy_modules_imported": modules}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            load = " / ".join(" ".join(f"{x:.1f}" for x in loads)
                              for loads in (load_before, os.getloadavg()))
            print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
                  f"{load} (before / after); SQLite database: "
                  + ", ".join(f"{n} {table}" for table, n in counts.items()))
            print(f"median of {args.runs} fresh processes (wall ms / CPU ms)")
            names = list(next(iter(results.values())))
            heads = [Path(s).name or str(s) for s in results]
            print(f"{'command':<24}" + "".join(f"  {h[:22]:>22}" for h in heads))
            for name in names:
                print(f"{name:<24}" + "".join(
                    f"  {r[name]['wall_ms']:>10.0f} / {r[name]['cpu_ms']:<9.0f}"
                    for r in results.values()))
            for source, found in modules.items():
                print(f"heavy packages imported, {source}:")
                for command, names_found in found.items():
                    print(f"  {command}: {', '.join(names_found) or 'none'}")
    finally:
        if args.keep or args.reuse:
            print(f"work dir kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
