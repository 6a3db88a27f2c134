"""The long form of the hostile-mail property (SPEC §9): many messages through `parse_message`.

    .venv/bin/python bench/hostile_campaign.py --cases 100000 --seeds 4000 --workers 2

Each worker draws `--seeds / --workers` messages from the hypothesis strategy of
tests/hostile.py (hypothesis drawing is about 40 ms a message on this machine, most of the
cost), parses each, and then derives the rest of its share by mutating them at random — bytes
flipped, NUL, CR and LF put in, ranges cut, doubled or swapped, two messages spliced, line ends
changed, the tail cut off — and parses every mutant. The property is tests/test_hostile.py's:
each message parses (and what is stored is clean, file names safe) or is refused as
`UnparseableMessage` (no sender) / `MessageTooComplex` (a MIME limit); any other exception or
broken check is a failure, its message saved under `--failures`. Threading runs the same
strategy through `maild ingest` at a smaller count:
`MAILD_HOSTILE_THREADING_EXAMPLES=1000 pytest tests/test_hostile.py -k ticket_or_failed`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _seeds(count: int, seed: int) -> list[bytes]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fixed_seed

    from tests.hostile import messages

    drawn: list[bytes] = []

    @fixed_seed(seed)
    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(messages())
    def collect(raw: bytes) -> None:
        drawn.append(raw)

    collect()
    return drawn


def mutate(rng: random.Random, raw: bytes, other: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        n = len(raw)
        at, to = sorted((rng.randint(0, n), rng.randint(0, n)))
        kind = rng.randrange(9)
        if kind == 0 and n:
            i = rng.randrange(n)
            raw = raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1:]
        elif kind == 1:
            raw = raw[:at] + rng.choice([b"\x00", b"\r", b"\n", b"\r\n\r\n", b"--", b"=?",
                                         b"\r\n ", b"\xff"]) + raw[at:]
        elif kind == 2:
            raw = raw[:at] + raw[to:]
        elif kind == 3 and (to - at) * 10 < 2_000_000:  # a few MB at most
            raw = raw[:to] + raw[at:to] * rng.choice([2, 10]) + raw[to:]
        elif kind == 4:
            raw = raw[:at] + other[rng.randint(0, len(other)):]
        elif kind == 5:
            raw = raw.replace(b"\r\n", b"\n") if rng.random() < 0.5 else raw.replace(b"\n", b"\r")
        elif kind == 6:
            raw = raw[:rng.randint(0, n)]
        elif kind == 7:  # a range moved to the end
            raw = raw[:at] + raw[to:] + raw[at:to]
        else:
            raw = raw.replace(b"boundary=", rng.choice([b"boundary=x", b"BOUNDARY=", b"b="]), 1)
    return raw


def worker(args: tuple[int, int, int, str]) -> tuple[Counter[str], int, float, float]:
    from maild.errors import UnparseableMessage
    from maild.parsing import MessageTooComplex, parse_message
    from tests.test_hostile import check_parsed

    index, cases, seeds, failures = args
    rng = random.Random(index)
    start = time.perf_counter()
    pool = _seeds(seeds, seed=index)
    drawing = time.process_time()
    outcomes: Counter[str] = Counter()
    parse_time = 0.0
    for n in range(cases):
        raw = pool[n] if n < len(pool) else mutate(rng, rng.choice(pool), rng.choice(pool))
        began = time.process_time()
        try:
            try:
                mail = parse_message(raw)
            except MessageTooComplex:
                outcomes["refused: a MIME limit"] += 1
                continue
            except UnparseableMessage:
                outcomes["refused: no sender"] += 1
                continue
            check_parsed(mail)
            outcomes["parsed"] += 1
        except Exception:
            outcomes["FAILURE"] += 1
            name = Path(failures, f"failure-{index}-{n}.eml")
            name.parent.mkdir(parents=True, exist_ok=True)
            name.write_bytes(raw)
            name.with_suffix(".txt").write_text(traceback.format_exc())
        finally:
            parse_time += time.process_time() - began
        if n and n % 2_000 == 0:
            print(f"worker {index}: {n} cases, {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)
    return outcomes, len(pool), drawing, parse_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=4_000, help="hypothesis-drawn messages")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--failures", default="hostile-failures")
    args = parser.parse_args()
    start = time.perf_counter()
    jobs = [(i, args.cases // args.workers + (i < args.cases % args.workers),
             args.seeds // args.workers, args.failures) for i in range(args.workers)]
    with multiprocessing.Pool(args.workers) as pool:
        results = pool.map(worker, jobs)
    total: Counter[str] = Counter()
    for outcomes, _, _, _ in results:
        total.update(outcomes)
    drawn = sum(r[1] for r in results)
    print(f"{sum(total.values())} cases ({drawn} drawn by hypothesis, the rest mutants) in "
          f"{time.perf_counter() - start:.0f} s wall; CPU: drawing {sum(r[2] for r in results):.0f}"
          f" s, parsing {sum(r[3] for r in results):.0f} s, over {args.workers} workers")
    for outcome, count in total.most_common():
        print(f"  {outcome}: {count}")
    if total["FAILURE"]:
        print(f"failures saved under {args.failures}/")
        sys.exit(1)


if __name__ == "__main__":
    main()
