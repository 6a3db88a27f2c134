#!/usr/bin/env python3
"""Ingest throughput: a few thousand mails through exactly what `maild ingest FILE` runs.

Every message is written to a file and handed to `maild.cli.main(["--config", CFG, "ingest",
FILE])` in this process, so each one pays what the command pays apart from interpreter
start-up: config load, engine, templates, storing the raw bytes, threading, the acknowledgement
and its delivery to the Maildir outbox. Only the `main` calls are timed; generating the mails
and looking up the numbers and acknowledgement Message-IDs that follow-ups quote are not.
`--subprocess N` then runs N more mails through the real console script, one process each, as an
MTA pipe would. At the end the database is checked: one ticket per new-ticket mail and every
follow-up on the ticket it answers.

    .venv/bin/python bench/ingest_bench.py [--count 3000] [--subprocess 50] [--json]
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
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from maild import __version__ as maild_version
from maild.cli import main as maild_main

REPO = Path(__file__).resolve().parent.parent
TAG = "Ticket"

CONFIG = """\
[database]
url = "sqlite:///{root}/var/maild.db"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]
subject_tag = "{tag}"
language = "en"
auto_reply_limit_per_hour = 5

[outbound]
transport = "maildir"
maildir = "{root}/var/outbox"

[tickets]
reopen_closed = true

[[staff]]
email = "alice@example.com"
name = "Alice"

[[staff]]
email = "bob@example.com"
name = "Bob"

[sla]
timezone = "Europe/Moscow"
"""

# --------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------

EN_FIRST = ["John", "Mary", "Peter", "Linda", "James", "Susan", "Robert", "Karen", "Michael",
            "Nancy", "David", "Emma", "Oliver", "Sophie", "Thomas", "Grace"]
EN_LAST = ["Smith", "Brown", "Taylor", "Wilson", "Evans", "Walker", "Wright", "Hughes",
           "Green", "Hall", "Wood", "Clarke", "Baker", "Turner"]
RU_FIRST = ["Иван", "Мария", "Пётр", "Анна", "Сергей", "Ольга", "Дмитрий", "Елена", "Алексей",
            "Наталья", "Михаил", "Татьяна", "Андрей", "Юлия"]
RU_LAST = ["Петров", "Иванова", "Смирнов", "Кузнецова", "Попов", "Соколова", "Лебедев",
           "Козлова", "Новиков", "Морозова", "Волков", "Фёдорова"]
EN_SUBJECTS = [
    "Printer on the 3rd floor does not print", "Cannot log in to the portal",
    "Invoice {n} shows the wrong amount", "VPN disconnects every few minutes",
    "Request for a new laptop", "Password reset link expired",
    "Order {n} has not arrived", "Error 500 when uploading a file",
    "Please cancel my subscription", "Question about the warranty",
    "Outlook keeps asking for the password", "Refund for order {n}",
]
RU_SUBJECTS = [
    "Не работает принтер на третьем этаже", "Не могу войти в личный кабинет",
    "В счёте № {n} неверная сумма", "Пропадает VPN каждые несколько минут",
    "Заявка на новый ноутбук", "Истекла ссылка для сброса пароля",
    "Заказ № {n} так и не пришёл", "Ошибка 500 при загрузке файла",
    "Прошу отменить подписку", "Вопрос по гарантии",
    "Outlook всё время спрашивает пароль", "Возврат денег за заказ № {n}",
]
EN_SENTENCES = [
    "Since this morning nothing I send reaches the printer.",
    "I have already restarted the computer twice, it did not help.",
    "The error message says that the session has expired.",
    "Could you please look into this as soon as possible?",
    "Our whole team is affected, about twelve people.",
    "I attached a screenshot of what I see on the screen.",
    "The problem started after yesterday's update.",
    "It works from home but not from the office network.",
    "My customer number is {n}, in case you need it.",
    "I tried another browser and got the same result.",
    "Please call me back if anything is unclear.",
    "We need this fixed before the end of the month.",
]
RU_SENTENCES = [
    "С утра ни один документ не уходит на печать.",
    "Я уже дважды перезагружал компьютер, не помогло.",
    "В сообщении об ошибке написано, что сеанс истёк.",
    "Посмотрите, пожалуйста, как можно скорее.",
    "Проблема у всего отдела, это около двенадцати человек.",
    "Прикладываю снимок экрана с ошибкой.",
    "Всё началось после вчерашнего обновления.",
    "Из дома работает, а из офисной сети — нет.",
    "Мой номер клиента {n}, если понадобится.",
    "В другом браузере то же самое.",
    "Если что-то непонятно, перезвоните мне, пожалуйста.",
    "Нам нужно решить это до конца месяца.",
]
EN_FOLLOWUP = ["Any news on this?", "It happened again today.", "Thank you, one more detail:",
               "Here is the additional information you asked for."]
RU_FOLLOWUP = ["Есть новости?", "Сегодня снова повторилось.", "Спасибо, ещё одна деталь:",
               "Вот дополнительная информация, которую вы просили."]
DOMAINS = ["example.org", "example.net", "mail.example.com", "corp.example.ru"]


@dataclass
class Customer:
    name: str
    address: str
    russian: bool


@dataclass
class NewTicket:
    """A new-ticket mail already sent; follow-ups quote what maild answered it with."""

    index: int
    customer: Customer
    subject: str
    message_id: str
    first_lines: list[str]
    number: str = ""
    ack_message_id: str = ""


@dataclass
class Mail:
    raw: bytes
    message_id: str
    new: bool
    target: NewTicket | None = None  # the ticket a follow-up must land on
    style: str = ""                  # follow-ups: "tag", "reply" or "tag+reply"
    features: list[str] = field(default_factory=list)


class Workload:
    """Deterministic (seeded) mails: ~70% new tickets, ~30% follow-ups to earlier tickets."""

    def __init__(self, seed: int, followup_share: float, attachment_share: float,
                 attachment_kb: int) -> None:
        self.rng = random.Random(seed)
        self.followup_share = followup_share
        self.attachment_share = attachment_share
        self.attachment_kb = attachment_kb
        self.tickets: list[NewTicket] = []
        self.customers: list[Customer] = []
        self.sent = 0
        self.date = 1_767_225_600  # 2026-01-01T00:00:00Z; mail Date headers only

    def plan(self, count: int) -> list[bool]:
        """True for a new-ticket mail; exactly round(count * share) follow-ups, never first."""
        followups = round(count * self.followup_share)
        kinds = [True] * (count - followups) + [False] * followups
        self.rng.shuffle(kinds)
        if kinds and not kinds[0] and not self.tickets:
            kinds[kinds.index(True)] = False
            kinds[0] = True
        return kinds

    # -- people and text ---------------------------------------------------------------------

    def _customer(self) -> Customer:
        # Each customer opens at most two tickets, so the hourly cap on automatic replies
        # (5 per address) never suppresses an acknowledgement a follow-up needs.
        if self.customers and len(self.tickets) % 2 == 1:
            return self.customers[-1]
        rng = self.rng
        russian = rng.random() < 0.5
        if russian:
            name = f"{rng.choice(RU_FIRST)} {rng.choice(RU_LAST)}"
        else:
            name = f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
        local = f"customer{len(self.customers):05d}"
        customer = Customer(name, f"{local}@{rng.choice(DOMAINS)}", russian)
        self.customers.append(customer)
        return customer

    def _sentences(self, russian: bool, low: int, high: int) -> list[str]:
        pool = RU_SENTENCES if russian else EN_SENTENCES
        return [self.rng.choice(pool).format(n=self.rng.randint(10000, 99999))
                for _ in range(self.rng.randint(low, high))]

    def _message_id(self, domain: str) -> str:
        self.sent += 1
        return f"bench.{self.sent}.{self.rng.getrandbits(48):012x}@{domain}"

    # -- mails -------------------------------------------------------------------------------

    def new_ticket(self) -> Mail:
        rng = self.rng
        customer = self._customer()
        russian = customer.russian if rng.random() < 0.9 else not customer.russian
        subject = rng.choice(RU_SUBJECTS if russian else EN_SUBJECTS).format(
            n=rng.randint(100000, 999999))
        lines = self._sentences(russian, 3, 10)
        greeting = "Здравствуйте!" if russian else "Hello,"
        sign = "С уважением," if russian else "Best regards,"
        body = f"{greeting}\n\n" + "\n".join(lines) + f"\n\n{sign}\n{customer.name}\n"
        message_id = self._message_id(customer.address.partition("@")[2])
        ticket = NewTicket(len(self.tickets), customer, subject, message_id, lines[:3])
        self.tickets.append(ticket)
        raw, features = self._build(customer, subject, body, message_id, russian)
        return Mail(raw, message_id, new=True, features=features)

    def follow_up(self, ack_message_id: Callable[[NewTicket], str]) -> Mail:
        """A follow-up to an earlier ticket; `ack_message_id(ticket)` looks up maild's answer."""
        rng = self.rng
        # Recent tickets get most of the follow-ups, as in a real helpdesk.
        recent = self.tickets[-200:] if rng.random() < 0.8 else self.tickets
        ticket = rng.choice(recent)
        style = rng.choice(["tag", "reply", "tag+reply"])
        sender = ticket.customer
        # A reference is proof enough whoever sends it (SPEC §5): sometimes a colleague answers.
        if style == "reply" and rng.random() < 0.2:
            local, _, domain = ticket.customer.address.partition("@")
            sender = Customer(f"Colleague of {ticket.customer.name}",
                              f"{local}.colleague@{domain}", ticket.customer.russian)
        russian = ticket.customer.russian
        prefix = rng.choice(["Ответ: ", "Re: ", "RE: "]) if russian else rng.choice(
            ["Re: ", "RE: ", "Re: Re: "])
        if "tag" in style:
            subject = f"{prefix}[{TAG}#{ticket.number}] {ticket.subject}"
        else:
            subject = f"{prefix}{ticket.subject}"
        lines = [rng.choice(RU_FOLLOWUP if russian else EN_FOLLOWUP),
                 *self._sentences(russian, 1, 4)]
        quoted = "\n".join(f"> {line}" for line in ticket.first_lines)
        body = "\n".join(lines) + f"\n\n{quoted}\n"
        message_id = self._message_id(sender.address.partition("@")[2])
        extra: list[tuple[str, str]] = []
        if "reply" in style:
            ack = ack_message_id(ticket)
            extra = [("In-Reply-To", f"<{ack}>"),
                     ("References", f"<{ticket.message_id}> <{ack}>")]
        raw, features = self._build(sender, subject, body, message_id, russian, extra)
        return Mail(raw, message_id, new=False, target=ticket, style=style, features=features)

    def _build(self, sender: Customer, subject: str, body: str, message_id: str,
               russian: bool, extra: list[tuple[str, str]] | None = None,
               ) -> tuple[bytes, list[str]]:
        """Raw bytes with LF line endings, as an MTA pipe hands them over."""
        rng = self.rng
        features: list[str] = []
        content = EmailMessage(policy=policy.default)
        html_only = rng.random() < 0.10
        cte = rng.choices(["8bit", "base64", "quoted-printable"], weights=[5, 3, 2])[0]
        if html_only:
            paragraphs = "".join(f"<p>{line}</p>" for line in body.split("\n") if line)
            html = (f"<html><head><style>p {{margin: 0}}</style></head><body>{paragraphs}"
                    "</body></html>")
            content.set_content(html, subtype="html", charset="utf-8", cte=cte)
            features.append("html-only")
        else:
            content.set_content(body, charset="utf-8", cte=cte)
        features.append(f"body-{cte}")
        if rng.random() < self.attachment_share:
            blob = rng.randbytes(self.attachment_kb * 1024)
            filename = "снимок экрана.png" if russian else "screenshot.png"
            content.add_attachment(blob, maintype="image", subtype="png", filename=filename)
            features.append("attachment")
        subject_header, how = self._subject(subject)
        features.append(f"subject-{how}")
        if how == "utf8":
            from_header = formataddr((sender.name, sender.address))
        else:
            from_header = formataddr((sender.name, sender.address), charset="utf-8")
        self.date += rng.randint(1, 120)
        headers = [
            ("Return-Path", f"<{sender.address}>"),
            ("From", from_header),
            ("To", "Support <support@example.com>"),
            ("Subject", subject_header),
            ("Date", format_datetime(datetime.fromtimestamp(self.date, UTC))),
            ("Message-ID", f"<{message_id}>"),
            *(extra or []),
            ("X-Mailer", rng.choice(["Thunderbird 128.3", "Microsoft Outlook 16.0",
                                     "Apple Mail (2.3774)", "Roundcube Webmail/1.6"])),
        ]
        head = "".join(f"{name}: {value}\n" for name, value in headers).encode("utf-8")
        return head + content.as_bytes(), features

    def _subject(self, subject: str) -> tuple[str, str]:
        """The Subject header value and how it is written: ascii, utf8 (raw), 2047b, 2047q."""
        if subject.isascii():
            return subject, "ascii"
        how = self.rng.choices(["2047b", "2047q", "utf8"], weights=[5, 3, 2])[0]
        if how == "utf8":  # 8-bit header (RFC 6532), as many MTAs deliver it today
            return subject, how
        charset = Charset("utf-8")
        if how == "2047q":
            charset.header_encoding = QP
        return Header(subject, charset, header_name="Subject").encode(linesep="\n"), how


# --------------------------------------------------------------------------------------------
# Running maild
# --------------------------------------------------------------------------------------------


class _Collect(logging.Handler):
    """Keeps what maild logs at WARNING and above; nothing is formatted or printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@dataclass
class Call:
    code: int
    out: str
    err: str
    wall: float
    cpu: float


def run_main(argv: list[str]) -> Call:
    """`maild.cli.main(argv)` with stdout and stderr captured; times the call only."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        code = maild_main(argv)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Call(code, out.getvalue(), err.getvalue(), wall, cpu)


class Outcome:
    """What every ingested mail came back with, for the final check."""

    def __init__(self) -> None:
        self.new_mails = 0
        self.followups: list[tuple[str, str, str]] = []  # (message-id, expected number, style)
        self.problems: list[str] = []

    def record(self, mail: Mail, code: int, out: str, err: str, label: str) -> None:
        number = out.strip()
        if code != 0 or not number.isdigit():
            self.problems.append(f"{label}: exit {code}, stdout {out.strip()!r}, "
                                 f"stderr {err.strip()[:300]!r}")
        if mail.new:
            self.new_mails += 1
            assert mail.target is None
        else:
            assert mail.target is not None
            self.followups.append((mail.message_id, mail.target.number, mail.style))
            if number and number != mail.target.number:
                self.problems.append(f"{label}: follow-up ({mail.style}) to "
                                     f"{mail.target.number} landed on {number}")


class Database:
    """Read-only look-ups the generator and the final check need (never timed)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def ack_message_id(self, number: str) -> str:
        with contextlib.closing(self._connect()) as db:
            row = db.execute(
                "SELECT o.message_id FROM outbox o JOIN ticket t ON o.ticket_id = t.id "
                "WHERE t.number = ? AND o.kind = 'ack' ORDER BY o.id LIMIT 1",
                (number,)).fetchone()
        if row is None:
            raise SystemExit(f"ingest_bench: ticket {number} has no acknowledgement in the outbox")
        return str(row[0])

    def verify(self, outcome: Outcome) -> tuple[bool, str, dict[str, Any]]:
        with contextlib.closing(self._connect()) as db:
            tickets = db.execute("SELECT count(*) FROM ticket").fetchone()[0]
            states = dict(db.execute("SELECT state, count(*) FROM inbound GROUP BY state"))
            outbox = dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state"))
            acks = db.execute("SELECT count(*) FROM outbox WHERE kind = 'ack'").fetchone()[0]
            placed = dict(db.execute(
                "SELECT i.message_id, t.number FROM inbound i "
                "LEFT JOIN ticket t ON t.id = i.ticket_id WHERE i.message_id != ''"))
        misplaced = [(mid, want, style, placed.get(mid)) for mid, want, style in outcome.followups
                     if placed.get(mid) != want]
        inbound_total = sum(states.values())
        inbound_done = states.get("done", 0)
        total = outcome.new_mails + len(outcome.followups)
        ok = (tickets == outcome.new_mails and not misplaced and not outcome.problems
              and inbound_done == inbound_total == total)
        facts = {
            "ok": ok, "tickets": tickets, "new_ticket_mails": outcome.new_mails,
            "followups": len(outcome.followups),
            "followups_on_their_ticket": len(outcome.followups) - len(misplaced),
            "inbound": states, "outbox": outbox, "acks": acks,
            "misplaced": [{"message_id": m, "expected": w, "style": s, "got": g}
                          for m, w, s, g in misplaced[:20]],
            "problems": outcome.problems[:20], "problem_count": len(outcome.problems),
        }
        line = (f"verify: {'OK' if ok else 'FAILED'} - {tickets} tickets for "
                f"{outcome.new_mails} new-ticket mails; "
                f"{facts['followups_on_their_ticket']}/{len(outcome.followups)} follow-ups on "
                f"their ticket; {inbound_done}/{total} inbound done; {acks} acks "
                f"({outbox.get('sent', 0)} sent to the Maildir)")
        return ok, line, facts


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def default_maild_bin() -> Path:
    beside = Path(sys.executable).parent / "maild"
    if beside.exists():
        return beside
    found = shutil.which("maild")
    return Path(found) if found else REPO / ".venv" / "bin" / "maild"


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, root: Path) -> tuple[bool, dict[str, Any], list[str]]:
    config = root / "maild.toml"
    config.write_text(CONFIG.format(root=root, tag=TAG), encoding="utf-8")
    mails_dir = root / "mails"
    mails_dir.mkdir()
    cfg = str(config)

    collect = _Collect()
    rootlog = logging.getLogger()
    rootlog.addHandler(collect)  # main()'s basicConfig then adds no stderr handler
    rootlog.setLevel(logging.WARNING)

    init = run_main(["--config", cfg, "init"])
    if init.code != 0:
        raise SystemExit(f"ingest_bench: maild init failed ({init.code}): {init.err}")

    db = Database(root / "var" / "maild.db")

    def ack_of(ticket: NewTicket) -> str:
        if not ticket.ack_message_id:
            ticket.ack_message_id = db.ack_message_id(ticket.number)
        return ticket.ack_message_id

    workload = Workload(args.seed, args.followup_share, args.attachment_share,
                        args.attachment_kb)
    outcome = Outcome()
    features: dict[str, int] = {}
    walls: list[float] = []
    cpus: list[float] = []
    sizes: list[int] = []
    by_kind: dict[str, list[float]] = {"new ticket": [], "follow-up": [], "with attachment": []}

    def next_mail(new: bool, i: int) -> tuple[Mail, Path]:
        mail = workload.new_ticket() if new else workload.follow_up(ack_of)
        path = mails_dir / f"{i:06d}.eml"
        path.write_bytes(mail.raw)
        for feature in [*mail.features, "new" if new else f"follow-up:{mail.style}"]:
            features[feature] = features.get(feature, 0) + 1
        sizes.append(len(mail.raw))
        return mail, path

    # -- in-process: the timed loop ------------------------------------------------------
    for i, new in enumerate(workload.plan(args.count)):
        mail, path = next_mail(new, i)
        call = run_main(["--config", cfg, "ingest", str(path)])
        walls.append(call.wall)
        cpus.append(call.cpu)
        by_kind["new ticket" if mail.new else "follow-up"].append(call.wall)
        if "attachment" in mail.features:
            by_kind["with attachment"].append(call.wall)
        number = call.out.strip()
        if mail.new:
            workload.tickets[-1].number = number
        outcome.record(mail, call.code, call.out, call.err, f"mail {i} ({path.name})")

    n = len(walls)
    wall_total, cpu_total = sum(walls), sum(cpus)
    result: dict[str, Any] = {
        "maild_version": maild_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "workdir": str(root),
        "workdir_kept": args.keep,
        "seed": args.seed,
        "in_process": {
            "messages": n,
            "new_ticket_mails": outcome.new_mails,
            "followup_mails": len(outcome.followups),
            "wall_s": round(wall_total, 3),
            "cpu_s": round(cpu_total, 3),
            "messages_per_s": round(n / wall_total, 1) if wall_total else 0.0,
            "cpu_ms_per_message": round(1000 * cpu_total / n, 2) if n else 0.0,
            "wall_ms_p50": round(1000 * percentile(walls, 50), 2),
            "wall_ms_p99": round(1000 * percentile(walls, 99), 2),
            "wall_ms_max": round(1000 * max(walls, default=0.0), 2),
            "wall_ms_mean": round(1000 * statistics.fmean(walls), 2) if walls else 0.0,
            # Does a message cost more as the database fills up?
            "wall_ms_p50_first_tenth": round(1000 * percentile(walls[:max(1, n // 10)], 50), 2),
            "wall_ms_p50_last_tenth": round(1000 * percentile(walls[-max(1, n // 10):], 50), 2),
            "by_kind": {kind: {"messages": len(w),
                               "wall_ms_p50": round(1000 * percentile(w, 50), 2),
                               "wall_ms_p99": round(1000 * percentile(w, 99), 2)}
                        for kind, w in by_kind.items()},
        },
        "workload": {
            "mean_bytes": round(statistics.fmean(sizes)) if sizes else 0,
            "total_bytes": sum(sizes),
            "features": dict(sorted(features.items())),
        },
    }
    lines = [
        f"maild {maild_version} ingest benchmark, Python {platform.python_version()}, "
        f"work dir {root}",
        f"workload: {n} mails ({outcome.new_mails} new tickets, {len(outcome.followups)} "
        f"follow-ups), {features.get('attachment', 0)} with a {args.attachment_kb} KB "
        f"attachment, {features.get('html-only', 0)} HTML-only, mean "
        f"{result['workload']['mean_bytes']} bytes",
        f"in-process main(['ingest', FILE]): {n} messages in {wall_total:.2f} s wall / "
        f"{cpu_total:.2f} s CPU = {result['in_process']['messages_per_s']:.1f} messages/s, "
        f"{result['in_process']['cpu_ms_per_message']:.2f} CPU ms/message",
        f"  per-message wall latency: p50 {result['in_process']['wall_ms_p50']:.2f} ms, "
        f"p99 {result['in_process']['wall_ms_p99']:.2f} ms, "
        f"max {result['in_process']['wall_ms_max']:.2f} ms; p50 of the first tenth "
        f"{result['in_process']['wall_ms_p50_first_tenth']:.2f} ms, of the last tenth "
        f"{result['in_process']['wall_ms_p50_last_tenth']:.2f} ms",
        "  p50 / p99 by kind: " + "; ".join(
            f"{kind} ({v['messages']}) {v['wall_ms_p50']:.1f} / {v['wall_ms_p99']:.1f} ms"
            for kind, v in result["in_process"]["by_kind"].items()),
    ]

    # -- subprocess: the real console script, one process per mail ---------------------------
    if args.subprocess > 0:
        maild_bin = Path(args.maild_bin) if args.maild_bin else default_maild_bin()
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        sub_walls: list[float] = []
        plan = workload.plan(args.subprocess)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for j, new in enumerate(plan):
            i = n + j
            mail, path = next_mail(new, i)
            wall0 = time.perf_counter()
            proc = subprocess.run([str(maild_bin), "--config", cfg, "ingest", str(path)],
                                  capture_output=True, text=True, env=env, check=False)
            sub_walls.append(time.perf_counter() - wall0)
            if mail.new:
                workload.tickets[-1].number = proc.stdout.strip()
            outcome.record(mail, proc.returncode, proc.stdout, proc.stderr,
                           f"subprocess mail {j} ({path.name})")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sub_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        m, sub_wall = len(sub_walls), sum(sub_walls)
        result["subprocess"] = {
            "command": f"{maild_bin} --config CFG ingest FILE",
            "messages": m,
            "wall_s": round(sub_wall, 3),
            "cpu_s": round(sub_cpu, 3),
            "messages_per_s": round(m / sub_wall, 1) if sub_wall else 0.0,
            "cpu_ms_per_message": round(1000 * sub_cpu / m, 1),
            "wall_ms_p50": round(1000 * percentile(sub_walls, 50), 1),
            "wall_ms_p99": round(1000 * percentile(sub_walls, 99), 1),
        }
        s = result["subprocess"]
        lines.append(
            f"subprocess {maild_bin.name} ingest FILE: {m} messages in {sub_wall:.2f} s = "
            f"{s['messages_per_s']:.1f} messages/s, {s['cpu_ms_per_message']:.1f} CPU ms/message,"
            f" p50 {s['wall_ms_p50']:.1f} ms, p99 {s['wall_ms_p99']:.1f} ms per message")

    ok, line, facts = db.verify(outcome)
    facts["maild_log_warnings"] = len(collect.records)
    facts["maild_log_sample"] = collect.records[:10]
    result["verify"] = facts
    lines.append(line)
    if collect.records:
        lines.append(f"maild logged {len(collect.records)} warning(s), first: "
                     f"{collect.records[0]}")
    for problem in outcome.problems[:10]:
        lines.append(f"  problem: {problem}")
    for wrong in facts["misplaced"][:10]:
        lines.append(f"  misplaced: {wrong}")
    rootlog.removeHandler(collect)
    return ok, result, lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=3000, help="mails ingested in-process")
    parser.add_argument("--subprocess", type=int, default=50, metavar="N",
                        help="then N more through the console script, one process each "
                             "(0: skip)")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--followup-share", type=float, default=0.30)
    parser.add_argument("--attachment-share", type=float, default=0.05)
    parser.add_argument("--attachment-kb", type=int, default=100)
    parser.add_argument("--dir", help="create the work dir in here (default: the system temp "
                                      "dir); the database's disk matters, commits are fsynced")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--maild-bin", help="console script for --subprocess "
                                            "(default: maild beside this Python)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.count < 1 or args.subprocess < 0:
        parser.error("--count must be at least 1 and --subprocess at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="maild-bench-", dir=args.dir))
    try:
        ok, result, lines = bench(args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
