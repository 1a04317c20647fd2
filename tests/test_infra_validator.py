"""InfraValidator: the real predictor serves the real penguin candidate (blessed), a corrupt one, a
timeout and a taken port (not blessed, with the server's log lines), bad inputs (ConfigError), and
the KFP component compiled and run under kfp.local with dsl.If on its `blessed` output."""

import os
import shutil
import socket

import pytest
import yaml

from kubetfx.components.common import blessing
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.infra_validator import executor


def _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=None, **kwargs) -> dict:
    return executor.run(model_dir or penguin_model["model"], penguin_pipeline_artifacts["examples"],
                        str(tmp_path / "blessing"), str(tmp_path / "report.md"), **kwargs)


def test_real_model_is_infra_blessed(penguin_model, penguin_pipeline_artifacts, tmp_path):
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=90, num_requests=3)
    assert metadata["blessed"] == 1, metadata
    assert metadata["requests"] == 3 and metadata["instances"] == 12
    assert set(metadata["latency_ms"]) == {"mean", "p50", "max"} and metadata["latency_ms"]["max"] > 0
    verdict = blessing.read_blessing(str(tmp_path / "blessing"), infra=True)
    assert verdict.blessed and "answered correctly" in verdict.reasons[0]
    assert os.listdir(tmp_path / "blessing") and (tmp_path / "blessing" / blessing.INFRA_BLESSED).exists()
    assert "INFRA_BLESSED" in (tmp_path / "report.md").read_text()


def test_corrupt_candidate_is_not_blessed_with_the_server_log(penguin_model, penguin_pipeline_artifacts, tmp_path):
    candidate = tmp_path / "candidate"
    shutil.copytree(penguin_model["model"], candidate)
    (candidate / "Format-Serving" / "saved_model.pb").write_bytes(b"not a SavedModel")
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=str(candidate), timeout_s=90)
    assert metadata["blessed"] == 0
    assert "exited with code 1 before it was ready" in metadata["reason"]
    assert "the SavedModel does not load" in metadata["reason"]
    verdict = blessing.read_blessing(str(tmp_path / "blessing"), infra=True)
    assert not verdict.blessed
    assert any("server log (last lines)" in reason and "LoadError" in reason for reason in verdict.reasons)
    assert "INFRA_NOT_BLESSED" in (tmp_path / "report.md").read_text()


def test_model_without_metadata_is_served_from_its_signature(penguin_model, penguin_pipeline_artifacts, tmp_path):
    """No kubetfx_model.json (e.g. a custom run_fn's export): features from the V2 metadata, the problem
    type and class names from the signature's outputs."""
    candidate = tmp_path / "bare"
    shutil.copytree(os.path.join(penguin_model["model"], "Format-Serving"), candidate / "Format-Serving")
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=str(candidate), timeout_s=90,
                    num_requests=2)
    assert metadata["blessed"] == 1, metadata["reason"]


def test_timeout_is_not_blessed(penguin_model, penguin_pipeline_artifacts, tmp_path):
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=0.5)
    assert metadata["blessed"] == 0 and "not ready within 0.5 s" in metadata["reason"]
    assert not blessing.read_blessing(str(tmp_path / "blessing"), infra=True).blessed


def test_port_in_use_is_not_blessed(penguin_model, penguin_pipeline_artifacts, tmp_path):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=60, http_port=port)
    assert metadata["blessed"] == 0
    assert f"HTTP port {port} is not free" in metadata["reason"], metadata["reason"]


def test_bad_inputs_are_config_errors(penguin_model, penguin_pipeline_artifacts, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="Format-Serving"):
        _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="timeout_s"):
        _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=0)
    assert not (tmp_path / "blessing").exists()


def test_component_compiles_with_the_verdict_as_its_bool_output(tmp_path):
    from kfp import compiler

    from kubetfx.components.infra_validator.component import infra_validator

    path = str(tmp_path / "infra_validator.yaml")
    compiler.Compiler().compile(infra_validator, path)
    spec = yaml.safe_load(open(path))
    outputs = spec["components"]["comp-infra-validator"]["outputDefinitions"]
    assert outputs["parameters"] == {"Output": {"parameterType": "BOOLEAN"}}  # task.output: blessed
    assert set(outputs["artifacts"]) == {"blessing", "report"}


@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")  # our image is not a Python image
def test_component_runs_under_kfp_local_with_dsl_if(penguin_model, penguin_pipeline_artifacts, tmp_path):
    from kfp import dsl, local
    from kfp.dsl import Dataset, Model

    from kubetfx.components.infra_validator.component import infra_validator

    @dsl.component
    def after_blessing(blessed: bool) -> str:
        return f"push (blessed={blessed})"

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))

    @dsl.pipeline
    def validate() -> bool:
        model = dsl.importer(artifact_uri=penguin_model["model"], artifact_class=Model, reimport=False)
        examples = dsl.importer(artifact_uri=penguin_pipeline_artifacts["examples"], artifact_class=Dataset,
                                reimport=False)
        check = infra_validator(model=model.output, examples=examples.output, timeout_s=90)
        with dsl.If(check.outputs["Output"] == True):  # noqa: E712 (a KFP condition, not a Python bool)
            after_blessing(blessed=check.outputs["Output"])
        return check.outputs["Output"]

    result = validate()
    assert result.outputs["Output"] is True, result.outputs
    markers = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / "root") for f in files
               if f == blessing.INFRA_BLESSED]
    assert len(markers) == 1
    ran = [d for d, _, files in os.walk(tmp_path / "root") if "after-blessing" in d]
    assert ran, "the dsl.If branch did not run"
