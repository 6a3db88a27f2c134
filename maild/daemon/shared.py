"""What the processes of `maild run` share (`maild.daemon`), and how the intake starts its
children: the worker, the sender, and `maild init` before them.

A module of its own, light to import, because the intake imports it and must not import the
worker's module: that loads the ORM, the templates and the threading stages, all memory the
intake would then hold for nothing.

The children are plain `subprocess` interpreters, not `multiprocessing` ones: a spawned
multiprocessing child also starts multiprocessing's resource tracker, one more interpreter of
about 12 MiB that maild has no use for. What they share is inherited as file descriptors: a
pipe for each child's wake-up call, and a few bytes of shared memory (`memfd_create`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("maild.daemon")

# The shared values, at fixed places in the shared memory.
_STOP, _READY, _IN_HAND, _IN_HAND_SINCE, _SIZE = 0, 1, 8, 16, 24


class Bell:
    """A child's wake-up call: a byte written to a pipe without blocking, from any thread of
    any of the processes; the child waits on the pipe's other end."""

    def __init__(self, fds: Sequence[int] | None = None) -> None:
        self._bell, self._ring = fds if fds is not None else os.pipe()
        os.set_blocking(self._bell, False)
        os.set_blocking(self._ring, False)

    def fds(self) -> tuple[int, int]:
        return self._bell, self._ring

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending
            os.write(self._ring, b"!")

    def forget(self) -> None:
        """The child, starting a pass: what woke it so far is in hand."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._bell, 4096):
                pass

    def wait(self, timeout: float) -> None:
        """The child: sleep until rung, at most `timeout` seconds."""
        select.select([self._bell], [], [], timeout)


class Outage:
    """A child's database outage, logged once when it begins and once when it ends: the
    child retries every few seconds meanwhile, and a journal line each time says nothing new."""

    def __init__(self) -> None:
        self.error: str | None = None  # the latest error of the outage; None: no outage

    def began(self, exc: BaseException) -> None:
        if self.error is None:
            log.warning("database unavailable, will retry: %s", exc)
        self.error = str(exc)

    def over(self) -> None:
        if self.error is not None:
            log.info("database available again")
            self.error = None


class Shared:
    """What the intake and its children share: a wake-up call for the worker and one for the
    sender, a stop flag, whether the worker is ready (its imports and templates loaded), and
    which inbound message the worker is threading since when (the intake's watch for a hang).

    Nothing here takes a lock that a process could die holding. A multiprocessing Event does
    (its Condition's semaphore): a worker killed -9 inside `wait` or `clear` left it held, and
    the next worker's `clear` and the intake's `set` — its listener and pollers — waited on it
    for ever (bench/kill_campaign.py found it). A pipe and plain shared values cannot be left
    held: a wake-up is a `Bell`, the stop flag a shared byte."""

    def __init__(self, fds: Sequence[int] | None = None) -> None:
        """New, in the intake; or, in a child, over the descriptors `fds()` gave it."""
        if fds is None:
            self.worker_bell, self.sender_bell = Bell(), Bell()
            self._memory_fd = os.memfd_create("maild-shared")
            os.ftruncate(self._memory_fd, _SIZE)
        else:
            self.worker_bell, self.sender_bell = Bell(fds[0:2]), Bell(fds[2:4])
            self._memory_fd = fds[4]
        self._memory = mmap.mmap(self._memory_fd, _SIZE)
        self._stop = ctypes.c_int8.from_buffer(self._memory, _STOP)
        self.worker_ready = ctypes.c_int8.from_buffer(self._memory, _READY)  # 1: ready to thread
        self.in_hand = ctypes.c_int64.from_buffer(self._memory, _IN_HAND)  # inbound id; 0: none
        # time.monotonic() when it was taken (one clock for every process of the machine)
        self.in_hand_since = ctypes.c_double.from_buffer(self._memory, _IN_HAND_SINCE)

    def fds(self) -> tuple[int, ...]:
        """The descriptors a child is given, to share these (`Shared(fds)` there)."""
        return (*self.worker_bell.fds(), *self.sender_bell.fds(), self._memory_fd)

    def wake(self) -> None:
        """Wake the worker: there is mail to thread."""
        self.worker_bell.ring()

    def stop(self) -> None:
        self._stop.value = 1
        self.worker_bell.ring()
        self.sender_bell.ring()

    @property
    def stopped(self) -> bool:
        return bool(self._stop.value)

    def orphaned_or_stopped(self, parent: int) -> bool:
        """A child's question before each pass: asked to stop, or its intake (`parent`) gone —
        nobody would stop or restart it, and another `maild run` may be starting."""
        return self.stopped or os.getppid() != parent

    def sleep(self, bell: Bell, seconds: float) -> None:
        """A child: sleep `seconds`, or less if stopped (wake-ups on `bell` do not end it)."""
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            bell.wait(left)
            bell.forget()


def start_child(args: Sequence[str], *, pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """`python -P ARGS` — a module of maild's (`-m ...`) in a new interpreter, with the
    descriptors `pass_fds` inherited. It runs with the intake's own import path (as
    PYTHONPATH; `-P`: not the working directory first), so it runs the same maild, a
    checkout's or the installed one, whatever the working directory holds."""
    return subprocess.Popen([sys.executable, "-P", *args], pass_fds=tuple(pass_fds),
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def start_daemon_child(module: str, config_path: str, shared: Shared, parent: int,
                       level: int) -> subprocess.Popen[bytes]:
    """A child of `maild run`: `python -m maild.daemon.worker` or `maild.daemon.sender`, as
    `ps` shows it, with the config file, the descriptors of `shared`, the intake's pid and
    the log level as its arguments (`child_arguments` reads them)."""
    return start_child(["-m", module, config_path, ",".join(map(str, shared.fds())),
                        str(parent), str(level)], pass_fds=shared.fds())


def child_arguments(argv: Sequence[str]) -> tuple[str, Shared, int, int]:
    """What `start_daemon_child` gave a child: config path, `Shared`, parent pid, log level."""
    config_path, fds, parent, level = argv
    return config_path, Shared([int(fd) for fd in fds.split(",")]), int(parent), int(level)


def become_child(shared: Shared, level: int, niceness: int) -> None:
    """What a child of `maild run` does first: log to stderr (the journal) at the intake's
    level, end with the intake, run niced — a client waiting for its 250 cannot wait, the
    child's work can — and leave stopping to the intake."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="maild %(levelname)s %(name)s: %(message)s")
    _die_with_parent()
    os.nice(niceness)
    # The intake decides when to stop; a Ctrl-C on the terminal reaches it too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: shared.stop())


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies (`kill -9` of the
    intake); elsewhere the child's loop notices the new parent pid instead."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
