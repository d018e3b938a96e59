"""Micro-batching: requests wait in one bounded queue; a worker takes the oldest and every queued request with the
same key up to `max_batch` rows, and runs them as one job in a thread, so the event loop never does model work."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds `max_queue` requests already; the caller answers 429 and the client retries later."""


@dataclass
class Job:
    key: Hashable
    payload: Any
    rows: int
    future: asyncio.Future = field(repr=False)


# run(key, payloads) -> one result per payload, in order; a result may be an Exception meant for that request alone
RunBatch = Callable[[Hashable, list[Any]], list[Any]]


class MicroBatcher:
    def __init__(self, run: RunBatch, *, max_batch: int, max_queue: int, workers: int = 1,
                 on_batch: Callable[[Hashable, int, int], None] | None = None,
                 on_depth: Callable[[int], None] | None = None):
        self._run, self.max_batch, self.max_queue, self.workers = run, max_batch, max_queue, workers
        self._on_batch, self._on_depth = on_batch or (lambda key, n, rows: None), on_depth or (lambda depth: None)
        self._pending: collections.deque[Job] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="vecbridge-batch")
        self._tasks = [asyncio.create_task(self._work(), name=f"vecbridge-batcher-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        """Cancel the workers (after the server has drained its requests) and wait for a running batch."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    async def submit(self, key: Hashable, payload: Any, rows: int) -> Any:
        """The result of `payload` once its batch has run; raises QueueFull at once when the queue is full."""
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"the request queue is full ({self.max_queue} requests waiting)")
        job = Job(key, payload, rows, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._on_depth(len(self._pending))
        self._wake.set()
        return await job.future  # a client that goes away cancels the future; its job is then skipped

    def _take(self) -> list[Job]:
        """The oldest live job and the queued jobs with its key that fit in `max_batch` rows, in arrival order."""
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch, rows, keep = [first], first.rows, collections.deque()
        while self._pending:
            job = self._pending.popleft()
            if job.future.done():
                continue
            if job.key == first.key and rows + job.rows <= self.max_batch:
                batch.append(job)
                rows += job.rows
            else:
                keep.append(job)
        self._pending = keep
        return batch

    async def _work(self) -> None:
        # no waiting window: the next batch fills while this one computes, so a lone request runs at once
        loop = asyncio.get_running_loop()
        while True:
            batch = self._take()
            self._on_depth(len(self._pending))
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._on_batch(batch[0].key, len(batch), sum(job.rows for job in batch))
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch[0].key,
                                                     [job.payload for job in batch])
            except asyncio.CancelledError:
                for job in batch:
                    job.future.cancel()
                raise
            except Exception as e:  # the whole batch failed: every request in it gets the error
                results = [e] * len(batch)
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
