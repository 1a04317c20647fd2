"""The built-in Trainer with MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 vs one process.

Both workers run the Trainer executor on the same (shared) transformed penguins with the same seed
and hyperparameters as the single-process model of the session cache, ``TF_CONFIG`` naming the two
workers; worker 0 (the chief) writes the model. The workers' TensorFlow gRPC servers listen on
every interface of their network namespace: the test gives them one of their own that has only
loopback (``unshare --net``, as root), so nothing listens on or leaves the machine's network.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.trainer import distributed

WORKERS = 2
HYPERPARAMETERS = {"epochs": 30}  # what the session cache's penguin_model trained with (seed 42)

_WORKER = """
import json, sys
import keras
keras.config.disable_traceback_filtering()  # a failing worker shows where in Keras
from kubetfx.components.trainer import executor
result = executor.run(**json.loads(sys.argv[1]))
print("RESULT " + json.dumps({"metrics": result["metrics"], "cluster": result.get("cluster"),
                              "strategy": result.get("distribution_strategy"), "seed": result.get("seed")}))
"""

# Runs inside the new network namespace: loopback up, then the workers, each with its TF_CONFIG.
_LAUNCHER = """
import json, os, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
arguments, code, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
addresses = [f"127.0.0.1:{23456 + i}" for i in range(workers)]
processes = []
for index in range(workers):
    config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    env = {**os.environ, "TF_CONFIG": json.dumps(config)}
    processes.append(subprocess.Popen([sys.executable, "-c", code, arguments], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
failed = 0
for index, process in enumerate(processes):
    output, _ = process.communicate(timeout=600)
    print(f"=== worker {index} exit {process.returncode}")
    print(output if process.returncode else "\\n".join(l for l in output.splitlines() if l.startswith("RESULT")))
    failed |= process.returncode != 0
sys.exit(1 if failed else 0)
"""


def _can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None


@pytest.mark.skipif(not _can_unshare(), reason="needs root with unshare and ip (a private network namespace)")
def test_two_workers_train_like_one_process(penguin_pipeline_artifacts, penguin_model, tmp_path):
    pipeline = penguin_pipeline_artifacts
    arguments = {"examples_dir": pipeline["transformed"], "transform_graph_dir": pipeline["transform_graph"],
                 "schema_path": pipeline["schema"], "model_dir": str(tmp_path / "model"),
                 "model_run_dir": str(tmp_path / "model_run"), "metrics_path": str(tmp_path / "metrics.json"),
                 "hyperparameters": HYPERPARAMETERS, "seed": 42}
    done = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", _LAUNCHER, json.dumps(arguments),
                           _WORKER, str(WORKERS)], capture_output=True, text=True, timeout=900)
    log = tmp_path.parent / f"{tmp_path.name}-workers.log"
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"a worker failed (whole output: {log}): {(done.stdout + done.stderr)[-3000:]}"
    results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == WORKERS, done.stdout[-3000:]
    assert [r["cluster"] for r in results] == [{"workers": WORKERS, "task_type": "worker", "task_index": i}
                                               for i in range(WORKERS)]

    # Only the chief wrote the artifacts; they record the strategy, the workers and the seed.
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", "model", "model_run"]
    info = json.load(open(tmp_path / "model" / "kubetfx_model.json"))
    assert info["distribution_strategy"] == "MultiWorkerMirroredStrategy"
    assert info["cluster"] == {"workers": WORKERS, "task_type": "worker", "task_index": 0}
    assert info["seed"] == 42 and info["hyperparameters"]["epochs"] == HYPERPARAMETERS["epochs"]
    assert os.path.isfile(tmp_path / "model" / "Format-Serving" / "saved_model.pb")

    single = penguin_model["result"]["metrics"]
    assert penguin_model["result"]["distribution_strategy"] == "default"
    for result in results:  # every worker holds the same (all-reduced) model
        metrics = result["metrics"]
        assert metrics["eval_accuracy"] == pytest.approx(single["eval_accuracy"], abs=0.03), metrics
        assert metrics["train_accuracy"] == pytest.approx(single["train_accuracy"], abs=0.03), metrics
        assert metrics["eval_loss"] == pytest.approx(single["eval_loss"], abs=0.05), metrics
    assert json.load(open(tmp_path / "metrics.json")) == results[0]["metrics"]


@pytest.mark.parametrize("value, message", [
    ("{not json", "TF_CONFIG: not JSON"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG: task.index: expected 0..1 for the 2 worker address(es), got 2"),
    ('{"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.ps: parameter servers are not supported"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
     'TF_CONFIG: cluster.worker: expected a list of "host:port" strings'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}',
     "TF_CONFIG: task.type: 'chief' is not a task type of the cluster (worker)"),
])
def test_bad_tf_config_names_the_field(value, message):
    with pytest.raises(ConfigError) as error:
        distributed.cluster({"TF_CONFIG": value})
    assert str(error.value).startswith(message)


def test_one_worker_or_none_is_single_process_training():
    assert distributed.cluster({}) is None
    assert distributed.cluster({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"index": 0, '
                                             '"type": "worker"}}'}) is None
    found = distributed.cluster({"TF_CONFIG": '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, '
                                              '"task": {"type": "worker", "index": 0}}'})
    assert (found.workers, found.is_chief, found.has_chief) == (2, False, True)
