"""Tests on real Flink and Spark clusters (`make test-engines`): skipped by `make test`, which starts no engine.

`make test-engines` brings the engines up (engines/engines.sh up), runs these tests inside the engines'
network namespace and brings the engines down. Each test takes the ``beam_pipeline_args`` of a running
engine from engines/engines.sh's state (build/engines/<engine>/beam_args).
"""

import os
import socket

import pytest

from helpers.gates import skip_folder_unless

ENGINES_ENV = "KUBETFX_ENGINES"
STATE = os.environ.get("KUBETFX_ENGINES_STATE") or os.path.join(os.path.dirname(__file__), "..", "..", "build",
                                                                 "engines")
ENGINES = ("flink", "spark")


def pytest_collection_modifyitems(config, items):
    skip_folder_unless(items, ENGINES_ENV, "engines", "test-engines")


def engine_args(engine: str) -> list[str]:
    """The beam_pipeline_args that run on ``engine``; fails (not skips) when it is not up or not reachable."""
    path = os.path.join(STATE, engine, "beam_args")
    if not os.path.isfile(path):
        pytest.fail(f"{engine} is not up (no {path}): run `make test-engines`, or engines/engines.sh up {engine}")
    with open(path, encoding="utf-8") as handle:
        args = [line.strip() for line in handle if line.strip()]
    endpoint = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--job_endpoint="))
    host, port = endpoint.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(2)
        if sock.connect_ex((host, int(port))) != 0:
            pytest.fail(f"{engine}'s job server does not answer on {endpoint}: run the tests inside the engines' "
                        "network namespace (engines/engines.sh exec -- ...), as `make test-engines` does")
    return args


@pytest.fixture(scope="session", params=ENGINES)
def engine(request) -> tuple[str, list[str]]:
    """(name, beam_pipeline_args) of each engine in turn."""
    return request.param, engine_args(request.param)
