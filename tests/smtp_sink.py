"""A real SMTP server for tests: aiosmtpd on a free loopback port, recording what it gets.

`reply` decides the answer to each RCPT (e.g. "550 5.1.1 no such user"), so a test can make the
peer refuse for good or for now; `delay` makes it slow to answer each DATA; `stop()`/`start()`
take the whole server away and back.

`MisbehavingSink` is the relay of the kill campaign (tests/campaign.py): told at any moment to
be `up`, to answer every message `4xx` or `5xx` after its DATA (so it knows which Message-ID it
refused), or to be `down` (no listener); it keeps a record of every answer it gave.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    reply: Callable[[str], str] = lambda rcpt: "250 OK"
    delay: float = 0.0  # seconds before each DATA is answered

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        answer = self.reply(address)
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content))
        return "250 OK queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


# --- the misbehaving relay --------------------------------------------------------------------

MODES = ("up", "4xx", "5xx", "down")
_ANSWERS = {"up": "250 2.0.0 OK queued",
            "4xx": "451 4.3.0 campaign: try again later",
            "5xx": "554 5.7.1 campaign: refused for good"}
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Answer:
    """One message the relay answered: its Message-ID, recipients, and the reply's code."""

    message_id: str
    rcpt_tos: tuple[str, ...]
    code: int
    data: bytes


class _AnsweringHandler:
    def __init__(self, sink: MisbehavingSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        found = _MESSAGE_ID.search(data.split(b"\r\n\r\n", 1)[0])
        with self.sink.lock:
            reply = _ANSWERS[self.sink.mode if self.sink.mode != "down" else "4xx"]
            self.sink.answers.append(Answer(found.group(1).decode() if found else "",
                                            tuple(envelope.rcpt_tos), int(reply[:3]), data))
        return reply


class MisbehavingSink:
    """The relay that fails, refuses and comes back: `set_mode()` any of `MODES`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.mode = "down"
        self.answers: list[Answer] = []
        self.controller: Controller | None = None

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        with self.lock:
            self.mode = mode
        if mode == "down" and self.controller is not None:
            self.controller.stop()  # connections in progress are cut, as in a crash
            self.controller = None
        elif mode != "down" and self.controller is None:
            self.controller = Controller(_AnsweringHandler(self), hostname="127.0.0.1",
                                         port=self.port)
            self.controller.start()

    def accepted(self) -> list[Answer]:
        with self.lock:
            return [answer for answer in self.answers if answer.code == 250]

    def stop(self) -> None:
        self.set_mode("down")
