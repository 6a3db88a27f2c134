#!/usr/bin/env python3
"""maild's parser against mail-parser over the real-world corpus: speed, crashes, what is found.

For every file listed in $MAILD_CORPUS/manifest.jsonl (default: ../shared/corpus beside the
repository) both parsers are timed from raw bytes to the three facts maild needs: the sender
address, the subject and the body text.

- maild:       `maild.parsing.parse_message(raw)`; UnparseableMessage (no sender anywhere) counts
               as an exception too and is listed separately below the table.
- mail-parser: `mailparser.parse_from_bytes(raw)` and then reading `from_`, `subject`,
               `text_plain` and `text_html` (it decodes some of these lazily, so reading them is
               part of the cost and can raise).

"Sender found" means a non-empty address containing "@"; "body found" means non-empty plain text
or HTML. Files are read into memory first; each parser runs over the corpus --repeat times (3)
and the best total counts.

    .venv/bin/python bench/parse_compare.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mailparser

from maild.parsing import parse_message

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Found:
    sender: str
    subject: str
    body: bool


def maild_facts(raw: bytes) -> Found:
    mail = parse_message(raw)
    return Found(mail.sender, mail.subject, bool(mail.text.strip() or mail.html.strip()))


def mailparser_facts(raw: bytes) -> Found:
    mail = mailparser.parse_from_bytes(raw)
    sender = next((address for _name, address in mail.from_ if address), "")
    body = any(part.strip() for part in [*mail.text_plain, *mail.text_html])
    subject = mail.subject or ""
    if isinstance(subject, list):  # it returns every value when a message repeats Subject
        subject = " ".join(subject)
    return Found(sender, subject, body)


PARSERS: dict[str, Callable[[bytes], Found]] = {
    "maild.parsing": maild_facts,
    f"mail-parser {version('mail-parser')}": mailparser_facts,
}


@dataclass
class Tally:
    parser: str
    messages: int = 0
    best_s: float = float("inf")
    runs_s: list[float] = field(default_factory=list)
    exceptions: Counter[str] = field(default_factory=Counter)
    failed_files: list[str] = field(default_factory=list)
    results: dict[str, Found | None] = field(default_factory=dict)  # first run, per file

    def found(self) -> dict[str, int]:
        return counts([r for r in self.results.values() if r is not None])

    def row(self) -> dict[str, Any]:
        return {
            "parser": self.parser, "messages": self.messages,
            "best_s": round(self.best_s, 4),
            "runs_s": [round(r, 4) for r in self.runs_s],
            "ms_per_message": round(1000 * self.best_s / self.messages, 3),
            "exceptions": sum(self.exceptions.values()),
            "exception_types": dict(self.exceptions.most_common()),
            "failed_files_sample": self.failed_files[:10],
            **self.found(),
        }


def counts(found: list[Found]) -> dict[str, int]:
    return {"sender_found": sum("@" in f.sender for f in found),
            "subject_found": sum(bool(f.subject.strip()) for f in found),
            "body_found": sum(f.body for f in found)}


def corpus_dir() -> Path:
    return Path(os.environ.get("MAILD_CORPUS") or REPO.parent / "shared" / "corpus")


def load_corpus(folder: Path) -> list[tuple[str, bytes]]:
    manifest = folder / "manifest.jsonl"
    if not manifest.exists():
        raise SystemExit(f"parse_compare: no corpus manifest at {manifest} (set MAILD_CORPUS)")
    files = [json.loads(line)["file"] for line in manifest.read_text("utf-8").splitlines()
             if line.strip()]
    return [(name, (folder / name).read_bytes()) for name in files]


def measure(name: str, facts: Callable[[bytes], Found], corpus: list[tuple[str, bytes]],
            repeat: int) -> Tally:
    tally = Tally(name, messages=len(corpus))
    for run in range(repeat):
        first = run == 0
        start = time.perf_counter()
        for filename, raw in corpus:
            try:
                found = facts(raw)
            except Exception as exc:
                if first:
                    why = str(exc).splitlines()[0][:120] if str(exc) else ""
                    tally.exceptions[type(exc).__name__] += 1
                    tally.failed_files.append(f"{filename}: {type(exc).__name__}: {why}")
                    tally.results[filename] = None
                continue
            if first:
                tally.results[filename] = found
        elapsed = time.perf_counter() - start
        tally.runs_s.append(elapsed)
        tally.best_s = min(tally.best_s, elapsed)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per parser; best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    # Neither parser's logging or warnings should be part of what is measured.
    logging.getLogger("mailparser").setLevel(logging.CRITICAL + 1)
    warnings.simplefilter("ignore")

    folder = corpus_dir()
    corpus = load_corpus(folder)
    tallies = [measure(name, facts, corpus, max(1, args.repeat))
               for name, facts in PARSERS.items()]

    # The same three counts over only the messages every parser returned a result for, so a
    # message one parser refuses does not count against it twice.
    both = [name for name, _ in corpus if all(t.results.get(name) for t in tallies)]
    common = {t.parser: counts([r for n in both if (r := t.results[n]) is not None])
              for t in tallies}

    if args.json:
        json.dump({"corpus": str(folder), "messages": len(corpus),
                   "bytes": sum(len(raw) for _, raw in corpus), "repeat": args.repeat,
                   "python": platform.python_version(),
                   "parsers": [t.row() for t in tallies],
                   "all_parsed": {"messages": len(both), "found": common}},
                  sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0

    total_kb = sum(len(raw) for _, raw in corpus) / 1024
    print(f"corpus {folder}: {len(corpus)} messages, {total_kb:.0f} KB; best of "
          f"{args.repeat} runs; Python {platform.python_version()}")
    header = (f"{'parser':<20} {'total s':>8} {'ms/msg':>7} {'exceptions':>10} "
              f"{'sender found':>12} {'subject found':>13} {'body found':>10}")
    print(header)
    print("-" * len(header))
    for t in tallies:
        f = t.found()
        print(f"{t.parser:<20} {t.best_s:>8.3f} {1000 * t.best_s / t.messages:>7.3f} "
              f"{sum(t.exceptions.values()):>10} {f['sender_found']:>12} "
              f"{f['subject_found']:>13} {f['body_found']:>10}")
    print(f"on the {len(both)} messages that every parser returned:")
    for t in tallies:
        c = common[t.parser]
        print(f"  {t.parser:<20} sender {c['sender_found']}, subject {c['subject_found']}, "
              f"body {c['body_found']}")
    for t in tallies:
        if t.exceptions:
            kinds = ", ".join(f"{k} {v}" for k, v in t.exceptions.most_common())
            print(f"{t.parser} exceptions: {kinds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
