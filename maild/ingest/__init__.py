"""Ingest: accept raw inbound mail durably, before anything acknowledges it.

Every entry point (the MTA pipe `maild ingest`, the SMTP listener, the IMAP poller) calls
`accept` (`maild.ingest.accept`), which commits the bytes to the `inbound` table —
de-duplicated — and only then returns. Threading the message into a ticket is a later stage
that reads that table. Nothing is imported here, so that `maild.ingest.backlog` (what waits in
the daemon's spool) costs a read command no ORM.
"""
