"""Time and peak memory of hostile mail (SPEC §9): each case parsed, or run through `maild
ingest`, in a fresh process of its own, so that its peak RSS is its own.

    .venv/bin/python bench/hostile_bench.py                 # parse_message, this tree
    .venv/bin/python bench/hostile_bench.py --tree /work/main   # ... another checkout's code
    .venv/bin/python bench/hostile_bench.py --ingest        # `maild ingest` into SQLite

Cases: a 50 MB message (a 36 MB attachment in base64; parsed under a raised limit), MIME bombs
of 5,000 and 50,000 parts, nestings 1,000 deep (multipart, message/rfc822), a header block of
100,000 stray lines, a 20 MB To header. Prints one line per case: CPU seconds, wall seconds,
peak RSS of the child and the outcome. Numbers go to bench/README.md; compare trees in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_hostile import fifty_mb, mime_bomb, nested  # noqa: E402


def stray_lines(n: int) -> bytes:
    return (b"Received: x\r\n" + b"stray line\r\nX-A: b\r\n" * n +
            b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n")


def huge_to(size: int) -> bytes:
    to = b", ".join(b"Name %d <n%d@example.org>" % (i, i) for i in range(size // 30))
    return b"From: a@example.org\r\nTo: " + to + b"\r\nSubject: s\r\n\r\nbody\r\n"


CASES = {
    "50 MB message": fifty_mb,
    "bomb of 5,000 parts": lambda: mime_bomb(5_000),
    "bomb of 50,000 parts": lambda: mime_bomb(50_000),
    "multipart nesting 1,000 deep": lambda: nested(1_000),
    "message/rfc822 nesting 1,000 deep": lambda: nested(1_000, "message/rfc822"),
    "100,000 stray header lines": lambda: stray_lines(100_000),
    "20 MB To header": lambda: huge_to(20_000_000),
}

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from maild.parsing import parse_message
raw = open(sys.argv[2], "rb").read()
def hwm():  # peak RSS of this process image in MB (ru_maxrss would carry the parent's over)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
base = hwm()
start, cpu = time.perf_counter(), time.process_time()
try:
    mail = parse_message(raw)
    outcome = f"parsed: {len(mail.attachments)} attachments, {len(mail.text)} characters of text"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:70]}"
print(json.dumps({"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "rss_mb": hwm(), "before_mb": base, "outcome": outcome}))
"""

CONFIG = """
[database]
url = "sqlite:///{root}/maild.db"
[mail]
support_address = "support@example.com"
max_message_bytes = 60000000
[outbound]
maildir = "{root}/outbox"
"""


def parse_case(tree: Path, raw_file: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(raw_file)],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def ingest_case(tree: Path, raw_file: Path, root: Path) -> dict[str, object]:
    config = root / "maild.toml"
    if not config.exists():
        config.write_text(CONFIG.format(root=root))
        subprocess.run([sys.executable, "-m", "maild", "--config", str(config), "init"],
                       check=True, capture_output=True, cwd=tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "maild", "--config", str(config), "ingest",
                           str(raw_file)], capture_output=True, text=True, cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": time.perf_counter() - start,
            "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "rss_mb": after.ru_maxrss / 1024,  # the largest child so far: cases run smallest first
            "before_mb": 0.0,
            "outcome": f"exit {done.returncode} {(done.stdout + done.stderr).strip()[:70]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the maild checkout to run")
    parser.add_argument("--ingest", action="store_true", help="`maild ingest`, not parsing")
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in CASES.items():
            if args.case and name not in args.case:
                continue
            raw_file = Path(tmp, "message.eml")
            raw = make()
            raw_file.write_bytes(raw)
            size = len(raw)
            del raw  # a child forked from a big parent would count the parent's pages
            result = ingest_case(args.tree, raw_file, Path(tmp)) if args.ingest else \
                parse_case(args.tree, raw_file)
            print(f"{name:<34} {size / 1e6:5.1f} MB  cpu {result['cpu']:6.2f} s  "
                  f"wall {result['wall']:6.2f} s  peak RSS {result['rss_mb']:4.0f} MB "
                  f"(at start {result['before_mb']:3.0f})  {result['outcome']}", flush=True)


if __name__ == "__main__":
    main()
