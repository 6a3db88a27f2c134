"""The IMAP poller: one thread per `[[imap]]` mailbox, store first, then move.

For each mailbox: connect (TLS, STARTTLS or plain, certificates checked), select the folder,
check UIDVALIDITY against the stored cursor, and fetch the UIDs above the cursor, oldest first,
in bounded batches (`batch_size` messages, 64 MiB) so a mailbox of any size is drained with flat
memory. Each message is committed (to `inbound`, or the daemon's intake spool) before anything
happens on the server; then the batch is MOVEd to `processed_folder` (or, on a server without
MOVE, flagged `$MaildStored` and left in place) and the cursor advances. A crash between
"stored" and "moved" re-fetches the message at the next start, and the de-duplicating store
makes that harmless.

Between passes the thread waits in IDLE (re-issued every `poll_seconds`) or sleeps
`poll_seconds`. Any network or server error closes the connection and reconnects with a
doubling back-off (1 s … 5 min), logged once per outage.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from maild.config import ImapSettings
from maild.dbapi import Pool
from maild.errors import StorageUnavailable
from maild.ingest.accept import Accepted

log = logging.getLogger("maild.imap")

STORED_FLAG = b"$MaildStored"
MAX_BACKOFF = 300.0
NETWORK_TIMEOUT = 60.0
FETCH_BYTES = 64 << 20  # the most one fetch holds in memory (unless one message is bigger)
IDLE_SLICE = 1.0  # seconds per idle_check, so a stop request is noticed promptly
Store = Callable[[bytes, str], Accepted]

# The cursor in SQL over DB-API (`maild.dbapi`): the intake, which polls, imports no SQLAlchemy.
_CURSOR = ("SELECT uidvalidity, last_uid FROM imap_cursor "
           "WHERE mailbox = :mailbox AND folder = :folder")
_NEW_CURSOR = ("INSERT INTO imap_cursor (mailbox, folder, uidvalidity, last_uid) "
               "VALUES (:mailbox, :folder, :uidvalidity, 0) "
               "ON CONFLICT (mailbox, folder) DO NOTHING")
_RESCAN = ("UPDATE imap_cursor SET uidvalidity = :uidvalidity, last_uid = 0 "
           "WHERE mailbox = :mailbox AND folder = :folder")
_ADVANCE = ("UPDATE imap_cursor SET last_uid = :uid WHERE mailbox = :mailbox "
            "AND folder = :folder AND uidvalidity = :uidvalidity AND last_uid < :uid")


class ImapPoller:
    def __init__(
        self,
        settings: ImapSettings,
        password: str,
        readers: Pool,
        store: Store,
        wake: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.password = password
        self.readers = readers  # for the cursor (`imap_cursor`)
        self.store = store
        self.wake = wake
        self.stop = stop
        self.source = f"imap:{settings.name}"
        self._backoff = 1.0
        self._failing = False  # in an outage: logged once, ended by a pass that works
        self.thread = threading.Thread(target=self.run, name=f"imap-{settings.name}",
                                       daemon=True)

    # --- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self._connect() as client:
                    self._serve(client)
            except (IMAPClientError, OSError, StorageUnavailable, EOFError) as exc:
                # OSError covers refused connections, timeouts and TLS failures.
                if not self._failing:
                    log.warning("%s: %s: %s; reconnecting with back-off", self.settings.name,
                                type(exc).__name__, exc)
                self._back_off()
            except Exception:  # a bug must not silently end the poller: log, back off, retry
                log.exception("%s: unexpected error", self.settings.name)
                self._back_off()

    def _back_off(self) -> None:
        self._failing = True
        self.stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _recovered(self) -> None:
        """A whole pass worked. Only now does the outage end: a failure after login (a locked
        database, a missing folder) must keep backing off and stay logged once."""
        if self._failing:
            log.info("%s: connected again", self.settings.name)
        self._failing, self._backoff = False, 1.0

    def _serve(self, client: IMAPClient) -> None:
        can_move = client.has_capability("MOVE")
        can_idle = self.settings.idle and client.has_capability("IDLE")
        self._ensure_folder(client, self.settings.processed_folder)
        while not self.stop.is_set():
            selected = client.select_folder(self.settings.folder)
            self._announced_count(client)  # forget SELECT's own EXISTS
            stored = self.drain(client, can_move)
            self._recovered()
            left = int(selected[b"EXISTS"]) - (stored if can_move else 0)
            if self._announced_count(client) > left:
                continue  # mail arrived during the pass: IDLE would not report it again
            if can_idle:
                self._idle(client)
            else:
                self.stop.wait(self.settings.poll_seconds)

    @staticmethod
    def _announced_count(client: IMAPClient) -> int:
        """The highest message count the server announced (EXISTS) since the last call; -1
        for none.

        A server reports mail that arrives while a command runs along with that command's
        reply (here: the SEARCH, FETCH or MOVE of a pass), and not again once IDLE starts, so
        such mail would wait a whole `poll_seconds`. imapclient leaves these unsolicited
        responses in its imaplib object; take them from there."""
        counts = client._imap.untagged_responses.pop("EXISTS", None) or []
        return max((int(count) for count in counts), default=-1)

    # --- one pass ---------------------------------------------------------------------------

    def drain(self, client: IMAPClient, can_move: bool) -> int:
        """Store and move every message above the cursor; returns how many were stored."""
        status = client.folder_status(self.settings.folder, [b"UIDVALIDITY"])
        uidvalidity = int(status[b"UIDVALIDITY"])
        last_uid = self._cursor(uidvalidity)
        criteria: list[Any] = ["UID", f"{last_uid + 1}:*"]
        if not can_move:
            criteria += ["NOT", "KEYWORD", STORED_FLAG.decode()]
        # `n:*` always matches the highest UID, even when it is <= n: filter.
        uids = sorted(uid for uid in client.search(criteria) if uid > last_uid)
        stored = 0
        for batch in self._batches(client, uids):
            if self.stop.is_set():
                break
            fetched = client.fetch(batch, [b"BODY.PEEK[]"])
            done = []
            for uid in batch:
                raw = fetched.get(uid, {}).get(b"BODY[]")
                if raw is None:  # expunged by someone else meanwhile
                    continue
                accepted = self.store(bytes(raw), self.source)
                log.info("%s: uid %s -> %s %s%s", self.settings.name, uid, accepted,
                         accepted.trace, " (duplicate)" if accepted.duplicate else "")
                done.append(uid)
            del fetched
            if done:
                self.wake()
                if can_move:
                    client.move(done, self.settings.processed_folder)
                else:
                    client.add_flags(done, [STORED_FLAG, b"\\Seen"])
                self._advance(uidvalidity, max(done))
                stored += len(done)
        return stored

    def _batches(self, client: IMAPClient, uids: list[int]) -> Iterator[list[int]]:
        """`uids` in fetch batches of at most `batch_size` messages and `FETCH_BYTES` (but at
        least one message), by the sizes the server reports: a batch is held in memory whole."""
        for start in range(0, len(uids), self.settings.batch_size):
            group = uids[start:start + self.settings.batch_size]
            sizes = client.fetch(group, [b"RFC822.SIZE"])
            batch: list[int] = []
            total = 0
            for uid in group:
                size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
                if batch and total + size > FETCH_BYTES:
                    yield batch
                    batch, total = [], 0
                batch.append(uid)
                total += size
            if batch:
                yield batch

    def _idle(self, client: IMAPClient) -> None:
        client.idle()
        try:
            if self._already_received(client):
                return  # mail that arrived just before IDLE: announced behind "+ idling"
            deadline = time.monotonic() + self.settings.poll_seconds
            while not self.stop.is_set() and time.monotonic() < deadline:
                began = time.monotonic()
                if client.idle_check(timeout=IDLE_SLICE):
                    break
                if time.monotonic() - began < IDLE_SLICE / 2:
                    # The socket was readable but held no response: the server hung up
                    # without a BYE (idle_check swallows EOF and would return at once,
                    # forever). Ending IDLE finds out; on a live connection it costs a pass.
                    break
        finally:
            client.idle_done()

    @staticmethod
    def _already_received(client: IMAPClient) -> bool:
        """Whether imaplib's read buffer already holds more of the server's output.

        Mail that lands between a pass and IDLE is announced right behind the "+ idling"
        continuation; imaplib reads both in one go, and `idle_check`, which polls the socket,
        would not see it until `poll_seconds` ran out. Peek without blocking."""
        sock = client.socket()
        sock.settimeout(0)
        try:
            return bool(client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            sock.settimeout(NETWORK_TIMEOUT)

    # --- the cursor -------------------------------------------------------------------------

    def _cursor(self, uidvalidity: int) -> int:
        where = {"mailbox": self.settings.name, "folder": self.settings.folder}
        with self.readers.writing() as db:
            cursor = db.first(_CURSOR, **where)
            if cursor is None:
                db.execute(_NEW_CURSOR, **where, uidvalidity=uidvalidity)
                return 0
            if cursor["uidvalidity"] != uidvalidity:
                log.warning("%s: UIDVALIDITY of %s changed (%s -> %s): rescanning the folder",
                            self.settings.name, self.settings.folder, cursor["uidvalidity"],
                            uidvalidity)
                db.execute(_RESCAN, **where, uidvalidity=uidvalidity)
                return 0
            return int(cursor["last_uid"])

    def _advance(self, uidvalidity: int, uid: int) -> None:
        with self.readers.writing() as db:
            db.execute(_ADVANCE, mailbox=self.settings.name, folder=self.settings.folder,
                       uidvalidity=uidvalidity, uid=uid)

    # --- connection -------------------------------------------------------------------------

    def _connect(self) -> IMAPClient:
        s = self.settings
        context = ssl.create_default_context(cafile=s.tls_ca_file or None)
        client = IMAPClient(s.host, port=s.port, ssl=s.security == "tls", ssl_context=context,
                            timeout=NETWORK_TIMEOUT)
        try:
            if s.security == "starttls":
                client.starttls(context)
            client.login(s.username, self.password)
        except Exception:
            client.shutdown()
            raise
        return client

    @staticmethod
    def _ensure_folder(client: IMAPClient, folder: str) -> None:
        if not client.folder_exists(folder):
            client.create_folder(folder)
