"""The intake spool: where `maild run` commits received mail when the database is SQLite.

SQLite takes one writer at a time. With the listener writing straight into `inbound`, an SMTP
client's 250 waited whenever the worker was in the middle of threading a message or
checkpointing the WAL (p99 of the accept latency grew five-fold, see bench/README.md). So the
daemon's intake — the SMTP/LMTP listener and the IMAP pollers — commits each message to a small
SQLite file of its own, `<database>.spool`, and answers 250 after that one commit. The worker
moves spooled rows into `inbound` a batch at a time and only then deletes them from the spool.

The spool is a queue, not part of the data model (hence plain `sqlite3`, not the models): a row
lives there for milliseconds while the worker runs, and it carries exactly what `accept` would
have stored, by the same insert (`maild.ingest.accept.store`). Moving is idempotent: rows are
inserted with `ON CONFLICT DO NOTHING` on `inbound`'s unique dedupe key, in spool order, and
deleted only after that transaction committed, so a crash between the two steps re-moves rows
that are then ignored — nothing lost, nothing twice. The same key is unique in the spool too,
so a message sent twice while still spooled is stored once.

PostgreSQL has no such writer lock: there the intake calls `accept` directly and no spool exists.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from maild.dbapi import Pool
from maild.dedupe import Identity, identify
from maild.errors import StorageUnavailable
from maild.ingest.accept import Accepted, store
from maild.ingest.backlog import SpoolBacklog as SpoolBacklog  # re-exported: the daemon's
from maild.ingest.backlog import backlog_at as backlog_at
from maild.ingest.backlog import spool_path as spool_path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the id is quoted in the SMTP reply
    dedupe_key TEXT NOT NULL UNIQUE,       -- maild.dedupe, as in `inbound`
    message_id TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    envelope_from TEXT,
    received_at TEXT NOT NULL,             -- ISO 8601 with offset
    raw BLOB NOT NULL
)
"""
class _Busy(Exception):
    """Another writer has the spool this instant (`try_store`)."""


MOVE_BYTES = 64 << 20  # what one move holds in memory at most (unless one message is bigger)
log = logging.getLogger("maild.spool")


class Spool:
    """One connection to the spool file, shared by the threads of one process (and, in the
    intake, a second one that never waits: `try_store`)."""

    def __init__(self, path: Path, busy_timeout: float, *, mover: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = self._connect(path, busy_timeout, mover=mover)
        self._now: sqlite3.Connection | None = None  # try_store's
        if mover:
            self._upgrade()

    @staticmethod
    def _connect(path: Path, busy_timeout: float, *, mover: bool) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            # A queue file: after a burst of big messages it shrinks back once they have moved
            # on (auto_vacuum, set when the file is created: setting it takes the write lock;
            # the WAL is cut back to 64 MiB after each checkpoint).
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'spool'").fetchone():
                db.execute("PRAGMA auto_vacuum=FULL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA journal_size_limit={64 << 20}")
            # The intake's commits are what a 250 promises: on disk before the answer. The
            # mover only deletes rows already committed to `inbound`; a delete lost in a crash
            # is redone harmlessly, so it need not wait for the disk.
            db.execute(f"PRAGMA synchronous={'NORMAL' if mover else 'FULL'}")
            if not mover:
                # Checkpoints copy the WAL into the file and fsync it: the mover does that, so a
                # commit answering an SMTP client never also pays for a checkpoint.
                db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open the intake spool {path}: {exc}") from exc
        return db

    def _upgrade(self) -> None:
        """A spool written by a maild before 2026-12-01 has no `message_id` and keys of the
        old form: give the rows still in it the keys `maild.dedupe` makes now."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(spool)")}
        if "message_id" in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("ALTER TABLE spool ADD COLUMN message_id TEXT NOT NULL DEFAULT ''")
        for spool_id, raw in self._db.execute("SELECT id, raw FROM spool").fetchall():
            identity = identify(raw)
            self._db.execute("UPDATE OR IGNORE spool SET dedupe_key = ?, message_id = ? "
                             "WHERE id = ?", (identity.key, identity.message_id, spool_id))
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
        if self._now is not None:
            self._now.close()

    # --- the intake's side --------------------------------------------------------------------

    def store(
        self, raw: bytes, *, source: str, now: datetime, envelope_from: str | None = None
    ) -> Accepted:
        """Commit `raw` to the spool (once per message, `maild.dedupe`); raises
        StorageUnavailable."""
        identity = identify(raw)
        with self._lock:
            try:
                return self._insert(self._db, raw, identity, source, now, envelope_from)
            except _Busy as busy:  # still locked after the busy timeout
                raise StorageUnavailable(f"intake spool: {busy.__cause__}") from busy

    def try_store(
        self, raw: bytes, *, source: str, now: datetime, envelope_from: str | None = None
    ) -> Accepted | None:
        """`store`, but only if nobody else is writing to the spool this instant; None when
        somebody is (then `store` it from a thread that may wait). The SMTP listener stores
        on its event loop this way: most messages need no hand-off to a thread — which cost
        a sixth of the intake's CPU per message — yet the loop never waits for a lock."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._now is None:
                self._now = self._connect(self.path, 0.0, mover=False)
            return self._insert(self._now, raw, identify(raw), source, now, envelope_from)
        except _Busy:
            return None
        finally:
            self._lock.release()

    @staticmethod
    def _insert(db: sqlite3.Connection, raw: bytes, identity: Identity, source: str,
                now: datetime, envelope_from: str | None) -> Accepted:
        try:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # any kind of busy
                    raise _Busy from exc
                raise
            try:
                inserted = db.execute(
                    "INSERT INTO spool (dedupe_key, message_id, source, envelope_from,"
                    " received_at, raw) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (dedupe_key) DO NOTHING",
                    (identity.key, identity.message_id, source, envelope_from,
                     now.isoformat(), raw))
                if inserted.rowcount == 1:
                    accepted = Accepted(int(inserted.lastrowid or 0), False, "spool", identity)
                else:
                    [(existing,)] = db.execute("SELECT id FROM spool WHERE dedupe_key = ?",
                                               (identity.key,)).fetchall()
                    accepted = Accepted(int(existing), True, "spool", identity)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"intake spool: {exc}") from exc
        return accepted

    # --- the worker's side --------------------------------------------------------------------

    def move_into(self, pool: Pool, limit: int, max_bytes: int = MOVE_BYTES) -> int:
        """Move up to `limit` of the oldest spooled messages, and no more than `max_bytes` of
        them (but at least one), into `inbound`; returns how many were taken from the spool
        (duplicates of stored mail included, and then dropped)."""
        with self._lock:
            try:
                sizes = self._db.execute("SELECT id, length(raw) FROM spool ORDER BY id LIMIT ?",
                                         (limit,)).fetchall()
                last, total = None, 0
                for spool_id, size in sizes:
                    if last is not None and total + size > max_bytes:
                        break  # a burst of big messages moves a few at a time, not all at once
                    last, total = spool_id, total + size
                rows = self._db.execute(
                    "SELECT id, dedupe_key, message_id, source, envelope_from, received_at, raw"
                    " FROM spool WHERE id <= ? ORDER BY id", (last,)).fetchall() if sizes else []
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"intake spool: {exc}") from exc
        if not rows:
            return 0
        # The worker's connections; the intake never moves.
        with pool.writing() as writer:
            for spool_id, key, message_id, source, envelope_from, received_at, raw in rows:
                # The row `accept` would have stored, by the same insert (`maild.ingest.accept`).
                stored = store(writer, raw, Identity(key, message_id), source=source,
                               now=datetime.fromisoformat(received_at),
                               envelope_from=envelope_from)
                if stored.duplicate:  # sent again after it had left the spool: stored once
                    log.info("spool %s message-id=<%s>: duplicate of inbound %s, dropped",
                             spool_id, message_id or "-", stored.row_id)
        with self._lock:
            try:
                self._db.execute("DELETE FROM spool WHERE id <= ?", (rows[-1][0],))
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"intake spool: {exc}") from exc
        return len(rows)
