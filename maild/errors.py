"""The exception tree of maild.

Every failure that crosses a module boundary is one of these, so callers decide by class,
never by message text::

    MaildError
    ├── ConfigError          the config file is wrong; carries every "file:key: problem" line
    ├── UsageError           a command was given bad arguments or input (exit status 2)
    ├── NotFound             a ticket, queue or staff member named on the command line is unknown
    ├── StorageUnavailable   the database could not take a write (locked, disk full); retry later
    ├── UnparseableMessage   an inbound message cannot become a ticket; it is kept as `failed`
    └── DeliveryError        sending one outbound message failed
        ├── TemporaryFailure   4xx, refused connection, timeout: retry with back-off
        └── PermanentFailure   5xx: record on the ticket, never retry
"""

from __future__ import annotations


class MaildError(Exception):
    """Base of every error maild raises on purpose."""


class ConfigError(MaildError):
    """The configuration is invalid; `problems` holds one "file:key: message" per error."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(MaildError):
    """Bad arguments or bad input on the command line."""


class NotFound(MaildError):
    """A ticket, queue, staff member or inbound row named by the user does not exist."""


class StorageUnavailable(MaildError):
    """The database refused a write for now (locked past the busy timeout, disk full, gone)."""


class UnparseableMessage(MaildError):
    """An inbound message cannot be turned into a ticket message; the reason is the text."""


class DeliveryError(MaildError):
    """Sending one outbound message failed."""


class TemporaryFailure(DeliveryError):
    """The failure may go away: try again later.

    `connection` is true when the peer could not be reached at all, so the rest of the batch
    would fail the same way.
    """

    def __init__(self, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection


class PermanentFailure(DeliveryError):
    """The receiving side refused for good: do not try again."""
