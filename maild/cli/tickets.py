"""`maild ticket ...`: the arguments, and for each command the read model or the operation it
calls and what it prints.

`list` and `show` read through `maild.views` and `maild.sla.state` on the command's DB-API
reader, so they import no ORM; the commands that change a ticket import `maild.tickets` (and
with it SQLAlchemy and the templates) when they run.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from maild import views
from maild.app import App
from maild.cli.common import (
    AddArguments,
    Parser,
    body,
    body_arguments,
    clock_at,
    columns,
    deliver_owed,
    for_people,
    print_json,
    write_raw,
)
from maild.config import priority_name
from maild.errors import NotFound, UsageError
from maild.sla.state import status_histories, ticket_sla
from maild.states import Actor, Channel

if TYPE_CHECKING:
    from maild import tickets
    from maild.models import Ticket


def _add_ticket(command: argparse.ArgumentParser, what: str) -> None:
    ticket = command.add_subparsers(dest="ticket_command", required=True, parser_class=Parser)
    listing = ticket.add_parser("list", help="list tickets")
    listing.add_argument("--status", choices=["new", "open", "waiting", "closed"])
    listing.add_argument("--queue")
    listing.add_argument("--owner")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--at", help="compute the SLA clock as at this ISO 8601 instant")
    listing.set_defaults(handler=ticket_list)
    show = ticket.add_parser("show", help="one ticket with its correspondence and history")
    show.add_argument("number")
    show.add_argument("--json", action="store_true")
    show.add_argument("--raw", action="store_true", help="the original bytes of its first mail")
    show.add_argument("--at", help="compute the SLA clock as at this ISO 8601 instant")
    show.set_defaults(handler=ticket_show)

    new = ticket.add_parser("new", help="open a ticket for a contact by phone, web or email")
    new.add_argument("--channel", required=True, choices=["phone", "web", "email"])
    new.add_argument("--customer", default="", help="the customer's email address (may be "
                     "omitted for a phone contact; then no acknowledgement is sent)")
    new.add_argument("--name", default="", help="the customer's name")
    new.add_argument("--subject", required=True)
    body_arguments(new)
    new.add_argument("--priority")
    new.add_argument("--queue")
    new.add_argument("--staff", help="who logged the contact (default: the first staff member)")
    new.set_defaults(handler=ticket_new)
    assign = ticket.add_parser("assign", help="set the owner")
    assign.add_argument("number")
    assign.add_argument("staff_email")
    assign.add_argument("--staff", help="who assigns (default: nobody named, 'operator')")
    assign.set_defaults(handler=ticket_assign)
    queue = ticket.add_parser("queue", help="move the ticket to another queue")
    queue.add_argument("number")
    queue.add_argument("queue")
    queue.add_argument("--staff", help="who moves it")
    queue.set_defaults(handler=ticket_queue)
    priority = ticket.add_parser("priority", help="change the priority")
    priority.add_argument("number")
    priority.add_argument("priority", help="lowest, low, normal, high, highest or 1-5")
    priority.add_argument("--staff", help="who changes it")
    priority.set_defaults(handler=ticket_priority)
    reply = ticket.add_parser("reply", help="answer the customer; status becomes waiting")
    reply.add_argument("number")
    reply.add_argument("--staff", required=True)
    body_arguments(reply)
    reply.set_defaults(handler=ticket_reply)
    note = ticket.add_parser("note", help="internal note, never sent to the customer")
    note.add_argument("number")
    note.add_argument("--staff", required=True)
    body_arguments(note)
    note.set_defaults(handler=ticket_note)
    close_request = ticket.add_parser("close-request", help='ask "may we close this ticket?"')
    close_request.add_argument("number")
    close_request.add_argument("--staff")
    close_request.set_defaults(handler=ticket_close_request)
    close = ticket.add_parser("close", help="close the ticket")
    close.add_argument("number")
    close.add_argument("--staff")
    close.set_defaults(handler=ticket_close)


# --- reading ----------------------------------------------------------------------------------

def ticket_list(app: App, args: argparse.Namespace) -> int:
    clock_at(app, args.at)
    now = app.clock.now()
    with app.reading() as reader:
        found = views.tickets(reader, status=args.status, queue=args.queue, owner=args.owner)
        histories = status_histories(reader, [t.id for t in found])
        failed = views.failed_inbound(reader)
    listed = [(t, ticket_sla(app.settings, histories.get(t.id, []), now, status=t.status,
                             priority=t.priority, breached=t.breached)) for t in found]
    if args.json:
        print_json([views.ticket_summary(t, sla.as_json()) for t, sla in listed])
        return 0
    zone = app.settings.sla.zone
    table = [(t.number, t.status, priority_name(t.priority), sla.in_brief(zone),
              t.queue, t.owner or "-", t.customer or "-", t.subject) for t, sla in listed]
    if table:
        for line in columns([("number", 13), ("status", 7), ("priority", 8), ("SLA", 24),
                             ("queue", 18), ("owner", 20), ("customer", 22), ("subject", 0)],
                            table):
            print(line)
    if failed:
        print(f"{failed} inbound message(s) failed and wait for attention: "
              "maild inbound list --state failed", file=sys.stderr)
    return 0


def ticket_show(app: App, args: argparse.Namespace) -> int:
    clock_at(app, args.at)
    with app.reading() as reader:
        ticket = views.ticket(reader, args.number)
        if ticket is None:
            raise NotFound(f"no ticket {args.number}")
        if args.raw:
            raw = views.first_raw(reader, ticket.id)
            if raw is None:
                raise NotFound(f"ticket {ticket.number} did not arrive by mail; no raw message")
            write_raw(raw)
            return 0
        history = status_histories(reader, [ticket.id]).get(ticket.id, [])
        sla = ticket_sla(app.settings, history, app.clock.now(), status=ticket.status,
                         priority=ticket.priority, breached=ticket.breached)
        data = views.ticket_detail(reader, ticket, sla.as_json())
    if args.json:
        print_json(data)
        return 0
    print(f"Ticket {data['number']}: {data['subject']}")
    print(f"  status {data['status']}, priority {data['priority']}, queue {data['queue']}, "
          f"owner {data['owner'] or '-'}")
    print(f"  customer {data['customer'] or '-'} via {data['channel']}, "
          f"created {for_people(app, data['created_at'])}")
    print(f"  SLA: {sla.for_people(app.settings.sla.zone)}")
    for u in data["undeliverable"]:
        print(f"  undeliverable since {for_people(app, u['since'])}: {u['address']} "
              f"{u['status']} {u['diagnostic']}".rstrip())
    for m in data["messages"]:
        arrow = "<-" if m["direction"] == "in" else "->"
        print(f"\n{arrow} {for_people(app, m['created_at'])} {m['kind']} from {m['from']} to "
              f"{', '.join(m['to'])}\n   Subject: {m['subject']}")
        for a in m["attachments"]:
            print(f"   Attachment: {a['filename']} ({a['content_type']}, {a['size']} bytes)")
        print("   " + "\n   ".join(m["body"].rstrip().splitlines()))
    print("\nHistory:")
    for e in data["events"]:
        print(f"  {for_people(app, e['at'])}  {e['type']:<20} {e['actor']:<28} {e['detail']}")
    return 0


# --- changing -----------------------------------------------------------------------------------

def ticket_new(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    customer = args.customer.strip().lower()
    if customer and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", customer):
        raise UsageError(f"--customer: not an email address: {args.customer!r}")
    if not customer and args.channel != "phone":
        raise UsageError(f"--customer is required for a {args.channel} contact")
    text = body(args)
    actor = tickets.staff_member(app.settings, args.staff) if args.staff else \
        Actor.OPERATOR
    with _operation(app) as ctx:
        number = tickets.open_contact(
            ctx, channel=Channel(args.channel), customer=customer, customer_name=args.name,
            subject=args.subject, body=text, actor=actor, priority=args.priority,
            queue=args.queue).number
    deliver_owed(app)
    print(number)
    return 0


def ticket_assign(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    # Without --staff nobody said who assigns (the event's actor is `operator`), so the new
    # owner is told (SPEC §6 "assigned": not when they assigned the ticket to themselves).
    return _on_ticket(app, args, lambda ctx, t: tickets.assign(
        ctx, t, args.staff_email, _actor(app, args.staff)))


def ticket_queue(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    return _on_ticket(app, args, lambda ctx, t: tickets.move(ctx, t, args.queue,
                                                             _actor(app, args.staff)))


def ticket_priority(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    return _on_ticket(app, args, lambda ctx, t: tickets.prioritise(ctx, t, args.priority,
                                                                   _actor(app, args.staff)))


def ticket_reply(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    text = body(args)

    def reply(ctx: tickets.Context, ticket: Ticket) -> None:
        tickets.answer(ctx, ticket, args.staff, text)
        if not tickets.reachable(ticket):  # a phone contact who gave no address
            print(f"maild: {args.number}: the customer has no email address; the answer is "
                  "on the ticket, not sent", file=sys.stderr)

    return _on_ticket(app, args, reply)


def ticket_note(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    text = body(args)
    return _on_ticket(app, args, lambda ctx, t: tickets.note(ctx, t, args.staff, text))


def ticket_close_request(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    return _on_ticket(app, args, lambda ctx, t: tickets.request_close(
        ctx, t, _actor(app, args.staff)))


def ticket_close(app: App, args: argparse.Namespace) -> int:
    from maild import tickets

    return _on_ticket(app, args, lambda ctx, t: tickets.close(ctx, t, _actor(app, args.staff)))


def _on_ticket(app: App, args: argparse.Namespace,
               operation: Callable[[tickets.Context, Ticket], object]) -> int:
    from maild import tickets

    with _operation(app) as ctx:
        ticket = tickets.find(ctx.db, args.number)
        operation(ctx, ticket)
        status, owner = ticket.status, ticket.owner
    deliver_owed(app)
    print(f"{args.number}: {status}" + (f", owner {owner}" if owner else ""))
    return 0


@contextmanager
def _operation(app: App) -> Iterator[tickets.Context]:
    from maild import tickets
    from maild.tracked import tracking

    with app.pool.writing() as db, tracking(db, app.pool.reader) as tracker:
        yield tickets.Context(tracker, app.settings, app.templates, app.clock.now())


def _actor(app: App, staff: str | None) -> str:
    """Who acts: the named staff member, else the operator at the command line — a person,
    so the act ends the ticket's unattended period like any staff action (SPEC §8)."""
    from maild import tickets

    return tickets.staff_member(app.settings, staff) if staff else Actor.OPERATOR


COMMANDS: dict[str, AddArguments] = {"ticket": _add_ticket}
