"""The server's CPU and memory: glibc's allocator tuned for a long-lived server, the worker
threads that take heavy work off the script threads, and one torch thread per script thread.

Imported by cache, so by the first page that needs torch (or by the warm-up thread); the
first page drawn from disk runs without it (first_page).
"""

from __future__ import annotations

import collections
import ctypes
import functools
import itertools
import os
import queue
import sys
import threading
from collections.abc import Callable, Hashable
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
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


class Ticket:
    """A heavy job handed to the pool: its future, and how many jobs are ahead of it."""

    def __init__(self, pool: HeavyPool, priority: int, order: int) -> None:
        self.future: Future = Future()
        self._pool, self.place = pool, (priority, order)  # its place in the pool's queue

    def ahead(self) -> int:
        """How many jobs must finish before this one starts (0 once it runs)."""
        return self._pool.ahead_of(self.place)

    def cancel(self) -> bool:
        """Drop the job if it has not started; whether it was dropped."""
        return self._pool.cancel(self)


class HeavyPool:
    """Worker threads for heavy jobs: quick ones (a photo's face detection, ~0.1 s) first, then
    the rest in the order they arrive.

    An upload needs a detection and then a comparison. Taken strictly in order, its detection
    would wait behind every comparison queued before it, and its comparison then behind those
    queued meanwhile: two waits per upload when many visitors upload at once.
    """

    QUICK, LONG = 0, 1
    IDLE_S = 2.0

    def __init__(
        self, workers: int, initializer: Callable[[], None], when_idle: Callable[[], None] = lambda: None
    ) -> None:
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._when_idle = when_idle  # run once the pool has had nothing to do for IDLE_S seconds
        self._finished = 0  # jobs done so far: tells an idle check whether another job came meanwhile
        self._order = itertools.count()  # FIFO within a priority; never compares two jobs
        self._lock = threading.Lock()
        self._queued: set[tuple[int, int]] = set()  # (priority, order) of jobs not started yet
        self._running: set[tuple[int, int]] = set()
        self._workers = workers
        for i in range(workers):
            threading.Thread(target=self._serve, args=(initializer,), name=f"heavy_{i}", daemon=True).start()

    def submit(self, job: Callable[[], T], priority: int) -> Ticket:
        ticket = Ticket(self, priority, next(self._order))
        with self._lock:
            self._queued.add(ticket.place)
        self._jobs.put((*ticket.place, job, ticket))
        return ticket

    def ahead_of(self, place: tuple[int, int]) -> int:
        with self._lock:
            if place not in self._queued:
                return 0
            before = len(self._running) + sum(other < place for other in self._queued)
            return max(1, before - self._workers + 1)  # it starts when a worker is free

    def cancel(self, ticket: Ticket) -> bool:
        with self._lock:
            if not ticket.future.cancel():
                return False
            self._queued.discard(ticket.place)  # a worker that takes it skips it
            return True

    def _idle(self) -> bool:
        return not self._running and not self._queued

    def _serve(self, initializer: Callable[[], None]) -> None:
        initializer()
        while True:
            priority, order, job, ticket = self._jobs.get()
            with self._lock:
                self._queued.discard((priority, order))
                self._running.add((priority, order))
            try:
                if ticket.future.set_running_or_notify_cancel():
                    try:
                        ticket.future.set_result(job())
                    except BaseException as err:  # handed to the waiting script thread, which raises it
                        ticket.future.set_exception(err)
            finally:
                with self._lock:
                    self._running.discard((priority, order))
                    self._finished += 1
                    finished, idle = self._finished, self._idle()
                if idle:
                    threading.Timer(self.IDLE_S, self._if_still_idle, args=(finished,)).start()

    def _if_still_idle(self, finished: int) -> None:
        with self._lock:
            idle = self._finished == finished and self._idle()
        if idle:
            self._when_idle()


# Work that takes a core for a second or more (a Compare run, sample grids, a morph GIF) and a
# photo's detection run on these worker threads at a lower priority (nice 10): however many
# visitors upload at once, a slider move (in its own script thread) competes with at most this
# many jobs for the CPU, and goes first.
HEAVY_SLOTS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _give_memory_back() -> None:
    """Return the memory the jobs freed to the system: a batched decode's activations take ~25 MB
    each, and glibc keeps freed blocks that size for reuse (its mmap threshold grows as they are
    freed). Only once the pool has been idle a while (HeavyPool.IDLE_S): trimmed after every
    job, the next one faulted its working memory in afresh, ~10% of a comparison's CPU time."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_heavy_pool = HeavyPool(
    HEAVY_SLOTS, functools.partial(comparison.background_thread, INFERENCE_THREADS), _give_memory_back
)
WAIT_POLL_S = 0.25  # how often a waiting page hears its place in the line


def submit_heavy(work: Callable[..., T], *args: object, quick: bool = False, **kwargs: object) -> Ticket:
    """work(*args, **kwargs) queued for a heavy-work thread (quick: ahead of the long jobs waiting)."""
    return _heavy_pool.submit(functools.partial(work, *args, **kwargs), HeavyPool.QUICK if quick else HeavyPool.LONG)


def wait(ticket: Ticket, on_wait: Callable[[int], None] | None = None) -> T:
    """The job's result; meanwhile on_wait(jobs ahead) every WAIT_POLL_S seconds. A page passes
    one that writes to it: each write also lets Streamlit stop the wait for a newer rerun."""
    while on_wait is not None and not futures.wait([ticket.future], timeout=WAIT_POLL_S).done:
        on_wait(ticket.ahead())
    return ticket.future.result()


def run_heavy(work: Callable[..., T], *args: object, quick: bool = False, **kwargs: object) -> T:
    """work(*args, **kwargs) on a heavy-work thread, waited for (see submit_heavy)."""
    return wait(submit_heavy(work, *args, quick=quick, **kwargs))


@dataclass
class _Shared:
    ticket: Ticket
    waiters: int = 0  # sessions waiting for it now


class SharedResults:
    """Results of heavy jobs by key, shared by every session: a job asked for while it runs or
    waits is joined, not queued again; the latest `max_entries` finished results are kept. A job
    that raised is tried again at the next request, and one that every waiting session left
    (a visitor changed a widget meanwhile) is dropped if it has not started."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[Hashable, _Shared] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, work: Callable[[], T], on_wait: Callable[[int], None] | None = None) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or _failed(entry.ticket.future):
                entry = self._entries[key] = _Shared(submit_heavy(work))
            self._entries.move_to_end(key)
            entry.waiters += 1
            self._forget_oldest()
        try:
            return wait(entry.ticket, on_wait)
        finally:
            with self._lock:
                entry.waiters -= 1
                if not entry.waiters and entry.ticket.cancel() and self._entries.get(key) is entry:
                    del self._entries[key]

    def _forget_oldest(self) -> None:
        """Down to max_entries, the oldest finished first; jobs still pending are kept."""
        finished = [key for key, entry in self._entries.items() if entry.ticket.future.done()]
        for key in finished[: max(0, len(self._entries) - self.max_entries)]:
            del self._entries[key]


def _failed(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is not None


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
