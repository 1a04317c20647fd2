"""Start ``kserve.ModelServer`` with the kubetfx predictor: quiet logs, the REST front door, one error policy.

The changes to kserve itself (quiet logs, the REST front door, the error policy) are in
``kserve_changes.py``: every ``--workers`` child makes them again when it unpickles the model.
The event loop is uvloop when installed (kserve's own single-process server runs in
``asyncio.run``'s default loop otherwise).

:func:`build` is everything up to serving (model loaded, ``kserve.ModelServer`` made and patched);
:func:`serve` (the CLI, the ServingRuntime) and :class:`ServerThread` (InfraValidator's in-process
launch: the same server on a background thread, stopped on request) both start from it.
"""

from __future__ import annotations

import logging
import threading
import warnings

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.predictor.kserve_changes import install_kserve_changes, quiet_logs
from kubetfx.components.predictor.model import KubetfxPredictor, ServingOptions
from kubetfx.components.predictor.repository_watch import ModelSource

logger = logging.getLogger("kubetfx.predictor")

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
    install_kserve_changes(options.max_request_bytes, (KubetfxPredictor,))
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
