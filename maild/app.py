"""The composition root for commands: settings, engine, templates, clock and transport.

Only this module (and the CLI that calls it) builds real engines and transports; the stages
receive them as arguments.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from maild.clock import Clock, SystemClock
from maild.compose import Templates
from maild.config import OutboundSettings, Settings
from maild.db import make_engine, sqlite_file
from maild.errors import ConfigError
from maild.ingest.spool import Spool, spool_path
from maild.outbound import Deliverer, MaildirTransport, SmtpTransport, Transport


@dataclass
class App:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    checkpoints: bool = True  # see maild.db.make_engine
    _engine: Engine | None = None
    _templates: Templates | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database, checkpoints=self.checkpoints)
        return self._engine

    @property
    def templates(self) -> Templates:
        if self._templates is None:
            self._templates = Templates(self.settings)
        return self._templates

    def deliverer(self) -> Deliverer:
        return Deliverer(self.engine, make_transport(self.settings.outbound),
                         self.settings.outbound)

    def spool_path(self) -> Path | None:
        """The intake spool of `maild run`, beside a SQLite database file; None on PostgreSQL."""
        database = sqlite_file(self.engine)
        return spool_path(database) if database else None

    def spool(self, *, mover: bool = False) -> Spool | None:
        path = self.spool_path()
        if path is None:
            return None
        return Spool(path, self.settings.database.busy_timeout.total_seconds(), mover=mover)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def make_transport(settings: OutboundSettings) -> Transport:
    if settings.transport == "maildir":
        return MaildirTransport(settings.maildir)
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
