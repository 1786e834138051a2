"""The server's CPU and memory: glibc's allocator tuned for a long-lived server, the worker
threads that take heavy work off the script threads, and one torch thread per script thread.

Imported by cache, so by the first page that needs torch (or by the warm-up thread); the
first page drawn from disk runs without it (first_page).
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import torch

from .. import comparison
from . import frame

INFERENCE_THREADS = 1
T = TypeVar("T")

# ---- glibc's allocator ----------------------------------------------------------------

M_ARENA_MAX = -8  # glibc's mallopt option


def _glibc() -> ctypes.CDLL | None:
    """glibc, whose allocator is tuned below; None elsewhere (musl, macOS, Windows): nothing to tune."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()

# At most two glibc malloc arenas for the server. By default each thread that allocates may
# get its own (8 per core), and memory freed in one is seldom returned, so a burst of users
# leaves the server larger for good; two arenas cost no speed (scripts/load_test.py measures
# both). Set at import, after Streamlit's and the warm-up's threads have made theirs: the
# limit keeps later threads from adding more; comparison's long-lived codec threads keep
# comparisons from spreading their peaks over all of them.
if _LIBC is not None:
    _LIBC.mallopt(M_ARENA_MAX, 2)


# ---- heavy work -----------------------------------------------------------------------


class HeavyPool:
    """Worker threads for heavy jobs: quick ones (a photo's face detection, ~0.1 s) first, then
    the rest in the order they arrive.

    An upload needs a detection and then a comparison (~1 CPU-second). Taken strictly in order,
    its detection would wait behind every comparison queued before it, and its comparison then
    behind those queued meanwhile: two waits per upload when many visitors upload at once.
    """

    QUICK, LONG = 0, 1

    def __init__(self, workers: int, initializer: Callable[[], None]) -> None:
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within a priority; never compares two jobs
        for i in range(workers):
            threading.Thread(target=self._serve, args=(initializer,), name=f"heavy_{i}", daemon=True).start()

    def submit(self, job: Callable[[], T], priority: int) -> Future:
        future: Future = Future()
        self._jobs.put((priority, next(self._order), job, future))
        return future

    def _serve(self, initializer: Callable[[], None]) -> None:
        initializer()
        while True:
            _, _, job, future = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as err:  # handed to the waiting script thread, which raises it
                    future.set_exception(err)


# Work that takes a core for a second or more (a Compare run, sample grids, a morph GIF) and a
# photo's detection run on these worker threads at a lower priority (nice 10): however many
# visitors upload at once, a slider move (in its own script thread) competes with at most this
# many jobs for the CPU, and goes first.
HEAVY_SLOTS = max(1, os.cpu_count() or 1)
_heavy_pool = HeavyPool(HEAVY_SLOTS, functools.partial(comparison.background_thread, INFERENCE_THREADS))


def run_heavy(work: Callable[..., T], *args: object, quick: bool = False, **kwargs: object) -> T:
    """work(*args, **kwargs) on a heavy-work thread (quick: ahead of the long jobs waiting);
    then the memory it freed goes back to the system. A batched decode's activations take
    ~25 MB each, and glibc keeps freed blocks that size for reuse (its mmap threshold grows as
    they are freed)."""

    def job() -> T:
        try:
            return work(*args, **kwargs)
        finally:
            if _LIBC is not None:
                _LIBC.malloc_trim(0)

    return _heavy_pool.submit(job, HeavyPool.QUICK if quick else HeavyPool.LONG).result()


# ---- the script threads ---------------------------------------------------------------


def inference_threads() -> None:
    """One torch thread for this script thread (the setting is per thread: frame.page_setup
    calls this for every page once this module is imported, and fragments call it too).

    Batch-1 inference gains little from a second thread, and on a 2-core laptop two OpenMP
    threads stall each other whenever anything else (the browser, a training run) is busy,
    and a decode of milliseconds then takes most of a second.
    """
    if torch.get_num_threads() != INFERENCE_THREADS:
        torch.set_num_threads(INFERENCE_THREADS)


frame.on_page_setup(inference_threads)
