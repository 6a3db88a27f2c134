"""Is a mail From a staff address really from that staff member?

SPEC §7 takes a staff address on the From line as the staff member (`mail.staff_auth = "from"`,
the default). A From line is trivially forged, and staff mail can relay text to customers and
close tickets, so an operator whose MTA checks DKIM/SPF/DMARC can require proof
(`mail.staff_auth = "authentication-results"`): an RFC 8601 Authentication-Results header
written by their own MTA (`mail.authserv_id`) that says dkim or dmarc passed for the From
domain, or spf passed for the sender's address or domain. Headers from any other authserv-id
are ignored — anyone can write one. Without such an MTA, `mail.staff_auth = "token"` asks the
mail to answer — by In-Reply-To or References — a Message-ID maild sent to that very staff
member (`maild.signing`): a staff notice, an escalation, an assignment. Only the staff member's
mailbox holds those ids, and one sent to a colleague does not verify for them.
"""

from __future__ import annotations

import re

from maild.config import Settings
from maild.parsing import ParsedMail
from maild.signing import signed_for

_RESULT = re.compile(r"\b(dkim|dmarc|spf)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)
_PROPERTY = re.compile(r"\b(header\.d|header\.i|header\.from|smtp\.mailfrom)\s*=\s*([^\s;]+)",
                       re.IGNORECASE)


def verified_staff(settings: Settings, mail: ParsedMail) -> bool:
    """True when `mail` may act as the staff member its From line names."""
    if not settings.is_staff(mail.sender):
        return False
    if settings.mail.staff_auth == "from":
        return True
    if settings.mail.staff_auth == "token":
        return any(signed_for(settings, mid, mail.sender) for mid in mail.thread_ids)
    domain = mail.sender.rpartition("@")[2].lower()
    for header in mail.authentication_results:
        authserv, _, results = header.partition(";")
        if authserv.strip().split()[0:1] != [settings.mail.authserv_id]:
            continue
        for method, result, rest in _RESULT.findall(results):
            if result.lower() != "pass":
                continue
            for name, value in _PROPERTY.findall(rest):
                value = value.strip().strip('"').lower()
                if _matches(method.lower(), name.lower(), value, domain, mail.sender):
                    return True
    return False


def _matches(method: str, name: str, value: str, domain: str, sender: str) -> bool:
    if method == "dkim" and name == "header.d":
        return value == domain
    if method == "dkim" and name == "header.i":
        return value.rpartition("@")[2] == domain
    if method == "dmarc" and name == "header.from":
        return value == domain
    if method == "spf" and name == "smtp.mailfrom":
        return value in (sender, domain) or value.rpartition("@")[2] == domain
    return False
