"""Dynamic batching: concurrent callers' items go through one loop that runs them in shared batches.

A caller submits a list of items and blocks until its own results come back, in its order. The loop takes
the first waiting request, then keeps taking more for up to `max_wait_s` (or until `max_batch` items are
gathered), runs `fn` once on all of them, and hands each caller its slice. Concurrent requests therefore fill
batches instead of queueing on a lock; a lone request waits at most `max_wait_s` extra.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatcherClosedError(RuntimeError):
    pass


@dataclass
class _Request(Generic[Item, Result]):
    items: Sequence[Item]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Result] = field(default_factory=list)
    error: BaseException | None = None
    remaining: int = 0  # items not yet run; a request larger than a batch is split across batches

    def __post_init__(self) -> None:
        self.remaining = len(self.items)


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    requests: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class DynamicBatcher(Generic[Item, Result]):
    """`fn(items) -> results` (one result per item, in order) run by one thread on batches of requests."""

    def __init__(
        self,
        fn: Callable[[list[Item]], Sequence[Result]],
        max_batch: int,
        max_wait_s: float = 0.01,
        name: str = "batcher",
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatcherStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[Item]) -> list[Result]:
        """Blocks until `items` have run; re-raises the exception of a batch that failed."""
        if not items:
            return []
        if self._closed:
            raise BatcherClosedError("the batcher is closed")
        request: _Request[Item, Result] = _Request(list(items))
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.results

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    # the loop -------------------------------------------------------------------------------------------
    def _gather(self, first: _Request) -> list[tuple[_Request, int, int]]:
        """Slices (request, start, stop) making up one batch: the first request, then whatever arrives in time."""
        slices: list[tuple[_Request, int, int]] = []
        size = 0
        pending = first
        deadline = time.monotonic() + self.max_wait_s
        while True:
            start = len(pending.items) - pending.remaining
            stop = min(len(pending.items), start + self.max_batch - size)
            slices.append((pending, start, stop))
            size += stop - start
            if stop < len(pending.items) or size >= self.max_batch:
                break  # full; the rest of a split request goes first into the next batch
            try:
                pending = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if pending is None:  # closing: run what was gathered, then stop
                self._queue.put(None)
                break
        return slices

    def _loop(self) -> None:
        carry: _Request | None = None
        while True:
            request = carry or self._queue.get()
            carry = None
            if request is None:
                self._drain()
                return
            slices = self._gather(request)
            items = [item for req, start, stop in slices for item in req.items[start:stop]]
            try:
                results = list(self.fn(items))
                if len(results) != len(items):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
                error = None
            except BaseException as exc:  # handed to the callers; the loop itself keeps running
                results, error = [], exc
            self.stats.batches += 1
            self.stats.items += len(items)
            offset = 0
            for req, start, stop in slices:
                if error is not None:
                    req.error = error
                else:
                    req.results.extend(results[offset : offset + stop - start])
                offset += stop - start
                req.remaining = 0 if error is not None else len(req.items) - stop
                if req.remaining == 0:
                    self.stats.requests += 1
                    req.done.set()
                else:
                    carry = req

    def _drain(self) -> None:
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                request.error = BatcherClosedError("the batcher is closed")
                request.done.set()
