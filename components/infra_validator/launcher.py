"""Starting the predictor on a candidate model for the InfraValidator, polling it until ready, stopping it.

Two launches with one interface (:class:`Launched`: port, readiness, requests, stop, log tail):

* :class:`PredictorInProcess`: the CLI's code path (``predictor.server.build``) on a background
  thread of this task (``predictor.server.ServerThread``; REST only, asyncio's loop), its log
  records captured for the verdict;
* :class:`PredictorProcess`: ``python -m kubetfx.components.predictor --model_dir <candidate>`` in
  a subprocess of its own session, exactly the command the ServingRuntime runs, its output in a
  log file.

Readiness is polled every ``READY_POLL_S`` on the model's own readiness endpoint. What the
server answers is judged by the executor, not here.
"""

from __future__ import annotations

import collections
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import time

LOG_TAIL_LINES = 15
READY_POLL_S = 0.02  # how often readiness is asked while the server starts
_NOISE = ("cuda", "oneDNN", "TF-TRT", "rebuild TensorFlow", "computation_placer", "cpu_feature_guard",
          "AVX", "This TensorFlow binary", "absl::InitializeLog", "FastAPIDeprecationWarning",
          "await f(request)", "await dependant.call")


def free_ports(count: int = 1) -> list[int]:
    """``count`` distinct free loopback ports (all held open while choosing, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _noise_free(lines, count: int = LOG_TAIL_LINES) -> list[str]:
    kept = [line.rstrip() for line in lines if line.strip() and not any(noise in line for noise in _NOISE)]
    return kept[-count:]


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The server log's last meaningful lines (TF's CPU/CUDA banner noise left out)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()[-200_000:]
    except OSError:
        return []
    return _noise_free(text.splitlines(), lines)


def _request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Launched:
    """What the checks need of a started predictor: its HTTP port, readiness, requests, stop, log tail."""

    model_name: str
    http_port: int
    launch: str

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 10.0):
        return _request(self.http_port, method, path, body, timeout)

    def _ended(self) -> str | None:
        """Why the server can no longer become ready (it ended), or None while it may."""
        raise NotImplementedError

    def wait_ready(self, timeout_s: float) -> tuple[bool, str]:
        """(ready, why not). Ready = this server's model answers its readiness endpoint (asked every 20 ms)."""
        deadline = time.monotonic() + timeout_s
        path = f"/v2/models/{self.model_name}/ready"  # the unique name: another server on the port cannot pass
        while time.monotonic() < deadline:
            ended = self._ended()
            if ended:
                return False, ended
            try:
                status, _ = self.request("GET", path, timeout=2.0)
                if status == 200:
                    return True, ""
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(READY_POLL_S)
        return False, f"the predictor server was not ready within {timeout_s:g} s"

    def stop(self) -> None:
        raise NotImplementedError

    def log_tail(self) -> list[str]:
        raise NotImplementedError

    def failure(self, tail: list[str]) -> str:
        """What most likely says why the server did not come up."""
        return _last_error(tail)


class PredictorProcess(Launched):
    """The predictor server in a subprocess (own session, so it and its children are stopped together)."""

    launch = "process"

    def __init__(self, model_dir: str, model_name: str, http_port: int, grpc_port: int, log_path: str,
                 extra_args=()):
        self.model_name = model_name
        self.http_port = http_port
        self.log_path = log_path
        self.command = [sys.executable, "-m", "kubetfx.components.predictor", "--model_dir", model_dir,
                        "--model_name", model_name, "--http_port", str(http_port), "--grpc_port", str(grpc_port),
                        "--grace_period_s", "5", *extra_args]
        self._log = open(log_path, "wb")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def _ended(self) -> str | None:
        code = self.process.poll()
        return None if code is None else f"the predictor server exited with code {code} before it was ready"

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
        self._log.close()

    def log_tail(self) -> list[str]:
        return log_tail(self.log_path)


class _CapturedLog(logging.Handler):
    """The in-process server's log records (kubetfx.predictor, kserve, uvicorn), kept for the verdict's log tail."""

    LOGGERS = ("kubetfx.predictor", "kserve", "uvicorn")

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: collections.deque = collections.deque(maxlen=500)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.extend(self.format(record).splitlines())
        except Exception:  # pragma: no cover - a log line must never fail the server
            pass

    def attach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def detach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


class PredictorInProcess(Launched):
    """The predictor served from a thread of this task (``predictor.server.ServerThread``), over real HTTP."""

    launch = "in_process"

    def __init__(self, model_dir: str, model_name: str, http_port: int, stop_timeout_s: float = 10.0):
        self.model_name = model_name
        self.http_port = http_port
        self.stop_timeout_s = stop_timeout_s
        self.left_running = False
        self.phases: dict[str, float] = {}
        started = time.perf_counter()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's first import (its C++ banner)
        from kserve import logging as kserve_logging

        from kubetfx.components.predictor import kserve_changes, server as predictor_server
        from kubetfx.components.predictor.model import ServingOptions
        from kubetfx.components.predictor.repository_watch import ModelSource

        self.phases["import_kserve"] = time.perf_counter() - started
        # Logging as the CLI's process has it (kserve's config, our quiet levels) before the capture joins:
        # kserve configures its loggers only when they have no handler yet.
        kserve_logging.configure_logging()
        kserve_changes.quiet_logs()
        self._log = _CapturedLog()
        self._log.attach()
        try:
            self.server = predictor_server.ServerThread(
                ModelSource(model_name=model_name, model_dir=model_dir), ServingOptions(), http_port=http_port,
                grace_period_s=5, before=self._import_tensorflow).start()
        except BaseException:
            self._log.detach()
            raise

    def _import_tensorflow(self) -> None:
        """On the server thread, before the model load (which needs it): timed apart from the load."""
        started = time.perf_counter()
        import tensorflow  # noqa: F401

        self.phases["import_tensorflow"] = time.perf_counter() - started

    def startup_phases(self) -> dict:
        """Seconds per start-up step: imports, model load (+ kserve.ModelServer), the rest is uvicorn coming up."""
        phases = {**self.phases, "model_load": self.server.phases.get("build")}
        return {k: round(v, 3) for k, v in phases.items() if v is not None}

    def _ended(self) -> str | None:
        if self.server.running:
            return None
        if self.server.error is not None:
            return "the predictor server failed before it was ready (in this process)"
        return "the predictor server stopped before it was ready (in this process)"

    def stop(self) -> None:
        try:
            self.left_running = not self.server.stop(self.stop_timeout_s)
            if self.left_running:  # a hung model load: the daemon thread ends itself once the load returns
                logging.getLogger("kubetfx.predictor").warning(
                    "the in-process server thread is still busy %g s after the stop (left to end by itself)",
                    self.stop_timeout_s)
        finally:
            self._log.detach()

    def log_tail(self) -> list[str]:
        return _noise_free(list(self._log.lines))

    def failure(self, tail: list[str]) -> str:
        error = self.server.error
        return f"{type(error).__name__}: {str(error)[:500]}" if error is not None else _last_error(tail)


def _last_error(tail: list[str]) -> str:
    """The log line that most likely says why the server failed."""
    for words in (("kubetfx predictor:", "Errno", "address already in use"), ("Error", "ERROR", "failed")):
        for line in reversed(tail):
            if any(word in line for word in words):
                return line.strip()[:500]
    return tail[-1].strip()[:500]
