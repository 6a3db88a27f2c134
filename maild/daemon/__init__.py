"""`maild run`: the long-running service — an intake process, a worker and a sender.

Postfix keeps `smtpd` apart from the queue manager; maild does the same, for one measured
reason: the GIL. Threading a message is CPU work in Python, and with it in the same process an
SMTP client waited for its 250 behind the interpreter lock (p99 860 ms at 200 msg/s, see
bench/README.md).

- The **intake** (this process, the one systemd starts) runs the SMTP/LMTP listener on its own
  thread and one poller thread per `[[imap]]` mailbox. They only ever store mail — into the
  intake spool on SQLite (`maild.ingest.spool`: a file of its own, so a 250 never waits for
  the worker's write lock), straight into `inbound` on PostgreSQL — then wake the worker. It
  also listens on the hand-off socket (`maild.ingest.handoff`): `maild ingest` stores its mail
  into `inbound` itself and knocks there, and the worker is woken to thread it at once. The
  intake also supervises: it restarts a worker that dies, and stops (SIGKILL) and restarts one
  that has spent longer than `mail.processing_timeout` on one message; it restarts a sender
  that dies, after a back-off that doubles while it keeps dying. The worker counts each
  attempt before the work (`maild.threading.worker`), so a message that crashes or hangs it
  is failed after three and never holds up the mail behind it for longer (SPEC §9).
- The **worker** (a child process) runs the loop in the shape of Mailman's runners: move
  spooled mail into `inbound`, thread a bounded batch of stored mail, run the due timers
  (`schedule`), ring the sender when that work committed mail to send, and sleep when a pass
  did no work until the intake wakes it.
- The **sender** (a child process too) delivers due outbox rows in bounded batches, when the
  worker rings and every few seconds for retries. Apart from the worker because a relay that
  is slow or gone must hold up only the mail waiting for it, never threading; and because on a
  second core a batch goes out while the next is threaded (bench/README.md, issue #12's tenth
  part).
  Both children run niced, so on a busy machine the CPU goes first to the client waiting for
  its 250.

SIGTERM or SIGINT: the intake stops accepting, the worker finishes the batch in hand, the
sender the mail in hand, all exit, status 0 (a child that does not stop in time is killed).
A crash or `kill -9` of any of them loses nothing: every step is a committed state change, the
children exit when their parent is gone, and the next start picks up `new` inbound rows, due
outbox rows and the claims of the dead process.

The three live in modules of their own, `maild.daemon.intake`, `maild.daemon.worker` and
`maild.daemon.sender`, with what they share in `maild.daemon.shared`, because each is an
interpreter that imports only what it uses: the worker never loads the listeners, the IMAP
client or the web channel, and neither the intake nor the sender loads SQLAlchemy, the ORM or
the templates — they reach the database over DB-API alone; the intake runs `maild init` at
start as a short-lived command of its own. The children are plain subprocesses, sharing what
they must through inherited descriptors. Each holds memory only for its own part
(bench/README.md, e2e_bench's RSS).
"""
