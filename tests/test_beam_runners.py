"""Transform on Beam runners other than the in-process default, against the default's output.

* Beam's portable runner: the pipeline goes as a Runner API proto over gRPC to a job server
  (Beam's Python ``local_job_service_main``), whose workers are SDK harnesses started by a separate
  worker pool process (``worker_pool_main``, ``--environment_type=EXTERNAL``): the same job API and
  Fn API that Flink's and Spark's job servers use with an EXTERNAL worker pool on a cluster.
* The FnApiRunner in ``multi_processing`` mode with two SDK worker processes.

Both on one machine: neither is a cluster. Both must give the same analyzer outputs (vocabulary
files, means/variances: the same transformed values) and the same transformed examples (as a
multiset per split: a distributed runner may write them in another order). Beam's DaskRunner is
refused with the reason (docs/components.md, Beyond one machine).
"""

import os
import socket
import subprocess
import sys
import time

import pytest

from kubetfx.components.common import layout
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.transform import executor

from helpers.pipeline_cache import penguin_pipeline
from helpers.transform_outputs import assert_same_graph as _assert_same_graph
from helpers.transform_outputs import example_multisets as _example_multisets


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The penguins through Transform on the default runner (FnApiRunner, in process)."""
    return penguin_pipeline(tmp_path_factory)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{open(log).read()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{process.args} does not listen on port {port} after {timeout:.0f} s")


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    """A Beam job server and an SDK worker pool, each its own process, on free localhost ports."""
    logs = tmp_path_factory.mktemp("beam-services")
    # The worker pool starts SDK harnesses with `python` from PATH: this environment's.
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    job_port, pool_port = _free_port(), _free_port()
    commands = {"job_server": ["-m", "apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"],
                "worker_pool": ["-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"]}
    processes = []
    try:
        for (name, command), port in zip(commands.items(), (job_port, pool_port)):
            log = str(logs / f"{name}.log")
            with open(log, "w") as handle:
                process = subprocess.Popen([sys.executable, *command], stdout=handle, stderr=subprocess.STDOUT, env=env)
            processes.append(process)
            _wait_for_port(port, process, log)
        yield ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
               f"--environment_config=localhost:{pool_port}"]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _run(reference: dict, root, beam_args: list[str], materialize: bool) -> dict:
    graph, transformed = str(root / "transform_graph"), str(root / "transformed_examples")
    metadata = executor.run(reference["examples"], reference["schema"], graph, transformed, label_column="species",
                            beam_pipeline_args=beam_args, materialize=materialize)
    assert metadata["beam_pipeline_args"] == beam_args
    return {"graph": graph, "transformed": transformed, "metadata": metadata}


def test_portable_runner_with_external_workers_matches_the_default(reference, portable_services, tmp_path):
    run = _run(reference, tmp_path / "materialized", portable_services, materialize=True)
    _assert_same_graph(run["graph"], run["metadata"], reference)
    ours, theirs = _example_multisets(run["transformed"]), _example_multisets(reference["transformed"])
    assert sorted(ours) == ["Split-eval", "Split-train"]
    assert ours == theirs

    analyzed = _run(reference, tmp_path / "analyzed", portable_services, materialize=False)
    _assert_same_graph(analyzed["graph"], analyzed["metadata"], reference)
    assert os.listdir(analyzed["transformed"]) == [layout.NOT_MATERIALIZED_FILE]


def test_multi_process_fn_api_runner_matches_the_default(reference, tmp_path):
    args = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    run = _run(reference, tmp_path, args, materialize=True)
    _assert_same_graph(run["graph"], run["metadata"], reference)
    assert _example_multisets(run["transformed"]) == _example_multisets(reference["transformed"])


@pytest.mark.parametrize("runner", ["DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"])
def test_dask_runner_is_refused_with_the_reason(runner):
    with pytest.raises(ConfigError, match="computes only the last branch"):
        executor.parse_beam_args([f"--runner={runner}", "--dask_client_address=tcp://localhost:8786"])
    with pytest.raises(ConfigError, match="DaskRunner"):
        executor.parse_beam_args(["--runner", runner])
