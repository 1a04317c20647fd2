"""Start ``kserve.ModelServer`` with the kubetfx predictor: quiet logs, the REST front door, one error policy.

kserve logs a line per request by default (latency line, access log, gRPC method line), which
costs ~30% throughput on a small model (FIELD-NOTES). :func:`quiet_logs` turns those off and keeps
start-up, reload and error messages. :func:`install_kserve_changes` puts the REST front door
(``rest_front.py``: body cap, JSON fast path) in front of kserve's app and makes kserve's REST
handlers and gRPC interceptor follow ``error_policy.py`` (client errors: one line, no traceback,
rate-limited). The event loop is uvloop when installed (kserve's own single-process server runs in
``asyncio.run``'s default loop otherwise).

:func:`build` is everything up to serving (model loaded, ``kserve.ModelServer`` made and patched);
:func:`serve` (the CLI, the ServingRuntime) and :class:`ServerThread` (InfraValidator's in-process
launch: the same server on a background thread, stopped on request) both start from it.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings

from kubetfx.components.common.errors import ConfigError

from kubetfx.components.predictor import error_policy
from kubetfx.components.predictor.model import KubetfxPredictor, ServingOptions
from kubetfx.components.predictor.repository_watch import ModelSource

logger = logging.getLogger("kubetfx.predictor")

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


def install_kserve_changes(max_request_bytes: int) -> None:
    """The REST front door and the error policy, in kserve's REST app and gRPC server. Idempotent.

    Runs in the parent before ``ModelServer.start`` and again in every ``--workers`` child (which
    re-imports kserve and builds its own app; see ``KubetfxPredictor.__setstate__``).
    """
    drop_kserve_timing_middleware()
    skip_idle_fastapi_telemetry()
    _install_rest_front_door(max_request_bytes)
    _install_grpc_error_policy(max_request_bytes)


def _install_rest_front_door(max_request_bytes: int) -> None:
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
            return RestFrontDoor(build_kserve_stack(), registry, max_request_bytes, (KubetfxPredictor,))

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


def use_uvloop() -> bool:
    try:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        # kserve's setup_event_loop() calls get_event_loop(), which uvloop's policy will not create.
        asyncio.set_event_loop(asyncio.new_event_loop())
        return True
    except ImportError:
        return False


def check_port_free(port: int, what: str) -> None:
    """ConfigError if ``port`` is taken (kserve binds REST on 0.0.0.0 and gRPC on [::])."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as err:
            raise ConfigError(f"{what} port {port} is not free ({err.strerror or err}); "
                              f"stop what listens there or pick another port") from None


def build(source: ModelSource, options: ServingOptions, *, http_port: int = 8080, grpc_port: int = 8081,
          workers: int = 1, enable_grpc: bool = True, grace_period_s: int = 30):
    """Everything :func:`serve` does before it serves: quiet logs, ports checked, the model loaded (errors
    propagate: no server without a model), ``kserve.ModelServer`` made, front door and error policy installed.

    Returns ``(kserve.ModelServer, KubetfxPredictor)``. Shared by the CLI (:func:`serve`, what the
    ServingRuntime runs) and InfraValidator's in-process launch (:class:`ServerThread`).
    """
    quiet_logs()
    warnings.filterwarnings("ignore", message=".*ORJSONResponse is deprecated.*")  # kserve's use, not ours
    check_port_free(http_port, "HTTP")
    if enable_grpc:
        check_port_free(grpc_port, "gRPC")
    model = KubetfxPredictor(source.model_name, source, options)
    logger.info("loading %s", source.describe())
    model.load()
    import kserve

    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=workers,
                                enable_grpc=enable_grpc, enable_latency_logging=False,
                                grace_period=grace_period_s)
    quiet_logs()  # kserve (re)configured logging in its constructor
    install_kserve_changes(options.max_request_bytes)
    return server, model


def _announce(source: ModelSource, options: ServingOptions, model, http_port: int, grpc_port: int, workers: int,
              enable_grpc: bool) -> None:
    logger.info("model '%s' version %s: REST on :%d (V1 /v1/models/%s:predict, V2 /v2/models/%s/infer)%s, "
                "%d worker(s), max batch %d, max batch wait %d us, max request %d bytes%s",
                source.model_name, model.version, http_port, source.model_name, source.model_name,
                f", gRPC V2 on :{grpc_port}" if enable_grpc else "", workers, options.max_batch_size,
                options.max_batch_wait_us, options.max_request_bytes,
                f", polling for new versions every {options.poll_interval_s:g} s" if source.watchable else "")


def serve(source: ModelSource, options: ServingOptions, *, http_port: int = 8080, grpc_port: int = 8081,
          workers: int = 1, enable_grpc: bool = True, grace_period_s: int = 30, uvloop: bool = True) -> None:
    """Load the model (failing fast if it cannot), then serve until SIGTERM/SIGINT."""
    server, model = build(source, options, http_port=http_port, grpc_port=grpc_port, workers=workers,
                          enable_grpc=enable_grpc, grace_period_s=grace_period_s)
    if uvloop and use_uvloop():
        logger.info("event loop: uvloop")
    _announce(source, options, model, http_port, grpc_port, workers, enable_grpc)
    server.start([model])


# ---------------------------------------------------------------------- in this process (InfraValidator)

# kserve's REST app is one module global (``kserve.model_server.app``): one in-process server at a time.
_IN_PROCESS = threading.Lock()


def fresh_kserve_app():
    """A new ``kserve.model_server.app``, made as kserve makes it (its module builds it once, at import).

    ``RESTServer.create_application`` adds routes and middleware to that one app, and Starlette refuses
    middleware on an app that has served; a process that starts a second server (InfraValidator's
    in-process launch, a test session) needs an app of its own each time.
    """
    import kserve.model_server
    from fastapi import FastAPI

    current = kserve.model_server.app
    kserve.model_server.app = FastAPI(title=current.title, version=current.version, docs_url=current.docs_url,
                                      redoc_url=current.redoc_url,
                                      default_response_class=current.router.default_response_class)
    return kserve.model_server.app


class ServerThread:
    """The predictor served from a background thread of this process: :func:`build` (the CLI's code path),
    then kserve's own ``ModelServer.start`` -- uvicorn, kserve's REST app, our front door -- on the thread's
    event loop. For InfraValidator, which then talks to it over real HTTP on loopback.

    Differences from the CLI, all about owning a process rather than serving: REST only (no gRPC
    listener), asyncio's default event loop (uvloop would be a process-wide policy), no signal
    handlers (the task's main thread owns signals). ``before``: called first on the thread (e.g. to
    wait for imports started earlier). Any failure -- a model that does not load, a taken port -- ends
    the thread with :attr:`error` set; :meth:`stop` ends a running server (uvicorn's graceful shutdown)
    and unloads the model. A load that hangs cannot be interrupted: the thread is a daemon and stops
    itself once the load returns.
    """

    def __init__(self, source: ModelSource, options: ServingOptions, *, http_port: int, grace_period_s: int = 5,
                 before=None):
        self.source = source
        self.options = options
        self.http_port = http_port
        self.grace_period_s = grace_period_s
        self.error: BaseException | None = None
        self.phases: dict[str, float] = {}  # seconds: waiting (before + lock), model load (build), ...
        self._before = before
        self._stop = threading.Event()
        self._kserve_server = None
        self._thread = threading.Thread(target=self._run, name="kubetfx-predictor-in-process", daemon=True)

    def start(self) -> "ServerThread":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        import asyncio
        import time

        started = time.perf_counter()
        model = setup_loop = None
        try:
            if self._before is not None:
                self._before()
            with _IN_PROCESS:
                self.phases["wait"] = time.perf_counter() - started
                if self._stop.is_set():
                    return
                fresh_kserve_app()
                built = time.perf_counter()
                server, model = build(self.source, self.options, http_port=self.http_port, grpc_port=0,
                                      enable_grpc=False, grace_period_s=self.grace_period_s)
                self.phases["build"] = time.perf_counter() - built
                if self._stop.is_set():
                    return
                _announce(self.source, self.options, model, self.http_port, 0, 1, False)
                server.register_signal_handler = lambda: None  # signals belong to the task's main thread
                setup_loop = asyncio.new_event_loop()  # ModelServer.setup_event_loop() asks for this thread's loop
                asyncio.set_event_loop(setup_loop)
                self._kserve_server = server
                server.start([model])  # asyncio.run(uvicorn's serve) until stop() sets should_exit
        except (Exception, SystemExit) as err:  # uvicorn exits (SystemExit) when it cannot bind
            self.error = err
            logger.error("kubetfx predictor: %s: %s", type(err).__name__, err)
        finally:
            if model is not None:
                model.stop()
            if setup_loop is not None:
                asyncio.set_event_loop(None)
                setup_loop.close()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop serving and unload the model; False when the thread is still busy after ``timeout_s`` (a hung
        load: it stops itself once the load returns)."""
        import time

        self._stop.set()
        deadline = time.monotonic() + timeout_s
        while self._thread.is_alive() and time.monotonic() < deadline:
            rest = getattr(self._kserve_server, "_rest_server", None)  # kserve stops it only on a signal
            uvicorn_server = getattr(rest, "_server", None)
            if uvicorn_server is not None:
                uvicorn_server.should_exit = True
            self._thread.join(0.02)
        return not self._thread.is_alive()
