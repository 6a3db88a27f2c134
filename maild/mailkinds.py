"""Every kind of mail maild sends, in one table: who reads it, how it is marked, what a reply to
it means (DESIGN.md "one vocabulary for what maild sends").

Each kind is one `MailKind`: its template (`templates/<language>/<template>.txt`), its audience
(the customer, or staff: internal mail never reaches a customer), its RFC 3834 `Auto-Submitted`
value (None for mail a person wrote), whether it counts toward the hourly cap of automatic mail
to one address (SPEC §6), and whether a staff member's reply to it is the answer to the customer
(the notices of a customer's message, SPEC §7) or stays internal. Every writer asks
`maild.outbox.queue_mail` for a kind; threading reads the same table, by the `outbox.kind` of
the mail a staff reply refers to, to tell an answer from an internal remark.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from maild.states import MessageKind


class Audience(StrEnum):
    CUSTOMER = "customer"  # the ticket's customer (and its Cc participants)
    STAFF = "staff"        # internal: staff only


@dataclass(frozen=True)
class MailKind:
    name: str                      # what `outbox.kind` records
    audience: Audience
    auto_submitted: str | None     # RFC 3834; None: a person wrote it
    capped: bool = False           # counts toward `mail.auto_reply_limit_per_hour`
    answers_customer: bool = False  # a staff reply to it is the answer to the customer
    template: str = ""             # default: the name
    filed_as: MessageKind = MessageKind.SYSTEM  # the copy on the ticket's correspondence

    @property
    def template_name(self) -> str:
        return self.template or self.name

    @property
    def internal(self) -> bool:
        return self.audience == Audience.STAFF


# --- to the customer ------------------------------------------------------------------------
ACK = MailKind("ack", Audience.CUSTOMER, "auto-replied", capped=True)
ANSWER = MailKind("reply", Audience.CUSTOMER, None, filed_as=MessageKind.STAFF)
REOPENED = MailKind("reopened", Audience.CUSTOMER, "auto-replied", capped=True)
CLOSE_REQUEST = MailKind("close_request", Audience.CUSTOMER, None)  # a staff member asked
CLOSE_REQUEST_AUTO = MailKind("close_request_auto", Audience.CUSTOMER, "auto-generated",
                              template="close_request")        # the customer stayed silent
# --- to staff: notices of a customer's message (a reply answers the customer) ----------------
NEW_TICKET = MailKind("notice_new", Audience.STAFF, "auto-generated", answers_customer=True)
FOLLOW_UP = MailKind("notice_follow_up", Audience.STAFF, "auto-generated",
                     answers_customer=True)
REOPENED_OWNER = MailKind("reopened_owner", Audience.STAFF, "auto-generated",
                          answers_customer=True)
# --- to staff: internal mail (a reply is a note, unless it starts with #reply) ----------------
ESCALATION = MailKind("escalation", Audience.STAFF, "auto-generated")
ASSIGNED = MailKind("assigned", Audience.STAFF, "auto-generated")
STAFF_ERROR = MailKind("staff_error", Audience.STAFF, "auto-replied")      # commands refused
STAFF_REFUSED = MailKind("staff_refused", Audience.STAFF, "auto-replied")  # about no ticket
ATTACHMENTS_REFUSED = MailKind("attachments_refused", Audience.STAFF, "auto-replied")
BOUNCE_NOTICE = MailKind("bounce_notice", Audience.STAFF, "auto-generated")  # SPEC §9

ALL = (ACK, ANSWER, REOPENED, CLOSE_REQUEST, CLOSE_REQUEST_AUTO, NEW_TICKET, FOLLOW_UP,
       REOPENED_OWNER, ESCALATION, ASSIGNED, STAFF_ERROR, STAFF_REFUSED, ATTACHMENTS_REFUSED,
       BOUNCE_NOTICE)
_BY_NAME = {kind.name: kind for kind in ALL}
TEMPLATES = tuple(sorted({kind.template_name for kind in ALL}))
TO_CUSTOMERS = tuple(kind.name for kind in ALL if not kind.internal)  # outbox.kind values
TO_STAFF = tuple(kind.name for kind in ALL if kind.internal)


def named(name: str) -> MailKind | None:
    """The kind an `outbox.kind` value names; None for a name no longer in the table."""
    return _BY_NAME.get(name)
