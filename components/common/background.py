"""A worker thread fed through a bounded queue: a pipeline stage that overlaps the caller's next step.

Work that releases the GIL (zlib, Arrow, Parquet, numpy on large arrays) runs beside the caller's,
and at most ``depth`` submitted tasks wait, so memory stays bounded however fast the caller is. An
exception in a task is raised again in the caller's thread, at its next ``submit`` or at ``close``.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable


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
