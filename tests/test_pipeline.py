"""The penguin pipeline: compiled KFP IR YAML and a real kfp.local run through the CLI."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from kfp import components as kfp_components

from kubetfx.pipelines import cli

IMAGE = "registry.example.com/team/kubetfx:test"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile in a fresh process, as `make compile` does (the image is read at import time)."""
    output = str(tmp_path_factory.mktemp("compiled") / "penguin.yaml")
    result = subprocess.run([sys.executable, "-m", "kubetfx.pipelines", "compile", "penguin",
                             "--image", IMAGE, "--output", output], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"Compiled the penguin pipeline to {output}" in result.stdout
    with open(output) as handle:
        return output, yaml.safe_load(handle)


def test_compiled_yaml_reads_back(compiled):
    path, spec = compiled
    component = kfp_components.load_component_from_file(path)
    assert component.name == "kubetfx-penguin"
    assert {"input_uri", "label_column", "splits", "fail_on_anomalies"} <= set(component.component_spec.inputs)


def test_every_task_runs_our_image_without_installing_kfp(compiled):
    _, spec = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) >= 4
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        command = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in command, f"{name} installs packages at run time"
        assert "from kubetfx.components" in command  # the body only imports the installed package


def test_pipeline_dag_wires_the_components(compiled):
    _, spec = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["statistics-gen"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"]["producerTask"] \
        == "example-gen"
    assert set(tasks["example-validator"]["inputs"]["artifacts"]) == {"statistics", "schema"}


def test_local_run_end_to_end(tmp_path, capsys):
    exit_code = cli.main(["run", "penguin", "--local", "--root", str(tmp_path / "local")])
    out = capsys.readouterr().out
    assert exit_code == 0, out
    assert "Pipeline penguin succeeded" in out
    assert "rows train=" in out and "anomalies found: 0" in out
    run_dirs = os.listdir(tmp_path / "local" / "pipeline-root")
    assert len(run_dirs) == 1
    run_dir = tmp_path / "local" / "pipeline-root" / run_dirs[0]
    for task, artifact in (("example-gen", "examples/Split-train"), ("statistics-gen", "statistics/Split-eval/FeatureStats.pb"),
                           ("schema-gen", "schema/schema.pbtxt"), ("example-validator", "anomalies/Split-train/SchemaDiff.pb")):
        assert (run_dir / task / artifact).exists(), f"{task}/{artifact}"
    with open(run_dir / "example-gen" / "executor_output.json") as handle:
        metadata = json.load(handle)["artifacts"]["examples"]["artifacts"][0]["metadata"]
    assert sum(metadata["row_counts"].values()) == 333 and metadata["span"] == 1


def test_local_run_fails_clearly_on_anomalies(tmp_path, capsys):
    curated = tmp_path / "schema.pbtxt"
    curated.write_text('feature { name: "species" type: BYTES }\n'
                       'feature { name: "island" type: BYTES domain: "island" }\n'
                       'string_domain { name: "island" value: "Biscoe" value: "Dream" }\n')
    exit_code = cli.main(["run", "penguin", "--local", "--root", str(tmp_path / "local"),
                          "--set", f"schema_file={curated}"])
    out = capsys.readouterr().out
    assert exit_code == 1
    assert "FAILED" in out and "example-validator" in out
    assert "island: ENUM_TYPE_UNEXPECTED_STRING_VALUES" in out  # our message, not a traceback
    assert "SCHEMA_NEW_COLUMN" in out
