"""The `maild` command line (SPEC §3): argument parsing, exit codes and printing.

Exit status: 0 success, 1 failure, 2 bad usage or bad input; `maild ingest` exits 75
(EX_TEMPFAIL) whenever the message could not be stored, so the MTA keeps it and retries.
Every command that prints data takes --json and then prints one JSON document on stdout, with
ISO 8601 instants (SPEC §3); the plain output is for people, with times in `sla.timezone` to the
minute and durations like `2h 15m` (SPEC §6).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

from sqlmodel import col, select

from maild import __version__, config, preflight, tickets
from maild.app import App
from maild.clock import FixedClock, parse_instant, time_for_people
from maild.db import init as init_database
from maild.db import schema_problem, storage_errors, transaction
from maild.errors import ConfigError, MaildError, NotFound, StorageUnavailable, UsageError
from maild.ingest import accept
from maild.ingest.spool import SpoolBacklog, backlog_at
from maild.models import (
    Actor,
    Channel,
    Inbound,
    InboundState,
    Outbox,
    OutboxState,
    Queue,
    Ticket,
)
from maild.outbound import requeue
from maild.sla.duties import run_duties
from maild.sla.report import render_text as render_sla_report
from maild.sla.report import sla_report
from maild.sla.state import ticket_sla
from maild.status import status
from maild.threading import process_inbound, process_pending, retry_failed
from maild.views import (
    inbound_summary,
    outbox_summary,
    queue_names,
    ticket_detail,
    ticket_summary,
)

EX_TEMPFAIL = 75
INGEST_WAIT_SECONDS = 10.0  # how long `ingest` waits for another worker to thread its message
log = logging.getLogger("maild")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"maild: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="maild", description="An email-first helpdesk daemon.")
    parser.add_argument("--config", help="config file (default: $MAILD_CONFIG, else "
                        "config/maild.toml)")
    parser.add_argument("--version", action="version", version=f"maild {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("init", help="create or upgrade the database; load queues and staff")
    commands.add_parser("run", help="run the daemon in the foreground")
    commands.add_parser("check-config", help="validate the config file")

    ingest = commands.add_parser("ingest", help="store and thread one message (MTA pipe)")
    ingest.add_argument("file", nargs="?", help="the raw message (default: stdin)")
    ingest.add_argument("--source", default="pipe", help="where it came from (default: pipe)")
    ingest.add_argument("--sender", help="envelope sender, as the MTA knows it ('' for <>)")
    ingest.add_argument("--no-deliver", action="store_true",
                        help="leave the mail it owes to the daemon or `maild tick`")

    tick = commands.add_parser("tick", help="run every time-driven duty once")
    tick.add_argument("--at", help="as at this ISO 8601 instant (default: now)")
    tick.add_argument("--json", action="store_true")

    ticket = commands.add_parser("ticket", help="tickets").add_subparsers(
        dest="ticket_command", required=True, parser_class=_Parser)
    listing = ticket.add_parser("list", help="list tickets")
    listing.add_argument("--status", choices=["new", "open", "waiting", "closed"])
    listing.add_argument("--queue")
    listing.add_argument("--owner")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--at", help="compute the SLA clock as at this ISO 8601 instant")
    show = ticket.add_parser("show", help="one ticket with its correspondence and history")
    show.add_argument("number")
    show.add_argument("--json", action="store_true")
    show.add_argument("--raw", action="store_true", help="the original bytes of its first mail")
    show.add_argument("--at", help="compute the SLA clock as at this ISO 8601 instant")

    new = ticket.add_parser("new", help="open a ticket for a contact by phone, web or email")
    new.add_argument("--channel", required=True, choices=["phone", "web", "email"])
    new.add_argument("--customer", default="", help="the customer's email address (may be "
                     "omitted for a phone contact; then no acknowledgement is sent)")
    new.add_argument("--name", default="", help="the customer's name")
    new.add_argument("--subject", required=True)
    _body_arguments(new)
    new.add_argument("--priority")
    new.add_argument("--queue")
    new.add_argument("--staff", help="who logged the contact (default: the first staff member)")
    assign = ticket.add_parser("assign", help="set the owner")
    assign.add_argument("number")
    assign.add_argument("staff_email")
    assign.add_argument("--staff", help="who assigns (default: the new owner)")
    queue = ticket.add_parser("queue", help="move the ticket to another queue")
    queue.add_argument("number")
    queue.add_argument("queue")
    queue.add_argument("--staff", help="who moves it")
    priority = ticket.add_parser("priority", help="change the priority")
    priority.add_argument("number")
    priority.add_argument("priority", help="lowest, low, normal, high, highest or 1-5")
    priority.add_argument("--staff", help="who changes it")
    reply = ticket.add_parser("reply", help="answer the customer; status becomes waiting")
    reply.add_argument("number")
    reply.add_argument("--staff", required=True)
    _body_arguments(reply)
    note = ticket.add_parser("note", help="internal note, never sent to the customer")
    note.add_argument("number")
    note.add_argument("--staff", required=True)
    _body_arguments(note)
    close_request = ticket.add_parser("close-request", help='ask "may we close this ticket?"')
    close_request.add_argument("number")
    close_request.add_argument("--staff")
    close = ticket.add_parser("close", help="close the ticket")
    close.add_argument("number")
    close.add_argument("--staff")

    sla = commands.add_parser("sla", help="the SLA").add_subparsers(
        dest="sla_command", required=True, parser_class=_Parser)
    report = sla.add_parser("report", help="open tickets by priority, breaches, escalations")
    report.add_argument("--json", action="store_true")
    report.add_argument("--days", type=int, default=7, help="escalations of the last N days")
    report.add_argument("--at", help="as at this ISO 8601 instant")

    state = commands.add_parser("status", help="the queues at a glance; what needs attention")
    state.add_argument("--json", action="store_true")
    state.add_argument("--check", action="store_true",
                       help="exit 1 when something needs attention (for monitoring)")

    _stored_mail_commands(
        commands, "inbound", "stored inbound messages", InboundState,
        show="one inbound message", raw="print the stored bytes",
        retry="run failed messages through threading again",
        ids="inbound ids (default: every failed one)")
    _stored_mail_commands(
        commands, "outbox", "outgoing mail", OutboxState,
        show="one outgoing mail", raw="print the exact bytes sent",
        retry="send dead or deferred mail again, now",
        ids="outbox ids (default: every dead or deferred one)")
    return parser


def _stored_mail_commands(commands: Any, name: str, what: str, states: type[StrEnum], *,
                          show: str, raw: str, retry: str, ids: str) -> None:
    """`list`, `show` and `retry` of a table of stored mail (`inbound`, `outbox`)."""
    table = commands.add_parser(name, help=what).add_subparsers(
        dest=f"{name}_command", required=True, parser_class=_Parser)
    listing = table.add_parser("list", help=f"list {what}, newest first")
    listing.add_argument("--state", choices=[s.value for s in states])
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    one = table.add_parser("show", help=show)
    one.add_argument("id", type=int)
    one.add_argument("--raw", action="store_true", help=raw)
    one.add_argument("--json", action="store_true")
    again = table.add_parser("retry", help=retry)
    again.add_argument("ids", nargs="*", type=int, help=ids)
    again.add_argument("--json", action="store_true")


def _body_arguments(parser: argparse.ArgumentParser) -> None:
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the text")
    body.add_argument("--body-file", help="read the text from this file ('-' for stdin)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so that a reader gone away is noticed below
    except BrokenPipeError:
        # The reader of our output went away (`maild ticket list --json | head -1`): it had
        # all it wanted; that is no failure. Later writes (the interpreter's last flush) must
        # not fail either.
        _stdout_to_devnull()
        return 0
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        stream=sys.stderr, format="maild %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP verb
    if args.command == "ingest":
        return _ingest(args)
    handler = _HANDLERS[args.command]
    try:
        app = App(config.load(config.config_path(args.config)))
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    try:
        if args.command not in _WITHOUT_DATABASE:
            problem = schema_problem(app.engine)
            if problem is not None:
                print(f"maild: {problem}", file=sys.stderr)
                return 1
        return handler(app, args)
    except (UsageError, NotFound) as exc:
        print(f"maild: {exc}", file=sys.stderr)
        return 2
    except (MaildError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"maild: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()


_WITHOUT_DATABASE = {"init", "check-config"}  # every other command needs `maild init` first


def _stdout_to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (tests capture it): nothing will flush into a closed pipe


def _check_config(app: App, args: argparse.Namespace) -> int:
    found = preflight.problems(app.settings)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        return 2
    print(f"{app.settings.path}: OK")
    return 0


def _init(app: App, args: argparse.Namespace) -> int:
    init_database(app.engine, app.settings)
    print(f"database ready: {app.settings.database.url}")
    return 0


def _run(app: App, args: argparse.Namespace) -> int:
    from maild.daemon import run

    return run(app)


def _ingest(args: argparse.Namespace) -> int:
    """MTA pipe: store first (else 75), then thread; a stored message always means exit 0."""
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
        problem = schema_problem(app.engine)
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
            accepted = accept(app.engine, raw, source=args.source, now=app.clock.now(),
                              envelope_from=args.sender)
        except Exception as exc:  # nothing was stored: the MTA must keep the mail and retry
            print(f"maild: could not store the message, try again later: {exc}",
                  file=sys.stderr)
            return EX_TEMPFAIL
        try:
            return _settle_ingested(app, accepted.row_id, deliver=not args.no_deliver)
        except Exception:  # stored is stored: the daemon or `maild tick` finishes the work
            log.exception("inbound %s stored; finishing it failed", accepted.row_id)
            return 0
    finally:
        app.close()


def _settle_ingested(app: App, inbound_id: int, *, deliver: bool) -> int:
    try:
        settled = process_inbound(app.engine, app.settings, app.templates, app.clock, inbound_id)
        deadline = time.monotonic() + INGEST_WAIT_SECONDS
        while settled.state == InboundState.NEW and time.monotonic() < deadline:
            # Another worker has it in hand (`maild run` took it from the table first), or it
            # answers a message still being threaded: its ticket number is a moment away.
            time.sleep(0.1)
            settled = process_inbound(app.engine, app.settings, app.templates, app.clock,
                                      inbound_id)
    except StorageUnavailable as exc:
        print(f"maild: stored as inbound {inbound_id}; threading postponed: {exc}",
              file=sys.stderr)
        return 0
    if settled.state == InboundState.FAILED:
        print(f"maild: stored as inbound {inbound_id}, but it failed: {settled.reason} "
              f"(see `maild inbound show {inbound_id}`)", file=sys.stderr)
        return 0
    if settled.ticket_number is None:
        print(f"maild: stored as inbound {inbound_id}: {settled.reason}", file=sys.stderr)
    else:
        print(settled.ticket_number)
    if deliver:
        _deliver_owed(app)
    return 0


def _deliver_owed(app: App) -> None:
    """Send right away what the command just queued; the daemon or `maild tick` retries."""
    with transaction(app.engine, readonly=True) as session:
        owed = list(session.exec(select(Outbox.id).where(
            Outbox.state == OutboxState.PENDING,
            col(Outbox.created_at) >= app.clock.now() - timedelta(minutes=1))))
    if owed:
        try:
            app.deliverer().deliver_due(app.clock, only=[i for i in owed if i is not None])
        except Exception as exc:
            log.warning("delivery postponed: %s", exc)


def _clock_at(app: App, at: str | None) -> None:
    """`--at`: run as at the given instant instead of now."""
    if at:
        try:
            app.clock = FixedClock(parse_instant(at))
        except ValueError:
            raise UsageError(f"--at: not an ISO 8601 instant: {at!r}") from None


def _tick(app: App, args: argparse.Namespace) -> int:
    _clock_at(app, args.at)
    moved = _move_spool(app)
    settled = process_pending(app.engine, app.settings, app.templates, app.clock)
    duties = run_duties(app.engine, app.settings, app.templates, app.clock)
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
        _print_json(done)
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
        while taken := spool.move_into(app.engine, 100):
            moved += taken
        return moved
    finally:
        spool.close()


def _ticket(app: App, args: argparse.Namespace) -> int:
    return _TICKET_HANDLERS[args.ticket_command](app, args)


def _ticket_list(app: App, args: argparse.Namespace) -> int:
    _clock_at(app, args.at)
    with transaction(app.engine, readonly=True) as session:
        names = queue_names(session)
        query = select(Ticket).order_by(col(Ticket.id))
        if args.status:
            query = query.where(Ticket.status == args.status)
        if args.owner:
            query = query.where(Ticket.owner == args.owner.lower())
        if args.queue:
            queue = session.exec(select(Queue).where(Queue.name == args.queue)).first()
            if queue is None:
                raise NotFound(f"no queue named {args.queue!r}")
            query = query.where(Ticket.queue_id == queue.id)
        now = app.clock.now()
        listed = [(t, ticket_sla(session, app.settings, t, now)) for t in session.exec(query)]
        rows = [ticket_summary(t, names, sla.as_json()) for t, sla in listed]
        failed = len(list(session.exec(select(Inbound.id).where(
            Inbound.state == InboundState.FAILED))))
    if args.json:
        _print_json(rows)
        return 0
    zone = app.settings.sla.zone
    table = [(r["number"], r["status"], r["priority"], sla.in_brief(zone), r["queue"],
              r["owner"] or "-", r["customer"] or "-", r["subject"])
             for r, (_, sla) in zip(rows, listed, strict=True)]
    if table:
        for line in _columns([("number", 13), ("status", 7), ("priority", 8), ("SLA", 24),
                              ("queue", 18), ("owner", 20), ("customer", 22), ("subject", 0)],
                             table):
            print(line)
    if failed:
        print(f"{failed} inbound message(s) failed and wait for attention: "
              "maild inbound list --state failed", file=sys.stderr)
    return 0


def _ticket_show(app: App, args: argparse.Namespace) -> int:
    _clock_at(app, args.at)
    with transaction(app.engine, readonly=True) as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == args.number.strip())).first()
        if ticket is None:
            raise NotFound(f"no ticket {args.number}")
        if args.raw:
            first = session.exec(select(Inbound).where(Inbound.ticket_id == ticket.id)
                                 .order_by(col(Inbound.id))).first()
            if first is None:
                raise NotFound(f"ticket {ticket.number} did not arrive by mail; no raw message")
            sys.stdout.buffer.write(first.raw)
            sys.stdout.buffer.flush()
            return 0
        sla = ticket_sla(session, app.settings, ticket, app.clock.now())
        data = ticket_detail(session, ticket, sla.as_json())
    if args.json:
        _print_json(data)
        return 0
    print(f"Ticket {data['number']}: {data['subject']}")
    print(f"  status {data['status']}, priority {data['priority']}, queue {data['queue']}, "
          f"owner {data['owner'] or '-'}")
    print(f"  customer {data['customer'] or '-'} via {data['channel']}, "
          f"created {_for_people(app, data['created_at'])}")
    print(f"  SLA: {sla.for_people(app.settings.sla.zone)}")
    for m in data["messages"]:
        arrow = "<-" if m["direction"] == "in" else "->"
        print(f"\n{arrow} {_for_people(app, m['created_at'])} {m['kind']} from {m['from']} to "
              f"{', '.join(m['to'])}\n   Subject: {m['subject']}")
        for a in m["attachments"]:
            print(f"   Attachment: {a['filename']} ({a['content_type']}, {a['size']} bytes)")
        print("   " + "\n   ".join(m["body"].rstrip().splitlines()))
    print("\nHistory:")
    for e in data["events"]:
        print(f"  {_for_people(app, e['at'])}  {e['type']:<20} {e['actor']:<28} {e['detail']}")
    return 0


def _ticket_new(app: App, args: argparse.Namespace) -> int:
    customer = args.customer.strip().lower()
    if customer and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", customer):
        raise UsageError(f"--customer: not an email address: {args.customer!r}")
    if not customer and args.channel != "phone":
        raise UsageError(f"--customer is required for a {args.channel} contact")
    body = _body(args)
    actor = tickets.staff_member(app.settings, args.staff) if args.staff else \
        Actor.OPERATOR
    with _operation(app) as ctx:
        number = tickets.open_contact(
            ctx, channel=Channel(args.channel), customer=customer, customer_name=args.name,
            subject=args.subject, body=body, actor=actor, priority=args.priority,
            queue=args.queue).number
    _deliver_owed(app)
    print(number)
    return 0


def _ticket_assign(app: App, args: argparse.Namespace) -> int:
    actor = args.staff or args.staff_email
    # Without --staff nobody said who assigns: the new owner is told (SPEC §6 "assigned").
    return _on_ticket(app, args, lambda ctx, t: tickets.assign(
        ctx, t, args.staff_email, _actor(app, actor), notify=True if not args.staff else None))


def _ticket_queue(app: App, args: argparse.Namespace) -> int:
    return _on_ticket(app, args, lambda ctx, t: tickets.move(ctx, t, args.queue,
                                                             _actor(app, args.staff)))


def _ticket_priority(app: App, args: argparse.Namespace) -> int:
    return _on_ticket(app, args, lambda ctx, t: tickets.prioritise(ctx, t, args.priority,
                                                                   _actor(app, args.staff)))


def _ticket_reply(app: App, args: argparse.Namespace) -> int:
    body = _body(args)
    return _on_ticket(app, args, lambda ctx, t: tickets.answer(ctx, t, args.staff, body))


def _ticket_note(app: App, args: argparse.Namespace) -> int:
    body = _body(args)
    return _on_ticket(app, args, lambda ctx, t: tickets.note(ctx, t, args.staff, body))


def _ticket_close_request(app: App, args: argparse.Namespace) -> int:
    return _on_ticket(app, args, lambda ctx, t: tickets.request_close(
        ctx, t, _actor(app, args.staff)))


def _ticket_close(app: App, args: argparse.Namespace) -> int:
    return _on_ticket(app, args, lambda ctx, t: tickets.close(ctx, t, _actor(app, args.staff)))


def _on_ticket(app: App, args: argparse.Namespace,
               operation: Callable[[tickets.Context, Ticket], object]) -> int:
    with _operation(app) as ctx:
        ticket = tickets.find(ctx.session, args.number)
        operation(ctx, ticket)
        status, owner = ticket.status, ticket.owner
    _deliver_owed(app)
    print(f"{args.number}: {status}" + (f", owner {owner}" if owner else ""))
    return 0


@contextmanager
def _operation(app: App) -> Iterator[tickets.Context]:
    with storage_errors(), transaction(app.engine) as session:
        yield tickets.Context(session, app.settings, app.templates, app.clock.now())


def _actor(app: App, staff: str | None) -> str:
    """Who acts: the named staff member, else the operator at the command line — a person,
    so the act ends the ticket's unattended period like any staff action (SPEC §8)."""
    return tickets.staff_member(app.settings, staff) if staff else Actor.OPERATOR


def _body(args: argparse.Namespace) -> str:
    if args.body is not None:
        text = str(args.body)
    else:
        try:
            text = sys.stdin.read() if args.body_file == "-" else \
                Path(args.body_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--body-file: cannot read {args.body_file}: {exc}") from None
    if not text.strip():
        raise UsageError("the body is empty")
    return text


def _sla(app: App, args: argparse.Namespace) -> int:
    _clock_at(app, args.at)
    with transaction(app.engine, readonly=True) as session:
        report = sla_report(session, app.settings, app.clock.now(), args.days)
    if args.json:
        _print_json(report)
    else:
        print(render_sla_report(report, app.settings.sla.zone))
    return 0


def _inbound(app: App, args: argparse.Namespace) -> int:
    return _INBOUND_HANDLERS[args.inbound_command](app, args)


def _inbound_list(app: App, args: argparse.Namespace) -> int:
    with transaction(app.engine, readonly=True) as session:
        query = select(Inbound).order_by(col(Inbound.id).desc()).limit(args.limit)
        if args.state:
            query = query.where(Inbound.state == args.state)
        rows = [inbound_summary(r) for r in session.exec(query)]
    waiting = _spool_backlog(app).waiting
    if waiting:
        print(f"{waiting} message(s) in the intake spool, not yet moved into inbound by "
              "`maild run`", file=sys.stderr)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['id']:>7}  {r['state']:<6}  {_for_people(app, r['received_at'])}  "
              f"{r['source']:<10}  {(r['message_id'] or '(no Message-ID)')[:50]:<50}  "
              f"{r['reason']}")
    return 0


def _inbound_show(app: App, args: argparse.Namespace) -> int:
    with transaction(app.engine, readonly=True) as session:
        row = session.get(Inbound, args.id)
        if row is None:
            raise NotFound(f"no inbound message {args.id}")
        if args.raw:
            sys.stdout.buffer.write(row.raw)
            sys.stdout.buffer.flush()
            return 0
        data = inbound_summary(row)
    if args.json:
        _print_json(data)
    else:
        _print_fields(app, data)
    return 0


def _inbound_retry(app: App, args: argparse.Namespace) -> int:
    ids = retry_failed(app.engine, args.ids or None)
    results = [process_inbound(app.engine, app.settings, app.templates, app.clock, i)
               for i in ids]
    if args.json:
        _print_json([{"id": r.inbound_id, "state": r.state, "ticket": r.ticket_number,
                      "reason": r.reason} for r in results])
    else:
        for r in results:
            print(f"{r.inbound_id}: {r.state} {r.ticket_number or r.reason}")
        if not results:
            print("no failed inbound messages")
    return 0 if all(r.state == InboundState.DONE for r in results) else 1


def _outbox(app: App, args: argparse.Namespace) -> int:
    return _OUTBOX_HANDLERS[args.outbox_command](app, args)


def _outbox_rows(app: App, query: Any) -> list[dict[str, Any]]:
    query = query.join(Ticket, col(Outbox.ticket_id) == col(Ticket.id), isouter=True)
    with transaction(app.engine, readonly=True) as session:
        return [outbox_summary(row, number) for row, number in session.exec(query)]


def _outbox_list(app: App, args: argparse.Namespace) -> int:
    query = select(Outbox, Ticket.number).order_by(col(Outbox.id).desc()).limit(args.limit)
    if args.state:
        query = query.where(Outbox.state == args.state)
    rows = _outbox_rows(app, query)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['id']:>7}  {r['state']:<8}  {r['kind']:<16}  {r['ticket'] or '-':<13}  "
              f"{r['to'][:32]:<32}  {_for_people(app, r['created_at'])}  {r['last_error']}")
    return 0


def _outbox_show(app: App, args: argparse.Namespace) -> int:
    if args.raw:
        with transaction(app.engine, readonly=True) as session:
            row = session.get(Outbox, args.id)
            if row is None:
                raise NotFound(f"no outgoing mail {args.id}")
            sys.stdout.buffer.write(row.raw)
            sys.stdout.buffer.flush()
        return 0
    rows = _outbox_rows(app, select(Outbox, Ticket.number).where(Outbox.id == args.id))
    if not rows:
        raise NotFound(f"no outgoing mail {args.id}")
    if args.json:
        _print_json(rows[0])
    else:
        _print_fields(app, rows[0])
    return 0


def _outbox_retry(app: App, args: argparse.Namespace) -> int:
    ids = requeue(app.engine, args.ids or None, app.clock.now())
    for missing in sorted(set(args.ids) - set(ids)):
        print(f"maild: outbox {missing} is not dead or deferred (or does not exist): "
              "left as it is", file=sys.stderr)
    if ids:
        app.deliverer().deliver_due(app.clock, only=ids, limit=len(ids))
    rows = _outbox_rows(app, select(Outbox, Ticket.number).where(col(Outbox.id).in_(ids))
                        .order_by(col(Outbox.id))) if ids else []
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['id']}: {r['state']} {r['last_error']}".rstrip())
        if not ids:
            print("no dead or deferred outgoing mail")
    return 0 if all(r["state"] == OutboxState.SENT for r in rows) else 1


def _status(app: App, args: argparse.Namespace) -> int:
    with transaction(app.engine, readonly=True) as session:
        report = status(session, app.clock.now(), _spool_backlog(app), app.settings.sla.zone)
    if args.json:
        _print_json(report)
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


def _spool_backlog(app: App) -> SpoolBacklog:
    path = app.spool_path()
    return backlog_at(path) if path else SpoolBacklog()


def _for_people(app: App, instant: str | None) -> str:
    """An ISO 8601 instant of a `--json` document as the plain output shows it; `-` for none."""
    return time_for_people(parse_instant(instant), app.settings.sla.zone) if instant else "-"


def _print_fields(app: App, data: dict[str, Any]) -> None:
    """`key: value` lines of one record; its instants (the `*_at` keys) for people."""
    for key, value in data.items():
        print(f"{key}: {_for_people(app, value) if key.endswith('_at') else value}")


def _columns(heads: Sequence[tuple[str, int]], rows: Sequence[Sequence[str]]) -> Iterator[str]:
    """A heading and the rows, each column as wide as its widest cell up to its limit (longer
    cells are cut, ending in "…"); a limit of 0 leaves the column as it is — the last one."""
    widths = [min(limit, max(len(head), *(len(row[i]) for row in rows))) if limit else 0
              for i, (head, limit) in enumerate(heads)]

    def cell(text: str, width: int) -> str:
        if not width:
            return text
        return (text if len(text) <= width else text[:width - 1] + "…").ljust(width)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell(text, width)
                         for text, width in zip(cells, widths, strict=True)).rstrip()

    yield line([head for head, _ in heads])
    yield from (line(row) for row in rows)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


_Handler = Callable[[App, argparse.Namespace], int]
_HANDLERS: dict[str, _Handler] = {
    "init": _init, "run": _run, "check-config": _check_config, "tick": _tick,
    "ticket": _ticket, "inbound": _inbound, "outbox": _outbox, "sla": _sla, "status": _status,
}
_TICKET_HANDLERS: dict[str, _Handler] = {
    "list": _ticket_list, "show": _ticket_show, "new": _ticket_new, "assign": _ticket_assign,
    "queue": _ticket_queue, "priority": _ticket_priority, "reply": _ticket_reply,
    "note": _ticket_note, "close-request": _ticket_close_request, "close": _ticket_close}
_INBOUND_HANDLERS: dict[str, _Handler] = {
    "list": _inbound_list, "show": _inbound_show, "retry": _inbound_retry}
_OUTBOX_HANDLERS: dict[str, _Handler] = {
    "list": _outbox_list, "show": _outbox_show, "retry": _outbox_retry}
