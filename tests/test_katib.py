"""The built-in search compiled for Katib: a valid Experiment (Katib 0.19.0's CRD, API types and webhook rules),
trials on the GPU pool, and the trial command it runs, run here."""

import copy
import gzip
import hashlib
import os
import subprocess
import sys

import pytest
import yaml

from helpers import katib as katib_checks
from k8s_validation import CrdValidator

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.tuner import katib_run

KATIB_CONFIG = """
kfp: {service_account: kubetfx-pipeline-runner}
tuner: {backend: katib, workspace_pvc: kubetfx-tuner-workspace, algorithm: tpe}
trainer_gpu:
  count: 1
  node_selector: {nvidia.com/gpu.present: "true"}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
resources:
  trainer: {cpu_request: "2", memory_limit: 8Gi}
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("katib")
    (directory / "katib.yaml").write_text(KATIB_CONFIG)
    output = str(directory / "penguin.yaml")
    result = subprocess.run([sys.executable, "-m", "kubetfx.pipelines", "compile", "penguin", "--config",
                             str(directory / "katib.yaml"), "--output", output], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with open(output, encoding="utf-8") as handle:
        documents = list(yaml.safe_load_all(handle))
    spec = documents[0]
    template = spec["root"]["dag"]["tasks"]["tuner"]["inputs"]["parameters"]["katib_experiment"]["runtimeValue"][
        "constant"]
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return {"template": template, "platform": platform, "spec": spec}


def _filled(template: dict) -> dict:
    return katib_run.fill(template["experiment"], "kubetfx-penguin-0a1b2c3d", "kubetfx",
                          "/mnt/tuner-workspace/kubetfx-penguin-0a1b2c3d", max_trials=12, parallel_trials=2, seed=42)


def test_the_vendored_katib_files_are_katibs_own():
    expected = {"katib/experiment.yaml": "c7f8a989368dcc87bcbb2739efa3b3e6f78d31f156857e0284e56c8bd6bf98db",
                "katib/trial.yaml": "207d14cdfad2921ccebf4aba97c1e55bd238dd2a16e4e7f49cedcba046b6c3cf",
                "katib-api/swagger.json": "fe7228f8735d8e024ee99a1080ca9851b0a8e34c7b49f402e4cb54bfbe13f45a",
                "katib-api/katib-config.yaml": "6ad48c84fa99856355efb09cfd3af9c88627b90005a760b8eb5725609149a33b"}
    root = os.path.join(os.path.dirname(__file__), "schemas")
    for name, digest in expected.items():
        with gzip.open(os.path.join(root, name + ".gz"), "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == digest, name


def test_the_compiled_experiment_is_valid_for_katib(compiled):
    experiment = _filled(compiled["template"])
    assert CrdValidator(katib_checks.CRD_DIR).problems(experiment) == []
    assert katib_checks.api_problems(experiment) == []
    assert katib_checks.webhook_problems(experiment) == []
    spec = experiment["spec"]
    assert spec["maxTrialCount"] == 12 and spec["parallelTrialCount"] == 2
    assert spec["algorithm"] == {"algorithmName": "tpe", "algorithmSettings": [{"name": "random_state",
                                                                                  "value": "42"}]}
    assert spec["earlyStopping"]["algorithmName"] == "medianstop"
    assert [p["name"] for p in spec["parameters"]] == ["width", "depth", "learning_rate", "dropout"]


def test_the_checks_catch_what_katib_would_refuse(compiled):
    good = _filled(compiled["template"])
    cases = [(lambda e: e["spec"].update(maxTrialCount=0), "must be greater than 0"),
             (lambda e: e["spec"]["algorithm"].update(algorithmName="annealing"), "algorithmName"),
             (lambda e: e["spec"]["parameters"][0].update(feasibleSpace={"max": "9"}), "min and max"),
             (lambda e: e["spec"]["trialTemplate"]["trialParameters"].pop(), "has no trialParameter"),
             (lambda e: e["metadata"].update(name="x" * 41), "at most 40 characters")]
    for change, words in cases:
        broken = copy.deepcopy(good)
        change(broken)
        assert any(words in problem for problem in katib_checks.webhook_problems(broken)), words
    broken = copy.deepcopy(good)
    broken["spec"]["objective"]["objectiveMetricNames"] = "objective"  # a misspelt field
    assert any("objectiveMetricNames" in p for p in katib_checks.api_problems(broken))
    broken = copy.deepcopy(good)
    broken["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    assert katib_checks.api_problems(broken)


def test_trials_go_on_the_gpu_pool_and_the_tuner_mounts_the_workspace(compiled):
    pod = compiled["template"]["experiment"]["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1" and "gpu" in container["image"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "kubetfx-tuner-workspace"
    assert pod["serviceAccountName"] == "kubetfx-pipeline-runner"
    mounts = compiled["platform"]["exec-tuner"]["pvcMount"]
    assert mounts[0]["mountPath"] == "/mnt/tuner-workspace"


def test_in_task_trials_are_the_default_and_katib_needs_a_workspace(tmp_path):
    from kubetfx.pipelines import config as pipeline_config

    assert pipeline_config.load_environment("dev").tuner.backend == "in-task"
    with pytest.raises(ConfigError, match="workspace_pvc: the katib backend needs"):
        pipeline_config.from_dict({"tuner": {"backend": "katib"}}, source="x.yaml")
    with pytest.raises(ConfigError, match="backend 'optuna': use one of in-task, katib"):
        pipeline_config.from_dict({"tuner": {"backend": "optuna"}}, source="x.yaml")


def test_the_trial_command_katib_runs_trains_and_reports_the_objective(compiled, tmp_path,
                                                                       penguin_pipeline_artifacts):
    """The trial's container command, with Katib's substitutions, on the inputs the Tuner copies."""
    workspace = str(tmp_path / "workspace")
    katib_run._copy_inputs({"examples_dir": penguin_pipeline_artifacts["transformed"],
                            "transform_graph_dir": penguin_pipeline_artifacts["transform_graph"],
                            "schema_path": penguin_pipeline_artifacts["schema"], "label_column": "species",
                            "seed": 3, "hyperparameters": {"epochs": 3}}, workspace)
    experiment = katib_run.fill(compiled["template"]["experiment"], "t", "", workspace, 4, 1, 3)
    command = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
        "command"]
    values = {"width": "24", "depth": "2", "learningRate": "0.02", "dropout": "0.1"}
    argv = [values.get(part[len("${trialParameters."):-1], part) if part.startswith("${") else part
            for part in command]
    assert argv[:3] == ["python", "-m", "kubetfx.components.tuner.trial"]
    result = subprocess.run([sys.executable] + argv[1:], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "objective=" in line]
    assert len(lines) == 4 and lines[0].startswith("epoch=1 objective=")  # one per epoch, then the result
    assert 0.0 < float(lines[-1].split("objective=")[1]) <= 1.0
    bad = subprocess.run([sys.executable, "-m", "kubetfx.components.tuner.trial", "--workspace", workspace,
                          "--width", "9999", "--depth", "2", "--learning_rate", "0.01", "--dropout", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip().endswith("trial: 'width' = 9999 is outside [8, 256]")


def test_katib_trials_are_read_back_into_the_trials_table():
    def trial(name, created, values, objective, condition):
        return {"metadata": {"name": name, "creationTimestamp": created},
                "spec": {"parameterAssignments": [{"name": k, "value": v} for k, v in values.items()]},
                "status": {"observation": {"metrics": [{"name": "objective", "latest": objective, "max": objective}]},
                           "conditions": [{"type": condition, "status": "True"}]}}

    values = {"width": "32", "depth": "2", "learning_rate": "0.01", "dropout": "0.1"}
    trials = katib_run.trials_from([trial("b", "2026-12-04T10:01:00Z", values, "0.9", "Succeeded"),
                                    trial("a", "2026-12-04T10:00:00Z", {**values, "width": "8"}, "0.5",
                                          "EarlyStopped")])
    assert [(t.values["width"], t.objective, t.state) for t in trials] == [(8, 0.5, "PRUNED"), (32, 0.9, "COMPLETE")]
