"""Micro-batching: concurrent requests coalesced into one model call.

A request hands its columns ({feature: np.ndarray}) to :meth:`MicroBatcher.submit` and awaits a
future. One worker thread per model version takes everything queued (up to ``max_batch_size``
instances), concatenates the columns, calls the model once and hands each request its slice of
the outputs back on the request's event loop (one wake-up per batch and loop).

While the worker runs a batch, new requests queue up, so batches form by themselves under load
and a lone request is never held back. ``max_wait_us`` > 0 additionally waits up to that long
for more requests when the queue runs dry before the batch is full (more throughput at moderate
load, up to that much extra latency). A request larger than ``max_batch_size`` runs on its own.

The model call runs outside the event loop, so the loop keeps parsing requests while TF works --
except when it would gain nothing: requests are handed over once per event-loop turn (after every
request already read in that turn has queued its columns), and a turn that brings exactly one
request while the worker is idle runs that call directly on the loop (``inline_when_idle``). A lone
request at low load thus skips the two thread hand-offs (~0.1 ms); under load, batches still form
in the worker.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import numpy as np
from prometheus_client import Histogram

BATCH_SIZE = Histogram("kubetfx_predictor_batch_size", "Instances per model call (after micro-batching)",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
MODEL_CALL = Histogram("kubetfx_predictor_model_call_seconds", "Time of one (batched) model signature call",
                       buckets=(0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001,
                                0.0015, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
BATCH_REQUESTS = Histogram("kubetfx_predictor_batch_requests", "Requests coalesced into one model call",
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128))


def _deliver(pairs) -> None:
    for future, value, failed in pairs:
        if future.done():  # the client went away
            continue
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)


class MicroBatcher:
    def __init__(self, fn, max_batch_size: int = 64, max_wait_us: int = 0, name: str = "",
                 inline_when_idle: bool = True):
        self._fn = fn
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait_s = max(0, int(max_wait_us)) / 1e6
        self.name = name
        self._items: collections.deque = collections.deque()
        self._cv = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False  # the worker is running a batch
        self.inline_when_idle = inline_when_idle and not self.max_wait_s
        self._pending: dict = {}  # event loop -> requests submitted during its current turn
        self.calls = 0
        self.instances = 0

    async def submit(self, columns: dict, n: int) -> dict:
        """Queue one request's columns; its outputs ({name: np.ndarray} with n rows) when done."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        item = (columns, n, future, loop)
        if not self.inline_when_idle:
            self._enqueue([item])
            return await future
        pending = self._pending.get(loop)
        if pending is None:
            self._pending[loop] = [item]
            loop.call_soon(self._flush, loop)  # runs after the requests already ready in this turn
        else:
            pending.append(item)
        return await future

    def _flush(self, loop) -> None:
        items = self._pending.pop(loop, [])
        if len(items) == 1 and not self._busy and not self._items and not self._closed \
                and items[0][1] <= self.max_batch_size:
            self._execute(items, items[0][1], inline=True)
        elif items:
            self._enqueue(items)

    def _enqueue(self, items: list) -> None:
        with self._cv:
            self._items.extend(items)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"kubetfx-batcher-{self.name}",
                                                daemon=True)
                self._thread.start()
            else:
                self._cv.notify()

    def close(self) -> None:
        """Finish what is queued, then stop the worker (a later submit starts it again)."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _take(self) -> tuple[list, int] | None:
        items, cv, limit = self._items, self._cv, self.max_batch_size
        with cv:
            while not items:
                if self._closed:
                    self._thread = None
                    return None
                cv.wait()
            first = items.popleft()
            self._busy = True
            batch, rows = [first], first[1]
            deadline = None
            while rows < limit:
                if items:
                    if rows + items[0][1] > limit:
                        break
                    item = items.popleft()
                    batch.append(item)
                    rows += item[1]
                    continue
                if not self.max_wait_s or self._closed:
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_wait_s
                if now >= deadline:
                    break
                cv.wait(deadline - now)
            return batch, rows

    def _work(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            try:
                self._execute(*taken)
            finally:
                self._busy = False

    def _execute(self, batch: list, rows: int, inline: bool = False) -> None:
        try:
            if len(batch) == 1:
                columns = batch[0][0]
            else:
                columns = {name: np.concatenate([item[0][name] for item in batch]) for name in batch[0][0]}
            start = time.perf_counter()
            outputs = self._fn(columns)
            MODEL_CALL.observe(time.perf_counter() - start)
            results, offset = [], 0
            for _, n, future, loop in batch:
                if len(batch) == 1:
                    value = outputs
                else:
                    value = {name: array[offset:offset + n] for name, array in outputs.items()}
                results.append((loop, (future, value, False)))
                offset += n
        except Exception as err:
            if len(batch) == 1:
                results = [(batch[0][3], (batch[0][2], err, True))]
            else:  # one bad request must not fail the others: run each alone
                results = []
                for columns, _, future, loop in batch:
                    try:
                        results.append((loop, (future, self._fn(columns), False)))
                    except Exception as single:
                        results.append((loop, (future, single, True)))
        self.calls += 1
        self.instances += rows
        BATCH_SIZE.observe(rows)
        BATCH_REQUESTS.observe(len(batch))
        if inline:  # on the requests' own loop
            _deliver([pair for _, pair in results])
            return
        by_loop: dict = {}
        for loop, pair in results:
            by_loop.setdefault(loop, []).append(pair)
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, pairs)
            except RuntimeError:  # the loop is closed (server shutting down)
                pass
