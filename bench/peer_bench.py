"""Peer benchmark: maild against django-helpdesk on one seeded workload (issue #12).

One workload (bench/workload.py): N new-ticket mails, then N follow-ups, one to each ticket,
10 % of them to tickets closed in between; English, Russian, German and French; plain, HTML
alternative and HTML-only bodies; 5 % with a 100 KB attachment. The follow-ups are written
after the new tickets are processed, from the ticket numbers each system assigned (read from
its database), naming the ticket as that system threads: the subject tag (`[Ticket#N]` for
maild, `[support-ID]` for django-helpdesk) and an `In-Reply-To` of that system's
acknowledgement; bodies and structure are the same for both.

- **django-helpdesk** (pinned below, in a venv of its own cached under
  ~/.cache/maild-peer-bench): a minimal Django project on SQLite (WAL, synchronous=FULL), one
  queue with `email_box_type='local'`; its `get_email` command reads each phase's .eml files
  from that folder. Its mail goes to Django's file backend. Measured: wall and CPU time
  (rusage of the process) of the get_email run of each phase. Closing = status Closed in its
  database.
- **maild**: `maild run` (SMTP listener, worker, Maildir outbox, staff notices on, two staff
  members), fed over SMTP from 4 client threads; on SQLite, and on PostgreSQL (a private
  cluster, as the test suite starts one) with 1 and with 3 `maild run` processes on one
  database, the clients spread over their ports. Measured per phase: the CPU of every maild
  process (each `maild run` with its worker and other children, from /proc; of it, the intake:
  the `maild run` process itself, its children excluded), and the wall time
  from the first mail sent until every mail is threaded and every outgoing mail delivered.
  Closing = `maild ticket close` (the CLI's code, in one process for all the tickets).

Then each system's result is checked: every follow-up on its ticket, the closed ones
reopened. `verify: OK` or `FAILED` per system; exit status 1 when one failed.

With `--rounds N` django-helpdesk and maild on SQLite run N times, in turns, and each one's
quietest round counts (each round's figures are printed beside it): on a machine whose load
comes and goes, one round of each can fall on a busy minute for one system and a quiet one for
the other.

    .venv/bin/python bench/peer_bench.py [--count 1000] [--seed 1] [--json] [--no-postgres]
                                         [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import machine  # noqa: E402
import workload  # noqa: E402

from tests.servers import ServiceManager, wait_port  # noqa: E402
from tests.smtp_sink import free_port  # noqa: E402

HELPDESK = "django-helpdesk==2.6.1"
DJANGO = "Django==5.2.19"  # the 5.2 LTS line; django-helpdesk 2.6 needs Django >= 5.2
TICK = os.sysconf("SC_CLK_TCK")
STAFF = ("alice@example.com", "bob@example.com")
SLUG = "support"
DEADLINE_S = 1800.0  # a phase that takes longer than this is a hang, not a measurement

# --- django-helpdesk -----------------------------------------------------------------------

SETTINGS = '''
import os
ROOT = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "peer-bench"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
    "django.contrib.messages", "django.contrib.sites", "django.contrib.humanize",
    "rest_framework", "helpdesk",
]
MIDDLEWARE = []
ROOT_URLCONF = "urls"
SITE_ID = 1
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": []}}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(ROOT, "helpdesk.db"),
    "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                "transaction_mode": "IMMEDIATE"},
}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "Europe/Moscow"
MEDIA_ROOT = os.path.join(ROOT, "media")
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.path.join(ROOT, "sent")
DEFAULT_FROM_EMAIL = "support@example.com"
HELPDESK_TEAMS_MODE_ENABLED = False   # else it needs pinax-teams
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"level": "WARNING", "handlers": []}}
'''

URLS = '''
from django.urls import include, path
urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]
'''

MANAGE = '''
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
'''

# The bench's own reads and writes of django-helpdesk's database, through its models.
TOOL = '''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
import django
django.setup()
from helpdesk.models import FollowUp, Queue, Ticket
command, args = sys.argv[1], sys.argv[2:]
if command == "setup":
    staff = ",".join(args[1:])
    Queue.objects.create(
        title="Support", slug="support", email_address="support@example.com",
        allow_email_submission=True, email_box_type="local", email_box_local_dir=args[0],
        email_box_interval=0, new_ticket_cc=staff, updated_ticket_cc=staff,
        enable_notifications_on_email_events=True, logging_type="none")
elif command == "close":
    ids = [int(a) for a in args]
    done = Ticket.objects.filter(id__in=ids).update(status=Ticket.CLOSED_STATUS)
    print(json.dumps({"closed": done}))
elif command == "dump":
    print(json.dumps({
        "statuses": {k: str(v) for k, v in Ticket.STATUS_CHOICES},
        "tickets": {t.id: t.status for t in Ticket.objects.all()},
        "followups": [[f.message_id, f.ticket_id, f.new_status, f.title]
                      for f in FollowUp.objects.order_by("id")],
    }))
'''


def helpdesk_venv(cache: Path) -> Path:
    """The pinned django-helpdesk in a venv of its own, built once per pin."""
    name = re.sub(r"[^A-Za-z0-9.]+", "-", f"{HELPDESK}-{DJANGO}").lower()
    venv = cache / name
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"building {venv} ({HELPDESK}, {DJANGO}) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with open(cache / f"{name}.pip.log", "wb") as log:
        done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                               HELPDESK, DJANGO], stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"pip install {HELPDESK} {DJANGO} failed: see {log.name}")
    (venv / ".complete").write_text(f"{HELPDESK} {DJANGO}\n")
    return python


def rusage_run(command: Sequence[str], **kwargs: Any) -> dict[str, float]:
    """Run `command`; its wall time and CPU seconds (its own rusage, children included)."""
    start = time.monotonic()
    process = subprocess.Popen(command, **kwargs)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}")
    return {"seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime}


class Helpdesk:
    """A django-helpdesk site in `root`: its project, database, inbox and sent mail."""

    name = "django-helpdesk"
    label = (f"django-helpdesk {HELPDESK.split('==')[1]} (Django {DJANGO.split('==')[1]}, "
             "SQLite), get_email")

    def __init__(self, root: Path, python: Path) -> None:
        self.root = root
        self.python = python
        self.inbox = root / "inbox"
        self.sent = root / "sent"
        self.environment = {**os.environ, "LANG": "C.UTF-8", "PYTHONUTF8": "1"}
        for folder in (self.inbox, self.sent):
            folder.mkdir(parents=True)
        for file, source in (("settings.py", SETTINGS), ("urls.py", URLS),
                             ("manage.py", MANAGE), ("tool.py", TOOL)):
            (root / file).write_text(source)
        self.manage("migrate", "-v0")
        self.tool("setup", str(self.inbox), *STAFF)
        self.startup = self.get_email()  # an empty inbox: what one run costs before any mail

    def manage(self, *args: str) -> None:
        subprocess.run([str(self.python), str(self.root / "manage.py"), *args], check=True,
                       env=self.environment, cwd=self.root)

    def tool(self, *args: str) -> Any:
        done = subprocess.run([str(self.python), str(self.root / "tool.py"), *args],
                              check=True, env=self.environment, cwd=self.root,
                              stdout=subprocess.PIPE, text=True)
        return json.loads(done.stdout) if done.stdout.strip() else None

    def get_email(self) -> dict[str, float]:
        return rusage_run([str(self.python), str(self.root / "manage.py"), "get_email",
                           "--quiet"], env=self.environment, cwd=self.root)

    def feed(self, mails: Sequence[bytes], phase: str) -> dict[str, Any]:
        for i, raw in enumerate(mails):
            (self.inbox / f"{phase}-{i:06d}.eml").write_bytes(raw)
        before = len(self.sent_mail())
        result: dict[str, Any] = self.get_email()
        result["left_in_inbox"] = len(os.listdir(self.inbox))
        result["mails_out"] = len(self.sent_mail()) - before
        return result

    def sent_mail(self) -> list[bytes]:
        """Every message Django's file backend wrote (one file per connection, each message
        followed by a line of 79 dashes)."""
        return [chunk for file in self.sent.iterdir()
                for chunk in file.read_bytes().split(b"\n" + b"-" * 79 + b"\n")
                if chunk.strip()]

    def tickets(self, mails: Sequence[workload.Mail]) -> list[tuple[str, str | None]]:
        """Per mail: its ticket id and the Message-ID of the acknowledgement sent for it."""
        by_message = {m: t for m, t, _, _ in self.tool("dump")["followups"]}
        acks: dict[tuple[str, str], str] = {}  # (recipient, ticket id): Message-ID
        for chunk in self.sent_mail():
            sent = message_from_bytes(chunk, policy=policy.default)
            tag = re.search(rf"\[{SLUG}-(\d+)\]", str(sent["Subject"] or ""))
            if tag and sent["Message-ID"]:
                acks[(str(sent["To"]).strip(), tag.group(1))] = str(sent["Message-ID"]).strip()
        found = []
        for mail in mails:
            ticket = by_message.get(mail.message_id)
            if ticket is None:
                raise RuntimeError(f"django-helpdesk made no ticket of {mail.message_id}")
            found.append((str(ticket), acks.get((mail.address, str(ticket)))))
        return found

    def close(self, tickets: Sequence[str]) -> None:
        closed = self.tool("close", *tickets)["closed"]
        if closed != len(tickets):
            raise RuntimeError(f"django-helpdesk closed {closed} of {len(tickets)} tickets")

    @staticmethod
    def tag(ticket: str) -> str:
        return f"[{SLUG}-{ticket}]"

    def verify(self, new: Sequence[workload.Mail], follow: Sequence[workload.Mail],
               tickets: Sequence[str], closed: Sequence[int]) -> dict[str, Any]:
        dump = self.tool("dump")
        names = {int(k): v for k, v in dump["statuses"].items()}
        status = {int(k): names.get(v, str(v)) for k, v in dump["tickets"].items()}
        on = {m: t for m, t, _, _ in dump["followups"]}
        problems = []
        twice = [m for m, n in Counter(m for m, _, _, _ in dump["followups"]).items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} mails stored twice (first: {twice[:3]})")
        if len(status) != len(new):
            problems.append(f"{len(status)} tickets for {len(new)} new mails")
        wrong = [m.index for m in follow if on.get(m.message_id) != int(tickets[m.index])]
        if wrong:
            problems.append(f"{len(wrong)} follow-ups not on their ticket (first: {wrong[:5]})")
        after = Counter(status[int(tickets[i])] for i in closed)
        titles = Counter(title.split(" from ")[0] for m, t, _, title in dump["followups"]
                         if m in {follow[i].message_id for i in closed})
        if set(after) != {"Reopened"}:
            problems.append(f"closed tickets after their follow-up: {dict(after)}")
        left = len(os.listdir(self.inbox))
        if left:
            problems.append(f"{left} mails left in the inbox (not processed)")
        return {"ok": not problems, "problems": problems,
                "closed_after_follow_up": dict(after), "closed_follow_up_titles": dict(titles),
                "tickets": len(status)}


# --- maild ---------------------------------------------------------------------------------

CONFIG = """
[database]
url = "{url}"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]
language = "auto"
# One key for every instance of a system (required on PostgreSQL: the Message-IDs one
# instance signs, another checks).
secret_file = "{outbox}.key"

[smtp]
listen = "127.0.0.1:{port}"

[outbound]
transport = "maildir"
maildir = "{outbox}"

[[queues]]
name = "General questions"

[tickets]
default_queue = "General questions"

[[staff]]
email = "alice@example.com"
name = "Alice"

[[staff]]
email = "bob@example.com"
name = "Bob"

[notify]
new_ticket = true
follow_up = true
"""

# `maild ticket close NUMBER` for each number, in one interpreter (one start-up, not one each).
CLOSE = """
import sys
from maild.cli import main
config, numbers = sys.argv[1], sys.argv[2:]
failed = [n for n in numbers if main(["--config", config, "ticket", "close", n]) != 0]
sys.exit(f"maild ticket close failed for {failed}" if failed else 0)
"""


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and all its descendants, the reaped ones included (cutime)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = _stat(current)
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / TICK


def own_cpu(pid: int) -> float:
    """CPU seconds of `pid` alone: for `maild run`, the intake (its worker is a child)."""
    try:
        return sum(int(f) for f in _stat(pid)[11:13]) / TICK  # utime stime
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def send_all(ports: Sequence[int], mails: Sequence[tuple[str, bytes]],
             clients: int) -> dict[str, Any]:
    """Send (envelope sender, bytes) over `clients` connections, client i to port i mod n."""
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with smtplib.SMTP("127.0.0.1", ports[index % len(ports)], timeout=120) as conn:
            conn.ehlo()
            for sender, raw in mails[index::clients]:
                conn.mail(sender)
                conn.rcpt(workload.SUPPORT)
                code, reply = conn.data(raw)
                if code != 250:
                    with lock:
                        errors.append(f"{code} {reply!r}")

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"accepted_s": time.monotonic() - start, "errors": errors[:5]}


class Maild:
    """`processes` × `maild run` on one database; one SMTP port each, one Maildir outbox."""

    def __init__(self, root: Path, url: str, processes: int, label: str, name: str,
                 server_pid: int | None = None) -> None:
        self.root, self.url, self.label, self.name = root, url, label, name
        self.server_pid = server_pid  # PostgreSQL's postmaster, to report its CPU beside
        self.outbox = root / "outbox"
        self.configs: list[Path] = []
        self.ports: list[int] = []
        for k in range(processes):
            folder = root / f"run{k}"
            folder.mkdir(parents=True)
            port = free_port()
            config = folder / "maild.toml"
            config.write_text(CONFIG.format(url=url, port=port, outbox=self.outbox))
            self.configs.append(config)
            self.ports.append(port)
        self.engine: Engine = create_engine(url)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = [open(c.parent / "maild.log", "wb") for c in self.configs]  # noqa: SIM115
        subprocess.run([sys.executable, "-m", "maild", "--config", str(self.configs[0]), "init"],
                       check=True, stdout=self.logs[0], stderr=self.logs[0], cwd=REPO)

    def start(self) -> None:
        """Every `maild run` up and ready (READY=1, as systemd is told): what a daemon costs
        to start is not part of any mail's cost, django-helpdesk's start is (a process per
        run of get_email)."""
        managers = [ServiceManager() for _ in self.configs]
        for config, log, manager in zip(self.configs, self.logs, managers, strict=True):
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "maild", "--config", str(config), "run"],
                stdout=log, stderr=log, cwd=REPO,
                env={**os.environ, "NOTIFY_SOCKET": manager.address}))
        for port, manager in zip(self.ports, managers, strict=True):
            manager.wait_ready()
            manager.close()
            wait_port(port, timeout=60)

    def stop(self) -> list[int]:
        for process in self.processes:
            process.terminate()
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        for log in self.logs:
            log.close()
        self.engine.dispose()
        return codes

    def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far: all maild processes, their intakes alone, the database server."""
        maild = sum(tree_cpu(p.pid) for p in self.processes)
        intake = sum(own_cpu(p.pid) for p in self.processes)
        return maild, intake, (tree_cpu(self.server_pid) if self.server_pid else 0.0)

    def count(self, sql: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())

    def feed(self, mails: Sequence[bytes], senders: Sequence[str], expected: int,
             clients: int) -> dict[str, Any]:
        """Send the phase's mails; wait until `expected` inbound rows in all are threaded and
        nothing is left to deliver."""
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"maild run exited {process.returncode}")
        out0 = self.count("SELECT count(*) FROM outbox")
        cpu0, intake0, server0 = self.cpu()
        start = time.monotonic()
        result = send_all(self.ports, list(zip(senders, mails, strict=True)), clients)
        while True:
            threaded = self.count("SELECT count(*) FROM inbound WHERE state IN ('done', 'failed')")
            if threaded >= expected:
                threaded_s = time.monotonic() - start
                if self.count("SELECT count(*) FROM outbox "
                              "WHERE state IN ('pending', 'sending')") == 0:
                    break
            if time.monotonic() - start > DEADLINE_S:
                raise TimeoutError(f"{self.label}: {threaded} of {expected} threaded after "
                                   f"{DEADLINE_S:.0f} s")
            time.sleep(0.05)
        wall = time.monotonic() - start
        cpu1, intake1, server1 = self.cpu()
        result.update(seconds=wall, threaded_s=threaded_s, cpu_seconds=cpu1 - cpu0,
                      intake_cpu_seconds=intake1 - intake0,
                      server_cpu_seconds=server1 - server0,
                      mails_out=self.count("SELECT count(*) FROM outbox") - out0)
        return result

    def tickets(self, mails: Sequence[workload.Mail]) -> list[tuple[str, str | None]]:
        """Per mail: its ticket number and the Message-ID of its acknowledgement."""
        with self.engine.connect() as connection:
            numbers: dict[str, str] = dict(connection.execute(text(
                "SELECT i.message_id, t.number FROM inbound i JOIN ticket t "
                "ON t.id = i.ticket_id")).all())
            acks: dict[str, str] = dict(connection.execute(text(
                "SELECT t.number, o.message_id FROM outbox o JOIN ticket t "
                "ON t.id = o.ticket_id WHERE o.kind = 'ack'")).all())
        found = []
        for mail in mails:
            number = numbers.get(mail.message_id.strip("<>"))
            if number is None:
                raise RuntimeError(f"{self.label} made no ticket of {mail.message_id}")
            ack = acks.get(number)
            found.append((str(number), f"<{ack}>" if ack else None))
        return found

    def close(self, tickets: Sequence[str]) -> None:
        subprocess.run([sys.executable, "-c", CLOSE, str(self.configs[0]), *tickets],
                       check=True, stdout=subprocess.DEVNULL, cwd=REPO)

    @staticmethod
    def tag(ticket: str) -> str:
        return f"[Ticket#{ticket}]"

    def verify(self, new: Sequence[workload.Mail], follow: Sequence[workload.Mail],
               tickets: Sequence[str], closed: Sequence[int]) -> dict[str, Any]:
        with self.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT i.message_id, i.state, i.reason, t.number FROM inbound i "
                "LEFT JOIN ticket t ON t.id = i.ticket_id")).all()
            status: dict[str, str] = dict(
                connection.execute(text("SELECT number, status FROM ticket")).all())
            reopened = {n for (n,) in connection.execute(text(
                "SELECT DISTINCT t.number FROM event e JOIN ticket t ON t.id = e.ticket_id "
                "WHERE e.type = 'reopened'")).all()}
        inbound = {m: (state, reason, number) for m, state, reason, number in rows}
        problems = []
        failed = [(m, r) for m, (s, r, _) in inbound.items() if s != "done"]
        if failed:
            problems.append(f"{len(failed)} inbound not done (first: {failed[:3]})")
        if len(status) != len(new):
            problems.append(f"{len(status)} tickets for {len(new)} new mails")
        wrong = [m.index for m in follow
                 if inbound.get(m.message_id.strip("<>"), ("", "", None))[2]
                 != tickets[m.index]]
        if wrong:
            problems.append(f"{len(wrong)} follow-ups not on their ticket (first: {wrong[:5]})")
        after = Counter(status[tickets[i]] for i in closed)
        if "closed" in after:
            problems.append(f"closed tickets after their follow-up: {dict(after)}")
        not_reopened = [i for i in closed if tickets[i] not in reopened]
        if not_reopened:
            problems.append(f"{len(not_reopened)} closed tickets without a reopened event")
        return {"ok": not problems, "problems": problems,
                "closed_after_follow_up": dict(after), "tickets": len(status)}


# --- the run ---------------------------------------------------------------------------------

def run_system(system: Helpdesk | Maild, new: Sequence[workload.Mail],
               follow_mails: Sequence[workload.Mail], closed: Sequence[int],
               folder: Path, clients: int) -> dict[str, Any]:
    """Both phases on one system: new tickets, closes, follow-ups; measured and verified."""
    def feed(mails: Sequence[workload.Mail], raws: list[bytes], expected: int) -> dict[str, Any]:
        if isinstance(system, Helpdesk):
            return system.feed(raws, mails[0].kind if mails else "none")
        return system.feed(raws, [m.address for m in mails], expected, clients)

    new_raw = [(folder / "new" / f"{m.index:06d}.eml").read_bytes() for m in new]
    result: dict[str, Any] = {"label": system.label, "new": feed(new, new_raw, len(new))}
    assigned = system.tickets(new)
    numbers = [number for number, _ in assigned]
    system.close([numbers[i] for i in closed])
    out = folder / "follow" / system.name
    out.mkdir(parents=True, exist_ok=True)  # written again by each round (`--rounds`)
    follow_raw = []
    for mail, (number, ack) in zip(follow_mails, assigned, strict=True):
        raw = workload.render(
            mail, subject=f"Re: {system.tag(number)} {mail.subject}", in_reply_to=ack,
            references=[new[mail.index].message_id] + ([ack] if ack else []))
        (out / f"{mail.index:06d}.eml").write_bytes(raw)
        follow_raw.append(raw)
    result["acks_found"] = sum(ack is not None for _, ack in assigned)
    result["follow"] = feed(follow_mails, follow_raw, len(new) + len(follow_mails))
    result["verify"] = system.verify(new, follow_mails, numbers, closed)
    for phase in ("new", "follow"):
        r, count = result[phase], len(new)
        r["per_second"] = count / r["seconds"]
        r["cpu_ms_per_mail"] = 1000 * r["cpu_seconds"] / count
        if "intake_cpu_seconds" in r:
            r["intake_cpu_ms_per_mail"] = 1000 * r["intake_cpu_seconds"] / count
        if "server_cpu_seconds" in r:
            r["server_cpu_ms_per_mail"] = 1000 * r["server_cpu_seconds"] / count
    return result


def quietest(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's result over `--rounds`: each phase from the round that spent the least CPU
    a mail on it (as worker_bench: CPU time only grows with what else the machine runs, so the
    quietest round is the closest to the code's own cost), every round's figures beside it,
    and a failed round's verification should one have failed."""
    best = dict(rounds[0])
    for phase in ("new", "follow"):
        best[phase] = min((r[phase] for r in rounds), key=lambda p: p["cpu_ms_per_mail"])
    best["rounds"] = [(r["new"]["cpu_ms_per_mail"], r["follow"]["cpu_ms_per_mail"])
                      for r in rounds]
    best["verify"] = next((r["verify"] for r in rounds if not r["verify"]["ok"]),
                          rounds[0]["verify"])
    if "startup" in best:
        best["startup"] = min((r["startup"] for r in rounds), key=lambda s: s["cpu_seconds"])
    return best


@contextlib.contextmanager
def maild_system(root: Path, url: str, processes: int, label: str, name: str,
                 server_pid: int | None = None) -> Iterator[Maild]:
    system = Maild(root, url, processes, label, name, server_pid)
    try:
        system.start()
        yield system
    finally:
        codes = system.stop()
        if any(codes):
            print(f"{label}: maild run exited {codes}; logs in {root}", file=sys.stderr)


def postgres_pid(cluster: Any) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


def report(results: dict[str, Any], args: argparse.Namespace, meta: dict[str, Any]) -> None:
    print(f"workload: {args.count} new tickets + {args.count} follow-ups "
          f"({meta['closed']} to closed tickets), seed {args.seed}; of the "
          f"{2 * args.count} mails {meta['html']} with an HTML alternative, "
          f"{meta['html_only']} HTML-only, {meta['attachments']} with a 100 KB attachment")
    print(results["file_system"])
    for key, r in results["systems"].items():
        print(r["label"] + (f" (a get_email run with an empty inbox: "
                            f"{1000 * r['startup']['cpu_seconds']:.0f} CPU ms)"
                            if key == "django-helpdesk" else ""))
        for phase, title in (("new", "new tickets"), ("follow", "follow-ups ")):
            p = r[phase]
            line = (f"  {title}: {p['per_second']:6.1f} msg/s, {p['cpu_ms_per_mail']:5.1f} CPU "
                    f"ms/mail ({args.count} in {p['seconds']:5.1f} s, {p['mails_out']} mails out")
            if "intake_cpu_ms_per_mail" in p:
                line += f"; intake {p['intake_cpu_ms_per_mail']:.1f} CPU ms/mail"
            if p.get("server_cpu_ms_per_mail") is not None and "maild-pg" in key:
                line += f"; + PostgreSQL server {p['server_cpu_ms_per_mail']:.1f} CPU ms/mail"
            if "threaded_s" in p:  # threaded: a new ticket's acknowledgement is written
                line += (f"; SMTP accepted in {p['accepted_s']:.1f} s, all threaded in "
                         f"{p['threaded_s']:.1f} s")
            line += ")"
            if p.get("errors"):
                line += f"; SMTP errors {p['errors']}"
            print(line)
        if len(r.get("rounds", ())) > 1:
            print("  the least of these rounds, in turns with the others (new / follow-ups, CPU "
                  "ms/mail): " + ", ".join(f"{new:.1f} / {follow:.1f}"
                                           for new, follow in r["rounds"]))
    if results["ratios"]:
        print("CPU ms per mail, django-helpdesk / maild:")
        for key, ratio in results["ratios"].items():
            line = (f"  {results['systems'][key]['label']:<32} new tickets {ratio['new']:4.1f}x, "
                    f"follow-ups {ratio['follow']:4.1f}x")
            line += (f"; without get_email's start-up {ratio['new_peer_started']:.1f}x, "
                     f"{ratio['follow_peer_started']:.1f}x")
            if "new_with_server" in ratio:
                line += (f" (with the PostgreSQL server's CPU: {ratio['new_with_server']:.1f}x, "
                         f"{ratio['follow_with_server']:.1f}x)")
            print(line)
    if results.get("postgres_skipped"):
        print(f"PostgreSQL: skipped ({results['postgres_skipped']})")
    for r in results["systems"].values():
        v = r["verify"]
        detail = "; ".join(v["problems"]) if v["problems"] else (
            f"{v['tickets']} tickets, every follow-up on its ticket ({r['acks_found']} in reply "
            f"to its acknowledgement); the {sum(v['closed_after_follow_up'].values())} closed "
            "ones after their follow-up: "
            + ", ".join(f"{n} {s}" for s, n in sorted(v["closed_after_follow_up"].items())))
        print(f"verify {r['label']}: {'OK' if v['ok'] else 'FAILED'} ({detail})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="new tickets (and follow-ups)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed")
    parser.add_argument("--clients", type=int, default=4, help="SMTP client threads for maild")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--no-postgres", action="store_true", help="skip maild on PostgreSQL")
    parser.add_argument("--no-helpdesk", action="store_true", help="skip django-helpdesk")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "maild-peer-bench", help="where the django-helpdesk venv is kept")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--rounds", type=int, default=1,
                        help="django-helpdesk and maild on SQLite this many times, in turns; "
                             "the least CPU a mail of each counts")
    args = parser.parse_args()

    new = workload.new_tickets(args.count, args.seed)
    follow = workload.follow_ups(new, args.seed)
    closed = workload.closed_indices(args.count, args.seed)
    file_system = machine.FileSystemProbe()
    work = Path(tempfile.mkdtemp(prefix="maild-peer-"))
    (work / "new").mkdir()
    size = 0
    for mail in new:
        raw = workload.render(mail)
        size += len(raw)
        (work / "new" / f"{mail.index:06d}.eml").write_bytes(raw)
    both = [*new, *follow]
    meta = {"closed": len(closed), "html": sum(m.has_html and not m.html_only for m in both),
            "html_only": sum(m.html_only for m in both),
            "attachments": sum(m.attachment is not None for m in both),
            "new_megabytes": size / 1e6}
    results: dict[str, Any] = {"count": args.count, "seed": args.seed, "workload": meta,
                               "helpdesk": f"{HELPDESK} {DJANGO}", "systems": {}, "ratios": {}}
    systems = results["systems"]
    try:
        python = None if args.no_helpdesk else helpdesk_venv(args.cache)
        rounds: dict[str, list[dict[str, Any]]] = {}
        for round_ in range(1, args.rounds + 1):
            suffix = f"-{round_}" if args.rounds > 1 else ""
            if python is not None:
                site = Helpdesk(work / f"helpdesk-site{suffix}", python)
                rounds.setdefault("django-helpdesk", []).append(
                    {**run_system(site, new, follow, closed, work, 0), "startup": site.startup})
            root = work / f"maild-sqlite{suffix}"
            with maild_system(root, f"sqlite:///{root}/maild.db", 1,
                              "maild SQLite, 1 x maild run", "maild-sqlite") as m:
                rounds.setdefault("maild-sqlite", []).append(
                    run_system(m, new, follow, closed, work, args.clients))
        systems.update({key: quietest(results) for key, results in rounds.items()})
        if not args.no_postgres:
            try:
                from tests.pg import PostgresCluster
                cluster = PostgresCluster()
            except (ImportError, RuntimeError) as exc:
                results["postgres_skipped"] = str(exc)
                if args.json:
                    print(f"PostgreSQL: skipped ({exc})", file=sys.stderr)
            else:
                try:
                    cluster.start()
                    for n in (1, 3):
                        key = f"maild-pg{n}"
                        with maild_system(work / key, cluster.create_database(), n,
                                          f"maild PostgreSQL, {n} x maild run", key,
                                          postgres_pid(cluster)) as m:
                            systems[key] = run_system(m, new, follow, closed, work,
                                                      args.clients)
                finally:
                    cluster.stop()
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["file_system"] = file_system.line()
    if "django-helpdesk" in systems:
        peer = systems["django-helpdesk"]
        for key, r in systems.items():
            if key != "django-helpdesk":
                ratio = results["ratios"][key] = {
                    phase: peer[phase]["cpu_ms_per_mail"] / r[phase]["cpu_ms_per_mail"]
                    for phase in ("new", "follow")}
                # maild is measured from READY=1; django-helpdesk pays its start once per
                # get_email run, as cron runs it. Beside: the ratio without that start either.
                started = 1000 * peer["startup"]["cpu_seconds"] / args.count
                for phase in ("new", "follow"):
                    ratio[f"{phase}_peer_started"] = (
                        peer[phase]["cpu_ms_per_mail"] - started) / r[phase]["cpu_ms_per_mail"]
                if key.startswith("maild-pg"):
                    for phase in ("new", "follow"):
                        ratio[f"{phase}_with_server"] = peer[phase]["cpu_ms_per_mail"] / (
                            r[phase]["cpu_ms_per_mail"] + r[phase]["server_cpu_ms_per_mail"])
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results, args, meta)
    return 0 if all(r["verify"]["ok"] for r in systems.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
