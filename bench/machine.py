"""What the benchmarks' file system costs, printed beside their figures.

Every mail maild delivers into a Maildir is a file created, and every SQLite transaction may be
one too (a statement journal that spills). On most file systems creating a file costs a few
tens of microseconds of CPU. On an ext4 mounted without a journal (as the root file system of
this project's VMs is) the kernel passes over every inode deleted recently when it picks one
for a new file (the `recently_deleted()` check ext4 makes only without a journal; `perf
record` shows it as `find_inode_bit`, `recently_deleted` and `find_get_block_common`): after a
test suite or a benchmark has deleted a few thousand files, each new one costs up to a
millisecond. Figures measured on such a file system move by that much between runs of the
same code, so a benchmark prints this probe before and after it runs, and `TMPDIR` moves its
files elsewhere.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from pathlib import Path

PROBE_FILES = 200


def _mount_of(path: Path) -> tuple[str, str, str]:
    """The mount point, source device and file system type holding `path`."""
    best = ("/", "?", "?")
    resolved = str(path.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[4]
            fstype, source = line.split(" - ", 1)[1].split()[:2]
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, source, fstype)
    return best


def _journal(source: str, fstype: str) -> str:
    if fstype not in ("ext3", "ext4"):
        return ""
    journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
    device = os.path.basename(source)
    return ", journal" if any(j.rsplit("-", 1)[0] == device for j in journals) \
        else ", no journal"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def file_creation_us() -> float:
    """What creating a 3 KB file in the temporary directory the benchmarks use costs in CPU
    right now, in microseconds."""
    probe = Path(tempfile.mkdtemp(prefix="maild-fs-probe-"))
    try:
        data = b"x" * 3000
        start = _cpu()
        for i in range(PROBE_FILES):
            with open(probe / f"{i}", "wb") as file:
                file.write(data)
        return 1e6 * (_cpu() - start) / PROBE_FILES
    finally:
        shutil.rmtree(probe, ignore_errors=True)


class FileSystemProbe:
    """The probe of a benchmark's temporary directory: measured when made (before the run)
    and again by `line()` (after it)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.gettempdir())
        self.before = file_creation_us()

    def line(self) -> str:
        """Where the directory lives, and what creating a file there cost before and after."""
        point, source, fstype = _mount_of(self.base)
        return (f"file system of {self.base}: {fstype} on {source} at {point}"
                f"{_journal(source, fstype)}; creating a file costs {self.before:.0f}, "
                f"{file_creation_us():.0f} µs of CPU (before, after)")


if __name__ == "__main__":
    print(FileSystemProbe().line())
