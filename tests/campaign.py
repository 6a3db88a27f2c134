"""The kill campaign (issue #13): mail over every channel at once into a `maild run` that is
killed -9 at random moments, while its relay fails, refuses and comes back — and afterwards,
from the database, Dovecot and the relay's record, a check of every promise maild makes.

The long form is `bench/kill_campaign.py` (`--kills N --mails M --seed S`); the short form is
tests/test_kill_campaign.py. Both run `Campaign(...).run()` and read its `Report`.

**The setup.** A private Dovecot (IMAP), a `MisbehavingSink` as the outbound relay, and one
`maild run` on SQLite (the default) with its SMTP listener, the web channel and an IMAP poller
on Dovecot's INBOX (IDLE, moving what it stored to `Processed`).

**The mail.** M mails, each a new ticket from a customer of its own (acknowledgements are capped
per address), each named by the marker in its subject, `Campaign mail N`. The seed spreads them
over the channels: SMTP (three connections), IMAP (delivered to Dovecot by LMTP, as an MTA
does), the pipe (`maild ingest`, one process each, run as an MTA runs it: beside the daemon,
storing and threading by itself, two at a time) and the web form (eight clients — a post waits
up to 15 s for the worker to name the ticket — each post from an address of
its own through `X-Forwarded-For`, as behind a proxy: the form's rate limit is per address).
A share are *twins*: the same message sent over SMTP and delivered to the IMAP mailbox, which
SPEC §5 says is stored once. Every client behaves as a real one does: what got no answer (a
dropped connection, a refused one, a 451, an exit 75, a failed page) is sent again, byte for
byte (the web form: the same post with the same token), until it is answered.

**The faults.** N kills -9, each when the count of answered mails passes a point drawn at
random in its share of M, of a target drawn at random: the worker (the intake restarts it by
itself), the sender (likewise, after a back-off; what it had claimed is taken back by the next
one), the intake alone (its children, told by PDEATHSIG, finish what they have in hand and
exit; the campaign restarts `maild run` at once, so for a moment old children and new ones
run side by side), or all at once as a process group (as systemd's SIGKILL or a power cut
would). Meanwhile the relay flips every 0.5–3 s between up, 4xx, 5xx and down.

**What must hold** (`Report.violations` lists every breach; the counts are in `Report.counts`),
once the feeders are through, the relay is up for good and the daemon has settled (spool and
`new` inbound rows empty, no outbox row due or in hand, Dovecot's INBOX empty):

- every mail answered — 250 over SMTP, moved out of the INBOX, `maild ingest` exit 0, the web
  form's success page (the ticket's number, or "received" when the worker took longer than the
  page waits) — is stored exactly once (one `inbound` row per marker), and nothing is
  stored that was not sent;
- every stored mail is on exactly one ticket, and a web submission on the ticket its page named
  (a row `failed` with a reason is counted and listed: stored, visible and re-runnable, but a
  breach unless it is the three-strikes rule of SPEC §9 after kills of the worker);
- every ticket is consistent: one `created` event, a status history whose last entry is the
  ticket's status, exactly one acknowledgement row, and each outbox row shown as a message;
- by relay answer, per outbox row: `sent` — the relay accepted its Message-ID; `dead` — the
  relay refused it with a 5xx, and the ticket records `delivery_failed` naming it (a 5xx makes
  mail dead by design; it may have been accepted on an earlier attempt cut by a kill, which is
  counted, not a breach); any other state — a breach (not settled);
- the relay never accepted an acknowledgement twice under two Message-IDs, nor a mail that is
  not in the outbox. The same Message-ID accepted twice — a worker killed after the relay's
  250 and before it recorded `sent`, which then sends again — is at-least-once delivery under
  one Message-ID, as the delivery worker's docstring says; it is counted (`redelivered`), and a
  receiver can tell it is the same mail.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx

from tests.servers import Dovecot, MaildProcess, wait_port
from tests.smtp_sink import MisbehavingSink, free_port

SHARES = {"imap": 0.12, "pipe": 0.02, "web": 0.05, "twin": 0.04}  # SMTP takes the rest
LEAST_PER_CHANNEL = 4
TARGETS = (("worker", 0.3), ("sender", 0.15), ("intake", 0.35), ("group", 0.2))
SINK_MODES = (("up", 0.45), ("4xx", 0.2), ("5xx", 0.1), ("down", 0.25))
SMTP_CONNECTIONS = 3
WEB_CLIENTS = 8  # a post waits up to 15 s for the worker to name its ticket
PIPES = 2
RETRY_PAUSE = 0.2
MARKER = re.compile(rb"^Subject: Campaign mail (\d+)\r?$", re.MULTILINE)

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]

[smtp]
listen = "127.0.0.1:{smtp}"

[web]
listen = "127.0.0.1:{web}"
base_url = "http://127.0.0.1:{web}"
secret_file = "web.key"

[outbound]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {sink}
smtp_timeout = "5s"
retry_initial = "1s"
retry_max = "2s"

[[imap]]
name = "main"
host = "127.0.0.1"
port = {imap}
security = "none"
username = "support"
password_env = "MAILD_IMAP_PASSWORD"
folder = "INBOX"
processed_folder = "Processed"
idle = true
poll_seconds = 1
batch_size = 20

[[staff]]
email = "alice@example.com"
name = "Alice"

[notify]  # the campaign counts what reaches the customers: no staff notices
new_ticket = false
follow_up = false
"""


def campaign_mail(n: int, date: datetime) -> bytes:
    """Mail N: a new ticket from a customer of its own; the marker is its subject. Made once
    per mail: what a client sends again must be the same bytes (SPEC §5)."""
    msg = EmailMessage()
    msg["From"] = f"Customer {n} <c{n}@customers.test>"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"Campaign mail {n}"
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<campaign-{n}@customers.test>"
    msg.set_content(f"Mail {n} of the kill campaign.\nПринтер не печатает.\n")
    return msg.as_bytes()


@dataclass
class Report:
    counts: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        width = max(len(k) for k in self.counts) if self.counts else 0
        shown = [f"{name:<{width}}  {value}" for name, value in self.counts.items()]
        shown.append(f"violations: {len(self.violations)}")
        return shown + [f"  {v}" for v in self.violations[:50]]


class Campaign:
    def __init__(self, root: Path, *, kills: int, mails: int, seed: int,
                 settle_timeout: float = 900.0, say: Callable[[str], None] = print) -> None:
        self.root = root
        self.kills_wanted, self.mails, self.seed = kills, mails, seed
        self.settle_timeout = settle_timeout
        self.say = say
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.answered: dict[str, set[int]] = defaultdict(set)  # channel -> markers
        self.web_numbers: dict[int, str] = {}                  # marker -> number on the page
        self.lmtp_delivered: set[int] = set()
        self.retries: Counter[str] = Counter()                 # what a client had to resend
        self.errors: list[str] = []
        self.progress = 0  # mails answered (or refused for good) to a client as it goes
        self.total = self.paced = 0
        self.feeding = threading.Event()
        self.done_feeding = threading.Event()
        self.kills: Counter[str] = Counter()
        self.restarts = 0
        self.sink_flips: Counter[str] = Counter()
        self.init_retries = 0
        self.stopping = threading.Event()
        self.daemon_lock = threading.Lock()  # a kill and its restart, or the final stop
        self.raws: dict[int, bytes] = {}

    def raw(self, n: int) -> bytes:
        with self.lock:
            if n not in self.raws:
                self.raws[n] = campaign_mail(n, datetime.now(UTC))
            return self.raws[n]

    # --- setup ----------------------------------------------------------------------------

    def plan(self) -> dict[str, list[int]]:
        counts = {ch: max(LEAST_PER_CHANNEL, round(share * self.mails))
                  for ch, share in SHARES.items()}
        counts["smtp"] = max(LEAST_PER_CHANNEL, self.mails - sum(counts.values()))
        channels = [ch for ch, count in counts.items() for _ in range(count)]
        self.rng.shuffle(channels)
        planned: dict[str, list[int]] = defaultdict(list)
        for n, channel in enumerate(channels):
            planned[channel].append(n)
        return planned

    def run(self) -> Report:
        self.dovecot = Dovecot()
        self.sink = MisbehavingSink()
        self.sink.set_mode("up")
        self.smtp_port, self.web_port = free_port(), free_port()
        self.daemon = MaildProcess(self.root, CONFIG.format(
            root=self.root, smtp=self.smtp_port, web=self.web_port, sink=self.sink.port,
            imap=self.dovecot.imap_port), own_group=True)
        self.daemon.port = self.smtp_port
        try:
            self.dovecot.start()
            self.daemon.start(wait_for=self.smtp_port)
            wait_port(self.web_port)
            return self._run()
        finally:
            self.stopping.set()  # an interrupted campaign: the killer restarts nothing more
            with self.daemon_lock, contextlib.suppress(Exception):
                if self.daemon.running():
                    self.daemon.kill_group()
            self.sink.stop()
            self.dovecot.stop()

    def _run(self) -> Report:
        planned = self.plan()
        self.total = sum(len(v) for v in planned.values())
        # What the kills and the LMTP feeder pace themselves by: the mails maild answers to a
        # client as it goes (SMTP, twins' SMTP copies, the pipe, the web form).
        self.paced = self.total - len(planned["imap"])
        started = time.monotonic()
        smtp_items = sorted(planned["smtp"] + planned["twin"])
        feeders = [threading.Thread(target=self.feed_smtp, args=(smtp_items[i::SMTP_CONNECTIONS],),
                                    name=f"smtp-{i}") for i in range(SMTP_CONNECTIONS)]
        feeders += [
            threading.Thread(target=self.feed_lmtp, args=(sorted(planned["imap"]
                                                                 + planned["twin"]),)),
        ]
        feeders += [threading.Thread(target=self.feed_web, args=(planned["web"][i::WEB_CLIENTS],))
                    for i in range(WEB_CLIENTS)]
        feeders += [threading.Thread(target=self.feed_pipe, args=(planned["pipe"][i::PIPES],))
                    for i in range(PIPES)]
        killer = threading.Thread(target=self.kill_at_random, name="killer")
        flipper = threading.Thread(target=self.flip_the_sink, name="flipper")
        for thread in [*feeders, killer, flipper]:
            thread.daemon = True  # an interrupted campaign ends with its main thread
            thread.start()
        for thread in feeders:
            thread.join()
        self.done_feeding.set()
        self.say(f"fed {self.total} mails in {time.monotonic() - started:.0f} s; "
                 f"kills so far {sum(self.kills.values())}")
        killer.join()
        flipper.join()
        self.sink.set_mode("up")
        settled = self.settle()
        self.say(f"settled: {settled} after {time.monotonic() - started:.0f} s")
        code = self.daemon.stop()
        report = self.check(planned)
        report.counts["seconds"] = round(time.monotonic() - started)
        if not settled:
            report.violations.append(f"did not settle within {self.settle_timeout:.0f} s: "
                                     f"{self.backlog()}")
        if code != 0:
            report.violations.append(f"maild run exited {code} on SIGTERM")
        report.violations += self.errors
        return report

    # --- the clients ----------------------------------------------------------------------

    def give_up(self, why: str) -> None:
        """A client's mail refused for good: a breach, and one mail fewer to wait for."""
        self.say(why)
        with self.lock:
            self.errors.append(why)
            self.progress += 1

    def answer(self, channel: str, n: int) -> None:
        with self.lock:
            self.answered[channel].add(n)
            self.progress += 1

    def feed_smtp(self, items: list[int]) -> None:
        client: smtplib.SMTP | None = None
        for n in items:
            raw = self.raw(n)
            while True:
                try:
                    if client is None:
                        client = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)
                    client.sendmail(f"c{n}@customers.test", ["support@example.com"], raw)
                    self.answer("smtp", n)
                    break
                except smtplib.SMTPDataError as exc:
                    self.retries[f"smtp {exc.smtp_code}"] += 1
                    if exc.smtp_code >= 500:
                        self.give_up(f"mail {n} refused over SMTP: {exc}")
                        break
                except (OSError, smtplib.SMTPException):
                    self.retries["smtp no answer"] += 1
                    with contextlib.suppress(Exception):
                        client.close()  # type: ignore[union-attr]
                    client = None
                time.sleep(RETRY_PAUSE)
        if client is not None:
            with contextlib.suppress(Exception):
                client.quit()

    def feed_lmtp(self, items: list[int]) -> None:
        """Delivery into Dovecot's INBOX, keeping pace with the other channels (so the poller
        drains a mailbox that fills while the kills come, not one filled at the start); the
        IMAP answer, the move, is read from Dovecot at the end."""
        others = self.paced
        for index, n in enumerate(items):
            while self.progress < index * others / len(items):
                time.sleep(0.02)
            while True:
                try:
                    self.dovecot.deliver(self.raw(n), sender=f"c{n}@customers.test")
                    break
                except (OSError, smtplib.SMTPException):
                    self.retries["lmtp"] += 1
                    time.sleep(RETRY_PAUSE)
            with self.lock:
                self.lmtp_delivered.add(n)

    def feed_pipe(self, items: list[int]) -> None:
        for n in items:
            while True:
                done = subprocess.run(
                    [sys.executable, "-m", "maild", "--config", str(self.daemon.config),
                     "ingest", "--sender", f"c{n}@customers.test"],
                    input=self.raw(n), capture_output=True, env=self.daemon.env,
                    cwd=self.root, timeout=300)
                if done.returncode == 0:
                    self.answer("pipe", n)
                    break
                self.retries[f"pipe exit {done.returncode}"] += 1
                if done.returncode != 75:
                    self.give_up(f"maild ingest of mail {n} exited {done.returncode}: "
                                       f"{done.stderr.decode(errors='replace')[-300:]}")
                    break
                time.sleep(RETRY_PAUSE)

    def feed_web(self, items: list[int]) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.web_port}", timeout=30) as client:
            for n in items:
                self.post_form(client, n)

    def post_form(self, client: httpx.Client, n: int) -> None:
        proxy = {"X-Forwarded-For": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
        token = None
        while token is None:
            try:
                page = client.get("/")
                found = re.search(r'name="csrf" value="([^"]+)"', page.text)
                token = found.group(1) if page.status_code == 200 and found else None
            except httpx.HTTPError:
                pass
            if token is None:
                self.retries["web form page"] += 1
                time.sleep(RETRY_PAUSE)
        form = {"csrf": token, "name": f"Customer {n}", "email": f"c{n}@customers.test",
                "subject": f"Campaign mail {n}", "body": f"Form {n} of the kill campaign.",
                "priority": "normal"}
        while True:
            try:
                page = client.post("/", data=form, headers=proxy)
            except httpx.HTTPError:
                self.retries["web post no answer"] += 1  # the same post again, same token
                time.sleep(RETRY_PAUSE)
                continue
            found = re.search(r'class="number">(\d+)<', page.text)
            if page.status_code == 200 and found:
                self.web_numbers[n] = found.group(1)
                self.answer("web", n)
                return
            if page.status_code == 202:  # stored; the worker was too slow to name the ticket
                self.retries["web 202 received, no number yet"] += 1
                self.answer("web", n)
                return
            self.retries[f"web {page.status_code}"] += 1
            if page.status_code < 500:
                self.give_up(f"web form {n}: {page.status_code} {page.text[:200]!r}")
                return
            time.sleep(RETRY_PAUSE)

    # --- the faults -----------------------------------------------------------------------

    def kill_at_random(self) -> None:
        rng = random.Random(self.seed + 1)
        share = self.paced / max(self.kills_wanted, 1)
        points = [rng.uniform(i * share, (i + 1) * share) for i in range(self.kills_wanted)]
        shown = time.monotonic()
        for point in points:
            while self.progress < point and not self.done_feeding.is_set():
                time.sleep(0.02)
            if time.monotonic() - shown > 30:
                shown = time.monotonic()
                self.say(f"answered {self.progress} of {self.paced} (besides IMAP); kills "
                         f"{dict(self.kills)}; resends {dict(self.retries)}")
            target = self._weighted(rng, TARGETS)
            with self.daemon_lock:
                if self.stopping.is_set():
                    return
                self.kill(target)

    def kill(self, target: str) -> None:
        daemon = self.daemon
        assert daemon.process is not None
        if target in ("worker", "sender"):
            pid = self.live_child(target)
            if pid is None:  # the intake is waiting to restart it: the intake dies instead
                target = "intake"
            else:
                os.kill(pid, signal.SIGKILL)
                self.kills[target] += 1
                return
        if target == "intake":
            os.kill(daemon.process.pid, signal.SIGKILL)
        else:
            os.killpg(daemon.process.pid, signal.SIGKILL)
        daemon.process.wait()
        daemon.process = None
        self.kills[target] += 1
        self.restart()

    def restart(self) -> None:
        """`maild init` and `maild run`, as systemd's restart does; `init` is tried again
        should it fail (it is counted: an operator would see that failure)."""
        while True:
            try:
                self.daemon.start(wait_for=self.smtp_port)
                break
            except AssertionError as exc:
                self.init_retries += 1
                self.say(f"maild init failed after a kill: {str(exc)[-300:]}")
                time.sleep(RETRY_PAUSE)
        self.restarts += 1

    def live_child(self, name: str, timeout: float = 120.0) -> int | None:
        """The running worker's or sender's pid (not a zombie the intake has not reaped yet),
        waiting up to `timeout` for the intake to have one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = self.daemon.child_pid(name, timeout=1.0)
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    return pid
            except (TimeoutError, OSError):
                pass
            time.sleep(0.05)
        return None

    def flip_the_sink(self) -> None:
        rng = random.Random(self.seed + 2)
        while not (self.done_feeding.is_set() and sum(self.kills.values()) >= self.kills_wanted):
            mode = self._weighted(rng, SINK_MODES)
            self.sink.set_mode(mode)
            self.sink_flips[mode] += 1
            time.sleep(rng.uniform(0.5, 3.0))

    @staticmethod
    def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
        return rng.choices([c for c, _ in choices], [w for _, w in choices])[0]

    # --- the end --------------------------------------------------------------------------

    def backlog(self) -> dict[str, int]:
        def count(path: Path, sql: str) -> int:
            if not path.exists():
                return 0
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                    timeout=30)) as db:
                return int(db.execute(sql).fetchone()[0])

        with self.dovecot.client() as imap:
            inbox = imap.select_folder("INBOX")[b"EXISTS"]
        return {
            "spool": count(self.root / "maild.db.spool", "SELECT count(*) FROM spool"),
            "inbound new": count(self.root / "maild.db",
                                 "SELECT count(*) FROM inbound WHERE state = 'new'"),
            "outbox due or in hand": count(self.root / "maild.db", "SELECT count(*) FROM outbox"
                                           " WHERE state IN ('pending', 'deferred', 'sending')"),
            "imap inbox": int(inbox),
        }

    def settle(self) -> bool:
        deadline = time.monotonic() + self.settle_timeout
        while time.monotonic() < deadline:
            try:
                if not any(self.backlog().values()):
                    return True
            except sqlite3.OperationalError:
                pass  # the worker holds the lock for a moment
            time.sleep(1.0)
        return False

    def imap_folder(self, folder: str) -> list[int]:
        with self.dovecot.client() as imap:
            if folder != "INBOX" and not imap.folder_exists(folder):
                return []
            imap.select_folder(folder, readonly=True)
            fetched = imap.fetch(imap.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        markers = []
        for data in fetched.values():
            found = MARKER.search(data[b"BODY[HEADER.FIELDS (SUBJECT)]"])
            if found:
                markers.append(int(found.group(1)))
        return markers

    def check(self, planned: dict[str, list[int]]) -> Report:
        report = Report()
        violations = report.violations
        processed = self.imap_folder("Processed")
        left_in_inbox = self.imap_folder("INBOX")
        self.answered["imap"] = set(processed)
        for n, times in Counter(processed).items():
            if times > 1:
                violations.append(f"mail {n} is {times} times in Processed")
        for n in sorted(self.lmtp_delivered - set(processed)):
            violations.append(f"mail {n} delivered to the INBOX never left it"
                              f"{' (still there)' if n in left_in_inbox else ''}")

        db = sqlite3.connect(f"file:{self.root / 'maild.db'}?mode=ro", uri=True)
        rows = db.execute("SELECT i.id, i.raw, i.state, i.reason, i.ticket_id, t.number"
                          " FROM inbound i LEFT JOIN ticket t ON t.id = i.ticket_id").fetchall()
        stored: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for inbound_id, raw, state, reason, ticket_id, number in rows:
            found = MARKER.search(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
            if not found:
                violations.append(f"inbound {inbound_id} is no mail of the campaign")
                continue
            stored[int(found.group(1))].append((inbound_id, state, reason, ticket_id, number))
        offered = {n for ns in planned.values() for n in ns}
        answered_any = set().union(*self.answered.values())
        lost = duplicates = 0
        failed: list[str] = []
        for n in sorted(answered_any):
            copies = stored.get(n, [])
            if not copies:
                lost += 1
                channels = [ch for ch, ns in self.answered.items() if n in ns]
                violations.append(f"mail {n} answered on {channels} is not stored")
            elif len(copies) > 1:
                duplicates += 1
                violations.append(f"mail {n} is stored {len(copies)} times: {copies}")
        for n in sorted(set(stored) - offered):
            violations.append(f"mail {n} is stored but was never sent")
        for n, copies in sorted(stored.items()):
            for inbound_id, state, reason, ticket_id, _number in copies:
                if state == "failed":
                    failed.append(f"inbound {inbound_id} (mail {n}) failed: {reason}")
                elif state != "done" or ticket_id is None:
                    violations.append(f"inbound {inbound_id} (mail {n}) is {state} "
                                      f"without a ticket")
        three_strikes = [f for f in failed if "worker died" in f or "interrupted" in f]
        violations += [f for f in failed if f not in three_strikes]
        for n, number in sorted(self.web_numbers.items()):
            numbers = {copy[4] for copy in stored.get(n, [])}
            if numbers and numbers != {number}:
                violations.append(f"web form {n}: the page named ticket {number}, "
                                  f"stored on {sorted(map(str, numbers))}")

        tickets = self.check_tickets(db, violations)
        acks = self.check_outbox(db, violations)
        db.close()
        for n, ticket_count in Counter(t["marker"] for t in tickets.values()).items():
            if ticket_count > 1:
                violations.append(f"mail {n} opened {ticket_count} tickets")

        report.counts.update({
            "seed": self.seed,
            "mails sent": len(offered),
            **{f"answered {ch}": len(self.answered[ch])
               for ch in ("smtp", "imap", "pipe", "web")},
            "answered twins (smtp and imap)": len(set(planned["twin"]) & self.answered["smtp"]
                                                  & self.answered["imap"]),
            "answered, distinct mails": len(answered_any),
            "stored (inbound rows)": len(rows),
            "stored once": sum(1 for n in answered_any if len(stored.get(n, [])) == 1),
            "duplicates": duplicates,
            "lost": lost,
            "failed, three strikes after kills": len(three_strikes),
            "tickets": len(tickets),
            **acks,
            "kills": sum(self.kills.values()),
            **{f"kills of the {target}": self.kills[target] for target, _ in TARGETS},
            "restarts of maild run": self.restarts,
            "maild init failed at a restart": self.init_retries,
            "restarts of the worker or the sender by the intake":
                self.daemon.log().count("; restarting it in"),
            "relay flips": dict(self.sink_flips),
            "client resends": dict(self.retries),
        })
        return report

    def check_tickets(self, db: sqlite3.Connection, violations: list[str]
                      ) -> dict[int, dict[str, Any]]:
        tickets: dict[int, dict[str, Any]] = {}
        for ticket_id, number, subject, status in db.execute(
                "SELECT id, number, subject, status FROM ticket"):
            found = re.fullmatch(r"Campaign mail (\d+)", subject)
            if not found:
                violations.append(f"ticket {number} has a foreign subject {subject!r}")
                continue
            tickets[ticket_id] = {"number": number, "marker": int(found.group(1)),
                                  "status": status}
        events: dict[int, Counter[str]] = defaultdict(Counter)
        for ticket_id, kind in db.execute("SELECT ticket_id, type FROM event"):
            events[ticket_id][kind] += 1
        history: dict[int, list[str]] = defaultdict(list)
        for ticket_id, status in db.execute(
                "SELECT ticket_id, status FROM status_change ORDER BY id"):
            history[ticket_id].append(status)
        for ticket_id, ticket in tickets.items():
            name = f"ticket {ticket['number']} (mail {ticket['marker']})"
            if events[ticket_id]["created"] != 1:
                violations.append(f"{name}: {events[ticket_id]['created']} created events")
            if not history[ticket_id] or history[ticket_id][-1] != ticket["status"]:
                violations.append(f"{name}: status {ticket['status']}, history "
                                  f"{history[ticket_id]}")
        self.events = events
        return tickets

    def check_outbox(self, db: sqlite3.Connection, violations: list[str]) -> dict[str, int]:
        outbox = db.execute("SELECT id, ticket_id, kind, rcpt_to, message_id, state, last_error"
                            " FROM outbox").fetchall()
        shown = {outbox_id for (outbox_id,) in db.execute(
            "SELECT outbox_id FROM message WHERE outbox_id IS NOT NULL")}
        failed_events: dict[int, str] = defaultdict(str)
        for ticket_id, detail in db.execute(
                "SELECT ticket_id, detail FROM event WHERE type = 'delivery_failed'"):
            failed_events[ticket_id] += detail
        tickets = {ticket_id for (ticket_id,) in db.execute("SELECT id FROM ticket")}
        answers: dict[str, Counter[int]] = defaultdict(Counter)
        for answer in self.sink.answers:
            answers[answer.message_id][answer.code] += 1
        by_id = {row[4]: row for row in outbox}
        for message_id in answers:
            if message_id not in by_id and answers[message_id][250]:
                violations.append(f"the relay accepted <{message_id}>, not in the outbox")
        acks_per_ticket: Counter[int] = Counter()
        delivered_ids: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        counts = Counter[str]()
        for outbox_id, ticket_id, kind, rcpt, message_id, state, error in outbox:
            accepted = answers[message_id][250]
            refused = sum(n for code, n in answers[message_id].items() if code >= 500)
            if kind == "ack":
                acks_per_ticket[ticket_id] += 1
            if accepted:
                delivered_ids[(ticket_id, kind, rcpt)].add(message_id)
            if accepted > 1:
                counts["redelivered under the same Message-ID"] += 1
            if outbox_id not in shown:
                violations.append(f"outbox {outbox_id} <{message_id}> is on no message")
            if state == "sent":
                counts[f"{kind} sent"] += 1
                if not accepted:
                    violations.append(f"outbox {outbox_id} <{message_id}> is sent, the relay "
                                      f"never accepted it")
            elif state == "dead":
                counts[f"{kind} dead (relay said 5xx)"] += 1
                if accepted:
                    counts[f"{kind} dead, accepted before a kill"] += 1
                if not refused:
                    violations.append(f"outbox {outbox_id} <{message_id}> is dead, the relay "
                                      f"never refused it: {error}")
                if message_id not in failed_events[ticket_id]:
                    violations.append(f"outbox {outbox_id} <{message_id}> is dead, its ticket "
                                      f"has no delivery_failed event naming it")
            else:
                violations.append(f"outbox {outbox_id} <{message_id}> left {state}")
        for key, ids in delivered_ids.items():
            if len(ids) > 1:
                counts["delivered twice under two Message-IDs"] += 1
                violations.append(f"{key} delivered under {len(ids)} Message-IDs: {sorted(ids)}")
        for ticket_id in tickets:
            if acks_per_ticket[ticket_id] != 1 and not (
                    acks_per_ticket[ticket_id] == 0
                    and self.events[ticket_id]["no_acknowledgement"]):
                violations.append(f"ticket id {ticket_id} has {acks_per_ticket[ticket_id]} "
                                  f"acknowledgements")
        counts.setdefault("delivered twice under two Message-IDs", 0)
        counts.setdefault("redelivered under the same Message-ID", 0)
        return {"acknowledgements owed": len(tickets), **dict(sorted(counts.items()))}
