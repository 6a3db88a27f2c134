"""Shared fixtures: a real config file, a real SQLite database, a real Maildir outbox.

`Helpdesk` drives maild through its command line (`maild.cli.main`, in-process) exactly as a
user or an MTA would, and reads the results back from the database and the outbox Maildir.

`MAILD_TEST_DATABASE=postgresql` runs every `Helpdesk` on PostgreSQL instead: one private
cluster (tests/pg.py) for the session, a fresh database for each installation (`make test`
runs the suite both ways).
"""

from __future__ import annotations

import json
import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from maild.cli import main
from maild.dbapi import Pool
from tests.pg import PostgresCluster
from tests.smtp_sink import SmtpSink

if TYPE_CHECKING:
    from sqlalchemy import Engine

ON_POSTGRES = os.environ.get("MAILD_TEST_DATABASE", "sqlite") == "postgresql"
_cluster: Any = None  # the session's PostgreSQL cluster, started when first asked for


def postgres() -> PostgresCluster:
    """The session's private PostgreSQL cluster (tests/pg.py), started on first use and
    stopped when the session ends. Its absence is a failure, never a skip."""
    global _cluster
    if _cluster is None:
        _cluster = PostgresCluster()
        _cluster.start()
    return _cluster


def default_database_url(root: Path) -> str:
    """The database of a test installation: a SQLite file under `root`, or on PostgreSQL a
    fresh database of the session's cluster."""
    if not ON_POSTGRES:
        return f"sqlite:///{root}/var/maild.db"
    return str(postgres().create_database())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass runs the tests that use a `Helpdesk` (the fixture, or the class in
    their module), except those about SQLite itself (marked `sqlite`) and those that ask for a
    PostgreSQL database themselves (`pg_url`, `cluster`: they ran on the first pass). Nothing
    is skipped: the rest is deselected, and it ran on the SQLite pass."""
    if not ON_POSTGRES:
        return
    kept = [item for item in items if _on_postgres_pass(item)]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


def _on_postgres_pass(item: pytest.Item) -> bool:
    module = vars(getattr(item, "module", None) or object())
    fixtures = getattr(item, "fixturenames", ())
    uses_helpdesk = "helpdesk" in fixtures or "Helpdesk" in module
    on_postgres_already = "pg_url" in fixtures or "cluster" in fixtures
    return uses_helpdesk and not on_postgres_already and item.get_closest_marker("sqlite") is None


@pytest.fixture(scope="session", autouse=True)
def _postgres_cluster() -> Iterator[None]:
    yield
    if _cluster is not None:
        _cluster.stop()


@pytest.fixture(scope="session")
def cluster() -> PostgresCluster:
    """The session's PostgreSQL cluster, for tests about PostgreSQL itself."""
    return postgres()


@pytest.fixture
def pg_url(cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database of the session's cluster, dropped after the test."""
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


BASE_CONFIG = """
[database]
url = "{url}"
busy_timeout = "{busy}"

[mail]
support_address = "support@example.com"
accept = ["support@example.com"]
subject_tag = "{tag}"
language = "{language}"
auto_reply_limit_per_hour = {cap}
templates_dir = "{templates}"
secret_file = "{root}/var/maild.key"

[outbound]
transport = "{transport}"
maildir = "{root}/var/outbox"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}

[tickets]
reopen_closed = {reopen}

[notify]
new_ticket = {notify}
follow_up = {notify}

[[staff]]
email = "alice@example.com"
name = "Alice"

[[staff]]
email = "bob@example.com"
name = "Bob"

[sla]
timezone = "Europe/Moscow"
"""


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Helpdesk:
    """One maild installation in a temporary folder.

    Options fill the config: e.g. `language="auto"`, `cap=2` (automatic replies per hour),
    `notify="true"` (staff notices, off here so that a test counts the mail it is about),
    `transport="smtp", smtp_port=sink.port` (outgoing mail to an SMTP server instead of the
    outbox Maildir), `url="postgresql+psycopg://..."` (another database than the SQLite file
    under `root`)."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str], **options: Any) -> None:
        self.root = root
        self.capsys = capsys
        self.config = root / "maild.toml"
        values = {"root": root, "tag": "Ticket", "language": "en", "cap": 5, "reopen": "true",
                  "notify": "false",
                  "busy": "5s", "templates": "", "transport": "maildir", "smtp_port": 25,
                  "url": ""}
        values.update(options)
        values["url"] = values["url"] or default_database_url(root)
        self.config.write_text(BASE_CONFIG.format(**values), encoding="utf-8")
        assert self.run("init").code == 0

    def run(self, *args: str) -> Run:
        self.capsys.readouterr()
        code = main(["--config", str(self.config), *args])
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def ingest(self, message: bytes | EmailMessage, *extra: str) -> Run:
        raw = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
        path = self.root / f"in-{make_msgid()[1:-1]}.eml"
        path.write_bytes(raw)
        return self.run("ingest", *extra, str(path))

    def ticket(self, number: str) -> dict[str, Any]:
        result = self.run("ticket", "show", number, "--json")
        assert result.code == 0, result.err
        return result.json()

    def tickets(self) -> list[dict[str, Any]]:
        return self.run("ticket", "list", "--json").json()

    def set_ticket(self, number: str, **fields: Any) -> None:
        """Change a ticket behind maild's back, for states no command reaches yet."""
        from sqlmodel import select

        from maild import config
        from maild.db import make_engine, transaction
        from maild.models import Ticket

        engine = make_engine(config.load(self.config).database)
        try:
            with transaction(engine) as session:
                ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
                for name, value in fields.items():
                    setattr(ticket, name, value)
        finally:
            engine.dispose()

    def outbox(self) -> list[EmailMessage]:
        """Every message in the outbox Maildir, oldest first."""
        box = self.root / "var" / "outbox"
        if not (box / "new").exists():
            return []
        files = sorted((box / "new").iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [BytesParser(policy=policy.default).parsebytes(p.read_bytes())
                for p in files]

    def maildir(self) -> mailbox.Maildir:
        return mailbox.Maildir(self.root / "var" / "outbox", create=False)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """A real SMTP server on a free loopback port, recording what it receives."""
    server = SmtpSink()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def helpdesk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Helpdesk]:
    yield Helpdesk(tmp_path, capsys)


@pytest.fixture
def engine(helpdesk: Helpdesk) -> Iterator[Engine]:
    """An engine on the `helpdesk`'s database, for a test that reads or writes it directly
    (imported here, not above: some tests look at what a command imports in this process)."""
    from maild import config
    from maild.db import make_engine

    engine = make_engine(config.load(helpdesk.config).database)
    yield engine
    engine.dispose()


def mail(
    subject: str = "Printer does not print",
    body: str = "Hello, my printer does not print.\n",
    sender: str = "Ivan Petrov <ivan@example.org>",
    to: str = "support@example.com",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """A customer's mail as a mail client would write it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="example.org")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg


def recipient(message: EmailMessage) -> str:
    """The one address in a mail's To."""
    [address] = message["To"].addresses
    return str(address.addr_spec)


def plain_text(message: EmailMessage) -> str:
    """A mail's plain-text body, as its recipient's client shows it."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def pool(helpdesk: Helpdesk) -> Iterator[Pool]:
    """DB-API connections on the `helpdesk`'s database, as maild's writers use them."""
    from maild import config

    connections = Pool(config.load(helpdesk.config).database)
    yield connections
    connections.close()
