"""Writes `maild/schema.py` from `maild.models`: `make schema` after a change to a table.

The tables are defined once, in `maild.models`; the writers that import no ORM (the threading
worker, the timers, the commands that change tickets) need only their column shapes, which this
copies out as plain data. tests/test_schema.py fails while the file is not what this writes.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Table

from maild import models
from maild.models import UTCDateTime

TARGET = Path(__file__).with_name("schema.py")
_BEGIN = "# --- written by `make schema` (python -m maild.schemagen) from maild.models ---\n"


def generated() -> str:
    """The whole text `maild/schema.py` should have."""
    head = TARGET.read_text(encoding="utf-8").split(_BEGIN, 1)[0]
    blocks = [_block(name, getattr(models, name)) for name in sorted(models.__all__)
              if hasattr(getattr(models, name), "__table__")]
    return head + _BEGIN + "\n" + "\n\n".join(blocks)


def _block(name: str, model: Any) -> str:
    table: Table = model.__table__
    keys = [c.name for c in table.primary_key.columns]
    key = keys[0] if keys == ["id"] else None
    defaults = [f"{c.name!r}: " + _literal(getattr(c.default, "arg", None)
                                           if c.default is not None and c.default.is_scalar
                                           else None)
                for c in table.columns if c.name != key]
    instants = sorted(repr(c.name) for c in table.columns if isinstance(c.type, UTCDateTime))
    flags = sorted(repr(c.name) for c in table.columns if isinstance(c.type, Boolean))
    return "\n".join([
        f"{table.name.upper()}: Table[{name}] = Table(",
        f"    {table.name!r}, {name!r}, key={key!r},",
        _wrapped("    columns=(", [repr(c.name) for c in table.columns], "),"),
        _wrapped("    defaults={", defaults, "},"),
        _wrapped("    instants=frozenset({", instants, "}),") if instants
        else "    instants=frozenset(),",
        _wrapped("    flags=frozenset({", flags, "}))") if flags else "    flags=frozenset())",
        ""])


def _literal(value: Any) -> str:
    return repr(value.value if isinstance(value, Enum) else value)


def _wrapped(opening: str, items: list[str], closing: str) -> str:
    """`opening`, the items separated by commas, `closing`: on as many lines of at most 99
    columns as it takes, continued under the first item."""
    lines, current = [], opening
    for index, item in enumerate(items):
        text = item + ("," if index < len(items) - 1 else closing)
        if current.strip() and len(current) + len(text) + 1 > 99 and current != opening:
            lines.append(current.rstrip())
            current = " " * len(opening)
        current += text + " "
    if len(items) == 1 and closing == "),":
        current = current.rstrip()[:-2] + ",),"  # a one-item tuple
    lines.append(current.rstrip())
    return "\n".join(lines)


def main() -> int:
    text = generated()
    if TARGET.read_text(encoding="utf-8") != text:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
