"""`maild sla report`: what an operator asks of the SLA — open tickets by priority with their net
working time, time left to the resolution target and breaches, and the recent escalations.

`sla_report` builds the JSON document (ISO 8601 instants); `render_text` turns that document into
the plain output, with times and durations as people read them (SPEC §6)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from maild.clock import duration_for_people, iso, parse_instant, time_for_people
from maild.config import PRIORITIES, Settings, priority_name
from maild.dbapi import Reader, instant
from maild.sla.state import status_histories, ticket_sla
from maild.states import EventType, TicketStatus


def sla_report(reader: Reader, settings: Settings, now: datetime,
               days: int = 7) -> dict[str, Any]:
    open_tickets = reader.rows(
        "SELECT id, number, subject, status, priority, owner, breached FROM ticket "
        "WHERE status != :closed ORDER BY priority DESC, id", closed=TicketStatus.CLOSED.value)
    histories = status_histories(reader, [t["id"] for t in open_tickets])
    by_priority: dict[str, list[dict[str, Any]]] = {name: [] for name in reversed(PRIORITIES)}
    for ticket in open_tickets:
        sla = ticket_sla(settings, histories.get(ticket["id"], []), now,
                         status=ticket["status"], priority=ticket["priority"],
                         breached=ticket["breached"])
        net, target = int(sla.state.net.total_seconds()), int(sla.state.target.total_seconds())
        by_priority[priority_name(ticket["priority"])].append({
            "number": ticket["number"], "subject": ticket["subject"],
            "status": ticket["status"], "owner": ticket["owner"], "net_seconds": net,
            "target_seconds": target, "left_seconds": max(0, target - net),
            "resolve_by": iso(sla.state.resolve_by), "breached": sla.breached})
    escalations = reader.rows(
        "SELECT e.at, t.number, e.type, e.detail FROM event e "
        "JOIN ticket t ON t.id = e.ticket_id "
        "WHERE e.type IN (:escalated, :breached) AND e.at >= :since ORDER BY e.at, e.id",
        escalated=EventType.ESCALATED.value, breached=EventType.BREACHED.value,
        since=now - timedelta(days=days))
    return {
        "at": iso(now),
        "open": by_priority,
        "breached": sum(t["breached"] is True for ts in by_priority.values() for t in ts),
        "escalations": [{"at": iso(instant(e["at"])), "ticket": e["number"], "type": e["type"],
                         "detail": e["detail"]} for e in escalations],
        "days": days,
    }


def render_text(report: dict[str, Any], zone: tzinfo) -> str:
    """The report for people: times in `zone` to the minute, durations like `2h 15m`."""
    def when(text: str) -> str:
        return time_for_people(parse_instant(text), zone)

    def lasting(seconds: int) -> str:
        return duration_for_people(timedelta(seconds=seconds))

    at = parse_instant(report["at"])
    lines = [f"SLA report at {when(report['at'])}"]
    for priority, rows in report["open"].items():
        lines.append(f"\n{priority}: {len(rows)} open")
        for r in rows:
            net = f"net {lasting(r['net_seconds'])} of {lasting(r['target_seconds'])}"
            resolve_by = parse_instant(r["resolve_by"]) if r["resolve_by"] else None
            if r["breached"]:
                # The instant the target was reached; a later one is the deadline of a longer
                # target the ticket was moved to after the timer flagged it.
                flag = f"BREACHED at {time_for_people(resolve_by, zone)}" \
                    if resolve_by and resolve_by <= at else "BREACHED"
            elif resolve_by:
                flag = f"resolve by {time_for_people(resolve_by, zone)}"
            else:
                flag = f"paused, {lasting(r['left_seconds'])} left"
            lines.append(f"  {r['number']}  {r['status']:<7}  {net:<20}  {flag:<32}  "
                         f"{r['owner'] or '-':<22}  {r['subject']}")
    lines.append(f"\nescalations in the last {report['days']} days: {len(report['escalations'])}")
    for e in report["escalations"]:
        lines.append(f"  {when(e['at'])}  {e['ticket']}  {e['type']:<9}  {e['detail']}")
    return "\n".join(lines)
