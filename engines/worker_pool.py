"""Beam's SDK worker pool (``--environment_type=EXTERNAL``) for several TaskManagers or executors on one machine.

Beam's own ``apache_beam.runners.worker.worker_pool_main`` is meant as one pool per TaskManager (a
sidecar): it listens on every interface ([::]), keys its workers by worker id alone, and on
``StopWorker`` kills the process of that id. Worker ids are unique only within one TaskManager
("1-1" in each), so with two TaskManagers sharing one pool, one TaskManager's ``StopWorker`` killed
the other's worker mid-job (seen on Flink: ``CANCELLED: client cancelled``). Here:

* the pool listens on 127.0.0.1 only;
* ``StopWorker`` kills nothing: a worker ends by itself when its runner closes the control stream
  ("No more requests from control plane"); the pool only reaps workers that ended;
* workers run with this interpreter (not whatever ``python`` is on PATH), with Beam boot's default
  state cache, and log to this process's stderr.

Usage: ``python engines/worker_pool.py --port 50000``; stops on SIGTERM, with any worker still running.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time

_HARNESS = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="
            "'%(asctime)s worker {id} %(levelname)s %(name)s: %(message)s'); "
            "from apache_beam.runners.worker.sdk_worker import SdkHarness; "
            "SdkHarness({control!r}, worker_id={id!r}, state_cache_size={cache}).run()")
# Beam's Python boot gives each worker a 100 MB state cache (--max_cache_memory_usage_mb); so do we.
STATE_CACHE_BYTES = 100 * 1024 * 1024


def _servicer(workers: list[subprocess.Popen], lock: threading.Lock):
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc

    class Pool(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
        def StartWorker(self, request, context):  # noqa: N802 - the gRPC method's name
            code = _HARNESS.format(control=request.control_endpoint.url, id=request.worker_id,
                                   cache=STATE_CACHE_BYTES)
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')},{int(time.time() * 1000) % 1000:03d} worker_pool: starting "
                  f"worker {request.worker_id} for {request.control_endpoint.url}", flush=True)
            try:
                process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
            except OSError as err:
                return beam_fn_api_pb2.StartWorkerResponse(error=f"cannot start an SDK worker: {err}")
            with lock:
                workers[:] = [w for w in workers if w.poll() is None] + [process]
            return beam_fn_api_pb2.StartWorkerResponse()

        def StopWorker(self, request, context):  # noqa: N802
            with lock:
                workers[:] = [w for w in workers if w.poll() is None]
            return beam_fn_api_pb2.StopWorkerResponse()

    return Pool()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    args = parser.parse_args(argv)

    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.utils import thread_pool_executor

    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)])
    if not server.add_insecure_port(f"127.0.0.1:{args.port}"):
        print(f"worker_pool: --port {args.port}: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 2
    workers: list[subprocess.Popen] = []
    lock = threading.Lock()
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(_servicer(workers, lock), server)
    server.start()
    print(f"worker_pool: listening on 127.0.0.1:{args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(5).wait()
    with lock:
        running = [w for w in workers if w.poll() is None]
    for worker in running:
        worker.terminate()
    deadline = time.monotonic() + 10  # for all of them together
    for worker in running:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
