"""The signed Message-IDs maild sends, made and checked here only.

Every mail maild sends carries `maild.<nonce>.<mac>@<domain>`: a random nonce and a truncated
HMAC-SHA256, under the key in `mail.secret_file` (`maild.keys`), of the nonce and the address
the copy was sent to. A reference to such an id therefore proves that its sender got that mail
from maild (SPEC §5 "a reference to a Message-ID maild sent is proof enough"; SPEC §7
`staff_auth = "token"`) — and only its recipient: an id cannot be guessed, and one maild sent
to someone else, or a customer's own Message-ID, proves nothing. Ids made before signing
(`maild.<ms>.<hex16>`) still thread by lookup but never verify. The default key beside a
SQLite database is made when first needed, should it be missing (`Settings.mail_key_made_on_need`).
"""

from __future__ import annotations

import hmac
import re
import secrets

from maild.config import Settings
from maild.keys import read_key

_NONCE_BYTES = 10  # 80 random bits: ids never repeat
_MAC_CHARS = 24    # 96 bits of the HMAC, in lower-case hex (survives any case folding)
_SIGNED = re.compile(rf"maild\.([0-9a-f]{{{2 * _NONCE_BYTES}}})\.([0-9a-f]{{{_MAC_CHARS}}})@")


def signed_message_id(settings: Settings, recipient: str) -> str:
    """A fresh Message-ID (without brackets) in maild's own domain, signed for `recipient`."""
    nonce = secrets.token_hex(_NONCE_BYTES)
    return f"maild.{nonce}.{_mac(settings, nonce, recipient)}@{settings.mail.domain}"


def signed_for(settings: Settings, message_id: str, address: str) -> bool:
    """True when `message_id` is one maild made for `address` (compared in constant time)."""
    found = _SIGNED.match(message_id.lower())
    if found is None:
        return False
    nonce, mac = found.groups()
    return hmac.compare_digest(mac, _mac(settings, nonce, address))


def _mac(settings: Settings, nonce: str, address: str) -> str:
    key = read_key(settings.mail.secret_file, create=settings.mail_key_made_on_need)
    text = f"{nonce}\0{address.strip().lower()}".encode()
    return hmac.digest(key, text, "sha256").hex()[:_MAC_CHARS]  # OpenSSL's one-shot HMAC
