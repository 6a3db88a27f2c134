"""What the intake and the worker of `maild run` share (`maild.daemon`), and how the intake
starts its children: the worker, and `maild init` before it.

A module of its own, light to import, because the intake imports it and must not import the
worker's module: that loads the ORM, the templates and the threading stages, all memory the
intake would then hold for nothing.

The children are plain `subprocess` interpreters, not `multiprocessing` ones: a spawned
multiprocessing child also starts multiprocessing's resource tracker, one more interpreter of
about 12 MiB that maild has no use for. What they share is inherited as file descriptors: a
pipe for the wake-up call, and a few bytes of shared memory (`memfd_create`).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence

# The shared values, at fixed places in the shared memory.
_STOP, _READY, _IN_HAND, _IN_HAND_SINCE, _SIZE = 0, 1, 8, 16, 24


class Shared:
    """What the intake and the worker share: a wake-up call, a stop flag, whether the worker
    is ready (its imports and templates loaded), and which inbound message the worker is
    threading since when (the intake's watch for a hang).

    Nothing here takes a lock that a process could die holding. A multiprocessing Event does
    (its Condition's semaphore): a worker killed -9 inside `wait` or `clear` left it held, and
    the next worker's `clear` and the intake's `set` — its listener and pollers — waited on it
    for ever (bench/kill_campaign.py found it). A pipe and plain shared values cannot be left
    held: the wake-up is a byte written to a pipe without blocking, the stop flag a shared
    byte."""

    def __init__(self, fds: Sequence[int] | None = None) -> None:
        """New, in the intake; or, in the worker, over the descriptors `fds()` gave it."""
        if fds is None:
            self._bell, self._ring = os.pipe()  # the worker's end, the ringers' end
            self._memory_fd = os.memfd_create("maild-shared")
            os.ftruncate(self._memory_fd, _SIZE)
        else:
            self._bell, self._ring, self._memory_fd = fds
        os.set_blocking(self._bell, False)
        os.set_blocking(self._ring, False)
        self._memory = mmap.mmap(self._memory_fd, _SIZE)
        self._stop = ctypes.c_int8.from_buffer(self._memory, _STOP)
        self.worker_ready = ctypes.c_int8.from_buffer(self._memory, _READY)  # 1: ready to thread
        self.in_hand = ctypes.c_int64.from_buffer(self._memory, _IN_HAND)  # inbound id; 0: none
        # time.monotonic() when it was taken (one clock for every process of the machine)
        self.in_hand_since = ctypes.c_double.from_buffer(self._memory, _IN_HAND_SINCE)

    def fds(self) -> tuple[int, int, int]:
        """The descriptors a child is given, to share these (`Shared(fds)` there)."""
        return self._bell, self._ring, self._memory_fd

    def wake(self) -> None:
        """Wake the worker; from any thread of either process, and never blocks."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending
            os.write(self._ring, b"!")

    def stop(self) -> None:
        self._stop.value = 1
        self.wake()

    @property
    def stopped(self) -> bool:
        return bool(self._stop.value)

    def forget_wakeups(self) -> None:
        """The worker, starting a pass: what woke it so far is in hand."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._bell, 4096):
                pass

    def wait(self, timeout: float) -> None:
        """The worker: sleep until woken (or stopped), at most `timeout` seconds."""
        select.select([self._bell], [], [], timeout)

    def sleep(self, seconds: float) -> None:
        """The worker: sleep `seconds`, or less if stopped (wake-ups do not end it)."""
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            self.wait(left)
            self.forget_wakeups()


def start_child(args: Sequence[str], *, pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """`python -P ARGS` — a module of maild's (`-m ...`) in a new interpreter, with the
    descriptors `pass_fds` inherited. It runs with the intake's own import path (as
    PYTHONPATH; `-P`: not the working directory first), so it runs the same maild, a
    checkout's or the installed one, whatever the working directory holds."""
    return subprocess.Popen([sys.executable, "-P", *args], pass_fds=tuple(pass_fds),
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def start_worker(config_path: str, shared: Shared, parent: int, level: int
                 ) -> subprocess.Popen[bytes]:
    """The worker process (`python -m maild.daemon.worker`, as `ps` shows it)."""
    return start_child(["-m", "maild.daemon.worker", config_path,
                        ",".join(map(str, shared.fds())), str(parent), str(level)],
                       pass_fds=shared.fds())
