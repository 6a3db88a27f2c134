"""`maild sla report`: what an operator asks of the SLA — open tickets by priority with their net
working time, time left to the resolution target and breaches, and the recent escalations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from maild.clock import iso
from maild.config import PRIORITIES, Settings, priority_name
from maild.models import Event, Ticket, TicketStatus
from maild.sla.duties import sla_of


def sla_report(session: Session, settings: Settings, now: datetime,
               days: int = 7) -> dict[str, Any]:
    open_tickets = session.exec(select(Ticket).where(Ticket.status != TicketStatus.CLOSED)
                                .order_by(col(Ticket.priority).desc(), col(Ticket.id)))
    by_priority: dict[str, list[dict[str, Any]]] = {name: [] for name in reversed(PRIORITIES)}
    for ticket in open_tickets:
        state = sla_of(session, settings, ticket, now)
        target = settings.sla.priorities[priority_name(ticket.priority)].resolve_within
        net = int(state["net_seconds"])  # type: ignore[call-overload]
        by_priority[priority_name(ticket.priority)].append({
            "number": ticket.number, "subject": ticket.subject, "status": ticket.status,
            "owner": ticket.owner, "net_seconds": net,
            "target_seconds": int(target.total_seconds()),
            "left_seconds": max(0, int(target.total_seconds()) - net),
            "resolve_by": state["resolve_by"], "breached": state["breached"]})
    since = now - timedelta(days=days)
    escalations = session.exec(select(Event, Ticket.number).join(
        Ticket, col(Ticket.id) == col(Event.ticket_id)).where(
        col(Event.type).in_(["escalated", "breached"]), col(Event.at) >= since)
        .order_by(col(Event.at)))
    return {
        "at": iso(now),
        "open": by_priority,
        "breached": sum(t["breached"] is True for ts in by_priority.values() for t in ts),
        "escalations": [{"at": iso(e.at), "ticket": number, "type": e.type,
                         "detail": e.detail} for e, number in escalations],
        "days": days,
    }


def render_text(report: dict[str, Any]) -> str:
    lines = [f"SLA report at {report['at']}"]
    for priority, rows in report["open"].items():
        lines.append(f"\n{priority}: {len(rows)} open")
        for r in rows:
            flag = "BREACHED" if r["breached"] else f"{r['left_seconds'] // 60} min left"
            lines.append(f"  {r['number']}  {r['status']:<7}  net {r['net_seconds'] // 60:>6} min"
                         f"  {flag:<16}  {r['owner'] or '-':<24}  {r['subject']}")
    lines.append(f"\nescalations in the last {report['days']} days: {len(report['escalations'])}")
    for e in report["escalations"]:
        lines.append(f"  {e['at']}  {e['ticket']}  {e['type']:<9}  {e['detail']}")
    return "\n".join(lines)
