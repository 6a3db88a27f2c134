"""The SMTP (or LMTP) listener: aiosmtpd in a thread, answering 250 only once mail is stored.

The handler does one thing with a message: hand its raw bytes to `store` (which commits them to
the intake spool, or `inbound`) and answer by the outcome — 250 when stored, 451 when the
database could not take it (the sender keeps the mail and retries). Recipients outside
`mail.accept` get 550: maild is never an open relay. Size is enforced while the data arrives
(552). End-of-data is only ever CRLF.CRLF (no SMTP smuggling), and the data is read up to it
in runs rather than a line at a time (`read_data`); bare LF inside the data is accepted and
stored as received — with the dot-stuffing of lines that end in a bare LF undone,
as Postfix's smtpd does: clients that send bare LF (Python's smtplib handed a file's bytes is the
common one) stuff a dot at the start of every such line, and aiosmtpd only removes it from lines
ending in CRLF.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from maild.config import SmtpSettings
from maild.errors import StorageUnavailable
from maild.ingest.accept import Accepted

log = logging.getLogger("maild.smtp")

Store = Callable[[bytes, str | None], Accepted]


class StoringHandler:
    """aiosmtpd handler: the return value of each hook is the SMTP reply."""

    def __init__(self, store: Store, accept: tuple[str, ...], wake: Callable[[], None],
                 store_now: Callable[[bytes, str | None], Accepted | None] | None = None
                 ) -> None:
        """`store` may wait (a lock, the disk), so it runs on a thread of its own; `store_now`,
        when there is one, stores right away or declines at once (None), and runs on the event
        loop (`maild.ingest.spool.Spool.try_store`)."""
        self.store = store
        self.store_now = store_now
        self.accept = {address.lower() for address in accept}
        self.wake = wake

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() not in self.accept:
            log.info("refused RCPT %s from %s", address, session.peer)
            return f"550 5.1.1 <{address}>: recipient not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = unstuff_bare_lf_lines(envelope.original_content or b"")
        sender = envelope.mail_from or ""
        try:
            accepted = self.store_now(raw, sender) if self.store_now else None
            if accepted is None:
                accepted = await asyncio.get_running_loop().run_in_executor(
                    None, self.store, raw, sender)
        except StorageUnavailable as exc:
            log.warning("could not store a message from %s: %s", session.peer, exc)
            return "451 4.3.0 Could not store the message, please try again later"
        except Exception:
            log.exception("storing a message from %s failed", session.peer)
            return "451 4.3.0 Local error while storing the message, please try again later"
        self.wake()
        log.info("%s stored from %s (%d bytes) %s%s", accepted, session.peer, len(raw),
                 accepted.trace, " (duplicate)" if accepted.duplicate else "")
        reply = f"250 2.0.0 OK stored as {accepted}"
        if isinstance(server, LMTP):
            # LMTP answers once per recipient; aiosmtpd pushes only the last answer itself.
            for _ in envelope.rcpt_tos[1:]:
                await server.push(reply)
        return reply


_STUFFED_AFTER_BARE_LF = re.compile(rb"(?<!\r)\n\.")


def unstuff_bare_lf_lines(raw: bytes) -> bytes:
    """Remove the transparency dot (RFC 5321 4.5.2) from lines that follow a bare LF."""
    if b"\n." not in raw:
        return raw
    return _STUFFED_AFTER_BARE_LF.sub(b"\n", raw)


_DOT_LINE = b".\r\n"


async def read_data(reader: asyncio.StreamReader, limit: int | None) -> bytes | None:
    """The message a client sends after DATA's 354, up to the line that is a lone dot — which
    ends it only after CRLF or at its very start (RFC 5321 4.1.1.4; a dot after a bare LF or
    before a bare LF is data: no SMTP smuggling) — with the transparency dot of each line that
    starts with one removed (4.5.2). None when it is over `limit` bytes; it is read to its end
    all the same (4.2.5), keeping nothing. Nothing after the dot line is read: a pipelined
    command stays for the session.

    aiosmtpd reads the data a line at a time, a coroutine step and a dozen checks for each:
    about 0.2 ms of the intake's CPU for an average mail of 8 KB (bench/README, issue #12,
    thirteenth part). Here each read runs to the next `.CRLF`, which only a line that ends with
    a dot gives before the end (base64 lines never do)."""
    chunks: list[bytes] = []
    size, too_much = 0, False
    before = b"\r\n"  # the two bytes before what is read next: the data starts a line
    while True:
        try:
            chunk = await reader.readuntil(_DOT_LINE)
            ended = (before + chunk[-5:])[-5:-3] == b"\r\n"
        except asyncio.LimitOverrunError as exc:  # a run longer than the reader's limit
            chunk, ended = await reader.read(exc.consumed), False
        if ended:
            chunk = chunk[:-len(_DOT_LINE)]
        size += len(chunk)
        if limit and size > limit:
            too_much = True
            chunks.clear()  # keep nothing of a message that is refused
        elif not too_much:
            chunks.append(chunk)
        if ended:
            break
        before = (before + chunk[-2:])[-2:]
    if too_much:
        return None
    data = b"".join(chunks).replace(b"\r\n.", b"\r\n")
    return data[1:] if data.startswith(b".") else data


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ANGLE_ADDRESS = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*)@({_ATOM}(?:\.{_ATOM})*)>")


def plain_address(arg: str) -> tuple[str, str] | None:
    """`<local@domain>` and what follows it, for the MAIL FROM and RCPT TO arguments of
    nearly every client: a dot-atom local part and domain, nothing to unquote. None for
    anything else (quoted local parts, comments, `<>`, no brackets), which aiosmtpd parses."""
    found = _PLAIN_ANGLE_ADDRESS.match(arg)
    rest = arg[found.end():].lstrip(" \t") if found else ""  # as the parser eats white space
    if found is None or rest.startswith("("):  # and comments
        return None
    return f"{found.group(1)}@{found.group(2)}", rest


def _server_class(protocol: str, line_limit: int) -> type[SMTP]:
    base: type[SMTP] = LMTP if protocol == "lmtp" else SMTP

    class Server(base):  # type: ignore[valid-type, misc]
        # Bare-LF mail arrives as one long "line"; allow it up to the message size limit.
        line_length_limit = line_limit

        def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
            # aiosmtpd 1.4 defines a typing.Protocol class inside _getaddr, on every call, and
            # parses each address with the email package's header parser: together a fifth of
            # the intake's CPU per message. Plain addresses give the same answer without either
            # (tests/test_daemon_smtp.py compares the two).
            plain = plain_address(arg)
            if plain is None:
                return super()._getaddr(arg)
            address, rest = plain
            local = address.rpartition("@")[0]
            if self.local_part_limit and len(local) > self.local_part_limit:
                return None, None
            return address, rest

        @syntax("DATA")  # as aiosmtpd's: HELP lists the command and its syntax
        async def smtp_DATA(self, arg: str) -> None:
            # aiosmtpd's own, but for how the data is read (`read_data`); maild's handler
            # always has `handle_DATA` and takes bytes (decode_data=False).
            if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
                return
            assert self.envelope is not None
            if not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            if arg:
                await self.push("501 Syntax: DATA")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                data = await read_data(self._reader, self.data_size_limit)
            except asyncio.CancelledError:
                log.info("connection lost during DATA from %s", self.session.peer)
                self._writer.close()
                raise
            if data is None:
                status = "552 Error: Too much mail data"
            else:
                self.envelope.content = self.envelope.original_content = data
                status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push("250 OK" if status is MISSING else status)

    return Server


class _Controller(Controller):
    def __init__(self, server_class: type[SMTP], *args: Any, **kwargs: Any) -> None:
        self.server_class = server_class
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return self.server_class(self.handler, **self.SMTP_kwargs)


class SmtpListener:
    """Runs the listener on its own event loop thread; `start()` raises if it cannot bind."""

    def __init__(self, settings: SmtpSettings, handler: StoringHandler) -> None:
        tls_context = None
        if settings.tls_cert:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        self.controller = _Controller(
            _server_class(settings.protocol, settings.max_message_bytes + 1024),
            handler,
            hostname=settings.host,
            port=settings.port,
            data_size_limit=settings.max_message_bytes,
            tls_context=tls_context,
            require_starttls=settings.require_tls,
            decode_data=False,
            ident="maild ESMTP",
        )
        self.settings = settings

    def start(self) -> None:
        self.controller.start()
        log.info("%s listener on %s", self.settings.protocol.upper(), self.settings.listen)

    def stop(self) -> None:
        self.controller.stop()
