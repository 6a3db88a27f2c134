"""What stands between the network and the pages: security headers on every response, a size
limit on every request body that holds before the body is read, and a rate limit on posts per
client address (SPEC §10).

An ASGI middleware around the Starlette app. A body over the limit is refused from its
Content-Length, or — sent without one, in chunks — as soon as the chunks pass the limit; the
app never holds more than the limit in memory. The client address is the peer's, or the last
`X-Forwarded-For` hop when the peer is this machine (a reverse proxy in front of maild).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self'; "
     b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # a status link must not leak through a Referer
    (b"x-frame-options", b"DENY"),
]
Refusal = Callable[[Scope, int], Awaitable[Any]]  # renders the page of a refused request


class RateLimit:
    """A token bucket per client address: `burst` posts at once, `per_minute` sustained."""

    def __init__(self, burst: int = 20, per_minute: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.rate, self.clock = burst, per_minute / 60.0, clock
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        now = self.clock()
        tokens, last = self.buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if len(self.buckets) > 10_000:  # forget the addresses whose buckets are full again
            self.buckets = {k: v for k, v in self.buckets.items()
                            if v[0] + (now - v[1]) * self.rate < self.burst}
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return False
        self.buckets[client] = (tokens - 1, now)
        return True


class _TooLarge(Exception):
    pass


class Guard:
    def __init__(self, app: ASGIApp, *, max_body: int, rate: RateLimit, refuse: Refusal) -> None:
        self.app, self.max_body, self.rate, self.refuse = app, max_body, rate, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = False

        async def send_with_headers(message: Message) -> None:
            if too_large:
                return  # the app's own answer to a body cut off at the limit: ours is the 413
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if scope["method"] == "POST" and not self.rate.allow(client_address(scope)):
            response = await self.refuse(scope, 429)
            await response(scope, receive, send_with_headers)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body:
            response = await self.refuse(scope, 413)
            await response(scope, receive, send_with_headers)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received, too_large
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                too_large = True
                raise _TooLarge
            return message

        try:
            await self.app(scope, receive_within_limit, send_with_headers)
        except _TooLarge:
            too_large = False
            response = await self.refuse(scope, 413)
            await response(scope, receive, send_with_headers)


def client_address(scope: Scope) -> str:
    peer = (scope.get("client") or ("unknown", 0))[0]
    try:
        local = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        local = False
    if local:
        forwarded = dict(scope["headers"]).get(b"x-forwarded-for", b"").decode("latin-1")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return str(peer)
