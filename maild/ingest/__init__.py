"""Ingest: accept raw inbound mail durably, before anything acknowledges it.

Every entry point (the MTA pipe `maild ingest`, the SMTP listener, the IMAP poller) calls
`accept`, which commits the bytes to the `inbound` table — de-duplicated — and only then returns.
Threading the message into a ticket is a later stage that reads that table.
"""

from maild.ingest.accept import Accepted, accept

__all__ = ["Accepted", "accept"]
