"""Who holds a row: the claims of workers on `inbound` and `outbox` rows, written once.

A worker that takes a row to work on it marks it with `claimed_by` ("host:pid.thread") and
`claimed_at`, in a short transaction, so no two workers — threads of one daemon, several daemons
on PostgreSQL, a `maild ingest` beside `maild run` — work on the same row. A claim stays valid
for a lease; a claim whose lease has run out, or whose process ran on this host and is gone
(`kill -9`, a crash, then a restart), is stale and may be taken over. When the daemon's intake
sees its worker die or hang over a message, it ends that claim at once (`interrupted`).
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild.states import InboundState

if TYPE_CHECKING:
    from maild.dbapi import Reader

# In SQL, not the ORM: the intake, which records it, imports no SQLAlchemy.
_INTERRUPTED = (
    "UPDATE inbound SET reason = substr('attempt ' || attempts || ': ' || :what, 1, 1000), "
    "claimed_by = '', claimed_at = NULL WHERE id = :id AND state = :new")


def this_worker() -> str:
    """This thread of this process as a claim names it: `host:pid.thread`."""
    return f"{socket.gethostname()}:{os.getpid()}.{threading.get_native_id()}"


def held_elsewhere(claimed_by: str, claimed_at: datetime | None, now: datetime,
                   lease: timedelta) -> bool:
    """True while another live process holds the claim: taking the row now would work on it
    twice. False for no claim, our own, one past its lease, or one of a process that is gone."""
    if claimed_at is None or claimed_by == this_worker() or claimed_at < now - lease:
        return False
    host, _, worker = claimed_by.rpartition(":")
    pid = worker.partition(".")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's worker, or one that did not say: only the lease tells
    return _alive(int(pid))  # another thread of a live process holds it too


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def interrupted(writer: Reader, inbound_id: int, what: str) -> None:
    """Record why threading `inbound_id` did not finish (`what`: the worker hung, or died), and
    free its claim so that the next worker takes it at once; its attempt is counted already."""
    with writer.writing():
        writer.execute(_INTERRUPTED, id=inbound_id, what=what, new=InboundState.NEW.value)
