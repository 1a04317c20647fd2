"""The embedded default runs what the DAG allows side by side, and TensorFlow tasks start warm.

Real kfp.local runs (SubprocessRunner, a process per task) of small pipelines whose tasks
record when they ran, in which process and whether TensorFlow was already imported.
"""

import json
import os
import types

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Output

from kubetfx.pipelines.local import runner as local_runner


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def example_gen(marker: Output[Artifact]):
    with open(marker.path, "w") as handle:
        handle.write("ok")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def evaluator(seconds: float, record: Output[Artifact]):
    import json
    import os
    import sys
    import time

    started = time.time()
    time.sleep(seconds)
    with open(record.path, "w") as handle:
        json.dump({"start": started, "end": time.time(), "pid": os.getpid(), "kfp_runtime": os.environ.get("_KFP_RUNTIME"),
                   "tensorflow_imported": "tensorflow" in sys.modules}, handle)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def infra_validator(seconds: float, fail: bool, record: Output[Artifact]):
    import json
    import os
    import sys
    import time

    started = time.time()
    time.sleep(seconds)
    if fail:
        raise SystemExit("kubetfx: infra_validator: the candidate did not answer (a planted failure)")
    with open(record.path, "w") as handle:
        json.dump({"start": started, "end": time.time(), "pid": os.getpid(), "kfp_runtime": os.environ.get("_KFP_RUNTIME"),
                   "tensorflow_imported": "tensorflow" in sys.modules}, handle)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def pusher(evaluation: dsl.Input[Artifact], infra: dsl.Input[Artifact], marker: Output[Artifact]):
    with open(marker.path, "w") as handle:
        handle.write("pushed")


def _entry(fail: bool = False):
    @dsl.pipeline(name="side-by-side")
    def pipeline(seconds: float = 2.0):
        first = example_gen()
        evaluation = evaluator(seconds=seconds).after(first)
        infra = infra_validator(seconds=seconds, fail=fail).after(first)
        pusher(evaluation=evaluation.outputs["record"], infra=infra.outputs["record"])

    return types.SimpleNamespace(name="side-by-side", make=lambda: pipeline, local_arguments=lambda root: {})


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def transform(record: Output[Artifact]):
    import json
    import os
    import sys

    os.environ["LEFT_BEHIND_BY_TRANSFORM"] = "1"  # the next task in this process must not see it
    with open(record.path, "w") as handle:
        json.dump({"pid": os.getpid(), "path": sys.path[:3]}, handle)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def trainer(after: dsl.Input[Artifact], record: Output[Artifact]):
    import json
    import os
    import sys

    with open(record.path, "w") as handle:
        json.dump({"pid": os.getpid(), "path": sys.path[:3], "left_behind": os.environ.get("LEFT_BEHIND_BY_TRANSFORM"),
                   "kfp_runtime": os.environ.get("_KFP_RUNTIME")}, handle)


def _sequence_entry():
    @dsl.pipeline(name="one-after-another")
    def pipeline(unused: int = 0):  # a pipeline without parameters has no inputs spec at all
        first = transform()
        trainer(after=first.outputs["record"])

    return types.SimpleNamespace(name="one-after-another", make=lambda: pipeline, local_arguments=lambda root: {})


def _records(root, task: str) -> dict:
    runs = sorted(os.listdir(root / "pipeline-root"))
    with open(root / "pipeline-root" / runs[-1] / task / "record") as handle:
        return json.load(handle)


@pytest.fixture(autouse=True)
def _no_warm_by_default(monkeypatch):
    monkeypatch.setenv("KUBETFX_WARM_TASKS", "0")


def test_independent_tasks_run_side_by_side(tmp_path):
    assert local_runner.run(_entry(), root=str(tmp_path), parallelism=2) == local_runner.EXIT_NOT_PUSHED
    evaluation, infra = _records(tmp_path, "evaluator"), _records(tmp_path, "infra-validator")
    assert evaluation["start"] < infra["end"] and infra["start"] < evaluation["end"], (evaluation, infra)
    assert (tmp_path / "pipeline-root").exists()


def test_parallelism_1_runs_one_task_at_a_time(tmp_path):
    local_runner.run(_entry(), root=str(tmp_path), parallelism=1)
    evaluation, infra = _records(tmp_path, "evaluator"), _records(tmp_path, "infra-validator")
    assert evaluation["end"] <= infra["start"] or infra["end"] <= evaluation["start"], (evaluation, infra)


def test_a_failing_task_fails_the_run_with_its_own_error_line(tmp_path, capsys):
    code = local_runner.run(_entry(fail=True), root=str(tmp_path), parallelism=2)
    err = capsys.readouterr().err
    assert code == local_runner.EXIT_FAILED
    assert err.startswith("kubetfx: infra-validator failed: infra_validator: the candidate did not answer (a planted "
                          "failure)"), err
    runs = sorted(os.listdir(tmp_path / "pipeline-root"))
    assert not (tmp_path / "pipeline-root" / runs[-1] / "pusher").exists()  # downstream of the failure: not run
    assert _records(tmp_path, "evaluator")["end"] > 0  # the task beside it finished


def test_tensorflow_tasks_start_in_a_process_that_imported_it_ahead(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBETFX_WARM_TASKS", "1")
    local_runner.run(_entry(), root=str(tmp_path / "warm"), parallelism=2)
    # The pool starts its processes one at a time: side by side at the start, one of the two may start cold.
    records = [_records(tmp_path / "warm", task) for task in ("evaluator", "infra-validator")]
    warm = [record for record in records if record["tensorflow_imported"]]
    assert warm and all(record["kfp_runtime"] == "true" and record["pid"] != os.getpid() for record in warm)

    monkeypatch.setenv("KUBETFX_WARM_TASKS", "0")
    local_runner.run(_entry(), root=str(tmp_path / "cold"), parallelism=2)
    assert not any(_records(tmp_path / "cold", task)["tensorflow_imported"] for task in ("evaluator", "infra-validator"))


def test_tensorflow_tasks_one_after_another_share_a_warm_process(tmp_path, monkeypatch):
    """A warm process that finished its task serves the next TensorFlow task (TensorFlow imported once),
    with the next task's own environment and module path."""
    monkeypatch.setenv("KUBETFX_WARM_TASKS", "1")
    local_runner.run(_sequence_entry(), root=str(tmp_path), parallelism=2)
    first, second = _records(tmp_path, "transform"), _records(tmp_path, "trainer")
    assert first["pid"] == second["pid"] != os.getpid()
    assert second["left_behind"] is None and second["kfp_runtime"] == "true"
    assert first["path"][0] != second["path"][0]  # each task's own component directory first, not both


def test_only_kfp_lightweight_commands_start_warm():
    from kubetfx.pipelines.local import warm_tasks

    script = 'program_path=$(mktemp -d)\nprintf "%s" "$0" > "$program_path/ephemeral_component.py"\n' \
             '_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main --component_module_path ' \
             '"$program_path/ephemeral_component.py" "$@"\n'
    command = ["sh", "-ec", script, "def trainer(): ...", "--executor_input", "{}", "--function_to_execute", "trainer"]
    assert warm_tasks._warm_command(command) == ("def trainer(): ...", command[4:])
    assert warm_tasks.function_of(command) == "trainer"
    assert warm_tasks._warm_command(["sh", "-ec", "pip install x && " + script, "src"]) is None
    assert warm_tasks._warm_command(["python3", "-m", "kfp.dsl.executor_main"]) is None


def test_the_pool_never_warms_more_than_the_tensorflow_tasks_to_come():
    import collections

    from kubetfx.pipelines.local import warm_tasks

    pool = warm_tasks.WarmPool(collections.Counter(["example_gen", "trainer"]), size=2)
    try:
        assert len(pool._idle) == 1
        env = dict(os.environ)
        assert pool.take("example_gen", env) is None
        process, reused = pool.take("trainer", env)
        assert not reused and len(pool._idle) == 0
        process.stdin.close()  # no task: it exits
        assert process.wait(timeout=60) == 0
        assert pool.take("trainer", env) is None  # more than expected: cold
    finally:
        pool.close()


def test_a_full_busy_pool_makes_the_next_tensorflow_task_wait_for_a_process_to_come_back():
    import collections
    import threading

    from kubetfx.pipelines.local import warm_tasks

    pool = warm_tasks.WarmPool(collections.Counter(["evaluator", "infra_validator"]), size=1)
    try:
        env = dict(os.environ)
        first, reused = pool.take("evaluator", env)
        assert not reused
        taken = []
        waiting = threading.Thread(target=lambda: taken.append(pool.take("infra_validator", env)))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and not taken  # no second import: it waits for the busy process
        pool.release(first, "evaluator")  # the evaluator's task ended
        waiting.join(timeout=10)
        assert taken == [(first, True)] and pool.processes_started == 1
    finally:
        pool.close()
        first.kill()
        first.wait()


def test_small_input_gets_one_warm_process():
    from kubetfx.pipelines.local import warm_tasks

    assert warm_tasks.pool_size(4, 20_000) == 1
    assert warm_tasks.pool_size(4, warm_tasks.SMALL_INPUT_BYTES) == 2
    assert warm_tasks.pool_size(4, None) == 2 and warm_tasks.pool_size(1, None) == 1


def test_the_pool_starts_one_process_at_a_time():
    """The second process starts only once the first has imported TensorFlow (they would share the CPUs)."""
    import collections
    import time

    from kubetfx.pipelines.local import warm_tasks

    pool = warm_tasks.WarmPool(collections.Counter(["transform", "trainer", "evaluator"]), size=2)
    try:
        assert pool.processes_started == 1
        deadline = time.time() + 120
        while pool.processes_started < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert pool.processes_started == 2 and len(pool._idle) == 2
    finally:
        pool.close()
