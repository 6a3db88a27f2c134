"""The long forms of the hostile-mail property (SPEC §9): many messages through `parse_message`,
or (`--threading`) through parsing and threading into a real installation.

    .venv/bin/python bench/hostile_campaign.py --cases 100000 --seeds 2000 --workers 2
    nice -n 10 .venv/bin/python bench/hostile_campaign.py --threading --cases 100000 \\
        --seeds 2000 --workers 2 [--seed 0] [--root DIR] [--failures DIR] [--postgres]

Each worker draws `--seeds / --workers` messages from the hypothesis strategy of
tests/hostile.py (hypothesis drawing is about 40 ms a message on this machine), and then
derives the rest of its share by mutating them at random (`tests.hostile.mutate`: bytes
flipped, NUL, CR and LF put in, ranges cut, doubled or swapped, two messages spliced, line ends
changed, the tail cut off). Worker i draws with seed `--seed + i`; the same arguments give the
same cases.

Parsing only (the default): each message parses (and what is stored is clean, file names
safe, `tests.hostile.check_parsed`) or is refused as `UnparseableMessage` (no sender) /
`MessageTooComplex` (a MIME limit); any other exception or broken check is a failure, its
message saved under `--failures`.

`--threading`: each worker runs tests/hostile_threading.py's `ThreadingCampaign` on an
installation of its own (SQLite under `--root`, default a temporary folder; with `--postgres`
a database of its own in a private PostgreSQL cluster, `tests/pg.py`): every case parsed
as above, then stored as the pipe stores it, threaded by `process_pending`, its mail delivered
into a Maildir by the app's deliverer, with follow-ups to earlier acknowledgements mixed in and
staff answering and closing tickets; after each batch the inbound rows and every mail delivered
are checked. Any crash or broken check is a violation, its messages saved under `--failures`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(args: tuple[int, int, int, str, int]) -> tuple[Counter[str], int, float, float]:
    from maild.errors import UnparseableMessage
    from maild.parsing import MessageTooComplex, parse_message
    from tests.hostile import cases, check_parsed, drawn

    index, count, seeds, failures, seed = args
    rng = random.Random(seed + index)
    start = time.perf_counter()
    pool = drawn(seeds, seed=seed + index)
    drawing = time.process_time()
    outcomes: Counter[str] = Counter()
    parse_time = 0.0
    for n, raw in enumerate(cases(rng, pool, count)):
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


def threading_worker(args: tuple[int, int, int, str, int, str, str | None]) -> Any:
    import logging

    from tests.hostile import cases, drawn
    from tests.hostile_threading import ThreadingCampaign

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="maild %(levelname)s %(name)s: %(message)s")
    # flufl.bounce logs each detector that raises (its Yale detector on a From it cannot
    # split, hundreds of times) with a traceback; maild takes that as no verdict.
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    index, count, seeds, failures, seed, root, url = args
    began = time.perf_counter()
    pool = drawn(seeds, seed=seed + index)
    print(f"worker {index}: {len(pool)} drawn in {time.perf_counter() - began:.0f} s",
          file=sys.stderr, flush=True)
    campaign = ThreadingCampaign(Path(root, f"worker-{index}"), seed=seed + index, url=url,
                                 name=f"worker-{index}", failures=Path(failures),
                                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    return campaign.run(cases(random.Random(seed + index), pool, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=2_000, help="hypothesis-drawn messages")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="worker i draws with seed + i")
    parser.add_argument("--failures", default="hostile-failures")
    parser.add_argument("--threading", action="store_true",
                        help="through parsing and threading, not parsing alone")
    parser.add_argument("--root", help="--threading: where the installations go "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--postgres", action="store_true",
                        help="--threading: each installation on a database of its own in a "
                        "private PostgreSQL cluster (tests/pg.py), not SQLite")
    args = parser.parse_args()
    jobs = [(i, args.cases // args.workers + (i < args.cases % args.workers),
             args.seeds // args.workers, args.failures, args.seed) for i in range(args.workers)]
    if args.threading:
        sys.exit(threading_main(args, jobs))
    start = time.perf_counter()
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


def threading_main(args: argparse.Namespace, jobs: list[tuple[int, int, int, str, int]]) -> int:
    from tests.hostile_threading import Report

    start = time.perf_counter()
    cluster = None
    if args.postgres:
        from tests.pg import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
    try:
        urls = [cluster.create_database() if cluster else None for _ in jobs]
        with tempfile.TemporaryDirectory(prefix="maild-hostile-") as tmp:
            root = args.root or tmp
            with multiprocessing.Pool(args.workers) as pool:
                reports = pool.map(threading_worker,
                                   [(*job, root, url) for job, url in zip(jobs, urls, strict=True)])
    finally:
        if cluster is not None:
            cluster.stop()
    total = Report()
    for report in reports:
        total.add(report)
    print(f"--threading on {'PostgreSQL' if args.postgres else 'SQLite'}: {args.workers} "
          f"workers (an installation each), seed {args.seed}, "
          f"{args.seeds} drawn by hypothesis, the rest mutants; "
          f"{time.perf_counter() - start:.0f} s wall in all, drawing included. Per worker:")
    for i, report in enumerate(reports):
        print(f"  worker {i}: {report.lines()[0]}")
    print("All workers (wall: the slowest worker's campaign):")
    print("\n".join(total.lines()))
    if total.violations:
        print(f"violations saved under {args.failures}/")
        return 1
    return 0


if __name__ == "__main__":
    main()
