"""The web channel (SPEC §10) of a real `maild run`, through a real HTTP client (httpx): the
request form becomes a ticket like a mail would, the status link is the only way to its page,
and everything refused gets a clear page with nothing stored.
"""

from __future__ import annotations

import json
import re
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import mail, plain_text, recipient
from tests.servers import MaildProcess, wait_until
from tests.smtp_sink import free_port

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"

[mail]
support_address = "support@example.com"
language = "auto"

[smtp]
listen = "127.0.0.1:{smtp}"
max_message_bytes = 200000

[web]
listen = "127.0.0.1:{web}"
base_url = "http://127.0.0.1:{web}"
secret_file = "web.key"

[outbound]
maildir = "{root}/outbox"

[[staff]]
email = "alice@example.com"
name = "Alice"
"""
CUSTOMER = "anna@customer.example"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/t/[A-Za-z0-9._-]+")


class Site:
    """One `maild run` with its web channel, and a browser-like client for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.smtp_port, self.web_port = free_port(), free_port()
        self.daemon = MaildProcess(root, CONFIG.format(root=root, smtp=self.smtp_port,
                                                       web=self.web_port))
        self.daemon.start(wait_for=self.web_port)
        self.base = f"http://127.0.0.1:{self.web_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, follow_redirects=False)

    def tickets(self) -> list[dict[str, Any]]:
        return self.daemon.tickets()

    def ticket(self, number: str) -> dict[str, Any]:
        done = self.daemon.cli("ticket", "show", number, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def stored(self) -> int:
        """Messages stored in inbound and the intake spool. By dedupe key: the worker moving
        the spool commits a row into `inbound` before it deletes it from the spool."""
        keys: set[str] = set()
        for name, table in (("maild.db", "inbound"), ("maild.db.spool", "spool")):
            if (self.root / name).exists():
                with sqlite3.connect(f"file:{self.root / name}?mode=ro", uri=True) as db:
                    keys.update(key for (key,) in db.execute(f"SELECT dedupe_key FROM {table}"))
        return len(keys)

    def outbox(self) -> list[EmailMessage]:
        folder = self.root / "outbox" / "new"
        parser = BytesParser(policy=policy.default)
        files = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns) \
            if folder.exists() else []
        return [parser.parsebytes(p.read_bytes()) for p in files]

    def link_in_ack(self, number: str) -> str:
        assert wait_until(lambda: any(m["X-Maild-Ticket"] == number for m in self.outbox()))
        [ack] = [m for m in self.outbox() if m["X-Maild-Ticket"] == number
                 and recipient(m) == self.ticket(number)["customer"]][:1]
        found = LINK.search(plain_text(ack))
        assert found, plain_text(ack)
        return found.group(0)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    yield site
    if site.daemon.running():
        site.daemon.stop()




def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def fields(**changes: str) -> dict[str, str]:
    values = {"name": "Anna Smirnova", "email": CUSTOMER, "subject": "Printer is broken",
              "body": "It prints nothing since Monday.", "priority": "high"}
    values.update(changes)
    return {k: v for k, v in values.items() if v != "-"}


def submit(client: httpx.Client, files: Any = None, **changes: str) -> httpx.Response:
    token = csrf(client.get("/"))
    return client.post("/", data={"csrf": token, **fields(**changes)}, files=files)


def number_on(page: httpx.Response) -> str:
    found = re.search(r'class="number">(\d+)<', page.text)
    assert found, page.text
    return found.group(1)


# --- the form -------------------------------------------------------------------------------


def test_the_form_offers_five_priorities_with_their_meaning_and_safe_headers(site: Site) -> None:
    with site.client() as client:
        page = client.get("/")
    assert page.status_code == 200
    for meaning in ("a request for a consultation", "the business has stopped"):
        assert meaning in page.text
    assert page.text.count('name="priority"') == 5
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'name="viewport"' in page.text
    cookie = page.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()


def test_a_request_becomes_a_web_ticket_acknowledged_with_its_status_link(site: Site) -> None:
    with site.client() as client:
        page = submit(client, files={"files": ("Схема подключения.pdf", b"%PDF-1.4 demo",
                                               "application/pdf")})
    assert page.status_code == 200
    number = number_on(page)
    ticket = site.ticket(number)
    assert (ticket["channel"], ticket["priority"], ticket["customer"]) == ("web", "high",
                                                                         CUSTOMER)
    assert ticket["customer_name"] == "Anna Smirnova"
    assert ticket["messages"][0]["attachments"][0]["filename"] == "Схема подключения.pdf"
    link = site.link_in_ack(number)
    assert link in page.text
    with site.client() as client:
        status = client.get(link)
        assert status.status_code == 200
        assert "It prints nothing since Monday." in status.text
        assert status.headers["cache-control"] == "no-store"
        href = re.search(r'href="(/t/[^"]+/files/\d+)"', status.text)
        assert href, status.text
        download = client.get(href.group(1))
    assert download.content == b"%PDF-1.4 demo"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''%D0%A1%D1%85" in download.headers["content-disposition"]
    assert download.headers["content-type"] == "application/octet-stream"


def test_a_request_sent_twice_is_one_ticket(site: Site) -> None:
    with site.client() as client:
        token = csrf(client.get("/"))
        first = client.post("/", data={"csrf": token, **fields()})
        again = client.post("/", data={"csrf": token, **fields()})  # a reload, a double click
    assert number_on(first) == number_on(again)
    assert len(site.tickets()) == 1 and site.stored() == 1


@pytest.mark.parametrize(("changes", "says"), [
    ({"name": "-"}, "Please tell us your name."),
    ({"email": ""}, "Please give the email address we should answer to."),
    ({"email": "anna at customer"}, "That email address does not look right"),
    ({"email": "support@example.com"}, "not the support address"),
    ({"subject": "  "}, "Please give your request a subject."),
    ({"body": "-"}, "Please describe your request."),
    ({"priority": "urgent"}, "Please choose how urgent"),
])
def test_a_missing_or_wrong_field_is_explained_and_nothing_is_stored(
    site: Site, changes: dict[str, str], says: str,
) -> None:
    with site.client() as client:
        page = submit(client, **changes)
    assert page.status_code == 400
    assert says in page.text
    assert 'value="Printer is broken"' in page.text or changes.get("subject")  # kept
    assert site.stored() == 0


def test_a_post_without_its_token_or_from_another_site_is_refused(site: Site) -> None:
    with site.client() as client:
        token = csrf(client.get("/"))
        without = client.post("/", data=fields())
    with site.client() as elsewhere:  # another site's page: the token, but not our cookie
        forged = elsewhere.post("/", data={"csrf": token, **fields()})
    with site.client() as client:
        client.get("/")
        tampered = client.post("/", data={"csrf": token[:-2] + "xx", **fields()})
    for page in (without, forged, tampered):
        assert page.status_code == 403
        assert "Please send the form again" in page.text
    assert site.stored() == 0


def test_forms_in_two_tabs_of_one_browser_both_send(site: Site) -> None:
    with site.client() as client:
        first, second = csrf(client.get("/")), csrf(client.get("/"))
        one = client.post("/", data={"csrf": first, **fields(subject="One")})
        other = client.post("/", data={"csrf": second, **fields(subject="Other")})
    assert number_on(one) != number_on(other)


def test_an_upload_over_the_limit_is_refused_before_it_is_read(site: Site) -> None:
    with site.client() as client:
        page = submit(client, files={"files": ("big.bin", b"x" * 600_000,
                                               "application/octet-stream")})
        assert page.status_code == 413 and "larger than we can accept" in page.text
        token = csrf(client.get("/"))
        # Sent in chunks, without a Content-Length: cut off once past the limit.
        chunks = (b"--b\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n"
                  + token.encode() + b"\r\n--b\r\nContent-Disposition: form-data; "
                  b"name=\"files\"; filename=\"big.bin\"\r\n\r\n", *[b"x" * 65536] * 10)
        chunked = client.post("/", content=iter(chunks),
                              headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert chunked.status_code == 413 and "larger than we can accept" in chunked.text
    assert site.stored() == 0


def test_fifty_posts_a_second_from_one_address_are_limited_ten_always_pass(site: Site) -> None:
    with site.client() as client:
        codes = [client.post("/", data=fields()).status_code for _ in range(50)]
    assert codes[:10] == [403] * 10  # refused for their missing token, but not rate-limited
    assert codes.count(429) >= 25
    with site.client() as client:
        page = client.post("/", data=fields())
    assert page.status_code == 429 and "Too many" in page.text
    assert site.stored() == 0


# --- the status page ------------------------------------------------------------------------


def test_a_forged_or_revoked_link_finds_nothing(site: Site) -> None:
    with site.client() as client:
        number = number_on(submit(client))
    link = site.link_in_ack(number)
    with site.client() as client:
        assert client.get(link).status_code == 200
        token = link.rpartition("/")[2]
        for forged in (token[:-3] + "abc", "IjIwMjYxMjAyMDAwMDEi.x", number):
            page = client.get(f"/t/{forged}")
            assert page.status_code == 404 and "not valid" in page.text
        (site.root / "web.key").write_text("a new key written by the operator, 48 bytes\n")
        assert client.get(link).status_code == 404  # every old link is revoked at once
        assert client.get(f"{link}/files/1").status_code == 404


def test_the_status_page_shows_the_public_correspondence_and_never_notes(site: Site) -> None:
    with site.client() as client:
        number = number_on(submit(client, subject="<script>alert(1)</script>"))
    for args in (("note", number, "--staff", "alice@example.com", "--body",
                  "INTERNAL: he is a difficult customer"),
                 ("reply", number, "--staff", "alice@example.com", "--body",
                  "Hello Anna, please restart the printer.")):
        done = site.daemon.cli("ticket", *args)
        assert done.returncode == 0, done.stderr
    with site.client() as client:
        page = client.get(site.link_in_ack(number))
    assert "please restart the printer" in page.text
    assert "INTERNAL" not in page.text
    assert "[new]" not in page.text  # the staff notice is not the customer's
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert "answered, waiting for you" in page.text


def test_a_message_from_the_status_page_threads_as_a_reply_and_reopens(site: Site) -> None:
    with site.client() as client:
        number = number_on(submit(client))
    assert site.daemon.cli("ticket", "close", number).returncode == 0
    link = site.link_in_ack(number)
    with site.client() as client:
        page = client.get(link)
        assert "this reopens the ticket" in page.text
        sent = client.post(link, data={"csrf": csrf(page), "body": "It is broken again."},
                           files={"files": ("../../etc/passwd", b"root:x:0:0", "text/plain")})
        assert sent.status_code == 303
        after = client.get(sent.headers["location"])
    assert "Your message was added" in after.text and "It is broken again." in after.text
    ticket = site.ticket(number)
    assert ticket["status"] == "new" and len(site.tickets()) == 1
    [reply] = [m for m in ticket["messages"]
               if m["direction"] == "in" and "broken again" in m["body"]]
    assert reply["from"] == CUSTOMER
    assert reply["attachments"][0]["filename"] == "passwd"
    assert any(e["type"] == "reopened" for e in ticket["events"])


def test_pages_follow_the_tickets_language(site: Site) -> None:
    with site.client() as client:
        assert "Насколько это срочно?" in client.get("/?lang=ru").text
        assert "Насколько это срочно?" in client.get(
            "/", headers={"Accept-Language": "ru-RU,ru;q=0.9"}).text
        number = number_on(submit(client, subject="Принтер", body="Не печатает принтер."))
    with site.client() as client:
        page = client.get(site.link_in_ack(number))
    assert f"Обращение {number}" in page.text and 'lang="ru"' in page.text


def test_every_acknowledgement_carries_the_status_link(site: Site) -> None:
    with smtplib.SMTP("127.0.0.1", site.smtp_port) as smtp:
        smtp.send_message(mail(sender=f"Anna <{CUSTOMER}>"))
    assert wait_until(lambda: len(site.tickets()) == 1)
    [ticket] = site.tickets()
    with site.client() as client:
        page = client.get(site.link_in_ack(ticket["number"]))
    assert page.status_code == 200 and "Hello, my printer does not print." in page.text


def test_kill_9_while_forms_are_sent_loses_nothing_and_leaves_nothing_half(site: Site) -> None:
    """Every submission ends as a ticket with its acknowledgement, or got no page and nothing
    of it was stored — however the daemon dies."""
    outcomes: list[tuple[str, int | None, str | None]] = []  # (subject, status, number)

    def send() -> None:
        with site.client() as client:
            for n in range(200):
                subject = f"Form {n}"
                try:  # each from another customer: acknowledgements are capped per address
                    page = submit(client, subject=subject, email=f"c{n}@customer.example")
                    outcomes.append((subject, page.status_code,
                                     number_on(page) if page.status_code == 200 else None))
                except httpx.HTTPError:
                    outcomes.append((subject, None, None))
                    return

    sender = threading.Thread(target=send)
    sender.start()
    assert wait_until(lambda: len(outcomes) >= 15, timeout=60)
    site.daemon.stop(signal.SIGKILL)
    sender.join(timeout=60)
    site.daemon.start(wait_for=site.web_port)
    time.sleep(1)
    stored_subjects = {t["subject"] for t in site.tickets()}
    assert wait_until(lambda: len(site.tickets()) >= len(stored_subjects), timeout=30)
    tickets = {t["subject"]: t for t in site.tickets()}
    answered = [(s, number) for s, status, number in outcomes if status == 200]
    assert len(answered) >= 15
    for subject, number in answered:
        assert tickets[subject]["number"] == number
    assert set(tickets) <= {s for s, _, _ in outcomes}  # nothing stored that was not sent

    def acks() -> list[EmailMessage]:
        return [m for m in site.outbox() if recipient(m).endswith("@customer.example")]

    assert wait_until(lambda: len(acks()) >= len(tickets), timeout=30)
    assert {m["X-Maild-Ticket"] for m in acks()} == {t["number"] for t in tickets.values()}
    assert len(acks()) == len(tickets)  # each acknowledged once



def test_files_of_a_staff_answer_can_be_downloaded_from_the_status_page(site: Site) -> None:
    with site.client() as client:
        number = number_on(submit(client))
    answer = mail(subject=f"Re: [Ticket#{number}] Printer is broken",
                  sender="Alice <alice@example.com>", body="The manual is attached.\n")
    answer.add_attachment(b"%PDF-1.4 manual", maintype="application", subtype="pdf",
                          filename="Руководство.pdf")
    with smtplib.SMTP("127.0.0.1", site.smtp_port) as smtp:
        smtp.send_message(answer)
    link = site.link_in_ack(number)
    with site.client() as client:
        assert wait_until(lambda: "The manual is attached." in client.get(link).text)
        page = client.get(link)
        hrefs = re.findall(r'href="(/t/[^"]+/files/\d+)">Руководство.pdf<', page.text)
        assert len(hrefs) == 1, page.text  # the answer's copy, not the staff member's own mail
        assert client.get(hrefs[0]).content == b"%PDF-1.4 manual"


def test_the_intake_holds_no_orm_while_it_serves_forms_pages_and_mail(site: Site) -> None:
    """The intake reaches the database over DB-API alone (`maild.daemon.intake`): SQLModel,
    pydantic and SQLAlchemy would double what it holds in memory; so do its sender
    (`maild.daemon.sender`) and its worker (`maild.tracked`). All three map sqlite3's C
    extension — which shows the look into the running processes can see one."""
    with site.client() as client:
        number = number_on(submit(client))
        assert client.get(site.link_in_ack(number)).status_code == 200
    with smtplib.SMTP("127.0.0.1", site.smtp_port) as smtp:
        smtp.send_message(mail(sender="Bob <bob@customer.example>"))
    assert wait_until(lambda: len(site.tickets()) == 2)
    assert site.daemon.process is not None
    intake = site.daemon.process.pid
    # Two children, the worker and the sender: no other interpreter (multiprocessing's
    # resource tracker was one).
    children = Path(f"/proc/{intake}/task/{intake}/children").read_text().split()
    worker, sender = site.daemon.worker_pid(), site.daemon.sender_pid()
    assert sorted(children) == sorted([str(worker), str(sender)])

    def mapped(pid: int | str) -> str:
        return Path(f"/proc/{pid}/maps").read_text()

    for process in (intake, worker, sender):
        assert "_sqlite3" in mapped(process)
        assert "pydantic_core" not in mapped(process)
    probe = ("import sys, maild.daemon.intake, maild.daemon.sender, maild.daemon.worker, "
             "maild.web, maild.ingest.imap; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'sqlalchemy', 'sqlmodel', 'pydantic', 'alembic'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
