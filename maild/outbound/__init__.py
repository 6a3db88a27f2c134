"""Outbound: deliver the rows of the outbox through a transport, with retries.

The outbox rows already hold the complete rendered message (see maild.outbox); this stage only
moves bytes: claim due rows, hand them to the transport, and record sent / deferred / dead.
"""

from maild.outbound.deliver import Deliverer, DeliveryReport, requeue
from maild.outbound.transports import MaildirTransport, Transport

# SmtpTransport is imported from `maild.outbound.smtp`: only a sender for a relay loads smtplib.
__all__ = ["Deliverer", "DeliveryReport", "MaildirTransport", "Transport", "requeue"]
