"""Work in parallel threads that never hold up Ctrl-C.

concurrent.futures' pools join their threads when the `with` block ends and
again at interpreter exit, so an interrupted command waited for every running
step (a local `sleep 8` interrupted at 2 s returned at 8.1 s). These workers
are daemon threads and the waits poll, so KeyboardInterrupt reaches the main
thread at once; the task boundary then exits, which closes every connection
(ending remote commands, see remote.guarded) and cancels queued work."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import FIRST_COMPLETED, Future, wait

POLL = 0.2


class Pool:
    """Up to `workers` daemon threads; submit() returns a Future."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        self._queue.put((future, fn, args, kwargs))
        if len(self._threads) < self.workers:
            thread = threading.Thread(target=self._work, daemon=True)
            thread.start()
            self._threads.append(thread)
        return future

    def _work(self) -> None:
        while True:
            future, fn, args, kwargs = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to whoever waits on it
                future.set_exception(exc)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        """Cancel what has not started; never join (see the module's doc)."""
        while True:
            try:
                future, *_ = self._queue.get_nowait()
            except queue.Empty:
                return
            future.cancel()


def wait_any(futures) -> set[Future]:
    """The futures done so far, at least one; interruptible."""
    while True:
        done, _ = wait(futures, timeout=POLL, return_when=FIRST_COMPLETED)
        if done:
            return done


def results(futures: list[Future]) -> list:
    """Each future's result in order (the first exception is raised)."""
    pending = set(futures)
    while pending:
        pending -= wait_any(pending)
    return [f.result() for f in futures]


def parallel_map(fn, items, workers: int = 16) -> list:
    """fn(item) for every item at once, results in order; interruptible."""
    items = list(items)
    if not items:
        return []
    with Pool(min(workers, len(items))) as pool:
        return results([pool.submit(fn, item) for item in items])
