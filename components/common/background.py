"""A worker thread fed through a bounded queue: a pipeline stage that overlaps the caller's next step.
:func:`ahead` is the other direction: items made on a thread while the caller uses the ones before.

Work that releases the GIL (zlib, Arrow, Parquet, numpy on large arrays) runs beside the caller's,
and at most ``depth`` submitted tasks wait, so memory stays bounded however fast the caller is. An
exception in a task is raised again in the caller's thread, at its next ``submit`` or at ``close``.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator


class Stage:
    """Runs ``submit``-ted calls in order on one thread."""

    def __init__(self, name: str, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if self._error is None:  # after a failure, later tasks are dropped
                try:
                    task()
                except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, task: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(task)

    def close(self) -> None:
        """Wait for every submitted task; re-raise the first failure."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()


def ahead(items: Iterable, name: str, depth: int = 1) -> Iterator:
    """``items`` produced on a thread while the caller works on the ones before, at most ``depth`` waiting: a
    producer's exception is raised in the caller at the item it failed on; a caller that stops early stops the
    producer (at its next item) and waits for it."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                waiting.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            put((end, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = waiting.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                waiting.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
