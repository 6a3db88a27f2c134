"""The vocabularies of maild's tables: every state and kind a column holds, as string enums.

Plain standard library, so a command that only reads (`maild ticket list`, `ticket show`) can
name states without importing the ORM; `maild.models` defines the tables that hold them and
re-exports every name here.
"""

from __future__ import annotations

from enum import StrEnum


class InboundState(StrEnum):
    NEW = "new"          # stored, not yet threaded
    DONE = "done"        # on a ticket
    FAILED = "failed"    # kept with a reason; `maild inbound retry` runs it again


class OutboxState(StrEnum):
    PENDING = "pending"    # due at next_attempt_at
    SENDING = "sending"    # claimed by a worker; a stale claim is taken back after its lease
    SENT = "sent"
    DEFERRED = "deferred"  # a temporary failure; due again at next_attempt_at
    DEAD = "dead"          # permanent failure or lifetime exceeded; recorded on the ticket


class TicketStatus(StrEnum):
    NEW = "new"          # in a queue, no owner
    OPEN = "open"        # has an owner, being worked
    WAITING = "waiting"  # staff answered; waiting for the customer
    CLOSED = "closed"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class MessageKind(StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"
    NOTE = "note"
    SYSTEM = "system"


class Channel(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    WEB = "web"


class EventType(StrEnum):
    """Every kind of entry in a ticket's history (`event.type`)."""

    CREATED = "created"
    MESSAGE_RECEIVED = "message_received"
    CLAIMED_TICKET = "claimed_ticket"              # a stranger named this ticket's number
    FOLLOWS_CLOSED = "follows_closed"              # new ticket for a closed one (no reopening)
    FORWARDED = "forwarded"                        # opened from a staff member's forward
    MESSAGE_ID_REUSED = "message_id_reused"
    NO_ACKNOWLEDGEMENT = "no_acknowledgement"
    NO_NOTICE = "no_notice"                        # staff not told (automatic mail, switched off)
    NOT_REOPENED = "not_reopened"                  # automatic mail on a closed ticket
    REOPENED = "reopened"
    STATUS = "status"
    ASSIGNED = "assigned"
    QUEUE = "queue"
    PRIORITY = "priority"
    ANSWERED = "answered"
    NOTE = "note"
    CC_ADDED = "cc_added"
    CC_REMOVED = "cc_removed"
    CLOSE_REQUESTED = "close_requested"
    ESCALATED = "escalated"
    BREACHED = "breached"
    COMMANDS_REFUSED = "commands_refused"
    ATTACHMENTS_REFUSED = "attachments_refused"
    STAFF_UNVERIFIED = "staff_unverified"
    NOT_SENT = "not_sent"
    AUTO_REPLY_SUPPRESSED = "auto_reply_suppressed"
    DELIVERY_FAILED = "delivery_failed"
    DELIVERY_RETRIED = "delivery_retried"
    BOUNCE_RECEIVED = "bounce_received"              # a bounce of mail maild sent (SPEC §9)
    ADDRESS_UNDELIVERABLE = "address_undeliverable"  # marked: no automatic mail goes to it
    ADDRESS_DELIVERABLE = "address_deliverable"      # it wrote again: the mark is gone


class Actor(StrEnum):
    """Who acted, when it was not a person (a person is their address)."""

    SYSTEM = "maild"        # what maild does by itself: timers, notices, delivery
    OPERATOR = "operator"   # a command run without --staff
