"""What waits in the intake spool (`maild.ingest.spool`), read without the rest of maild: the
spool file's name beside the database, and how many messages it holds since when — for
`maild status` and `maild inbound list`, which import nothing else of the intake.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from maild.errors import StorageUnavailable


@dataclass(frozen=True)
class SpoolBacklog:
    """What waits in the spool: how many messages, and since when the oldest."""

    waiting: int = 0
    oldest: datetime | None = None


def spool_path(database: Path) -> Path:
    return Path(f"{database}.spool")


def backlog_at(path: Path) -> SpoolBacklog:
    """What waits in the spool at `path`, read-only; nothing when there is no spool."""
    if not path.exists():
        return SpoolBacklog()
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            waiting, oldest = db.execute("SELECT count(*), min(received_at) FROM spool").fetchone()
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"cannot read the intake spool {path}: {exc}") from exc
    return SpoolBacklog(int(waiting), datetime.fromisoformat(oldest) if oldest else None)
