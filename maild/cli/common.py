"""What every command group shares: the argument parser's error handling, `--at` and `--body`,
sending what a command just queued, and printing — one JSON document, columns, `key: value`
fields, instants as people read them (SPEC §6).

Imports nothing heavy: the group modules build their parsers from here for every command,
`--help` and `--version` included.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from maild.clock import FixedClock, parse_instant, time_for_people
from maild.errors import UsageError

if TYPE_CHECKING:
    from maild.app import App

log = logging.getLogger("maild")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"maild: {message}\n")


Handler = Callable[["App", argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser, str], None]
"""What a group module gives each of its commands: (the command's parser, its help) -> None;
it adds the arguments and the `handler` default."""


def body_arguments(parser: argparse.ArgumentParser) -> None:
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the text")
    body.add_argument("--body-file", help="read the text from this file ('-' for stdin)")


def body(args: argparse.Namespace) -> str:
    if args.body is not None:
        text = str(args.body)
    else:
        try:
            text = sys.stdin.read() if args.body_file == "-" else \
                Path(args.body_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--body-file: cannot read {args.body_file}: {exc}") from None
    if not text.strip():
        raise UsageError("the body is empty")
    return text


def clock_at(app: App, at: str | None) -> None:
    """`--at`: run as at the given instant instead of now."""
    if at:
        try:
            app.clock = FixedClock(parse_instant(at))
        except ValueError:
            raise UsageError(f"--at: not an ISO 8601 instant: {at!r}") from None


def deliver_owed(app: App) -> None:
    """Send right away what the command just queued; the daemon or `maild tick` retries."""
    from maild.views import pending_since

    with app.reading() as reader:
        owed = pending_since(reader, app.clock.now() - timedelta(minutes=1))
    if owed:
        try:
            app.deliverer().deliver_due(app.clock, only=owed)
        except Exception as exc:
            log.warning("delivery postponed: %s", exc)


# --- printing ---------------------------------------------------------------------------------

def for_people(app: App, instant: str | None) -> str:
    """An ISO 8601 instant of a `--json` document as the plain output shows it; `-` for none."""
    return time_for_people(parse_instant(instant), app.settings.sla.zone) if instant else "-"


def print_fields(app: App, data: dict[str, Any]) -> None:
    """`key: value` lines of one record; its instants (the `*_at` keys) for people."""
    for key, value in data.items():
        print(f"{key}: {for_people(app, value) if key.endswith('_at') else value}")


def columns(heads: Sequence[tuple[str, int]], rows: Sequence[Sequence[str]]) -> Iterator[str]:
    """A heading and the rows, each column as wide as its widest cell up to its limit (longer
    cells are cut, ending in "…"); a limit of 0 leaves the column as it is — the last one."""
    widths = [min(limit, max(len(head), *(len(row[i]) for row in rows))) if limit else 0
              for i, (head, limit) in enumerate(heads)]

    def cell(text: str, width: int) -> str:
        if not width:
            return text
        return (text if len(text) <= width else text[:width - 1] + "…").ljust(width)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell(text, width)
                         for text, width in zip(cells, widths, strict=True)).rstrip()

    yield line([head for head, _ in heads])
    yield from (line(row) for row in rows)


def print_json(data: Any) -> None:
    """One JSON document, written at once (`json.dump` writes every token on its own)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_raw(raw: bytes) -> None:
    """Stored bytes exactly as stored (`--raw`)."""
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()
