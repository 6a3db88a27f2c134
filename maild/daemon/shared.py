"""What the intake and the worker of `maild run` share (`maild.daemon`): the spawn context, the
`Shared` values between them, and the worker's entry point as the intake names it.

A module of its own, light to import, because the intake imports it and must not import the
worker's module: that loads the ORM, the templates and the threading stages, all memory the
intake would then hold for nothing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import time

SPAWN = multiprocessing.get_context("spawn")


class Shared:
    """What the intake and the worker share: a wake-up call, a stop flag, and which inbound
    message the worker is threading since when (the intake's watch for a hang).

    Nothing here takes a lock that a process could die holding. A multiprocessing Event does
    (its Condition's semaphore): a worker killed -9 inside `wait` or `clear` left it held, and
    the next worker's `clear` and the intake's `set` — its listener and pollers — waited on it
    for ever (bench/kill_campaign.py found it). A pipe and plain shared values cannot be left
    held: the wake-up is a byte written to a pipe without blocking, the stop flag a shared
    byte."""

    def __init__(self) -> None:
        self._bell, self._ring = SPAWN.Pipe(duplex=False)  # the worker's end, the ringers' end
        os.set_blocking(self._bell.fileno(), False)
        os.set_blocking(self._ring.fileno(), False)
        self._stop = SPAWN.RawValue("b", 0)
        self.in_hand = SPAWN.RawValue("q", 0)          # inbound id; 0: none
        self.in_hand_since = SPAWN.RawValue("d", 0.0)  # time.monotonic() when it was taken

    def wake(self) -> None:
        """Wake the worker; from any thread of either process, and never blocks."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending
            os.write(self._ring.fileno(), b"!")

    def stop(self) -> None:
        self._stop.value = 1
        self.wake()

    @property
    def stopped(self) -> bool:
        return bool(self._stop.value)

    def forget_wakeups(self) -> None:
        """The worker, starting a pass: what woke it so far is in hand."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._bell.fileno(), 4096):
                pass

    def wait(self, timeout: float) -> None:
        """The worker: sleep until woken (or stopped), at most `timeout` seconds."""
        select.select([self._bell.fileno()], [], [], timeout)

    def sleep(self, seconds: float) -> None:
        """The worker: sleep `seconds`, or less if stopped (wake-ups do not end it)."""
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            self.wait(left)
            self.forget_wakeups()


def start_worker(config_path: str, shared: Shared, parent: int, level: int) -> None:
    """The worker process's target (`maild.daemon.worker.worker_main`), imported only there."""
    from maild.daemon.worker import worker_main

    worker_main(config_path, shared, parent, level)
