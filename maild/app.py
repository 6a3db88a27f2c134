"""The composition root for commands: settings, engine, reader, connection pool, templates,
clock and transport.

Only this module (and the CLI that calls it) builds real engines and transports; the stages
receive them as arguments. Each is built when first asked for, and so is what it imports: a
command that only reads (`maild ticket list`) gets a DB-API `reader` and never imports
SQLAlchemy, Jinja2 or the transports; `--help` and `--version` build nothing at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from maild import dbapi
from maild.clock import Clock, SystemClock
from maild.config import OutboundSettings, Settings
from maild.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from maild.compose import Templates
    from maild.ingest.spool import Spool
    from maild.outbound import Deliverer, Transport


@dataclass
class App:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _engine: Engine | None = None
    _reader: dbapi.Reader | None = None
    _pool: dbapi.Pool | None = None
    _templates: Templates | None = None
    _deliverer: Deliverer | None = None

    @property
    def pool(self) -> dbapi.Pool:
        """DB-API connections for the writers of tickets — threading, the timers, the commands
        that change tickets (`maild.tracked`) — lent one thread at a time: no ORM."""
        if self._pool is None:
            self._pool = dbapi.Pool(self.settings.database)
        return self._pool

    @property
    def engine(self) -> Engine:
        """SQLAlchemy, for `maild init` (Alembic) and the tests' own set-up."""
        if self._engine is None:
            from maild.db import make_engine

            self._engine = make_engine(self.settings.database)
        return self._engine

    @property
    def reader(self) -> dbapi.Reader:
        """A DB-API connection of its own, for the read models (`maild.views`): no ORM."""
        if self._reader is None:
            self._reader = dbapi.connect(self.settings.database)
        return self._reader

    @contextmanager
    def reading(self) -> Iterator[dbapi.Reader]:
        """One read transaction on `reader`."""
        with self.reader.snapshot() as reader:
            yield reader

    def schema_problem(self) -> str | None:
        """`maild.dbapi.schema_problem`, on the connection later reads will use."""
        return dbapi.schema_problem(self.settings.database, lambda: self.reader)

    @property
    def templates(self) -> Templates:
        if self._templates is None:
            from maild.compose import Templates

            self._templates = Templates(self.settings)
        return self._templates

    def deliverer(self) -> Deliverer:
        """The outbox's deliverer, on DB-API connections of its own (no SQLAlchemy)."""
        if self._deliverer is None:
            from maild.outbound import Deliverer

            self._deliverer = Deliverer(dbapi.Pool(self.settings.database),
                                        make_transport(self.settings.outbound),
                                        self.settings.outbound)
        return self._deliverer

    def spool_path(self) -> Path | None:
        """The intake spool of `maild run`, beside a SQLite database file; None on PostgreSQL."""
        from maild.ingest.backlog import spool_path

        database = dbapi.sqlite_path(self.settings.database.url)
        return spool_path(database) if database else None

    def handoff_path(self) -> Path | None:
        """The socket through which `maild ingest` wakes `maild run` (`maild.ingest.handoff`):
        `mail.handoff_socket`, else beside a SQLite database file; None: no hand-off."""
        from maild.ingest.handoff import handoff_path

        return handoff_path(self.settings.mail.handoff_socket,
                            dbapi.sqlite_path(self.settings.database.url))

    def spool(self, *, mover: bool = False) -> Spool | None:
        from maild.ingest.spool import Spool

        path = self.spool_path()
        if path is None:
            return None
        return Spool(path, self.settings.database.busy_timeout.total_seconds(), mover=mover)

    def close(self) -> None:
        if self._deliverer is not None:
            self._deliverer.close()
            self._deliverer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._engine is not None:
            self._engine.dispose()


def make_transport(settings: OutboundSettings) -> Transport:
    if settings.transport == "maildir":
        from maild.outbound.transports import MaildirTransport

        return MaildirTransport(settings.maildir)
    import ssl

    from maild.outbound.smtp import SmtpTransport

    return SmtpTransport(
        settings.smtp_host, settings.smtp_port, security=settings.smtp_security,
        username=settings.smtp_username, password=secret(
            settings.smtp_password_env, settings.smtp_password_file, "outbound.smtp_password"),
        timeout=settings.smtp_timeout.total_seconds(),
        tls_context=ssl.create_default_context(cafile=settings.smtp_tls_ca_file or None))


def secret(env_name: str, file_name: str, key: str) -> str:
    """A password from the named environment variable or file (never from the config itself)."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError([f"{key}_env: environment variable {env_name} is not set"])
        return value
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"{key}_file: cannot read {file_name}: {exc}"]) from None
    return ""
