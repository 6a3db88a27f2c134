"""One writer at a time on a SQLite database, across threads and processes, woken promptly.

SQLite takes one writer at a time and makes the others wait in its busy handler, which naps
for up to 100 ms between tries: fine for throughput, ruinous for the latency of an SMTP 250.
`WriterLock` queues maild's own writers on an advisory `flock` of `<database>.writer-lock`
instead, polling at sub-millisecond steps, so a waiting writer starts within a millisecond of
the previous one committing — whether it is a thread of this process or the daemon's worker
process. It is re-entrant per thread, and gives up after the database's busy timeout with
StorageUnavailable, exactly like a locked database would.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from maild.errors import StorageUnavailable

_FIRST_NAP = 0.0002
_LONGEST_NAP = 0.0005


class WriterLock:
    def __init__(self, database: Path, timeout: float) -> None:
        self.path = Path(f"{database}.writer-lock")
        self.timeout = timeout
        self._local = threading.local()

    def __enter__(self) -> WriterLock:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._acquire()
        self._local.depth = depth + 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            fcntl.flock(self._local.fd, fcntl.LOCK_UN)

    def _acquire(self) -> None:
        fd = getattr(self._local, "fd", None)
        if fd is None:
            # One open file description per thread: flock excludes other descriptions, so the
            # threads of one process exclude each other too.
            fd = self._local.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                          0o660)
        deadline = time.monotonic() + self.timeout
        nap = _FIRST_NAP
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StorageUnavailable(
                        f"database is locked: another maild writer held {self.path.name} for "
                        f"more than {self.timeout:g}s") from None
                time.sleep(nap)
                nap = min(nap * 2, _LONGEST_NAP)
