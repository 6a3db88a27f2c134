"""The top entries of a py-spy profile: where the worker's time goes, as a table.

    py-spy record --format raw --output worker.txt --pid PID     (or e2e_bench.py --profile)
    .venv/bin/python bench/profile_top.py worker.txt [--top 25] [--under maild]

Each line of py-spy's raw format is one stack (frames `function (file:line)` joined by `;`)
and its sample count. "self" is the share of samples in which a function is the innermost
frame, "total" the share in which it is anywhere on the stack (counted once per stack).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`function (module path)`, without the line number, the file shortened to its package."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/", "main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--under", default="", help="only functions whose file contains this")
    args = parser.parse_args()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f.strip()]
        # py-spy's first frames are the process and thread; the innermost frame is last.
        frames = [f for f in frames if "(" in f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    print(f"{samples} samples")
    print(f"{'total %':>8} {'self %':>7}  function")
    ranked = [(name, n) for name, n in total.most_common() if args.under in name]
    for name, n in ranked[:args.top]:
        print(f"{100 * n / samples:8.1f} {100 * own[name] / samples:7.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
