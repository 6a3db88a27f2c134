"""Three `maild run` on one PostgreSQL database, one of them killed for good mid-burst.

The scale-out setup of README "Scaling out" (systemd/maild@.service): three instances, each
with its own config, log and SMTP listener, one database, one shared outbox Maildir. A burst
of mail is spread over the three listeners; in the middle of it one instance is SIGKILLed as a
whole process group — its intake (the listener) and its worker at once, with whatever they had
in hand: SMTP transactions (one mail is always half-way through its DATA), a claimed inbound
row, a claimed batch of outbox rows.

It is not restarted. The survivors have to finish its work by themselves (a claim of a process
that is gone from this host is taken over at once, `maild.claims`) — the harder case, and that
of a machine that stays down; a restarted instance would only be one more survivor. The senders
behave as an MTA does: mail that got no 250 from the killed listener is sent again to another.

What must hold afterwards: every mail stored exactly once (inbound rows by Message-ID), every
inbound row done, one ticket per mail with numbers unique (gaps allowed), and exactly one
acknowledgement per mail in the outbox Maildir — no Message-ID, ticket number or recipient
twice. Every wait is on a condition with a generous deadline; nothing is timed.

Then what the instances must share besides the database: one `web.secret_file`, which their
`maild init`s, run at the same moment, create once.
"""

from __future__ import annotations

import email
import os
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from email import policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from maild import config, keys, links
from maild.config import DatabaseSettings, Settings
from maild.db import make_engine
from tests.conftest import BASE_CONFIG, mail
from tests.servers import MaildProcess, wait_port, wait_until
from tests.smtp_sink import free_port

INSTANCES = 3
SENDERS_PER_LISTENER = 2
KILL_AFTER = 60        # mails answered 250 before the kill may come
AFTER_KILL = 15        # mails each sender still sends once it has seen the kill
MOST = 3000            # the burst's bound, should no kill ever come
PACE_SECONDS = 0.1     # between two mails of one sender: 60 mails/s from all six
SETTLE_TIMEOUT = 420.0  # past the claim leases (3 and 5 minutes), should a pid be reused


def query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params).all())
    finally:
        engine.dispose()


class Burst:
    """Mail from `SENDERS_PER_LISTENER` connections per listener, each mail from a customer
    of its own, paced, until each sender has sent `AFTER_KILL` more after the kill. A sender
    whose listener fails it (a dropped connection, a refused one, no 250) marks that listener
    down and sends the same bytes to another one, as an MTA does."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.lock = threading.Lock()
        self.offered: set[int] = set()                    # every mail sent at least once
        self.answered: dict[int, tuple[int, bytes]] = {}  # mail -> (listener, 250 reply)
        self.cut: list[tuple[int, int, str]] = []         # (mail, listener, what happened)
        self.errors: list[str] = []
        self.killed = threading.Event()
        senders = INSTANCES * SENDERS_PER_LISTENER
        self.threads = [threading.Thread(target=self.sender, args=(i, senders), daemon=True,
                                         name=f"sender-{i}") for i in range(senders)]

    @staticmethod
    def mail(n: int) -> bytes:
        return bytes(mail(sender=f"Customer {n} <customer{n}@example.org>",
                          subject=f"Problem {n}", body=f"Hello, problem {n} here.\n",
                          message_id=f"<scale-{n}@example.org>"))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=SETTLE_TIMEOUT)
        assert not any(t.is_alive() for t in self.threads), "a sender hangs"

    def count(self) -> int:
        with self.lock:
            return len(self.answered)

    def sender(self, index: int, senders: int) -> None:
        try:
            self._send(index, senders)
        except BaseException as exc:
            with self.lock:
                self.errors.append(f"sender {index}: {exc!r}")

    def _send(self, index: int, senders: int) -> None:
        listener = index % INSTANCES
        down: set[int] = set()
        client: smtplib.SMTP | None = None
        after_kill = 0
        for n in range(index, MOST, senders):
            if self.killed.is_set():
                if after_kill == AFTER_KILL:
                    break
                after_kill += 1
            raw = self.mail(n)
            with self.lock:
                self.offered.add(n)
            for _attempt in range(2 * INSTANCES):
                try:
                    if client is None:
                        client = smtplib.SMTP("127.0.0.1", self.ports[listener], timeout=60)
                        client.ehlo()
                    client.mail(f"customer{n}@example.org")
                    client.rcpt("support@example.com")
                    code, reply = client.data(raw)
                    if code == 250:
                        with self.lock:
                            self.answered[n] = (listener, reply)
                        break
                    what = f"{code} {reply!r}"
                except (OSError, smtplib.SMTPException) as exc:
                    what = repr(exc)
                with self.lock:
                    self.cut.append((n, listener, what))
                if client is not None:
                    try:
                        client.close()
                    finally:
                        client = None
                down.add(listener)
                alive = [i for i in range(INSTANCES) if i not in down]
                assert alive, f"every listener failed mail {n}: {self.cut[-3:]}"
                listener = alive[index % len(alive)]
            else:
                raise AssertionError(f"mail {n} was never answered 250: {self.cut[-5:]}")
            time.sleep(PACE_SECONDS)
        else:
            raise AssertionError(f"{MOST} mails and no kill came")
        if client is not None:
            client.quit()


CUT_MAIL = bytes(mail(sender="Cut <cut@example.org>", subject="Cut in the middle",
                      body="Hello.\n" * 200, message_id="<scale-cut@example.org>"))


def half_sent(port: int) -> smtplib.SMTP:
    """A connection whose DATA has begun and carries half the message."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
    client.ehlo()
    client.mail("cut@example.org")
    client.rcpt("support@example.com")
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(CUT_MAIL[:len(CUT_MAIL) // 2])
    return client


def test_three_workers_one_killed_mid_burst_store_thread_and_answer_every_mail_once(
    tmp_path: Path, pg_url: str
) -> None:
    shared = tmp_path / "shared"  # the outbox Maildir all instances deliver into
    instances: list[MaildProcess] = []
    for name in "abc"[:INSTANCES]:
        root = tmp_path / name
        root.mkdir()
        port = free_port()
        instance = MaildProcess(root, BASE_CONFIG.format(
            root=shared, url=pg_url, tag="Ticket", language="en", cap=5, reopen="true",
            notify="false", busy="5s", templates="", transport="maildir", smtp_port=25)
            + f'\n[smtp]\nlisten = "127.0.0.1:{port}"\n', own_group=True)
        instance.port = port
        instances.append(instance)
    victim, survivors = instances[0], instances[1:]
    outbox = shared / "var" / "outbox" / "new"

    def logs() -> str:
        return "\n".join(f"--- {i.root.name} ---\n{i.log()[-3000:]}" for i in instances)

    for instance in instances:
        instance.start()
    burst = Burst([i.port for i in instances])
    held_at_kill: list[Any] = []
    try:
        for instance in instances:
            wait_port(instance.port, timeout=60)
        victim_worker = victim.worker_pid()
        burst.start()

        # The kill: once mail flows and the victim's worker has threaded some, preferably at
        # a moment it holds claims of both kinds (a message being threaded and a batch of
        # outbox rows being delivered), else of either.
        assert wait_until(lambda: burst.count() >= KILL_AFTER and "-> ticket" in victim.log(),
                          timeout=SETTLE_TIMEOUT, interval=0.01), logs()
        claims = ("SELECT 'inbound', id FROM inbound WHERE claimed_by LIKE :me UNION ALL "
                  "SELECT 'outbox', id FROM outbox WHERE state = 'sending' "
                  "AND claimed_by LIKE :me")
        mine = f"%:{victim_worker}.%"

        def held() -> set[str]:
            return {kind for kind, _ in query(pg_url, claims, me=mine)}

        if not wait_until(lambda: len(held()) == 2, timeout=2, interval=0.01):
            wait_until(lambda: bool(held()), timeout=1, interval=0.01)
        held_at_kill = query(pg_url, claims, me=mine)
        cut = half_sent(victim.port)  # and one mail certainly in the middle of its DATA
        victim.kill_group()
        answered_at_kill = burst.count()
        burst.killed.set()
        with pytest.raises((OSError, smtplib.SMTPException)):
            cut.send(CUT_MAIL[len(CUT_MAIL) // 2:] + b"\r\n.\r\n")
            cut.getreply()
        cut.close()
        with smtplib.SMTP("127.0.0.1", survivors[0].port, timeout=60) as client:
            client.sendmail("cut@example.org", ["support@example.com"], CUT_MAIL)

        burst.join()
        assert not burst.errors, burst.errors
        total = len(burst.offered) + 1  # and the mail cut in the middle
        assert set(burst.answered) == burst.offered  # every mail, if need be after a failover
        assert total > answered_at_kill, "the burst was over before the kill: proves nothing"

        def settled() -> bool:
            pending = query(pg_url, "SELECT count(*) FROM inbound WHERE state <> 'done'")
            return pending == [(0,)] and outbox.exists() and \
                len(list(outbox.iterdir())) >= total and \
                query(pg_url, "SELECT count(*) FROM outbox WHERE state <> 'sent'") == [(0,)]

        assert wait_until(settled, timeout=SETTLE_TIMEOUT, interval=0.2), logs()
        assert all(s.running() for s in survivors), logs()
        status = survivors[0].cli("status", "--check")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        codes = [s.stop() for s in survivors if s.process is not None]
        if victim.process is not None:
            victim.kill_group()
    assert codes == [0] * len(survivors), logs()

    # Every mail stored exactly once, whichever listener took it and however often it was
    # offered; every inbound row done, none taken more than twice (the victim's, once more).
    ids = [f"scale-{n}@example.org" for n in [*burst.offered, "cut"]]
    stored = query(pg_url, "SELECT message_id, count(*) FROM inbound GROUP BY message_id")
    assert sorted(stored) == sorted((i, 1) for i in ids)
    assert query(pg_url, "SELECT state, count(*), count(DISTINCT ticket_id) FROM inbound "
                         "GROUP BY state") == [("done", total, total)]
    assert query(pg_url, "SELECT max(attempts) FROM inbound")[0][0] <= 2

    # One ticket per mail; numbers unique, each from its day's counter. On PostgreSQL a number
    # is taken in a transaction of its own (maild.numbers), so a batch the kill cut off leaves
    # gaps — never a number given twice.
    numbers = [row[0] for row in query(pg_url, "SELECT number FROM ticket")]
    assert len(numbers) == len(set(numbers)) == total
    days: dict[str, list[int]] = defaultdict(list)
    for number in numbers:
        days[number[:8]].append(int(number[8:]))
    counters = dict(query(pg_url, "SELECT day, value FROM ticket_counter"))
    assert all(max(c) <= counters[day] for day, c in days.items()), (days, counters)

    # Exactly one acknowledgement per mail, in the database and in the Maildir.
    assert query(pg_url, "SELECT kind, state, count(*), count(DISTINCT ticket_id), "
                         "count(DISTINCT message_id) FROM outbox GROUP BY kind, state") == \
        [("ack", "sent", total, total, total)]
    delivered = [email.message_from_bytes(p.read_bytes(), policy=policy.default)
                 for p in outbox.iterdir()]
    assert len(delivered) == total
    for header in ("Message-ID", "Delivered-To", "In-Reply-To"):
        repeated = [v for v, k in Counter(str(m[header]) for m in delivered).items() if k > 1]
        assert not repeated, f"{header} twice: {repeated[:5]}"
    tags = Counter(str(m["Subject"]).split("]", 1)[0] for m in delivered)
    assert len(tags) == total and set(tags.values()) == {1}
    assert {str(m["In-Reply-To"]) for m in delivered} == {f"<{i}>" for i in ids}
    assert sorted(str(m["Subject"]).split("]", 1)[0].removeprefix("[Ticket#")
                  for m in delivered) == sorted(numbers)

    # What the test went through, for the record (pytest -rA or a failure shows it).
    failed_over = sorted({n for n, listener, _ in burst.cut if listener == 0})
    by_listener = Counter(listener for listener, _ in burst.answered.values())
    print(f"kill after {answered_at_kill} answered; victim held {held_at_kill}; "
          f"{len(failed_over)} mail(s) sent again elsewhere; answered per listener "
          f"{dict(sorted(by_listener.items()))}; "
          f"{sum(s.log().count('(duplicate)') for s in survivors)} of them stored before "
          "the kill already")
    assert "Traceback" not in "".join(s.log() for s in survivors), logs()


# --- what the instances must share: the web channel's key ---------------------------------------


def _instance_config(root: Path, url: str, key: Path, web_port: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "maild.toml"
    path.write_text(BASE_CONFIG.format(
        root=root, url=url, tag="Ticket", language="en", cap=5, reopen="true", notify="false",
        busy="5s", templates="", transport="maildir", smtp_port=25)
        + f'\n[web]\nlisten = "127.0.0.1:{web_port}"\nbase_url = "https://support.example.com"'
        f'\nsecret_file = "{key}"\n')
    return path


def test_instances_sharing_one_key_file_accept_each_others_links_and_forms(
    tmp_path: Path
) -> None:
    """A worker signs the status link in every acknowledgement it writes — whichever intake
    took the mail — and a form may be served by one instance and posted to another: with a key
    of their own (each `maild init` writes one when the file is missing) an instance refuses
    what another signed; with `web.secret_file` naming one file for all, every link opens."""
    url = f"sqlite:///{tmp_path}/maild.db"  # only the [web] table matters here
    own = [config.load(_instance_config(tmp_path / n, url, tmp_path / n / "web.key", 8025))
           for n in "ab"]
    shared = [config.load(_instance_config(tmp_path / f"s{n}", url, tmp_path / "web.key",
                                           8025 + i)) for i, n in enumerate("ab")]
    for settings in own + shared:
        assert settings.web is not None
        keys.create_key(settings.web.secret_file)  # what `maild init` does

    def accepted(a: Settings, b: Settings) -> tuple[bool, bool]:
        assert a.web is not None and b.web is not None
        token = links.status_url(a, "2026120100042").rsplit("/", 1)[1]
        form = links.form_token(a.web, "cookie-id")
        return (links.ticket_of(b.web, token) == "2026120100042",
                links.form_nonce(b.web, form, "cookie-id") is not None)

    assert accepted(own[0], own[0]) == (True, True)
    assert accepted(own[0], own[1]) == (False, False)
    assert accepted(shared[0], shared[1]) == (True, True)


def test_a_key_made_by_another_init_a_moment_ago_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances' `maild init` at the same moment both find no key file; the one that
    writes second keeps the first one's key (it raised FileExistsError before, and that
    instance failed to start)."""
    key = tmp_path / "web.key"
    key.write_text("the key the other instance's init wrote, 48 bytes or so\n")
    monkeypatch.setattr(Path, "exists", lambda self: False if self == key else os.path.exists(self))

    assert keys.create_key(str(key)) is False

    assert key.read_text() == "the key the other instance's init wrote, 48 bytes or so\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.key"]  # no draft left behind


def test_three_inits_at_once_with_one_shared_key_file_make_one_key(
    tmp_path: Path, pg_url: str
) -> None:
    """The instances of systemd/maild@.service started together: each runs `maild init` on
    the same fresh database and the same key file; all succeed, and there is one key."""
    key = tmp_path / "web.key"
    configs = [_instance_config(tmp_path / n, pg_url, key, free_port()) for n in "abc"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    processes = [subprocess.Popen([sys.executable, "-m", "maild", "--config", str(c), "init"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                 for c in configs]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    assert len(key.read_text().strip()) >= 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "web.key"]
