"""Receive what KServe's inference logger sends and write it as prediction log records.

An InferenceService with ``spec.predictor.logger: {mode: all, url: http://<this service>/}``
makes KServe's agent POST two CloudEvents per request — the request body (type
``org.kubeflow.serving.inference.request``) and the response body (``…inference.response``),
sharing ``ce-id`` — in binary mode (``ce-*`` headers, JSON body) or structured mode
(``application/cloudevents+json``). This sink pairs them by id and writes one line per
request (read back as one record per instance) with :class:`~kubetfx.components.common.prediction_log.PredictionLogger`, so the
model monitor reads the cluster's traffic exactly like ``make serve``'s local log.
V1 (``instances`` / ``predictions``) and V2 (``inputs`` / ``outputs``) bodies are understood.

The sink never fills its volume: ``--max_total_bytes`` (shared evenly by the models it has seen)
and ``--max_age_s`` bound the log (``prediction_log.RotatingWriter``'s retention: the oldest
files go first, a batch that cannot fit is dropped and counted). ``GET /metrics`` gives the
records written and dropped, and the files and bytes deleted, per model (Prometheus text).

    python -m kubetfx.components.model_monitor.sink --log_dir /mnt/prediction-log --port 8080 \
        --max_total_bytes 8589934592
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubetfx.components.common import prediction_log
from kubetfx.components.common.prediction_log import PredictionLogger, instances_of, predictions_of

DEFAULT_MAX_TOTAL_BYTES = 8 * 1024 ** 3  # 80% of manifests/base/prediction-log.yaml's 10Gi volume
MIN_TOTAL_BYTES = 1024 ** 2

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
PENDING_TTL_S = 300.0  # a request whose response never comes is forgotten after this


class PairingSink:
    """Pair request and response events by id; log each pair once; forget unpaired ones after a while."""

    def __init__(self, logger_for):
        self._logger_for = logger_for  # model name -> PredictionLogger
        self._pending: dict[str, tuple[float, str, dict]] = {}
        self._lock = threading.Lock()
        self.unpaired_dropped = 0

    def receive(self, event_id: str, event_type: str, model_name: str, body: dict) -> None:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, (t, _, _) in self._pending.items() if now - t > PENDING_TTL_S]:
                del self._pending[stale]
                self.unpaired_dropped += 1
            other = self._pending.pop(event_id, None)
            if other is None:
                self._pending[event_id] = (now, event_type, body)
                return
        request, response = (body, other[2]) if event_type == REQUEST_TYPE else (other[2], body)
        version = str(response.get("model_version") or "")
        instances = instances_of(request)
        predictions = ([{"error": str(response["error"])[:300]}] * len(instances) if "error" in response
                       else predictions_of(response))  # a failed request counts in the canary's error rate
        self._logger_for(model_name).log(event_id, version, instances, predictions)


def make_server(log_dir: str, port: int, host: str = "0.0.0.0", sample_rate: float = 1.0,
                max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, max_file_bytes: int = prediction_log.DEFAULT_MAX_BYTES,
                max_age_s: float = prediction_log.DEFAULT_MAX_AGE_S) -> ThreadingHTTPServer:
    """The sink's HTTP server; ``max_total_bytes`` bounds the whole log, shared evenly by the models seen."""
    loggers: dict[str, PredictionLogger] = {}
    lock = threading.Lock()

    def logger_for(model_name: str) -> PredictionLogger:
        with lock:
            if model_name not in loggers:
                share = max_total_bytes // (len(loggers) + 1) if max_total_bytes else 0
                for logger in loggers.values():  # they trim to the smaller share within a second
                    logger.writer.max_total_bytes = share
                    logger.writer.max_bytes = min(logger.writer.max_bytes, share // 4)
                loggers[model_name] = PredictionLogger(log_dir, model_name, sample_rate=sample_rate,
                                                       max_bytes=max_file_bytes, max_total_bytes=share,
                                                       max_age_s=max_age_s)
            return loggers[model_name]

    sink = PairingSink(logger_for)

    def metrics_text() -> str:
        lines = ["# TYPE kubetfx_prediction_log_records gauge", "# TYPE kubetfx_prediction_log_deleted_files gauge",
                 "# TYPE kubetfx_prediction_log_deleted_bytes gauge"]
        with lock:
            for name, logger in sorted(loggers.items()):
                lines += [f'kubetfx_prediction_log_records{{model="{name}",outcome="written"}} {logger.written}',
                          f'kubetfx_prediction_log_records{{model="{name}",outcome="dropped"}} {logger.dropped}',
                          f'kubetfx_prediction_log_deleted_files{{model="{name}"}} {logger.writer.deleted_files}',
                          f'kubetfx_prediction_log_deleted_bytes{{model="{name}"}} {logger.writer.deleted_bytes}']
        lines.append(f"kubetfx_prediction_log_unpaired_dropped {sink.unpaired_dropped}")
        return "\n".join(lines) + "\n"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
                if self.headers.get("Content-Type", "").startswith("application/cloudevents+json"):
                    event_id, event_type, body = payload["id"], payload["type"], payload.get("data") or {}
                    model_name = payload.get("inferenceservicename") or "model"
                else:
                    event_id, event_type, body = self.headers["ce-id"], self.headers["ce-type"], payload
                    model_name = self.headers.get("ce-inferenceservicename") or "model"
                if event_type not in (REQUEST_TYPE, RESPONSE_TYPE) or not isinstance(body, dict):
                    raise ValueError(f"not an inference event: {event_type}")
            except (ValueError, KeyError, TypeError) as err:
                self.send_error(400, f"not a KServe inference logger CloudEvent: {err}")
                return
            sink.receive(event_id, event_type, model_name, body)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            if self.path.rstrip("/") != "/metrics":
                self.send_error(404, "GET /metrics; POST KServe inference logger CloudEvents to /")
                return
            body = metrics_text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # one line per event would be the log volume of the traffic itself
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.sink, server.loggers = sink, loggers
    return server


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log_dir", required=True, help="where the prediction log files go (a mounted volume)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--sample_rate", type=float, default=1.0)
    parser.add_argument("--max_total_bytes", type=int, default=DEFAULT_MAX_TOTAL_BYTES,
                        help="the log never holds more (keep it below the volume's size); oldest files go first")
    parser.add_argument("--max_file_bytes", type=int, default=prediction_log.DEFAULT_MAX_BYTES,
                        help="a new log file after this many bytes")
    parser.add_argument("--max_age_s", type=float, default=prediction_log.DEFAULT_MAX_AGE_S,
                        help="log files older than this are deleted (0: no age limit)")
    args = parser.parse_args(argv)
    if args.max_total_bytes < MIN_TOTAL_BYTES:
        parser.error(f"--max_total_bytes {args.max_total_bytes}: the sink must not fill its volume; give a cap of at "
                     f"least {MIN_TOTAL_BYTES} bytes below the volume's size")
    server = make_server(args.log_dir, args.port, sample_rate=args.sample_rate, max_total_bytes=args.max_total_bytes,
                         max_file_bytes=args.max_file_bytes, max_age_s=args.max_age_s)
    print(f"kubetfx prediction log sink on :{args.port}, writing under {args.log_dir} (at most "
          f"{args.max_total_bytes} bytes, files kept {args.max_age_s:g} s)", flush=True)
    try:
        server.serve_forever()
    finally:
        for logger in server.loggers.values():
            logger.close()


if __name__ == "__main__":
    main()
