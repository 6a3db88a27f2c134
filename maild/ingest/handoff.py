"""The hand-off socket: how the MTA pipe tells a running `maild run` that it stored a message.

Postfix's `pickup` drops mail into the queue and pokes the queue manager through a FIFO; maild
does the same. `maild ingest` commits the message to `inbound` itself (`maild.ingest.accept`),
then sends one datagram to a UNIX socket that the daemon's intake binds (`HandoffListener`); the
intake wakes its worker at once, which threads the message and sends what it owes, while the
pipe only reads the row until it has a ticket number. So the pipe needs neither the ORM nor the
templates, which cost it most of a second to import.

The datagram carries nothing: the row is the message, and a wake-up is only a hint (the worker
looks at `inbound` anyway; a wake-up lost costs at most its idle nap). Nobody listening — no
socket file, or one a stopped daemon left behind — is what tells the pipe to thread the
message itself (`knock` returns False). The socket is `<database>.handoff` beside a SQLite
database, or `mail.handoff_socket`; mode 0600, for the user maild runs as.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("maild.handoff")
_ADDRESS_MAX = 100  # a UNIX socket's path must fit in sockaddr_un.sun_path (108 bytes)


def handoff_path(configured: str, database: Path | None) -> Path | None:
    """Where the socket is: the configured path, else beside a SQLite database file; None
    (no hand-off: the pipe threads its mail itself) on PostgreSQL without the key."""
    if configured:
        return Path(configured)
    return Path(f"{database}.handoff") if database is not None else None


def knock(path: Path) -> bool:
    """Wake the daemon listening at `path`; False when none does (the pipe then works alone)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock, \
                _address(path) as address:
            sock.setblocking(False)  # never wait on a daemon that does not read
            sock.sendto(b"\n", address)
    except BlockingIOError:  # its queue is full of wake-ups: it is awake
        return True
    except OSError:  # no socket, nobody bound to it (ECONNREFUSED), not ours to use: alone
        return False
    return True


class HandoffListener:
    """The intake's end: a thread that calls `woken()` for every datagram at `path`."""

    def __init__(self, path: Path, woken: Callable[[], None]) -> None:
        self.path = path
        self.woken = woken
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(0.5)  # how soon `stop` is noticed
        self._inode = 0
        self._thread = threading.Thread(target=self._run, name="maild-handoff", daemon=True)

    def start(self) -> None:
        if self.path.is_socket():
            if knock(self.path):  # another `maild run` on this database: the newest listens
                log.warning("another maild run listened on %s; this one takes the hand-offs",
                            self.path)
            self.path.unlink(missing_ok=True)  # left by a daemon that stopped without cleaning
        with _address(self.path) as address:
            self._sock.bind(address)
        # Only maild's own user may wake it (a wake-up is harmless, but nobody else's business).
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        self._inode = self.path.stat().st_ino
        self._thread.start()
        log.info("hand-off socket %s: `maild ingest` passes its mail to this daemon", self.path)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            self.woken()

    def stop(self) -> None:
        """Unlink the socket first (a pipe from now on threads its mail itself), then close."""
        self._stop.set()
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:  # not a newer daemon's
                self.path.unlink()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._sock.close()


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """`path` as a socket address; a long one through its folder's descriptor (Linux's
    `/proc/self/fd/N/name`), so that a deep state or test directory works too."""
    if len(os.fsencode(path)) <= _ADDRESS_MAX:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)
