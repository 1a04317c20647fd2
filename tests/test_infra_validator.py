"""InfraValidator: the real predictor serves the real penguin candidate (blessed), a corrupt one, a
timeout, a hanging load and a taken port (not blessed, with the server's log lines), bad inputs
(ConfigError), and the KFP component compiled and run under kfp.local with dsl.If on its `blessed`
output. Both launches: in this process (the default) and the ServingRuntime's command in a subprocess."""

import os
import shutil
import socket
import threading

import pytest
import yaml

from kubetfx.components.common import blessing
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.infra_validator import executor


def _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=None, **kwargs) -> dict:
    return executor.run(model_dir or penguin_model["model"], penguin_pipeline_artifacts["examples"],
                        str(tmp_path / "blessing"), str(tmp_path / "report.md"), **kwargs)


LAUNCHES = ["in_process", "process"]


def _no_server_thread_left() -> bool:
    return not any(t.name == "kubetfx-predictor-in-process" and t.is_alive() for t in threading.enumerate())


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


@pytest.mark.parametrize("launch", LAUNCHES)
def test_real_model_is_infra_blessed(penguin_model, penguin_pipeline_artifacts, tmp_path, launch):
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=90, num_requests=3, launch=launch)
    assert metadata["blessed"] == 1, metadata
    assert metadata["launch"] == launch
    assert metadata["requests"] == 3 and metadata["instances"] == 12
    assert set(metadata["latency_ms"]) == {"mean", "p50", "max"} and metadata["latency_ms"]["max"] > 0
    assert 0 < metadata["startup_seconds"] < 90
    verdict = blessing.read_blessing(str(tmp_path / "blessing"), infra=True)
    assert verdict.blessed and "answered correctly" in verdict.reasons[0] and "ready after" in verdict.reasons[0]
    assert os.listdir(tmp_path / "blessing") and (tmp_path / "blessing" / blessing.INFRA_BLESSED).exists()
    report = (tmp_path / "report.md").read_text()
    assert "INFRA_BLESSED" in report and "server ready after" in report
    # stopped cleanly: the port is free again, no server thread left behind
    assert _port_is_free(metadata["http_port"]) and _no_server_thread_left()
    if launch == "in_process":
        assert {"import_kserve", "model_load"} <= set(metadata["startup_phases"])
        assert "in this task's process" in report


def test_in_process_runs_again_in_the_same_process(penguin_model, penguin_pipeline_artifacts, tmp_path):
    """Each in-process server builds kserve's REST app anew (kserve keeps one module-level app)."""
    for attempt in range(2):
        metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path / str(attempt), timeout_s=90,
                        num_requests=1)
        assert metadata["blessed"] == 1, metadata["reason"]
    assert _no_server_thread_left()


@pytest.mark.parametrize("launch", LAUNCHES)
def test_corrupt_candidate_is_not_blessed_with_the_server_log(penguin_model, penguin_pipeline_artifacts, tmp_path,
                                                              launch):
    candidate = tmp_path / "candidate"
    shutil.copytree(penguin_model["model"], candidate)
    (candidate / "Format-Serving" / "saved_model.pb").write_bytes(b"not a SavedModel")
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=str(candidate), timeout_s=90,
                    launch=launch)
    assert metadata["blessed"] == 0
    if launch == "process":
        assert "exited with code 1 before it was ready" in metadata["reason"]
    else:
        assert "failed before it was ready (in this process)" in metadata["reason"]
        assert _no_server_thread_left()
    assert "the SavedModel does not load" in metadata["reason"]
    verdict = blessing.read_blessing(str(tmp_path / "blessing"), infra=True)
    assert not verdict.blessed
    assert any("server log (last lines)" in reason and "does not load" in reason for reason in verdict.reasons)
    assert "INFRA_NOT_BLESSED" in (tmp_path / "report.md").read_text()


def test_model_without_metadata_is_served_from_its_signature(penguin_model, penguin_pipeline_artifacts, tmp_path):
    """No kubetfx_model.json (e.g. a custom run_fn's export): features from the V2 metadata, the problem
    type and class names from the signature's outputs."""
    candidate = tmp_path / "bare"
    shutil.copytree(os.path.join(penguin_model["model"], "Format-Serving"), candidate / "Format-Serving")
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, model_dir=str(candidate), timeout_s=90,
                    num_requests=2)
    assert metadata["blessed"] == 1, metadata["reason"]


@pytest.mark.parametrize("launch", LAUNCHES)
def test_timeout_is_not_blessed(penguin_model, penguin_pipeline_artifacts, tmp_path, launch):
    timeout_s = 0.5 if launch == "process" else 0.05  # in a process that imported TF already, a load takes ~0.3 s
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=timeout_s, launch=launch)
    assert metadata["blessed"] == 0 and f"not ready within {timeout_s:g} s" in metadata["reason"]
    assert not blessing.read_blessing(str(tmp_path / "blessing"), infra=True).blessed


def test_in_process_load_that_hangs_hits_the_timeout(penguin_model, penguin_pipeline_artifacts, tmp_path,
                                                     monkeypatch):
    from kubetfx.components.predictor import servable

    released = threading.Event()

    def hanging_load(location, **kwargs):
        released.wait(2.0)  # a load stuck (e.g. on a network filesystem) until well after the timeout
        raise servable.LoadError(f"{location.saved_model_dir}: still loading")

    monkeypatch.setattr(servable, "load", hanging_load)
    metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=0.5, launch="in_process")
    assert metadata["blessed"] == 0 and "not ready within 0.5 s" in metadata["reason"], metadata["reason"]
    assert "server_thread_left_running" not in metadata  # the stop waited for the load to give up
    assert _no_server_thread_left()


@pytest.mark.parametrize("launch", LAUNCHES)
def test_port_in_use_is_not_blessed(penguin_model, penguin_pipeline_artifacts, tmp_path, launch):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        metadata = _run(penguin_model, penguin_pipeline_artifacts, tmp_path, timeout_s=60, http_port=port,
                        launch=launch)
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
    for launch in ("subprocess", "", None, "IN_PROCESS"):
        with pytest.raises(ConfigError, match="launch must be one of 'in_process', 'process'"):
            _run(penguin_model, penguin_pipeline_artifacts, tmp_path, launch=launch)
    assert not (tmp_path / "blessing").exists()


def test_component_compiles_with_the_verdict_as_its_bool_output(tmp_path):
    from kfp import compiler

    from kubetfx.components.infra_validator.component import infra_validator

    path = str(tmp_path / "infra_validator.yaml")
    compiler.Compiler().compile(infra_validator, path)
    spec = yaml.safe_load(open(path))
    outputs = spec["components"]["comp-infra-validator"]["outputDefinitions"]
    assert outputs["parameters"] == {"Output": {"parameterType": "BOOLEAN"}}  # task.output: blessed
    inputs = spec["components"]["comp-infra-validator"]["inputDefinitions"]["parameters"]
    assert inputs["launch"]["defaultValue"] == "in_process" and inputs["launch"]["parameterType"] == "STRING"
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
