"""`maild run`: the long-running service — an intake process and a worker process.

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
  that has spent longer than `mail.processing_timeout` on one message. The worker counts each
  attempt before the work (`maild.threading.worker`), so a message that crashes or hangs it
  is failed after three and never holds up the mail behind it for longer (SPEC §9).
- The **worker** (a child process) runs the loop in the shape of Mailman's runners: move
  spooled mail into `inbound`, thread a bounded batch of stored mail, deliver a bounded batch of
  due outbox rows, run the due timers (`schedule`), and sleep when a pass did no work until the
  intake wakes it. It runs niced, so on a busy machine the CPU goes first to the client waiting
  for its 250.

SIGTERM or SIGINT: the intake stops accepting, the worker finishes the batch in hand, both exit,
status 0. A crash or `kill -9` of either loses nothing: every step is a committed state change,
the worker exits when its parent is gone, and the next start picks up `new` inbound rows, due
outbox rows and the claims of the dead process.

The two live in modules of their own, `maild.daemon.intake` and `maild.daemon.worker`, with
what they share in `maild.daemon.shared`, because each is an interpreter that imports only what
it uses: the worker never loads the listeners, the IMAP client or the web channel, and the
intake never loads SQLAlchemy, the ORM or the templates — it reaches the database over DB-API
alone, and runs `maild init` at start as a short-lived command of its own. Both children
are plain subprocesses, sharing what they must through inherited descriptors. Each holds memory
only for its own part (bench/README.md, e2e_bench's RSS).
"""
