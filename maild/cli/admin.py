"""The operator's commands: `init`, `run`, `check-config`, `tick`, `status`, `sla report`.

`status` and `sla report` only read (`maild.status`, `maild.sla.report` on the command's DB-API
reader); the others import what they build — Alembic for `init`, the templates for
`check-config`, the daemon for `run`, the stages for `tick` — when they run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from maild.app import App
from maild.cli.common import AddArguments, Parser, clock_at, print_json
from maild.clock import time_for_people
from maild.states import InboundState


def _add_tick(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--at", help="as at this ISO 8601 instant (default: now)")
    command.add_argument("--json", action="store_true")
    command.set_defaults(handler=tick)


def _add_sla(command: argparse.ArgumentParser, what: str) -> None:
    sla = command.add_subparsers(dest="sla_command", required=True, parser_class=Parser)
    report = sla.add_parser("report", help="open tickets by priority, breaches, escalations")
    report.add_argument("--json", action="store_true")
    report.add_argument("--days", type=int, default=7, help="escalations of the last N days")
    report.add_argument("--at", help="as at this ISO 8601 instant")
    report.set_defaults(handler=sla_report)


def _add_status(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--json", action="store_true")
    command.add_argument("--check", action="store_true",
                         help="exit 1 when something needs attention (for monitoring)")
    command.set_defaults(handler=status)


COMMANDS: dict[str, AddArguments] = {
    "init": lambda command, what: command.set_defaults(handler=init, database=False),
    "run": lambda command, what: command.set_defaults(handler=run),
    "check-config": lambda command, what: command.set_defaults(handler=check_config,
                                                               database=False),
    "tick": _add_tick, "sla": _add_sla, "status": _add_status}


def check_config(app: App, args: argparse.Namespace) -> int:
    from maild import preflight

    found = preflight.problems(app.settings)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        return 2
    print(f"{app.settings.path}: OK")
    return 0


def init(app: App, args: argparse.Namespace) -> int:
    from maild.db import init as init_database

    init_database(app.engine, app.settings)
    print(f"database ready: {app.settings.database.shown_url}")
    return 0


def run(app: App, args: argparse.Namespace) -> int:
    from maild.daemon.intake import run as run_daemon

    return run_daemon(app)


def tick(app: App, args: argparse.Namespace) -> int:
    from maild.sla.duties import run_duties
    from maild.threading import process_pending

    clock_at(app, args.at)
    moved = _move_spool(app)
    settled = process_pending(app.pool, app.settings, app.templates, app.clock)
    duties = run_duties(app.pool, app.settings, app.templates, app.clock)
    report = app.deliverer().deliver_due(app.clock)
    done = {
        "at": app.clock.now().isoformat(),
        "spool_moved": moved,
        "inbound_done": sum(s.state == InboundState.DONE for s in settled),
        "inbound_failed": sum(s.state == InboundState.FAILED for s in settled),
        "escalated": duties.escalations,
        "breached": duties.breaches,
        "close_requested": duties.close_requests,
        "closed": duties.closed,
        "sent": len(report.sent),
        "deferred": len(report.deferred),
        "failed": len(report.dead),
    }
    if args.json:
        print_json(done)
    else:
        at = time_for_people(app.clock.now(), app.settings.sla.zone)
        print(f"tick at {at}: spool moved {moved}; "
              f"inbound threaded {done['inbound_done']}, "
              f"failed {done['inbound_failed']}; {duties.summary()}; "
              f"outbound {report.summary()}")
    return 0


def _move_spool(app: App) -> int:
    """Mail `maild run` took but did not move into `inbound` (it is stopped, or was killed)."""
    path = app.spool_path()
    spool = app.spool(mover=True) if path and path.exists() else None
    if spool is None:
        return 0
    try:
        moved = 0
        while taken := spool.move_into(app.pool, 100):
            moved += taken
        return moved
    finally:
        spool.close()


def sla_report(app: App, args: argparse.Namespace) -> int:
    from maild.sla.report import render_text
    from maild.sla.report import sla_report as report_of

    clock_at(app, args.at)
    with app.reading() as reader:
        report = report_of(reader, app.settings, app.clock.now(), args.days)
    if args.json:
        print_json(report)
    else:
        print(render_text(report, app.settings.sla.zone))
    return 0


def status(app: App, args: argparse.Namespace) -> int:
    from maild.ingest.backlog import SpoolBacklog, backlog_at
    from maild.status import status as status_of

    path = app.spool_path()
    spool = backlog_at(path) if path else SpoolBacklog()
    with app.reading() as reader:
        report = status_of(reader, app.clock.now(), spool, app.settings.sla.zone)
    if args.json:
        print_json(report)
    else:
        def line(counts: dict[str, Any], *states: str) -> str:
            return ", ".join(f"{state} {counts[state]}" for state in states)

        inbound, outbox, tickets = report["inbound"], report["outbox"], report["tickets"]
        print(f"spool      {report['spool']['waiting']} waiting")
        print(f"inbound    {line(inbound, 'new', 'done', 'failed')} "
              f"({inbound['failed_last_24h']} failed in the last 24 h)")
        print(f"outbox     {line(outbox, 'pending', 'sending', 'deferred', 'sent', 'dead')}")
        print(f"tickets    {line(tickets, 'new', 'open', 'waiting', 'closed')}; "
              f"{tickets['breached_open']} open past their SLA")
        for problem in report["attention"] or ["none"]:
            print(f"attention  {problem}")
    return 1 if args.check and report["attention"] else 0
