"""Exactness of warm processes that run several TensorFlow tasks in turn: the penguin pipeline run
with them (all five TensorFlow tasks in one process, the six light ones in another) and with every
task in a fresh process of its own (kfp.local's own way) writes the same examples, statistics,
schema, anomalies, vocabularies, analyzer values, model weights, evaluation metrics and predictions."""

import glob
import json
import os

import numpy as np
import pytest

from kubetfx.components.common import layout
from kubetfx.pipelines import registry
from kubetfx.pipelines.local import runner as local_runner
from kubetfx.pipelines.local import warm_tasks

VOCABULARIES = ("label_vocabulary", "vocab_island", "vocab_sex")


def _run_penguin(root: str, monkeypatch, warm: bool) -> tuple[str, list[tuple[str, bool]]]:
    """(the run directory, (task, reused a process) per warm task) of one local penguin run."""
    monkeypatch.setenv("KUBETFX_WARM_TASKS", "1" if warm else "0")
    started = []
    original_start = warm_tasks.start

    def recording_start(full_command, env_vars=None):
        task = original_start(full_command, env_vars)
        if task.warm:
            started.append((warm_tasks.function_of(full_command), task.reused))
        return task

    monkeypatch.setattr(warm_tasks, "start", recording_start)
    assert local_runner.run(registry.PIPELINES["penguin"], root=root) == local_runner.EXIT_PUSHED
    (run_dir,) = glob.glob(os.path.join(root, "pipeline-root", "*", ""))
    return run_dir, started


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _metrics(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "evaluator", "executor_output.json")) as handle:
        return json.load(handle)["artifacts"]["metrics"]["artifacts"][0]["metadata"]


@pytest.fixture(scope="module")
def penguin_runs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        shared, started = _run_penguin(str(tmp_path_factory.mktemp("shared")), monkeypatch, warm=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fresh, _ = _run_penguin(str(tmp_path_factory.mktemp("fresh")), monkeypatch, warm=False)
    return shared, fresh, started


def test_tensorflow_tasks_share_warm_processes(penguin_runs):
    _, _, started = penguin_runs
    # Small input: one process, TensorFlow imported once for all five; the light tasks share another.
    tensorflow = [(task, reused) for task, reused in started if task in warm_tasks.TENSORFLOW_TASKS]
    assert tensorflow[0] == ("transform", False), started
    assert sorted(task for task, reused in tensorflow if reused) == [
        "bulk_inferrer", "evaluator", "infra_validator", "trainer"], started
    light = [(task, reused) for task, reused in started if task in warm_tasks.LIGHT_TASKS]
    assert light[0] == ("example_gen", False) and len(light) == 6 and all(reused for _, reused in light[1:]), started


def test_the_data_artifacts_are_the_same(penguin_runs):
    shared, fresh, _ = penguin_runs
    paths = [os.path.relpath(path, shared) for task in ("example-gen", "statistics-gen", "schema-gen", "example-validator")
             for path in glob.glob(os.path.join(shared, task, "*", "**", "*"), recursive=True)
             if os.path.isfile(path) and os.path.basename(path) != "report"]
    assert len(paths) >= 7, paths  # examples, statistics and anomalies per split, the schema
    for path in paths:
        assert _read(os.path.join(shared, path)) == _read(os.path.join(fresh, path)), path


def test_the_transform_graph_is_the_same(penguin_runs):
    from kubetfx.components.transform import analyzer_constants

    shared, fresh, _ = penguin_runs
    graph = os.path.join("transform", "transform_graph")
    for name in VOCABULARIES:
        path = os.path.join(graph, "transform_fn", "assets", name)
        assert _read(os.path.join(shared, path)) == _read(os.path.join(fresh, path)), name
    constants = [analyzer_constants.read(os.path.join(run, graph, "transform_fn")) for run in (shared, fresh)]
    assert constants[0] and sorted(constants[0]) == sorted(constants[1])
    for name, value in constants[0].items():
        assert np.array_equal(value, constants[1][name]), name
    for path in ("transformed_metadata/schema.pbtxt", "transform_fn/variables/variables.data-00000-of-00001"):
        assert _read(os.path.join(shared, graph, path)) == _read(os.path.join(fresh, graph, path)), path


def test_the_model_metrics_and_predictions_are_the_same(penguin_runs):
    shared, fresh, _ = penguin_runs
    weights = os.path.join("trainer", "model", layout.SERVING_MODEL_DIR, "variables", "variables.data-00000-of-00001")
    assert _read(os.path.join(shared, weights)) == _read(os.path.join(fresh, weights))
    assert _metrics(shared) == _metrics(fresh)  # bitwise: the Trainer's op determinism does not stay behind
    predictions = os.path.join("bulk-inferrer", "inference_result", "predictions.parquet")
    assert _read(os.path.join(shared, predictions)) == _read(os.path.join(fresh, predictions))
