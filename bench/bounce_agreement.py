#!/usr/bin/env python3
"""maild's bounce detector (`maild.bounces.detect`) against sisimai's verdicts on its own corpus.

For every message of $MAILD_CORPUS/manifest.jsonl (default: ../shared/corpus beside the
repository) whose `expected` holds `sisimai_results` (the facts of go-sisimai's tests), the
detector runs on the raw bytes — parsed as the worker parses them (`maild.parsing.message_tree`,
the tree `ParsedMail.message` keeps) — and is compared with sisimai on:

- is it a bounce: sisimai's reasons `delivered` (a DSN of success), `feedback` (an ARF
  complaint) and `vacation` (an RFC 3834 auto-reply) are sisimai's names for messages that are
  *not* bounces (sisimai's docs: "Sisimai can parse ... auto-reply and feedback loop messages";
  `delivered` is "the email was delivered successfully"); every other reason, `undefined` and
  `onhold` included, is a message sisimai decoded as a failed delivery;
- permanent or temporary, two ways: against `hard_bounce`, and against the class of sisimai's
  status code (5.x.x permanent, 4.x.x temporary) where sisimai gives one. The two differ by
  design: sisimai calls a bounce hard only for reasons that say the address itself is wrong
  (userunknown, hostunknown, hasmoved, and notaccept with a 5xx), so a 5.2.2 "mailbox full" is a
  permanent failure of that delivery but a soft bounce to sisimai. maild marks an address on a
  permanent failure (SPEC §9), so the status class is the comparison that decides what maild does;
  `hard_bounce` is printed because it is sisimai's own verdict;
- a recipient found: the detector named at least one failed address.

A message with several sisimai results counts as a bounce when any result is one, hard when any
is hard, permanent when any status is 5.x.x. Misses are listed by reason and file.

    .venv/bin/python bench/bounce_agreement.py [--json] [--misses N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from maild.bounces import Verdict, detect

REPO = Path(__file__).resolve().parent.parent
NOT_BOUNCES = {"delivered", "feedback", "vacation"}


@dataclass(frozen=True)
class Case:
    file: str
    reasons: tuple[str, ...]
    bounce: bool
    hard: bool
    status_permanent: bool | None  # None: sisimai gives no status code
    verdict: Verdict


def load(corpus: Path) -> list[Case]:
    cases = []
    for line in (corpus / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        results = (entry.get("expected") or {}).get("sisimai_results")
        if not results:
            continue
        reasons = tuple(r["reason"] for r in results)
        statuses = [r["status"] for r in results if r["status"][:1] in ("4", "5")]
        cases.append(Case(
            entry["file"], reasons, any(r not in NOT_BOUNCES for r in reasons),
            any(r["hard_bounce"] for r in results),
            any(s[:1] == "5" for s in statuses) if statuses else None,
            detect((corpus / entry["file"]).read_bytes())))
    return cases


def measure(cases: list[Case]) -> dict[str, Any]:
    bounces = [c for c in cases if c.bounce]
    found = [c for c in bounces if c.verdict.bounce]
    with_status = [c for c in found if c.status_permanent is not None]
    missed = [c for c in bounces if not c.verdict.bounce]
    false = [c for c in cases if not c.bounce and c.verdict.bounce]
    hard_wrong = [c for c in found if c.verdict.permanent != c.hard]
    status_wrong = [c for c in with_status if c.verdict.permanent != c.status_permanent]
    return {
        "messages": len(cases),
        "bounces_expected": len(bounces),
        "not_bounces_expected": len(cases) - len(bounces),
        "bounce_agreement": sum(c.verdict.bounce == c.bounce for c in cases),
        "bounces_found": len(found),
        "false_bounces": len(false),
        "by_detector": dict(Counter(c.verdict.detector for c in found)),
        "hard_agreement": len(found) - len(hard_wrong),
        "status_compared": len(with_status),
        "status_agreement": len(with_status) - len(status_wrong),
        "recipient_found": sum(bool(c.verdict.recipients) for c in found),
        "original_message_id_found": sum(bool(c.verdict.original_message_id) for c in found),
        "missed": _by_reason(missed),
        "false": _by_reason(false),
        "status_disagreements": _by_reason(status_wrong, permanence=True),
        "hard_disagreements": dict(Counter(
            f"{'/'.join(sorted(set(c.reasons)))}: maild "
            f"{'permanent' if c.verdict.permanent else 'temporary'}, sisimai "
            f"{'hard' if c.hard else 'soft'}" for c in hard_wrong).most_common()),
    }


def _by_reason(cases: list[Case], permanence: bool = False) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for c in cases:
        label = "/".join(sorted(set(c.reasons)))
        if permanence:
            label += (f" (maild {'permanent' if c.verdict.permanent else 'temporary'}, status "
                      f"{'5' if c.status_permanent else '4'}.x.x)")
        grouped[label].append(c.file.rsplit("/", 1)[-1])
    return dict(sorted(grouped.items()))


def report(result: dict[str, Any], misses: int) -> str:
    n = result["messages"]
    found = result["bounces_found"]
    lines = [
        f"maild.bounces.detect against sisimai (flufl.bounce {version('flufl.bounce')}), "
        f"{n} messages with sisimai verdicts",
        "",
        "| measure | count | share |",
        "|---|---:|---:|",
        f"| is a bounce: agreement | {result['bounce_agreement']} / {n} "
        f"| {_pct(result['bounce_agreement'], n)} |",
        f"| bounces found (of sisimai's {result['bounces_expected']}) | {found} "
        f"| {_pct(found, result['bounces_expected'])} |",
        f"| not-bounces taken for bounces (of {result['not_bounces_expected']}) "
        f"| {result['false_bounces']} | |",
        f"| permanent vs sisimai's status class (of {result['status_compared']} found with a "
        f"status) | {result['status_agreement']} | "
        f"{_pct(result['status_agreement'], result['status_compared'])} |",
        f"| permanent vs sisimai's hard_bounce (of {found} found) | {result['hard_agreement']} "
        f"| {_pct(result['hard_agreement'], found)} |",
        f"| a failed recipient named (of {found} found) | {result['recipient_found']} "
        f"| {_pct(result['recipient_found'], found)} |",
        f"| the returned mail's Message-ID found (of {found} found) "
        f"| {result['original_message_id_found']} "
        f"| {_pct(result['original_message_id_found'], found)} |",
        "",
        "found by: " + ", ".join(f"{k} {v}" for k, v in sorted(result["by_detector"].items())),
    ]
    for title, key in (("missed bounces", "missed"), ("not bounces, taken for bounces", "false"),
                       ("permanent/temporary against the status class", "status_disagreements")):
        groups = result[key]
        lines += ["", f"{title}: {sum(len(v) for v in groups.values())}"]
        for label, files in groups.items():
            shown = ", ".join(files[:misses]) + (" ..." if len(files) > misses else "")
            lines.append(f"- {label} ({len(files)}): {shown}")
    lines += ["", "against hard_bounce, where they differ:"]
    lines += [f"- {label}: {count}" for label, count in result["hard_disagreements"].items()]
    return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--misses", type=int, default=1000, help="files shown per reason")
    args = parser.parse_args()
    corpus = Path(os.environ.get("MAILD_CORPUS", REPO.parent / "shared" / "corpus"))
    if not (corpus / "manifest.jsonl").exists():
        print(f"no corpus at {corpus} (set MAILD_CORPUS)", file=sys.stderr)
        return 2
    result = measure(load(corpus))
    print(json.dumps(result, indent=2) if args.json else report(result, args.misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
