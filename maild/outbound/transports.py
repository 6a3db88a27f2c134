"""Transports: where outgoing bytes go. One small Protocol, two implementations (the SMTP one
in `maild.outbound.smtp`, so a Maildir sender loads neither `smtplib` nor `ssl`).

- `MaildirTransport` writes each message into a Maildir (`new/`), atomically via `tmp/`, under a
  name derived from the delivery id (`<time>.M<outbox id>maild`), so a retried delivery replaces
  its earlier copy rather than adding a second one. A batch is made durable in `tmp/` before it
  is renamed into `new/`, and `new/` itself synced once, before the batch counts as sent.
- `SmtpTransport` speaks SMTP to the configured relay (plain, STARTTLS or TLS, optional AUTH),
  reusing one connection for a batch, and sorts every failure into TemporaryFailure (retry) or
  PermanentFailure (give up) — the only two things the delivery worker needs to know.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, Protocol

from maild.errors import TemporaryFailure


class Transport(Protocol):
    def send(self, mail_from: str, rcpt_to: str, raw: bytes, delivery_id: str) -> None:
        """Deliver one message or raise TemporaryFailure / PermanentFailure."""

    def close(self) -> None:
        """End the batch: make what was sent durable, release any connection. Raises
        TemporaryFailure when what `send` took since the last close may not be durable: the
        deliverer then defers those mails, to be sent again."""


class MaildirTransport:
    """Delivers into a local Maildir, as an MTA's local delivery would.

    A batch is written into `tmp/`, made durable together, then renamed into `new/` at its
    `close()`, so a reader never sees a file that could still be lost. One `syncfs(2)` of the
    Maildir's file system makes a batch durable where the kernel reports its write-back errors
    (Linux 5.8 and later): an fsync per file, each a journal commit of its own, was half the CPU
    of delivering a mail, and a batch of 100 costs one. Elsewhere each file is fsynced.
    """

    def __init__(self, path: str | Path) -> None:
        self.root = Path(path)
        self._ready = False  # tmp/, new/ and cur/ exist
        self._batch: dict[str, None] = {}  # names written into tmp/ since the last close
        self._host = _host_part()
        self._syncfs = _syncfs_reports_errors()

    def send(self, mail_from: str, rcpt_to: str, raw: bytes, delivery_id: str) -> None:
        try:
            if not self._ready:
                for sub in ("tmp", "new", "cur"):
                    (self.root / sub).mkdir(parents=True, exist_ok=True)
                self._ready = True
            name = self.filename(delivery_id)
            envelope = f"Return-Path: <{mail_from}>\r\nDelivered-To: {rcpt_to}\r\n".encode()
            with open(f"{self.root}/tmp/{name}", "wb") as fh:
                fh.write(envelope + raw)
                if not self._syncfs:
                    fh.flush()
                    os.fsync(fh.fileno())
            self._batch[name] = None
        except OSError as exc:
            self._ready = False
            raise TemporaryFailure(f"maildir {self.root}: {exc}") from exc

    def close(self) -> None:
        """The batch made durable, moved into new/ (replacing an earlier copy of a delivery),
        and the renames made durable with one fsync of new/."""
        names, self._batch = list(self._batch), {}
        if not names:
            return
        try:
            if self._syncfs:
                _syncfs(self.root / "tmp")
            for name in names:
                os.rename(f"{self.root}/tmp/{name}", f"{self.root}/new/{name}")
            _fsync_dir(self.root / "new")
        except OSError as exc:
            self._ready = False
            for name in names:  # what did not reach new/ is written again when retried
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.root}/tmp/{name}")
            raise TemporaryFailure(f"maildir {self.root}: {exc}") from exc

    def filename(self, delivery_id: str) -> str:
        """`<delivery_id>.<host>`: the same delivery always gets the same name."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in delivery_id)
        return f"{safe}.{self._host}"


def _host_part() -> str:
    return socket.gethostname().replace("/", "_").replace(":", "_").replace(".", "_")


def _syncfs_reports_errors() -> bool:
    """Linux 5.8 and later: before, syncfs(2) returned 0 even when write-back failed."""
    if not sys.platform.startswith("linux"):
        return False
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return found is not None and (int(found[1]), int(found[2])) >= (5, 8)


def _syncfs(path: Path) -> None:
    """Everything written on the file system holding `path` made durable."""
    import ctypes  # only for a Maildir, and only here

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs: {os.strerror(error)}")
    finally:
        os.close(fd)


@functools.cache
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
