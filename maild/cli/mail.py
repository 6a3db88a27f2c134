"""`maild ingest`, `maild inbound ...` and `maild outbox ...`: mail in and mail out.

`ingest` is the MTA pipe (exit 75 whenever the message could not be stored, so the MTA keeps it
and retries). It stores over DB-API; with `maild run` on the same database it hands the
message to that daemon's worker and imports neither the ORM nor the templates; alone it
threads the message itself, with the ORM, threading and the templates — never the daemon's
listeners, the web channel or Alembic. `list` and `show`
read through `maild.views` on the command's DB-API reader; `retry` imports the stage it reruns.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from enum import StrEnum
from pathlib import Path

from maild import config, views
from maild.app import App
from maild.cli.common import (
    AddArguments,
    Handler,
    Parser,
    deliver_owed,
    for_people,
    print_fields,
    print_json,
    write_raw,
)
from maild.errors import ConfigError, NotFound, StorageUnavailable
from maild.states import InboundState, OutboxState

EX_TEMPFAIL = 75
INGEST_WAIT_SECONDS = 10.0  # how long `ingest` waits for another worker to thread its message
log = logging.getLogger("maild")


def _add_ingest(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("file", nargs="?", help="the raw message (default: stdin)")
    command.add_argument("--source", default="pipe", help="where it came from (default: pipe)")
    command.add_argument("--sender", help="envelope sender, as the MTA knows it ('' for <>)")
    command.add_argument("--no-deliver", action="store_true",
                         help="leave the mail it owes to the daemon or `maild tick`")
    command.set_defaults(standalone=ingest_command)  # its own exit codes: 75, never 1


def _add_inbound(command: argparse.ArgumentParser, what: str) -> None:
    _stored_mail_commands(
        command, "inbound", what, InboundState, (inbound_list, inbound_show, inbound_retry),
        show="one inbound message", raw="print the stored bytes",
        retry="run failed messages through threading again",
        ids="inbound ids (default: every failed one)")


def _add_outbox(command: argparse.ArgumentParser, what: str) -> None:
    _stored_mail_commands(
        command, "outbox", what, OutboxState, (outbox_list, outbox_show, outbox_retry),
        show="one outgoing mail", raw="print the exact bytes sent",
        retry="send dead or deferred mail again, now",
        ids="outbox ids (default: every dead or deferred one)")


def _stored_mail_commands(command: argparse.ArgumentParser, name: str, what: str,
                          states: type[StrEnum], handlers: tuple[Handler, Handler, Handler], *,
                          show: str, raw: str, retry: str, ids: str) -> None:
    """`list`, `show` and `retry` of a table of stored mail (`inbound`, `outbox`)."""
    table = command.add_subparsers(dest=f"{name}_command", required=True, parser_class=Parser)
    listing = table.add_parser("list", help=f"list {what}, newest first")
    listing.add_argument("--state", choices=[s.value for s in states])
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=handlers[0])
    one = table.add_parser("show", help=show)
    one.add_argument("id", type=int)
    one.add_argument("--raw", action="store_true", help=raw)
    one.add_argument("--json", action="store_true")
    one.set_defaults(handler=handlers[1])
    again = table.add_parser("retry", help=retry)
    again.add_argument("ids", nargs="*", type=int, help=ids)
    again.add_argument("--json", action="store_true")
    again.set_defaults(handler=handlers[2])


# --- ingest -----------------------------------------------------------------------------------

def ingest_command(args: argparse.Namespace) -> int:
    """MTA pipe: store first (else 75), then thread; a stored message always means exit 0.

    Stored over DB-API. With `maild run` listening on the hand-off socket, its worker threads
    the message and sends what it owes while this process only waits for the ticket number
    (`maild.ingest.handoff`); without one, this process does the work itself."""
    try:
        raw = Path(args.file).read_bytes() if args.file else sys.stdin.buffer.read()
    except OSError as exc:
        print(f"maild: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if not raw.strip():
        print("maild: empty message, nothing to store", file=sys.stderr)
        return 2
    try:
        app = App(config.load(config.config_path(args.config)))
    except ConfigError as exc:  # the operator's mistake must not bounce the customer's mail
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EX_TEMPFAIL
    try:
        problem = app.schema_problem()
        if problem is not None:  # the operator's to fix; the MTA keeps the mail meanwhile
            print(f"maild: {problem}", file=sys.stderr)
            return EX_TEMPFAIL
        limit = app.settings.smtp.max_message_bytes if app.settings.smtp \
            else app.settings.mail.max_message_bytes
        if len(raw) > limit:
            print(f"maild: message of {len(raw)} bytes exceeds the limit of {limit}",
                  file=sys.stderr)
            return 2
        try:
            from maild.ingest.accept import accept_on

            accepted = accept_on(app.reader, raw, source=args.source, now=app.clock.now(),
                                 envelope_from=args.sender)
        except Exception as exc:  # nothing was stored: the MTA must keep the mail and retry
            print(f"maild: could not store the message, try again later: {exc}",
                  file=sys.stderr)
            return EX_TEMPFAIL
        try:
            if _handed_off(app):
                return _await_daemon(app, accepted.row_id)
            return _settle_ingested(app, accepted.row_id, deliver=not args.no_deliver)
        except Exception:  # stored is stored: the daemon or `maild tick` finishes the work
            log.exception("inbound %s stored; finishing it failed", accepted.row_id)
            return 0
    finally:
        app.close()


def _handed_off(app: App) -> bool:
    """Did a `maild run` on this database take the wake-up? (Then its worker threads the mail.)"""
    from maild.ingest.handoff import knock

    path = app.handoff_path()
    return path is not None and knock(path)


def _await_daemon(app: App, inbound_id: int) -> int:
    """Read the row until the daemon's worker has settled it; exit 0 whatever comes."""
    deadline = time.monotonic() + INGEST_WAIT_SECONDS
    nap = 0.005
    while True:
        try:
            with app.reading() as reader:
                row = views.inbound_settled(reader, inbound_id)
        except StorageUnavailable as exc:
            print(f"maild: stored as inbound {inbound_id}; `maild run` will thread it ({exc})",
                  file=sys.stderr)
            return 0
        if row["state"] != InboundState.NEW:
            return _report(inbound_id, row["state"], row["number"], row["reason"])
        if time.monotonic() >= deadline:
            print(f"maild: stored as inbound {inbound_id}; `maild run` will thread it",
                  file=sys.stderr)
            return 0
        time.sleep(nap)
        nap = min(nap * 1.5, 0.1)  # a mail is threaded in milliseconds; a backlog takes longer


def _settle_ingested(app: App, inbound_id: int, *, deliver: bool) -> int:
    from maild.threading import process_inbound

    try:
        settled = process_inbound(app.pool, app.settings, app.templates, app.clock, inbound_id)
        deadline = time.monotonic() + INGEST_WAIT_SECONDS
        while settled.state == InboundState.NEW and time.monotonic() < deadline:
            # Another worker has it in hand (`maild run` took it from the table first), or it
            # answers a message still being threaded: its ticket number is a moment away.
            time.sleep(0.1)
            settled = process_inbound(app.pool, app.settings, app.templates, app.clock,
                                      inbound_id)
    except StorageUnavailable as exc:
        print(f"maild: stored as inbound {inbound_id}; threading postponed: {exc}",
              file=sys.stderr)
        return 0
    _report(inbound_id, settled.state, settled.ticket_number, settled.reason)
    if deliver and settled.state != InboundState.FAILED:
        deliver_owed(app)
    return 0


def _report(inbound_id: int, state: str, ticket_number: str | None, reason: str) -> int:
    """What the pipe prints once its message is settled: the ticket number, or why none."""
    if state == InboundState.FAILED:
        print(f"maild: stored as inbound {inbound_id}, but it failed: {reason} "
              f"(see `maild inbound show {inbound_id}`)", file=sys.stderr)
    elif ticket_number is None:
        print(f"maild: stored as inbound {inbound_id}: {reason}", file=sys.stderr)
    else:
        print(ticket_number)
    return 0


# --- inbound ----------------------------------------------------------------------------------

def inbound_list(app: App, args: argparse.Namespace) -> int:
    with app.reading() as reader:
        rows = views.inbound_list(reader, state=args.state, limit=args.limit)
    waiting = _spool_waiting(app)
    if waiting:
        print(f"{waiting} message(s) in the intake spool, not yet moved into inbound by "
              "`maild run`", file=sys.stderr)
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['id']:>7}  {r['state']:<6}  {for_people(app, r['received_at'])}  "
              f"{r['source']:<10}  {(r['message_id'] or '(no Message-ID)')[:50]:<50}  "
              f"{r['reason']}")
    return 0


def inbound_show(app: App, args: argparse.Namespace) -> int:
    with app.reading() as reader:
        if args.raw:
            write_raw(views.inbound_raw(reader, args.id))
            return 0
        data = views.inbound_one(reader, args.id)
    if args.json:
        print_json(data)
    else:
        print_fields(app, data)
    return 0


def inbound_retry(app: App, args: argparse.Namespace) -> int:
    from maild.threading import process_inbound, retry_failed

    ids = retry_failed(app.pool, args.ids or None)
    results = [process_inbound(app.pool, app.settings, app.templates, app.clock, i)
               for i in ids]
    if args.json:
        print_json([{"id": r.inbound_id, "state": r.state, "ticket": r.ticket_number,
                     "reason": r.reason} for r in results])
    else:
        for r in results:
            print(f"{r.inbound_id}: {r.state} {r.ticket_number or r.reason}")
        if not results:
            print("no failed inbound messages")
    return 0 if all(r.state == InboundState.DONE for r in results) else 1


def _spool_waiting(app: App) -> int:
    from maild.ingest.backlog import backlog_at

    path = app.spool_path()
    return backlog_at(path).waiting if path else 0


# --- outbox -----------------------------------------------------------------------------------

def outbox_list(app: App, args: argparse.Namespace) -> int:
    with app.reading() as reader:
        rows = views.outbox_list(reader, state=args.state, limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['id']:>7}  {r['state']:<8}  {r['kind']:<16}  {r['ticket'] or '-':<13}  "
              f"{r['to'][:32]:<32}  {for_people(app, r['created_at'])}  {r['last_error']}")
    return 0


def outbox_show(app: App, args: argparse.Namespace) -> int:
    with app.reading() as reader:
        if args.raw:
            write_raw(views.outbox_raw(reader, args.id))
            return 0
        rows = views.outbox_of(reader, [args.id])
    if not rows:
        raise NotFound(f"no outgoing mail {args.id}")
    if args.json:
        print_json(rows[0])
    else:
        print_fields(app, rows[0])
    return 0


def outbox_retry(app: App, args: argparse.Namespace) -> int:
    from maild.outbound import requeue

    ids = requeue(app.reader, args.ids or None, app.clock.now())
    for missing in sorted(set(args.ids) - set(ids)):
        print(f"maild: outbox {missing} is not dead or deferred (or does not exist): "
              "left as it is", file=sys.stderr)
    rows = []
    if ids:
        app.deliverer().deliver_due(app.clock, only=ids, limit=len(ids))
        with app.reading() as reader:
            rows = views.outbox_of(reader, list(ids))
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['id']}: {r['state']} {r['last_error']}".rstrip())
        if not ids:
            print("no dead or deferred outgoing mail")
    return 0 if all(r["state"] == OutboxState.SENT for r in rows) else 1


COMMANDS: dict[str, AddArguments] = {
    "ingest": _add_ingest, "inbound": _add_inbound, "outbox": _add_outbox}
