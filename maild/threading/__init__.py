"""Threading: turn stored inbound mail into ticket changes.

parse → find the ticket (subject tag, then In-Reply-To/References) → open, append or reopen,
and in the same transaction write the message rows, the history events, the outbox rows and
the inbound row's final state. Nothing here sends mail or touches the network.
"""

from maild.threading.worker import process_inbound, process_pending, retry_failed

__all__ = ["process_inbound", "process_pending", "retry_failed"]
