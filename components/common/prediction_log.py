"""Prediction logs: what a served model saw and answered, for the model monitor. One format, two writers.

A line is one request (what was written is one JSON object per request, which keeps the writer
cheap when requests carry many instances)::

    {"request_id": "…", "time": "2026-11-30T12:00:00.123456Z", "model_name": "penguin",
     "model_version": "3", "latency_ms": 1.2, "instances": [{"island": "Biscoe", …}, …],
     "predictions": [{"class": "Adelie", …}, …]}

(``latency_ms``: the predictor's time to answer; the cluster sink cannot know it and leaves it out.)

and :func:`read_records` gives one record per instance::

    {"request_id": "…", "instance": 0, "time": …, "model_name": …, "model_version": …,
     "features": {"island": "Biscoe", …}, "prediction": {"class": "Adelie", …}}

Files: ``<log_dir>/<model_name>/predictions-<UTC start>-<pid>-<seq>.jsonl``, a new file after
``max_bytes`` or ``max_seconds``; a file being written carries a ``.part`` suffix until it is
closed, so a reader never sees half a line it would take for a record.

Retention: with ``max_total_bytes`` the directory never holds more (the oldest closed files are
deleted first, before a write that would pass the cap; a write that still cannot fit is dropped
and counted), and with ``max_age_s`` closed files older than that are deleted. What was deleted is
counted and recorded in ``retention.json`` beside the files (how many, and the time of the newest
deleted record), so the monitor can say when its window reaches back past what was kept.

Writers: :class:`PredictionLogger` in the predictor (off the request path: a bounded queue and
a writer thread; when the queue is full a record is dropped and counted, never blocking a
request), and the KServe logger sink (``python -m kubetfx.components.model_monitor.sink``),
which turns the CloudEvents KServe's own logger sends into the same records.
Reader: :func:`read_records` (a time window or the last N).
"""

from __future__ import annotations

import collections
import datetime as dt
import errno
import glob
import json
import os
import random
import threading
import time

from kubetfx.components.common.errors import ConfigError

FILE_PREFIX = "predictions-"
SUFFIX = ".jsonl"
PART = ".part"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 3600.0
DEFAULT_MAX_TOTAL_BYTES = 1024 ** 3  # the predictor's default; ~1.4 million penguin requests
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
MIN_TOTAL_BYTES = 64 * 1024
RETENTION_FILE = "retention.json"
_MAINTAIN_EVERY_S = 1.0
_RETENTION_FILE_ROOM = 256


def utc_now() -> str:
    return utc_time(time.time())


_LAST_SECOND = (-1, "")  # the last whole second formatted (requests in the same second share it)


def utc_time(seconds: float) -> str:
    """Seconds since the epoch as the log's ISO-8601 UTC text (microseconds)."""
    global _LAST_SECOND
    whole = int(seconds)
    cached, text = _LAST_SECOND
    if cached != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _LAST_SECOND = (whole, text)
    return f"{text}.{int((seconds - whole) * 1e6):06d}Z"


def parse_time(value: str, what: str) -> dt.datetime:
    """ISO-8601 (``2026-11-30T12:00:00Z``, a date, or with an offset) as an aware UTC datetime."""
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ConfigError(f"{what}: '{value}' is not an ISO-8601 time (e.g. 2026-11-30T12:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def records_for(request_id: str, model_name: str, model_version: str, instances, predictions,
                when: str | None = None, latency_ms: float | None = None) -> list[dict]:
    """The line of one request (the shared shape of both writers), in a list: what writers write.

    ``instances``/``predictions``: one dict per instance, or columns (a dict of equally long
    sequences, numpy arrays included: written as ``columns``/``prediction_columns``, which spares
    the writer thread a dict per instance; :func:`read_records` gives the same records either way).
    """
    line = {"request_id": request_id, "time": when or utc_now(), "model_name": model_name,
            "model_version": str(model_version)}
    if latency_ms is not None:
        line["latency_ms"] = latency_ms
    line["columns" if isinstance(instances, dict) else "instances"] = instances
    line["prediction_columns" if isinstance(predictions, dict) else "predictions"] = predictions
    return [line]


def instance_count(instances) -> int:
    """How many instances ``instances`` holds: a list of dicts, or columns."""
    if isinstance(instances, dict):
        return len(next(iter(instances.values()))) if instances else 0
    return len(instances)


def _rows(columns: dict) -> list[dict]:
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def _per_instance(line: dict) -> list[dict]:
    """A request line -> its records, one per instance (what the monitor reads)."""
    if "instances" not in line and "columns" not in line:
        return [line]  # already one instance
    common = {"request_id": line["request_id"], "time": line["time"], "model_name": line.get("model_name"),
              "model_version": line.get("model_version")}
    if "latency_ms" in line:
        common["latency_ms"] = line["latency_ms"]
    instances = _rows(line["columns"]) if "columns" in line else (line["instances"] or [])
    predictions = (_rows(line["prediction_columns"]) if "prediction_columns" in line
                   else line.get("predictions") or [])
    return [{**common, "instance": index, "features": features,
             "prediction": predictions[index] if index < len(predictions) else None}
            for index, features in enumerate(instances)]


def v2_rows(tensors: list[dict]) -> list[dict]:
    """Open Inference Protocol tensors (``inputs``/``outputs``) -> one dict per row (first dimension)."""
    rows: list[dict] = []
    for tensor in tensors:
        data, shape = tensor.get("data") or [], tensor.get("shape") or [len(tensor.get("data") or [])]
        count = shape[0] if shape else len(data)
        width = max(1, len(data) // count) if count else 1
        for index in range(count):
            while len(rows) <= index:
                rows.append({})
            values = data[index * width:(index + 1) * width]
            rows[index][tensor["name"]] = values[0] if width == 1 else values
    return rows


def instances_of(request_body: dict) -> list[dict]:
    """The instances of a V1 (``instances``) or V2 (``inputs``) request body, one dict each."""
    if "instances" in request_body:
        return [i if isinstance(i, dict) else {"instance": i} for i in request_body["instances"]]
    return v2_rows(request_body.get("inputs") or [])


def predictions_of(response_body: dict) -> list[dict]:
    """The predictions of a V1 (``predictions``) or V2 (``outputs``) response body, one dict each."""
    if "predictions" in response_body:
        return [p if isinstance(p, dict) else {"prediction": p} for p in response_body["predictions"]]
    return v2_rows(response_body.get("outputs") or [])


class RotatingWriter:
    """Append records to ``<log_dir>/<model_name>/`` files, starting a new one by size or age; keep the directory
    within ``max_total_bytes`` and ``max_age_s`` (0: no limit) by deleting the oldest closed files."""

    def __init__(self, log_dir: str, model_name: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_seconds: float = DEFAULT_MAX_SECONDS, max_total_bytes: int = 0, max_age_s: float = 0.0):
        if max_total_bytes and max_total_bytes < MIN_TOTAL_BYTES:
            raise ConfigError(f"prediction log max_total_bytes must be 0 (no limit) or at least {MIN_TOTAL_BYTES}, "
                              f"got {max_total_bytes}")
        if max_age_s < 0:
            raise ConfigError(f"prediction log max_age_s must be 0 (no limit) or more, got {max_age_s}")
        self.directory = os.path.join(log_dir, model_name)
        os.makedirs(self.directory, exist_ok=True)
        # A file is at most a quarter of the cap: deleting the oldest always makes room for the current one.
        self.max_bytes = min(max_bytes, max_total_bytes // 4) if max_total_bytes else max_bytes
        self.max_seconds, self.max_total_bytes, self.max_age_s = max_seconds, max_total_bytes, max_age_s
        self._handle, self._path, self._opened, self._size, self._sequence = None, None, 0.0, 0, 0
        self.deleted_files = self.deleted_bytes = 0
        self._closed: list[tuple[str, int, float]] = []  # deletable files, oldest first: (path, bytes, mtime)
        self._closed_bytes = self._other_bytes = 0  # other writers' open files count, and cannot be deleted
        self._maintained = 0.0
        self.maintain(force=True)

    def _open(self) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self._sequence += 1
        self._path = os.path.join(self.directory,
                                  f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._sequence:04d}{SUFFIX}{PART}")
        self._handle = open(self._path, "ab")
        self._opened, self._size = time.monotonic(), 0

    def write(self, records: list[dict]) -> None:
        self.write_lines(b"".join(_dump_line(r) for r in records))

    def write_lines(self, text: bytes) -> None:
        """Append already rendered JSON lines (OSError ENOSPC when they cannot fit the cap: the caller drops them)."""
        if self._handle is not None and self._size and self._size + len(text) > self.max_bytes:
            self.close()  # rotate first: a file stays within max_bytes unless one batch alone is larger
        if self.max_total_bytes or self.max_age_s:
            self.maintain()
            if self.max_total_bytes and not self._make_room(len(text)):
                raise OSError(errno.ENOSPC, f"{len(text)} bytes do not fit the prediction log's max_total_bytes "
                                            f"{self.max_total_bytes} in {self.directory}")
        if self._handle is None:
            self._open()
        self._handle.write(text)
        self._handle.flush()
        self._size += len(text)
        if self._size >= self.max_bytes or time.monotonic() - self._opened >= self.max_seconds:
            self.close()

    def close(self) -> None:
        """Close the current file and drop its ``.part`` suffix: readers see it from now on."""
        if self._handle is not None:
            self._handle.close()
            closed = self._path[: -len(PART)]
            os.replace(self._path, closed)
            self._handle = None
            self._closed.append((closed, self._size, time.time()))
            self._closed_bytes += self._size
            self._size = 0

    # ------------------------------------------------------------------ retention
    def maintain(self, force: bool = False) -> None:
        """Look at the directory again (other writers' files too; at most once a second unless ``force``) and
        delete the closed files past ``max_age_s``, then the oldest while the directory is over ``max_total_bytes``."""
        if not (self.max_total_bytes or self.max_age_s):
            return
        now = time.monotonic()
        if not force and now - self._maintained < _MAINTAIN_EVERY_S:
            return
        self._maintained = now
        closed, others = [], 0
        for entry in os.scandir(self.directory):
            if not entry.name.startswith(FILE_PREFIX) or entry.path == self._path:
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:  # another writer deleted or renamed it
                continue
            if entry.name.endswith(SUFFIX):
                closed.append((entry.path, stat.st_size, stat.st_mtime))
            elif entry.name.endswith(PART):
                others += stat.st_size
        self._closed, self._other_bytes = sorted(closed), others
        self._closed_bytes = sum(size for _, size, _ in closed)
        if self.max_age_s:
            cutoff = time.time() - self.max_age_s
            for old in [item for item in self._closed if item[2] < cutoff]:
                self._delete(old)
        self._make_room(0)

    def _make_room(self, incoming: int) -> bool:
        """Delete the oldest closed files until ``incoming`` more bytes fit the cap; False when they cannot."""
        def total() -> int:  # + room for retention.json (a few numbers)
            return self._closed_bytes + self._other_bytes + self._size + incoming + _RETENTION_FILE_ROOM

        while self.max_total_bytes and self._closed and total() > self.max_total_bytes:
            self._delete(self._closed[0])
        return not self.max_total_bytes or total() <= self.max_total_bytes

    def _delete(self, item: tuple[str, int, float]) -> None:
        path, size, mtime = item
        self._closed.remove(item)
        self._closed_bytes -= size
        newest = _last_record_time(path) or utc_time(mtime)
        try:
            os.remove(path)
        except FileNotFoundError:  # another writer got there first
            return
        self.deleted_files += 1
        self.deleted_bytes += size
        marker = retention(os.path.dirname(self.directory), os.path.basename(self.directory)) or {}
        marker = {"deleted_files": int(marker.get("deleted_files", 0)) + 1,
                  "deleted_bytes": int(marker.get("deleted_bytes", 0)) + size,
                  "deleted_through": max(str(marker.get("deleted_through", "")), newest)}
        temporary = os.path.join(self.directory, f".{RETENTION_FILE}.{os.getpid()}")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(marker, handle)
        os.replace(temporary, os.path.join(self.directory, RETENTION_FILE))


def _last_record_time(path: str) -> str | None:
    """The time of a log file's last record (its last line), or None."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 65536))
            lines = handle.read().splitlines()
        return str(_parse_line(lines[-1])["time"]) if lines else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def retention(log_dir: str, model_name: str) -> dict | None:
    """What retention deleted from ``model_name``'s log: files, bytes, the time of the newest deleted record."""
    try:
        with open(os.path.join(log_dir, model_name, RETENTION_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


class PredictionLogger:
    """The predictor's log: ``log()`` never blocks a request; a writer thread does the I/O.

    ``sample_rate`` (0..1) keeps that share of requests (all instances of a kept request).
    ``dropped`` counts instances lost because the queue was full, the disk failed or the batch did not
    fit ``max_total_bytes``; ``written`` those on disk; ``writer.deleted_files``/``deleted_bytes`` what
    retention deleted: all exported to Prometheus by the predictor and the sink.

    The server's event loop and the writer share one GIL. So a request renders its own line
    (orjson: ~1-3 µs) and appends the bytes to a deque (no lock, no wake-up, no request object
    kept alive), and the writer wakes every ``flush_interval_s`` to write what piled up in one
    call, which releases the GIL. (Rendering in the writer, woken per request or holding the
    requests for 50 ms, cost 5-40% of the throughput at thousands of requests a second.)
    """

    def __init__(self, log_dir: str, model_name: str, sample_rate: float = 1.0, queue_size: int = 10_000,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS,
                 flush_interval_s: float = 0.05, max_total_bytes: int = 0, max_age_s: float = 0.0):
        if not 0.0 <= sample_rate <= 1.0:
            raise ConfigError(f"prediction log sample rate must be between 0 and 1, got {sample_rate}")
        self.model_name, self.sample_rate = model_name, sample_rate
        self.writer = RotatingWriter(log_dir, model_name, max_bytes, max_seconds, max_total_bytes, max_age_s)
        self.written = self.dropped = 0
        self._pending: collections.deque = collections.deque()
        self._queue_size, self._flush_interval_s = queue_size, flush_interval_s
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._thread.start()

    def log(self, request_id: str, model_version: str, instances, predictions, count: int | None = None,
            latency_ms: float | None = None) -> None:
        """Log one request. ``instances``/``predictions``: lists of dicts or columns, or zero-argument
        callables that make them (not called for a request the sample leaves out); ``latency_ms``: how long
        the server took to answer it (the canary comparison reads it)."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        if len(self._pending) >= self._queue_size:
            self.dropped += count if count is not None else instance_count(instances)
            return
        try:
            rows = instances() if callable(instances) else instances
            line = _dump_line(records_for(request_id, self.model_name, model_version, rows,
                                          predictions() if callable(predictions) else predictions,
                                          utc_time(time.time()), latency_ms)[0])
        except Exception:  # noqa: BLE001 - a record that cannot be rendered is counted, never fatal
            self.dropped += count if count is not None else 1
            return
        self._pending.append((line, instance_count(rows)))

    def pending(self) -> int:
        """Requests rendered and not yet taken by the writer."""
        return len(self._pending)

    def _drain(self) -> None:
        while not self._closing.wait(self._flush_interval_s):
            self._write_pending()
            try:
                self.writer.maintain()  # age limits apply when no request comes, too
            except OSError:
                pass
        self._write_pending()

    def _write_pending(self) -> None:
        """The pending lines, in writes that each fit a file (``max_bytes``; a longer line alone): behind a busy
        server a write of everything pending made files of several times ``max_bytes``, and keeping the directory
        under its cap then deleted every closed file, leaving readers nothing but the open one."""
        pending, limit = self._pending, self.writer.max_bytes
        while pending:
            batch, size = [], 0
            while pending and len(batch) < 4096 and (not batch or size + len(pending[0][0]) <= limit):
                batch.append(pending.popleft())
                size += len(batch[-1][0])
            count = sum(n for _, n in batch)
            try:
                self.writer.write_lines(b"".join(line for line, _ in batch))
                self.written += count
            except OSError:
                self.dropped += count

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        self._thread.join(timeout)
        self.writer.close()


def log_files(log_dir: str, model_name: str) -> list[str]:
    """Closed log files of ``model_name``, oldest first (names sort by start time)."""
    return sorted(glob.glob(os.path.join(log_dir, model_name, f"{FILE_PREFIX}*{SUFFIX}")))


def _dump_line(record: dict) -> bytes:
    """One JSON line; orjson when present (the writer thread shares the GIL with the server: it must be cheap).

    orjson writes NaN as null (a missing value); json writes NaN, which only json reads back.
    """
    try:
        from orjson import OPT_APPEND_NEWLINE, OPT_SERIALIZE_NUMPY, dumps
    except ImportError:  # pragma: no cover
        return (json.dumps(record, separators=(",", ":"), allow_nan=True, default=_plain) + "\n").encode()
    try:
        return dumps(record, option=OPT_APPEND_NEWLINE | OPT_SERIALIZE_NUMPY)
    except TypeError:  # a value orjson does not know (e.g. a numpy scalar of an odd type)
        return (json.dumps(record, separators=(",", ":"), allow_nan=True, default=_plain) + "\n").encode()


def _plain(value):
    """What json cannot write: numpy arrays and scalars as lists and numbers, anything else as text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _parse_line(line: bytes) -> dict:
    """orjson (3-5x json's speed on a million lines; kserve brings it), json for what only it reads (NaN)."""
    try:
        from orjson import loads
    except ImportError:  # pragma: no cover
        return json.loads(line)
    try:
        return loads(line)
    except ValueError:
        return json.loads(line)


def read_records(log_dir: str, model_name: str, start: str = "", end: str = "", last_n: int = 0,
                 include_open: bool = False) -> tuple[list[dict], int]:
    """(records in [start, end) — or the newest ``last_n`` —, count of unreadable lines skipped).

    ``include_open`` also reads files still being written (their last line may be partial: skipped).
    """
    low = parse_time(start, "start") if start else None
    high = parse_time(end, "end") if end else None
    files = log_files(log_dir, model_name)
    if include_open:
        files = sorted(files + glob.glob(os.path.join(log_dir, model_name, f"{FILE_PREFIX}*{SUFFIX}{PART}")))
    records, skipped = [], 0
    for path in files:
        with open(path, "rb") as handle:
            for line in handle:
                try:
                    record = _parse_line(line)
                    moment = parse_time(record["time"], "time")
                    expanded = _per_instance(record)
                except (ValueError, KeyError, TypeError, ConfigError):
                    skipped += 1
                    continue
                if (low and moment < low) or (high and moment >= high):
                    continue
                records += expanded
    records.sort(key=lambda r: r["time"])
    if last_n:
        records = records[-last_n:]
    return records, skipped
