"""What a failed request answers and what it logs: one policy for V1 REST, V2 REST and V2 gRPC.

Status codes. The Open Inference Protocol says a failed inference request "must be indicated by an
HTTP error status (typically 400)" with the body ``{"error": "<message>"}`` (REST), and by a non-OK
``google.rpc.Status`` (gRPC). V1 has no spec of its own; it answers the same way, so a client mistake
gets the same code on either protocol:

==============================================  =====  ===================
the request                                      HTTP   gRPC
==============================================  =====  ===================
is malformed: not JSON, not an object, the       400    INVALID_ARGUMENT
other protocol's body, wrong inputs / shapes /
datatypes / values, non-finite numbers, ...
is larger than ``--max_request_bytes``           413    RESOURCE_EXHAUSTED
has a Content-Type that is not JSON              415    (n/a)
names an unknown model or path                   404    NOT_FOUND
uses a method the path does not take             405    (n/a)
asks for what is not implemented (versions)      501    UNIMPLEMENTED
finds the model not (yet) ready                  503    UNAVAILABLE
meets a server fault (a bug, the model failing)  500    INTERNAL
==============================================  =====  ===================

Logging. A client error is one line without a traceback, and at most ``burst`` such lines per
status are written per window; the rest are counted, and one line says how many were left out
(also counted in ``kubetfx_predictor_client_errors_total``). A server error keeps its traceback,
under its own (smaller) allowance, so that a persistent fault cannot fill the disk either.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import grpc
import orjson
from fastapi.exceptions import RequestValidationError
from kserve.errors import (InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive,
                           ServerNotReady, UnsupportedProtocol)
from prometheus_client import Counter
from starlette.exceptions import HTTPException
from starlette.responses import Response

logger = logging.getLogger("kubetfx.predictor")

CLIENT_ERRORS = Counter("kubetfx_predictor_client_errors", "Requests answered with a 4xx status (or the gRPC "
                        "equivalent), by status", ["status"])
SERVER_ERRORS = Counter("kubetfx_predictor_server_errors", "Requests answered with a 5xx status (or the gRPC "
                        "equivalent), by status", ["status"])

MAX_MESSAGE_CHARS = 2000  # in a response
MAX_LOGGED_CHARS = 300  # in a log line


class PayloadTooLarge(InvalidInput):
    """The request body is larger than the server takes (HTTP 413)."""

    http_status = 413


class UnsupportedContentType(InvalidInput):
    """The request says its body is not JSON (HTTP 415)."""

    http_status = 415


@dataclass(frozen=True)
class Outcome:
    """How one failed request is answered."""

    http_status: int
    grpc_code: grpc.StatusCode
    message: str

    @property
    def is_server_fault(self) -> bool:
        """A 5xx that points at the server itself (logged with its traceback)."""
        return self.http_status >= 500 and self.http_status not in (501, 503)


_HTTP_TO_GRPC = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
                 405: grpc.StatusCode.UNIMPLEMENTED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                 415: grpc.StatusCode.INVALID_ARGUMENT, 501: grpc.StatusCode.UNIMPLEMENTED,
                 503: grpc.StatusCode.UNAVAILABLE}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _validation_message(errors) -> str:
    """FastAPI's request validation errors, without echoing the input (it may not even be serializable)."""
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "InferenceRequest"))
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    more = len(errors) - len(parts)
    return ("invalid V2 inference request: " + "; ".join(parts) + (f"; ... ({more} more)" if more > 0 else "")
            + ' (expected {"inputs": [{"name": ..., "datatype": ..., "shape": [...], "data": [...]}, ...]})')


def classify(exc: BaseException) -> Outcome:
    """The status and message for an exception raised while serving a request."""
    if isinstance(exc, InvalidInput):
        status, message = getattr(exc, "http_status", 400), str(exc)
    elif isinstance(exc, RequestValidationError):
        status, message = 400, _validation_message(exc.errors())
    elif isinstance(exc, ModelNotFound):
        status, message = 404, str(exc)
    elif isinstance(exc, (ModelNotReady, ServerNotReady, ServerNotLive)):
        status, message = 503, str(exc)
    elif isinstance(exc, (NotImplementedError, UnsupportedProtocol)):
        status, message = 501, str(exc) or "not implemented"
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    elif isinstance(exc, InferenceError):
        status, message = 500, f"inference failed: {exc}"
    else:
        status, message = 500, f"internal error: {type(exc).__name__}: {exc}"
    return Outcome(status, _HTTP_TO_GRPC.get(status, grpc.StatusCode.INTERNAL if status >= 500
                                             else grpc.StatusCode.INVALID_ARGUMENT),
                   _clip(message, MAX_MESSAGE_CHARS))


class LogLimiter:
    """Lets the first ``burst`` lines per key through in each ``window_s``; counts the rest.

    When a window is over, the next call first logs one line with what was left out. Thread-safe
    (the REST loop, gRPC and worker threads share it).
    """

    def __init__(self, burst: int, window_s: float, what: str, clock=time.monotonic):
        self.burst = burst
        self.window_s = window_s
        self.what = what
        self._clock = clock
        self._lock = threading.RLock()  # a log handler's filter may come back here
        self._window_start = clock()
        self._seen: dict = {}
        self._left_out: dict = {}

    def allow(self, key) -> bool:
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self.window_s:
                self._close_window(now)
            seen = self._seen[key] = self._seen.get(key, 0) + 1
            if seen <= self.burst:
                return True
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return False

    def _close_window(self, now: float) -> None:
        if self._left_out:
            counts = ", ".join(f"{key}: {count:,}" for key, count in sorted(self._left_out.items(), key=str))
            logger.warning("%s left out of the log in the last %.0f s (more than %d per %g s): %s", self.what,
                           now - self._window_start, self.burst, self.window_s, counts)
        self._window_start = now
        self._seen.clear()
        self._left_out.clear()


REQUEST_ERROR_LOG = LogLimiter(burst=10, window_s=10.0, what="failed-request lines")
SERVER_FAULT_LOG = LogLimiter(burst=3, window_s=60.0, what="server faults (with tracebacks)")


def report(outcome: Outcome, exc: BaseException | None, where: str) -> None:
    """Count and (rate-limited) log one failed request; ``where``: e.g. 'POST /v2/models/m/infer'."""
    status = str(outcome.http_status)
    if outcome.is_server_fault:
        SERVER_ERRORS.labels(status).inc()
        if SERVER_FAULT_LOG.allow(status):
            logger.error("%s -> %s: %s", where, status, _clip(outcome.message, MAX_LOGGED_CHARS), exc_info=exc)
        return
    (SERVER_ERRORS if outcome.http_status >= 500 else CLIENT_ERRORS).labels(status).inc()
    if REQUEST_ERROR_LOG.allow(status):
        logger.warning("%s -> %s: %s", where, status, _clip(outcome.message, MAX_LOGGED_CHARS))


def error_body(outcome: Outcome) -> bytes:
    """The Open Inference Protocol's error object, ``{"error": message}``."""
    return orjson.dumps({"error": outcome.message})


class LimitRepeatedRecords(logging.Filter):
    """A logging filter for other libraries' per-request lines (e.g. uvicorn's "Invalid HTTP request
    received."): they go through :data:`REQUEST_ERROR_LOG` under the message as key."""

    def __init__(self, messages: tuple[str, ...]):
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message not in self.messages:
            return True
        return REQUEST_ERROR_LOG.allow(message)


# ---------------------------------------------------------------------- kserve's own routes and gRPC


async def rest_exception_handler(request, exc):
    """For kserve's FastAPI routes (everything the fast path passes on): the same answers and logs."""
    outcome = classify(exc)
    report(outcome, exc, f"{request.method} {request.scope.get('path', '')}")
    return Response(error_body(outcome), status_code=outcome.http_status, media_type="application/json")


def rest_exception_types() -> tuple:
    """What :func:`rest_exception_handler` replaces kserve's (and FastAPI's default) handlers for."""
    return (InvalidInput, RequestValidationError, HTTPException, InferenceError, ModelNotFound, ModelNotReady,
            NotImplementedError, UnsupportedProtocol, ServerNotLive, ServerNotReady, Exception)


def grpc_exception_interceptor():
    """kserve's gRPC exception interceptor with this policy (one line per client error, no traceback)."""
    from grpc_interceptor.exceptions import GrpcException
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor

    class PolicyExceptionToStatusInterceptor(ExceptionToStatusInterceptor):
        async def handle_exception(self, ex, request_or_iterator, context, method_name):
            if isinstance(ex, GrpcException):  # already a status (grpc_interceptor's own)
                return await super().handle_exception(ex, request_or_iterator, context, method_name)
            outcome = classify(ex)
            report(outcome, ex, f"gRPC {method_name}")
            await context.abort(outcome.grpc_code, outcome.message)

    return PolicyExceptionToStatusInterceptor
