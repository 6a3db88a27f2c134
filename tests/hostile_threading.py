"""The hostile-mail campaign through threading (issue #13, SPEC §9): hostile messages stored as
the pipe stores them into one real installation, threaded and answered by the worker's own
code, in batches, in process — and after each batch, from the database and the outbox Maildir,
a check that every message ended as a ticket or a `failed` row with its reason and that no
mail maild wrote carries what a customer tried to inject.

The long form is `bench/hostile_campaign.py --threading` (100,000 cases); the short form is
tests/test_hostile.py. Both run `ThreadingCampaign(...).run(cases)` and read its `Report`.

**The installation.** `maild.db.init` on SQLite (or any database URL given), two staff members,
staff notices on, language `auto`, outgoing mail to a Maildir: acknowledgements and staff
notices are really built and delivered. Its clock is a `FixedClock` that moves on an hour a
batch, so the hourly cap on automatic mail to one address lets acknowledgements through again
and the timer duties (escalations) fall due as in a working week.

**A batch** (100 cases, the worker's `BATCH`):

1. *Follow-ups.* A share of the cases become answers to an acknowledgement maild delivered
   earlier (read from the Maildir): from the address it went to, with its ticket tag in the
   Subject, its Message-ID in In-Reply-To or References, or both — put before the hostile
   message's own headers, which follow unchanged (the first of a repeated header counts).
2. *Store* each case with `maild.ingest.accept.accept`, source `pipe`, after the pipe's own
   refusals (an empty message, one over `mail.max_message_bytes`: exit 2, nothing stored).
   Each case is also parsed alone (`parse_message`) and `check_parsed`: the parse property.
3. *Thread and deliver* as `maild.daemon.worker`'s loop does: `process_pending` and the
   app's `Deliverer.deliver_due`, and the timer duties, until a round makes no progress.
4. *Staff* answer a share of the tickets the batch opened and close another share
   (`maild.tickets`, as `maild ticket reply/close` do), so later follow-ups land on waiting and
   closed tickets (and reopen them), and the answers are built from hostile tickets too.
5. *Check.* Every inbound row of the batch `check_settled` (none left `new` or claimed);
   every mail delivered into the Maildir `check_outgoing` (then removed, so the folder stays
   small; its reference kept for follow-ups); no outbox row left due, in hand or dead. A
   follow-up that did not land on the ticket it answers is kept under `failures/strayed/`
   with where it went (`strayed.txt`), to be explained; it is counted, not a violation.

An exception out of any of maild's calls is a crash: counted, its traceback and the batch's
messages saved under `failures`, and the campaign goes on with the next batch.
"""

from __future__ import annotations

import random
import re
import resource
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from sqlalchemy import text

from maild import config, tickets
from maild.app import App
from maild.clock import FixedClock
from maild.db import init
from maild.errors import UnparseableMessage
from maild.ingest.accept import accept
from maild.parsing import MessageTooComplex, parse_message
from maild.sla.duties import run_duties
from maild.threading import process_pending
from maild.threading.worker import MAX_ATTEMPTS, Settled
from maild.tracked import tracking
from tests.hostile import check_outgoing, check_parsed, check_settled

BATCH = 100  # as maild.daemon.worker
STAFF = ("alice@example.com", "bob@example.com")
START = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # a Tuesday, 09:00 in Moscow
MAX_ROUNDS = 50  # worker rounds a batch may take before what is left counts as stuck
MAX_SAVED = 50   # batches whose messages are kept with their findings
MAX_STRAYED = 500  # follow-ups kept that did not land on the ticket they answer

CONFIG = """
[database]
url = "{url}"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]
language = "auto"
secret_file = "{root}/maild.key"

[outbound]
transport = "maildir"
maildir = "{root}/outbox"

[notify]
new_ticket = true
follow_up = true

[[staff]]
email = "alice@example.com"
name = "Alice"

[[staff]]
email = "bob@example.com"
name = "Bob"

[sla]
timezone = "Europe/Moscow"
"""


@dataclass(frozen=True)
class Reference:
    """An acknowledgement maild delivered, as its customer got it."""
    number: str
    customer: str
    message_id: str
    subject: bytes


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)   # failed rows by reason
    violations: list[str] = field(default_factory=list)
    wall: float = 0.0
    peak_rss_kb: int = 0
    slowest: tuple[float, str, int] = (0.0, "", 0)          # CPU s, which case, its size

    def add(self, other: Report) -> None:
        self.counts.update(other.counts)
        self.failed.update(other.failed)
        self.violations += other.violations
        self.wall = max(self.wall, other.wall)
        self.peak_rss_kb = max(self.peak_rss_kb, other.peak_rss_kb)
        self.slowest = max(self.slowest, other.slowest)

    def lines(self) -> list[str]:
        c = self.counts
        cpu, which, size = self.slowest
        out = [f"{c['cases']} cases in {self.wall:.0f} s wall "
               f"({c['cases'] / max(self.wall, 1e-9):.1f} cases/s), peak RSS "
               f"{self.peak_rss_kb / 1024:.0f} MB; slowest case {which} ({size} bytes): "
               f"{cpu:.2f} s CPU to store and thread"]
        out += [f"  {name}: {count}" for name, count in sorted(c.items())]
        out.append("  failed rows by reason:")
        out += [f"    {count:6}  {reason}" for reason, count in self.failed.most_common()]
        out.append(f"  violations: {len(self.violations)}")
        out += [f"    {v}" for v in self.violations[:50]]
        return out


class _Stopwatch:
    """The worker's `in_hand` hook: CPU time between its calls goes to the row in hand."""

    def __init__(self) -> None:
        self.spent: dict[int, float] = {}
        self._row: int | None = None
        self._since = 0.0

    def __call__(self, inbound_id: int | None) -> None:
        now = time.process_time()
        if self._row is not None:
            self.spent[self._row] = self.spent.get(self._row, 0.0) + now - self._since
        self._row, self._since = inbound_id, now


@dataclass
class _Case:
    label: str
    raw: bytes
    follows: Reference | None = None
    row: int | None = None
    store_cpu: float = 0.0


class ThreadingCampaign:
    def __init__(self, root: Path, *, seed: int, url: str | None = None, name: str = "",
                 follow_ups: float = 0.3, answer: float = 0.2, close: float = 0.2,
                 duties: bool = True, failures: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.name = name or f"seed {seed}"
        self.follow_ups, self.answer_share, self.close_share = follow_ups, answer, close
        self.duties = duties
        self.failures = failures or root / "failures"
        self.progress = progress
        root.mkdir(parents=True, exist_ok=True)
        path = root / "maild.toml"
        path.write_text(CONFIG.format(url=url or f"sqlite:///{root}/maild.db", root=root),
                        encoding="utf-8")
        self.clock = FixedClock(START)
        self.app = App(config.load(path), clock=self.clock)
        init(self.app.engine, self.app.settings)
        self.deliverer = self.app.deliverer()
        self.outbox = Path(self.app.settings.outbound.maildir) / "new"
        self.references: list[Reference] = []
        self.told: set[tuple[str, int]] = set()  # rows left unsettled, reported once
        self.saved = 0
        self.strayed = 0
        self.report = Report()

    def close(self) -> None:
        self.app.close()

    # --- the run --------------------------------------------------------------------------

    def run(self, raws: Iterable[bytes]) -> Report:
        start = time.perf_counter()
        batch: list[_Case] = []
        try:
            for n, raw in enumerate(raws):
                batch.append(_Case(f"{self.name}/{n}", raw))
                if len(batch) == BATCH:
                    self._batch(batch)
                    batch = []
                    if self.progress and (n + 1) % 2000 == 0:
                        self.progress(f"{self.name}: {n + 1} cases, "
                                      f"{time.perf_counter() - start:.0f} s")
            if batch:
                self._batch(batch)
            self._totals()
        finally:
            self.report.wall = time.perf_counter() - start
            self.report.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.close()
        return self.report

    def _batch(self, batch: list[_Case]) -> None:
        counts = self.report.counts
        self.clock.set(self.clock.now() + timedelta(hours=1))
        for case in batch:
            counts["cases"] += 1
            if self.references and self.rng.random() < self.follow_ups:
                case.follows = self.rng.choice(self.references[-2000:])
                case.raw = follow_up(self.rng, case.raw, case.follows)
                counts["follow-ups"] += 1
            self._parse(case)
            self._store(case)
        stored = [case for case in batch if case.row is not None]
        watch = _Stopwatch()
        settled = self._thread(batch, watch)
        self._staff(batch, settled)
        self._check_rows(stored, watch)
        self._check_outbox(batch)

    def _parse(self, case: _Case) -> None:
        """The parse property, on every case: clean text, or refused by name."""
        try:
            mail = parse_message(case.raw)
        except MessageTooComplex:
            self.report.counts["parse: refused, a MIME limit"] += 1
            return
        except UnparseableMessage:
            self.report.counts["parse: refused, no sender"] += 1
            return
        except Exception:
            self._finding(case, "parse_message raised", [case])
            return
        try:
            check_parsed(mail)
        except AssertionError:
            self._finding(case, "parsed mail not clean", [case])
            return
        self.report.counts["parse: parsed"] += 1

    def _store(self, case: _Case) -> None:
        """As `maild ingest` stores: its refusals first, then `accept`."""
        counts = self.report.counts
        if not case.raw.strip():
            counts["refused by the pipe: empty"] += 1
            return
        if len(case.raw) > self.app.settings.mail.max_message_bytes:
            counts["refused by the pipe: too big"] += 1
            return
        began = time.process_time()
        try:
            accepted = accept(self.app.pool, case.raw, source="pipe", now=self.clock.now())
        except Exception:
            self._finding(case, "accept raised", [case])
            return
        finally:
            case.store_cpu = time.process_time() - began
        if accepted.duplicate:
            counts["stored once already (duplicate)"] += 1
            return
        counts["stored"] += 1
        case.row = accepted.row_id

    def _thread(self, batch: list[_Case], watch: _Stopwatch) -> dict[int, Settled]:
        """The worker's loop, until a round makes no progress."""
        settled: dict[int, Settled] = {}
        crashes = 0
        for _ in range(MAX_ROUNDS):
            try:
                results = process_pending(self.app.pool, self.app.settings,
                                          self.app.templates, self.clock, BATCH, in_hand=watch)
                if self.duties:
                    run_duties(self.app.pool, self.app.settings, self.app.templates,
                               self.clock)
                delivered = self._deliver()
            except Exception:
                self._finding(None, "the worker's loop raised", batch)
                crashes += 1
                if crashes > MAX_ATTEMPTS:
                    break
                continue  # as the daemon restarts its worker: its own claims are taken again
            settled.update((s.inbound_id, s) for s in results)
            if not any(s.state != "new" for s in results) and not delivered:
                break
        return settled

    def _deliver(self) -> bool:
        report = self.deliverer.deliver_due(self.clock, limit=BATCH)
        return bool(report)

    def _staff(self, batch: list[_Case], settled: dict[int, Settled]) -> None:
        """Staff answer and close some of the tickets the batch opened."""
        opened = [s.ticket_number for s in settled.values() if s.created and s.ticket_number]
        for number in opened:
            choice = self.rng.random()
            if choice >= self.answer_share + self.close_share:
                continue
            how = "answered" if choice < self.answer_share else "closed"
            try:
                with self.app.pool.writing() as db, \
                        tracking(db, self.app.pool.reader) as tracker:
                    ctx = tickets.Context(tracker, self.app.settings, self.app.templates,
                                          self.clock.now())
                    ticket = tickets.find(tracker, number)
                    if how == "answered":
                        tickets.answer(ctx, ticket, STAFF[0], "We are looking into it.\n")
                    else:
                        tickets.close(ctx, ticket, STAFF[1])
                self.report.counts[f"staff: {how}"] += 1
            except Exception:
                self._finding(None, f"staff work ({how}) on ticket {number} raised", batch)
        try:
            while self._deliver():
                pass
        except Exception:
            self._finding(None, "delivery after staff raised", batch)

    # --- the checks -----------------------------------------------------------------------

    def _check_rows(self, stored: list[_Case], watch: _Stopwatch) -> None:
        counts = self.report.counts
        rows = {row["id"]: row for row in self._query(
            "SELECT i.id, i.state, i.reason, i.ticket_id, i.claimed_by, t.number "
            "FROM inbound i LEFT JOIN ticket t ON t.id = i.ticket_id "
            f"WHERE i.id IN ({', '.join(str(c.row) for c in stored) or 'NULL'})")}
        for case in stored:
            assert case.row is not None
            row = rows[case.row]
            try:
                check_settled(row["state"], row["reason"], row["ticket_id"])
                assert not row["claimed_by"], f"still claimed by {row['claimed_by']}"
            except AssertionError as exc:
                self._finding(case, f"inbound {case.row} not settled: {exc}", [case])
                continue
            counts[f"inbound {row['state']}"] += 1
            if row["state"] == "failed":
                self.failed[_reason_kind(row["reason"])] += 1
            if case.follows is not None:
                landed = _followed(row, case.follows)
                counts[landed] += 1
                if landed != _ON_THEIR_TICKET:
                    self._strayed(case, case.follows, row, landed)
            cpu = case.store_cpu + watch.spent.get(case.row, 0.0)
            self.report.slowest = max(self.report.slowest, (cpu, case.label, len(case.raw)))
            if cpu == self.report.slowest[0]:
                self._save(self.failures / f"slowest-{self.name.replace(' ', '-')}.eml",
                           case.raw)
        for row in self._query("SELECT id FROM inbound WHERE state = 'new'"):
            if ("inbound", row["id"]) not in self.told:
                self.told.add(("inbound", row["id"]))
                self.report.violations.append(f"inbound {row['id']} left new")

    def _strayed(self, case: _Case, ref: Reference, row: Any, landed: str) -> None:
        """A follow-up that did not land on the ticket it answers: kept with where it went, so
        each can be explained (the first `MAX_STRAYED`), and not counted as a violation —
        a hostile message may name another ticket or reuse a Message-ID of its own."""
        if self.strayed >= MAX_STRAYED:
            return
        self.strayed += 1
        folder = self.failures / "strayed"
        name = case.label.replace("/", "-").replace(" ", "-")
        self._save(folder / f"{name}.eml", case.raw)
        with open(folder / "strayed.txt", "a", encoding="utf-8") as out:
            out.write(f"{name}.eml: answers {ref.number} <{ref.message_id}>; {landed}: "
                      f"inbound {row['id']} {row['state']}, ticket {row['number']}, "
                      f"{row['reason'][:200]!r}\n")

    @property
    def failed(self) -> Counter[str]:
        return self.report.failed

    def _check_outbox(self, batch: list[_Case]) -> None:
        """Every mail delivered since the last batch, then the outbox table."""
        counts = self.report.counts
        files = sorted(self.outbox.iterdir()) if self.outbox.exists() else []
        ids = {int(m.group(1)): path for path in files
               if (m := re.search(r"\.M(\d+)maild\.", path.name))}
        kinds = {row["id"]: row["kind"] for row in self._query(
            f"SELECT id, kind FROM outbox WHERE id IN ({', '.join(map(str, ids)) or 'NULL'})")}
        for outbox_id, path in ids.items():
            raw = path.read_bytes()
            try:
                check_outgoing(raw)
            except AssertionError as exc:
                self._save(self.failures / f"outgoing-{path.name}.eml", raw)
                self._finding(None, f"outgoing mail {path.name} ({kinds.get(outbox_id)}): "
                              f"{str(exc)[:300]}", batch)
            counts[f"mail delivered: {kinds.get(outbox_id, '?')}"] += 1
            if kinds.get(outbox_id) == "ack":
                self._remember(raw)
            path.unlink()
        for row in self._query("SELECT id, state, kind, last_error FROM outbox "
                               "WHERE state != 'sent'"):
            if ("outbox", row["id"]) not in self.told:  # with a Maildir, all is sent at once
                self.told.add(("outbox", row["id"]))
                self.report.violations.append(f"outbox {row['id']} ({row['kind']}) left "
                                              f"{row['state']}: {row['last_error']}")

    def _remember(self, raw: bytes) -> None:
        head = BytesHeaderParser().parsebytes(raw)
        number, to, message_id = (str(head.get(h, "")) for h in
                                  ("X-Maild-Ticket", "Delivered-To", "Message-ID"))
        subject = raw.partition(b"\r\nSubject: ")[2].partition(b"\r\n")[0]
        if number and to and message_id:
            self.references.append(Reference(number, to, message_id, subject))
            del self.references[:-10_000]

    def _totals(self) -> None:
        counts = self.report.counts
        for row in self._query("SELECT type, count(*) AS n FROM event WHERE type IN "
                               "('reopened', 'not_reopened', 'claimed_ticket', "
                               "'message_id_reused', 'escalated', 'auto_reply_suppressed', "
                               "'follows_closed') GROUP BY type"):
            counts[f"event {row['type']}"] = row["n"]
        counts["tickets"] = self._query("SELECT count(*) AS n FROM ticket")[0]["n"]

    # --- helpers --------------------------------------------------------------------------

    def _query(self, sql: str) -> list[Any]:
        with self.app.engine.connect() as connection:
            return [row._mapping for row in connection.execute(text(sql))]

    def _finding(self, case: _Case | None, what: str, batch: list[_Case]) -> None:
        """A crash or a broken check: counted and told; the messages of its batch kept (once
        a batch, for the first `MAX_SAVED` batches), with what happened."""
        self.report.counts["crashes" if "raised" in what else "broken checks"] += 1
        label = case.label if case else f"batch of {batch[0].label}"
        folder = self.failures / f"{batch[0].label}-batch".replace("/", "-").replace(" ", "-")
        self.report.violations.append(f"{label}: {what} (batch under {folder})")
        if not folder.exists() and self.saved >= MAX_SAVED:
            return
        if not folder.exists():
            self.saved += 1
            for one in batch:
                self._save(folder / f"{one.label.rsplit('/', 1)[-1]}.eml", one.raw)
        with open(folder / "what.txt", "a", encoding="utf-8") as out:
            out.write(f"{label}: {what}\n\n{traceback.format_exc()}\n")

    @staticmethod
    def _save(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def follow_up(rng: random.Random, raw: bytes, ref: Reference) -> bytes:
    """The hostile `raw` as the customer's answer to `ref`: their address, the ticket's tag in
    the Subject and/or the acknowledgement's Message-ID in In-Reply-To or References, before
    the message's own headers."""
    address = ref.customer.encode("utf-8", "surrogateescape")
    how = rng.choice(["tag", "in-reply-to", "both", "references", "number"])
    head = [b"From: " + rng.choice([address, b"<" + address + b">",
                                    b"=?utf-8?q?=D0=9A=D0=BB=D0=B8=D0=B5=D0=BD=D1=82?= <"
                                    + address + b">"])]
    if how in ("tag", "both"):
        head.append(b"Subject: " + rng.choice([b"Re: ", b"AW: ", b"Fwd: Re: ", b""])
                    + ref.subject)
    elif how == "number":
        head.append(b"Subject: " + rng.choice([b"ticket ", b"#", b"Ticket#"])
                    + ref.number.encode() + b" again")
    if how in ("in-reply-to", "both"):
        head.append(b"In-Reply-To: " + ref.message_id.encode())
    elif how == "references":
        head.append(b"References: <elsewhere@example.org> " + ref.message_id.encode())
    return b"\r\n".join(head) + b"\r\n" + raw


_ON_THEIR_TICKET = "follow-ups: threaded onto their ticket"


def _followed(row: Any, ref: Reference) -> str:
    if row["state"] == "failed":
        return "follow-ups: failed"
    if row["number"] == ref.number:
        return _ON_THEIR_TICKET
    return "follow-ups: on another ticket" if row["number"] else "follow-ups: no ticket"


def _reason_kind(reason: str) -> str:
    """A failed row's reason without what is particular to the message (numbers, addresses,
    ids, quoted parts), so that reasons can be counted."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"|<[^>]*>", "…", reason)
    return re.sub(r"\d+", "N", reason)[:100]

