"""The penguin pipeline: compiled KFP IR YAML and a real kfp.local run through the CLI."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from kfp import components as kfp_components

from kubetfx.pipelines.cli import main as cli
from kubetfx.pipelines.local import runner as local_runner

IMAGE = "registry.example.com/team/kubetfx:test"


CLUSTER_CONFIG = """
trainer_gpu:
  count: 2
  node_selector: {cloud.google.com/gke-nodepool: a100-pool}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
    - {key: dedicated, operator: Equal, value: ml, effect: NoExecute}
resources:
  trainer: {cpu_request: "4", memory_limit: 16Gi}
"""


def compile_pipeline(tmp_path, *extra, name="penguin"):
    """Compile in a fresh process, as `make compile` does (the image is read at import time)."""
    output = str(tmp_path / f"{name}.yaml")
    result = subprocess.run([sys.executable, "-m", "kubetfx.pipelines", "compile", name,
                             "--image", IMAGE, "--output", output, *extra], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"Compiled the {name} pipeline to {output}" in result.stdout
    with open(output) as handle:
        documents = list(yaml.safe_load_all(handle))  # pipeline spec, then the Kubernetes platform spec
    spec = documents[0]
    for extra in documents[1:]:
        spec.update(extra)
    return output, spec


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    directory = tmp_path_factory.mktemp("compiled")
    (directory / "cluster.yaml").write_text(CLUSTER_CONFIG)
    return compile_pipeline(directory, "--config", str(directory / "cluster.yaml"))


def trainer_settings(spec):
    container = spec["deploymentSpec"]["executors"]["exec-trainer"]["container"]
    platform = spec.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    return container.get("resources", {}), platform.get("exec-trainer", {})


def test_trainer_requests_gpus_on_the_gpu_pool(compiled):
    resources, kubernetes = trainer_settings(compiled[1])
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    assert resources["cpuRequest"] == 4.0 and resources["memoryLimit"] > 17
    assert kubernetes["nodeSelector"]["labels"] == {"cloud.google.com/gke-nodepool": "a100-pool"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in kubernetes["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"} in kubernetes["tolerations"]
    # Only the Trainer and the Tuner (its in-task trials) go to the GPU pool.
    executors = compiled[1]["deploymentSpec"]["executors"]
    assert sorted(name for name, e in executors.items() if "accelerator" in e["container"].get("resources", {})) \
        == ["exec-trainer", "exec-tuner"]


def test_cpu_only_compile(tmp_path):
    (tmp_path / "cluster.yaml").write_text(CLUSTER_CONFIG)
    _, spec = compile_pipeline(tmp_path, "--config", str(tmp_path / "cluster.yaml"), "--cpu-only")
    resources, kubernetes = trainer_settings(spec)
    assert "accelerator" not in resources and "nodeSelector" not in kubernetes


def test_default_compile_requests_no_gpu(tmp_path):
    """A cluster without GPUs must be able to schedule the default compile."""
    _, spec = compile_pipeline(tmp_path)
    resources, kubernetes = trainer_settings(spec)
    assert "accelerator" not in resources and "nodeSelector" not in kubernetes and "tolerations" not in kubernetes
    assert spec["deploymentSpec"]["executors"]["exec-trainer"]["container"]["image"] == IMAGE


def test_the_gpu_trainer_runs_the_cuda_image_and_the_rest_the_cpu_image(compiled):
    from kubetfx.components.common.image import component_image

    for name, executor in compiled[1]["deploymentSpec"]["executors"].items():
        expected = component_image(gpu=True) if name in ("exec-trainer", "exec-tuner") else IMAGE
        assert executor["container"]["image"] == expected, name
    assert component_image(gpu=True) != IMAGE


def test_tasks_that_read_the_outside_world_are_never_cached(compiled):
    """A scheduled run must see a new {SPAN}, the newest baseline and the repository as they are now."""
    uncached = {name for name, task in _all_tasks(compiled[1]).items()
                if task.get("cachingOptions", {}).get("enableCache") is not True}
    assert uncached == {"example-gen", "evaluator", "infra-validator", "pusher", "bulk-inferrer"}


def _all_tasks(spec) -> dict:
    """Every task of the DAG, including those inside condition sub-DAGs."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {name: task for name, task in tasks.items() if not name.startswith("condition-")}


def test_the_model_repository_is_mounted_where_it_is_read_and_written(tmp_path):
    _, spec = compile_pipeline(tmp_path, "--env", "dev")
    platform = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounted = {name for name, executor in platform.items() if executor.get("pvcMount")}
    assert mounted == {"exec-evaluator", "exec-pusher"}
    (mount,) = platform["exec-pusher"]["pvcMount"]
    assert mount["mountPath"] == "/mnt/model-repository" and mount["constant"] == "kubetfx-model-repository"
    _, prod = compile_pipeline(tmp_path, "--env", "prod")
    platform = prod["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {name for name, executor in platform.items() if executor.get("secretAsEnv")} == \
        {"exec-evaluator", "exec-pusher"}


def test_churn_pipeline_compiles(tmp_path):
    path, _ = compile_pipeline(tmp_path, "--cpu-only", name="churn")
    assert kfp_components.load_component_from_file(path).name == "kubetfx-churn"


@pytest.mark.parametrize("config, message", [
    ("trainer_gpu: {count: -1}", "trainer_gpu.count must be an integer >= 0"),
    ("trainer_gpu: {gpus: 1}", "unknown field"),
    ("resources: {trainer: {cpu_request: lots}}", "resources.trainer.cpu_request 'lots' is not a Kubernetes quantity"),
    ("trainer_gpu: {tolerations: [{operator: Maybe}]}", "operator must be Exists or Equal"),
])
def test_bad_config_is_a_clear_error(tmp_path, config, message):
    (tmp_path / "bad.yaml").write_text(config)
    result = subprocess.run([sys.executable, "-m", "kubetfx.pipelines", "compile", "penguin", "--config",
                             str(tmp_path / "bad.yaml"), "--output", str(tmp_path / "x.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_config_quantities_and_names_follow_the_api_server():
    """Resource quantities and names are checked with the product's one set of Kubernetes value rules."""
    from kubetfx.components.common.errors import ConfigError
    from kubetfx.pipelines import config

    for good in ("500m", "2", "1.5", ".5", "4Gi", "1e3"):
        config.from_dict({"resources": {"trainer": {"memory_request": good}}})
    for bad, message in (("5 Gi", "'5 Gi' is not a Kubernetes quantity"), ("-1", "'-1' is negative")):
        with pytest.raises(ConfigError, match=message):
            config.from_dict({"resources": {"trainer": {"memory_request": bad}}})
    with pytest.raises(ConfigError, match="'Team_A' is not a valid namespace name"):
        config.from_dict({"kfp": {"namespace": "Team_A"}})


def test_compiled_yaml_reads_back(compiled):
    path, spec = compiled
    component = kfp_components.load_component_from_file(path)
    assert component.name == "kubetfx-penguin"
    assert {"input_uri", "label_column", "splits", "fail_on_anomalies"} <= set(component.component_spec.inputs)


def test_every_task_runs_our_image_without_installing_kfp(compiled):
    from kubetfx.components.common.image import component_image

    _, spec = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) >= 4
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] in (IMAGE, component_image(gpu=True)), name
        command = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in command, f"{name} installs packages at run time"
        assert "from kubetfx.components" in command  # the body only imports the installed package


def test_pipeline_dag_wires_the_components(compiled):
    _, spec = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["statistics-gen"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"]["producerTask"] \
        == "example-gen"
    assert set(tasks["example-validator"]["inputs"]["artifacts"]) == {"statistics", "schema"}
    assert "example-validator" in tasks["transform"]["dependentTasks"]  # anomalies stop training
    assert tasks["trainer"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"] == \
        {"outputArtifactKey": "transformed_examples", "producerTask": "transform"}


def test_local_run_end_to_end_then_a_bad_candidate_is_not_pushed(tmp_path, capsys):
    exit_code = cli.main(["run", "penguin", "--local", "--root", str(tmp_path / "local")])
    out = capsys.readouterr().out
    assert exit_code == 0, out
    assert "Pipeline penguin succeeded" in out
    assert "rows train=" in out and "anomalies found: 0" in out and "eval_accuracy=" in out
    assert "rubber stamp" in out  # first run: no baseline in the repository
    repository = tmp_path / "local" / "model-repository" / "penguin"
    assert f"Pushed model version 1: {repository / '1'}" in out
    assert (repository / "1" / "saved_model.pb").is_file() and (repository / "1" / "kubetfx_model.json").is_file()
    run_dirs = os.listdir(tmp_path / "local" / "pipeline-root")
    assert len(run_dirs) == 1
    run_dir = tmp_path / "local" / "pipeline-root" / run_dirs[0]
    for task, artifact in (("example-gen", "examples/Split-train"), ("statistics-gen", "statistics/Split-eval/FeatureStats.pb"),
                           ("schema-gen", "schema/schema.pbtxt"), ("example-validator", "anomalies/Split-train/SchemaDiff.pb"),
                           ("transform", "transform_graph/transform_fn"),
                           ("trainer", "model/Format-Serving/saved_model.pb")):
        assert (run_dir / task / artifact).exists(), f"{task}/{artifact}"
    with open(run_dir / "example-gen" / "executor_output.json") as handle:
        metadata = json.load(handle)["artifacts"]["examples"]["artifacts"][0]["metadata"]
    assert sum(metadata["row_counts"].values()) == 333 and metadata["span"] == 1

    # A deliberately bad candidate (one training step, tiny learning rate) against the pushed baseline.
    exit_code = cli.main(["run", "penguin", "--local", "--root", str(tmp_path / "local"), "--set", "train_steps=1",
                          "--set", 'hyperparameters={"learning_rate": 1e-7}'])
    out = capsys.readouterr().out
    assert exit_code == local_runner.EXIT_NOT_PUSHED, out  # ran fine, nothing pushed: a scheduler can tell
    assert "evaluator: NOT BLESSED" in out and "baseline version 1" in out
    assert "No model pushed" in out
    assert sorted(os.listdir(repository)) == ["1"]


def test_local_run_fails_clearly_on_anomalies(tmp_path, capsys):
    curated = tmp_path / "schema.pbtxt"
    curated.write_text('feature { name: "species" type: BYTES }\n'
                       'feature { name: "island" type: BYTES domain: "island" }\n'
                       'string_domain { name: "island" value: "Biscoe" value: "Dream" }\n')
    exit_code = cli.main(["run", "penguin", "--local", "--root", str(tmp_path / "local"),
                          "--set", f"schema_file={curated}"])
    out, err = capsys.readouterr()
    assert exit_code == 1
    assert "FAILED" in out and err.startswith("kubetfx: example-validator failed: ExampleValidator found ")
    assert "island: ENUM_TYPE_UNEXPECTED_STRING_VALUES" in err  # our message, not a traceback
    assert "SCHEMA_NEW_COLUMN" in err
