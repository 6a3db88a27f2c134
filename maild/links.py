"""The signed links and forms of the web channel (SPEC §10), written once.

A ticket's status link, `<base_url>/t/<token>`, is the only way to its page: the token is the
ticket number signed with the key in `web.secret_file` (HMAC, itsdangerous; the file is made
and read by `maild.keys`), so numbers cannot be enumerated and a link cannot be forged; writing
a new key into the file revokes every link.
Every form carries a token too — a random nonce, signed and timed, and bound to a random id in
the visitor's cookie — so a form posted from any other site, which cannot read or set that
cookie, fails (a signed double submit); several tabs of one browser all work. The
nonce is also the Message-ID of the submission, so a form sent twice (a reload, a double click)
is the same message and stored once (`maild.dedupe`).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer

from maild.config import Settings, WebSettings
from maild.keys import read_key

FORM_MAX_AGE = 24 * 3600  # a form left open for a day still sends; an older one is refused


def _key(web: WebSettings) -> bytes:
    return read_key(web.secret_file)


def status_url(settings: Settings, number: str) -> str:
    """The customer's link to the ticket's page; "" when the web channel is off."""
    if settings.web is None:
        return ""
    token = URLSafeSerializer(_key(settings.web), salt="status").dumps(number)
    return f"{settings.web.base_url}/t/{token}"


def ticket_of(web: WebSettings, token: str) -> str | None:
    """The ticket number a status token names; None for a forged or revoked one."""
    try:
        number = URLSafeSerializer(_key(web), salt="status").loads(token)
    except BadSignature:
        return None
    return number if isinstance(number, str) and number.isdigit() else None


def browser_id() -> str:
    """A random id for the visitor's cookie, which every form token of theirs is bound to."""
    return secrets.token_urlsafe(18)


def form_token(web: WebSettings, browser: str) -> str:
    """A fresh anti-forgery token for one form, bound to the visitor's cookie."""
    return URLSafeTimedSerializer(_key(web), salt="form").dumps([secrets.token_hex(16), browser])


def form_nonce(web: WebSettings, token: str, browser: str) -> tuple[str, datetime] | None:
    """The nonce of a valid, recent form token made for this visitor's cookie, and when the
    form was made; None for a forged or stale one, or one made for another browser."""
    try:
        payload, made = URLSafeTimedSerializer(_key(web), salt="form").loads(
            token, max_age=FORM_MAX_AGE, return_timestamp=True)
    except BadSignature:  # SignatureExpired is one
        return None
    if not (isinstance(payload, list) and len(payload) == 2 and payload[1] == browser
            and isinstance(payload[0], str) and len(payload[0]) == 32):
        return None
    return payload[0], made
