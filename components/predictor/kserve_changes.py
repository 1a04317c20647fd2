"""What kubetfx changes in kserve's server: quiet logs, no timing middleware, the REST front door, one error policy.

kserve logs a line per request by default (latency line, access log, gRPC method line), which
costs ~30% throughput on a small model (FIELD-NOTES). :func:`quiet_logs` turns those off and keeps
start-up, reload and error messages. :func:`install_kserve_changes` puts the REST front door
(``rest_front.py``: body cap, JSON fast path) in front of kserve's app and makes kserve's REST
handlers and gRPC interceptor follow ``error_policy.py`` (client errors: one line, no traceback,
rate-limited). Both run in the parent (``server.py``) and again in every ``--workers`` child, which
re-imports kserve when it unpickles the model (``model.py``); both are idempotent.
"""

from __future__ import annotations

import logging
import sys

from kubetfx.components.predictor import error_policy

# uvicorn's one line per malformed HTTP request (no traceback), rate-limited like our client errors.
_UVICORN_PER_REQUEST = ("Invalid HTTP request received.",)


def quiet_logs() -> None:
    """No log line per request; our own logger to stderr at INFO. Idempotent (kserve workers re-run it)."""
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, error_policy.LimitRepeatedRecords) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(error_policy.LimitRepeatedRecords(_UVICORN_PER_REQUEST))
    ours = logging.getLogger("kubetfx.predictor")
    ours.setLevel(logging.INFO)
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d kubetfx.predictor %(levelname)s %(message)s"))
        ours.addHandler(handler)
        ours.propagate = False


def drop_kserve_timing_middleware() -> bool:
    """Leave kserve's ``TimingMiddleware`` out of the REST app (kserve 0.21 has no switch for it).

    It exists only to write a trace-log line per request (which :func:`quiet_logs` silences anyway),
    and it calls ``getrusage(RUSAGE_SELF)`` twice per request -- a syscall that walks every thread
    of the process (TF's pools, gRPC's): 27% of the event loop's time under load in a py-spy
    profile. Patches ``RESTServer._add_middlewares`` so the parent and every ``--workers`` child
    (which re-imports kserve and calls :func:`drop_kserve_timing_middleware` when it unpickles the
    model) build the app without it. Returns False if kserve's layout is not the expected one.
    """
    try:
        from kserve.protocol.rest import server as rest_server
    except ImportError:
        return False
    original = getattr(rest_server.RESTServer, "_add_middlewares", None)
    if original is None:
        return False
    if getattr(original, "_kubetfx_patched", False):
        return True

    def _add_middlewares(self, app):
        original(self, app)
        app.user_middleware[:] = [m for m in app.user_middleware
                                  if getattr(m.cls, "__name__", "") != "TimingMiddleware"]

    _add_middlewares._kubetfx_patched = True
    rest_server.RESTServer._add_middlewares = _add_middlewares
    return True


def install_kserve_changes(max_request_bytes: int, fast_path_types: tuple[type, ...]) -> None:
    """The REST front door and the error policy, in kserve's REST app and gRPC server. Idempotent.

    ``fast_path_types``: the model classes whose requests the front door decodes itself (``rest_front.py``).

    Runs in the parent before ``ModelServer.start`` and again in every ``--workers`` child (which
    re-imports kserve and builds its own app; see ``KubetfxPredictor.__setstate__``).
    """
    drop_kserve_timing_middleware()
    skip_idle_fastapi_telemetry()
    _install_rest_front_door(max_request_bytes, fast_path_types)
    _install_grpc_error_policy(max_request_bytes)


def _install_rest_front_door(max_request_bytes: int, fast_path_types: tuple[type, ...]) -> None:
    """Wrap ``RESTServer.create_application``: our exception handlers on kserve's, and the front door outside."""
    from kserve.protocol.rest import server as rest_server

    from kubetfx.components.predictor.rest_front import RestFrontDoor

    original = rest_server.RESTServer.create_application
    original = getattr(original, "_kubetfx_original", original)

    def create_application(self):
        original(self)
        from kserve.model_server import app

        for exception_type in error_policy.rest_exception_types():
            app.add_exception_handler(exception_type, error_policy.rest_exception_handler)
        build_kserve_stack = getattr(app.build_middleware_stack, "_kubetfx_original", app.build_middleware_stack)
        registry = self.dataplane.model_registry

        def build_middleware_stack():
            return RestFrontDoor(build_kserve_stack(), registry, max_request_bytes, fast_path_types)

        build_middleware_stack._kubetfx_original = build_kserve_stack
        app.build_middleware_stack = build_middleware_stack

    create_application._kubetfx_original = original
    rest_server.RESTServer.create_application = create_application


def _install_grpc_error_policy(max_request_bytes: int) -> None:
    """kserve's gRPC server with our exception interceptor, no per-call log line, our message size cap."""
    import kserve.model_server
    from grpc.aio import ServerInterceptor
    from kserve.protocol.grpc import server as grpc_server

    class NoPerCallLog(ServerInterceptor):  # instead of kserve's LoggingInterceptor ("grpc method: ..." per call)
        async def intercept_service(self, continuation, handler_call_details):
            return await continuation(handler_call_details)

    grpc_server.LoggingInterceptor = NoPerCallLog
    grpc_server.ExceptionToStatusInterceptor = error_policy.grpc_exception_interceptor()
    kserve.model_server.args.grpc_max_receive_message_length = int(max_request_bytes)


def skip_idle_fastapi_telemetry() -> list[str]:
    """Turn off FastAPI's OpenTelemetry signals that have no provider configured (what it checks per request).

    FastAPI 0.165 asks, on every request, whether an OpenTelemetry tracer/meter/logger provider is
    set (three ``os.environ`` misses, ~8% of the event loop under load). kserve configures none, so
    the answer is fixed at start-up: the signals without a provider now are switched off in the
    app's telemetry config; a provider set before start-up (e.g. by OTel auto-instrumentation)
    keeps its signal. Returns the signals switched off.
    """
    try:
        from fastapi.telemetry._asgi import _unconfigured
        from kserve.model_server import app
        from opentelemetry import metrics, trace
        from opentelemetry import _logs as logs
    except ImportError:
        return []
    config = getattr(app, "_telemetry", None)
    if not isinstance(config, dict):
        return []
    providers = {"tracing": ("tracer_provider", trace.get_tracer_provider),
                 "metrics": ("meter_provider", metrics.get_meter_provider),
                 "logs": ("logger_provider", logs.get_logger_provider)}
    off = []
    for signal_name, (key, current) in providers.items():
        if config.get(signal_name) and config.get(key) is None and _unconfigured(current()):
            config[signal_name] = False
            off.append(signal_name)
    return off
