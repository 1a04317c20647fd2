"""Contract test of `kubetfx submit` / `schedule` / `deploy` (not a cluster test).

`submit` and `schedule` drive the real kfp.Client against FakeKfpApi, a recording server on
127.0.0.1 that answers the KFP v2beta1 API calls they make the way the KFP API server does
(tests/test_kfp_fake_api.py keeps the fake honest). What is checked is what we send: the
compiled YAML uploaded once per content, the environment's experiment, service account,
parameters, cron, and that a re-run replaces rather than duplicates. Without a cluster every
command fails fast with one line naming what is missing.
"""

import http.server
import json
import os
import socket
import threading

import kfp
import pytest

import yaml

from helpers.messages import user_error
from kfp_fake_api import FakeKfpApi
from kubetfx.pipelines.cli import main as cli
from kubetfx.pipelines.cluster import kustomize
from kubetfx.components.common.errors import ConfigError
from kubetfx.pipelines import config as pipeline_config

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")

DATA = "gs://kubetfx-data/penguins/span-{SPAN}/*.csv"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real KFP context file, no KFP_* from the caller's shell; compiled YAML into tmp_path."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for variable in ("KFP_HOST", "KFP_NAMESPACE", "KFP_TOKEN", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def api(monkeypatch):
    with FakeKfpApi() as fake:
        monkeypatch.setenv("KFP_HOST", fake.url)
        yield fake


def kubetfx(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def submit(capsys, tmp_path, *extra, env="dev"):
    return kubetfx(capsys, "submit", "penguin", "--env", env, "--output", str(tmp_path / "penguin.yaml"),
                   "--param", f"input_uri={DATA}", *extra)


def test_submit_uploads_the_compiled_pipeline_and_starts_a_run(api, capsys, tmp_path):
    code, out, err = submit(capsys, tmp_path)
    assert code == 0, err
    assert [c for c in api.calls() if c != "GET /apis/v2beta1/healthz"] == [
        "GET /apis/v2beta1/pipelines",            # is kubetfx-penguin uploaded? (by name)
        "POST /apis/v2beta1/pipelines/upload",    # no: upload it
        "GET /apis/v2beta1/pipelines/{id}/versions".replace("{id}", next(iter(api.pipelines))),  # this content?
        "POST /apis/v2beta1/pipelines/upload_version",  # no: a version named by its hash
        "GET /apis/v2beta1/experiments",          # the environment's experiment, by name
        "POST /apis/v2beta1/experiments",
        "POST /apis/v2beta1/runs",
    ]
    (pipeline,) = api.pipelines.values()
    assert pipeline["display_name"] == "kubetfx-penguin"
    (run,) = api.runs.values()
    version_id = run["pipeline_version_reference"]["pipeline_version_id"]
    assert api.pipeline_versions[version_id]["display_name"].startswith("kubetfx-penguin-")
    with open(tmp_path / "penguin.yaml", "rb") as handle:
        assert api.uploads[version_id] == handle.read()  # exactly what `kubetfx compile --env dev` wrote
    (experiment,) = [e for e in api.experiments.values() if e["display_name"] == "kubetfx-dev"]
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["pipeline_version_reference"] == {"pipeline_id": pipeline["pipeline_id"],
                                                 "pipeline_version_id": version_id}
    assert run["service_account"] == "kubetfx-pipeline-runner"
    assert run["runtime_config"]["parameters"] == {"input_uri": DATA}
    assert f"{api.url}/#/runs/details/{run['run_id']}" in out


def test_the_uploaded_pipeline_carries_the_environments_defaults(api, capsys, tmp_path):
    assert submit(capsys, tmp_path)[0] == 0
    document = next(yaml.safe_load_all(next(iter(api.uploads.values()))))
    defaults = document["root"]["inputDefinitions"]["parameters"]
    assert defaults["push_destination"]["defaultValue"] == "/mnt/model-repository"
    deploy = defaults["deploy"]["defaultValue"]
    assert deploy["namespace"] == "kubetfx-dev" and deploy["storage_uri_base"] == "pvc://kubetfx-model-repository"
    assert deploy["deployment_mode"] == "RawDeployment" and "nvidia.com/gpu" not in json.dumps(deploy)


def test_submitting_again_reuses_the_version_and_a_changed_pipeline_is_a_new_version(api, capsys, tmp_path):
    assert submit(capsys, tmp_path)[0] == 0
    code, out, _ = submit(capsys, tmp_path)
    assert code == 0 and "is already uploaded" in out
    assert len(api.pipelines) == 1 and len(api.uploads) == 2 and len(api.runs) == 2  # the first + the hash-named
    assert len([e for e in api.experiments.values() if e["display_name"] == "kubetfx-dev"]) == 1
    code, out, _ = submit(capsys, tmp_path, "--image", "registry.example.com/kubetfx:other")
    assert code == 0 and "Uploaded pipeline kubetfx-penguin, version kubetfx-penguin-" in out
    assert len(api.pipelines) == 1 and len(api.uploads) == 3
    first, _, newest = api.runs.values()  # in the order they were created
    assert newest["pipeline_version_reference"]["pipeline_version_id"] != \
        first["pipeline_version_reference"]["pipeline_version_id"]


def test_schedule_creates_one_recurring_run_and_a_rerun_replaces_it(api, capsys, tmp_path):
    args = ("schedule", "penguin", "--env", "dev", "--output", str(tmp_path / "p.yaml"), "--param", f"input_uri={DATA}")
    code, out, err = kubetfx(capsys, *args)
    assert code == 0, err
    (first,) = api.recurring_runs.values()
    assert first["display_name"] == "kubetfx-penguin-dev"
    assert first["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # pipelines/configs/dev.yaml
    assert first["runtime_config"]["parameters"] == {"input_uri": DATA}
    assert first["service_account"] == "kubetfx-pipeline-runner" and first["mode"] == "ENABLE"
    code, out, err = kubetfx(capsys, *args, "--cron", "0 30 1 * * *")
    assert code == 0, err
    (second,) = api.recurring_runs.values()  # replaced, not duplicated
    assert second["recurring_run_id"] != first["recurring_run_id"]
    assert second["trigger"]["cron_schedule"]["cron"] == "0 30 1 * * *"
    assert f"replacing {first['recurring_run_id']}" in out
    assert api.calls().index(f"DELETE /apis/v2beta1/recurringruns/{first['recurring_run_id']}") > \
        api.calls().index("POST /apis/v2beta1/recurringruns")  # the old one goes only once the new one exists


def test_prod_sends_its_token_and_works_in_its_profile_namespace(capsys, tmp_path, monkeypatch):
    with FakeKfpApi(multi_user=True) as api:
        monkeypatch.setenv("KFP_HOST", api.url)
        monkeypatch.setenv("KFP_TOKEN", "prod-token")
        code, out, err = kubetfx(capsys, "submit", "penguin", "--env", "prod", "--output", str(tmp_path / "p.yaml"))
        assert code == 0, err
        assert all(request.headers.get("authorization") == "Bearer prod-token" for request in api.requests)
        (experiment,) = [e for e in api.experiments.values() if e["display_name"] == "kubetfx-prod"]
        assert experiment["namespace"] == "kubetfx"
        (run,) = api.runs.values()
        assert run.get("runtime_config", {}).get("parameters", {}) == {}  # prod bakes input_uri into the pipeline


# ----------------------------------------------------------------------------- failing fast, in one line


def test_no_endpoint_is_one_line(capsys, tmp_path, monkeypatch):
    config = tmp_path / "nohost.yaml"
    config.write_text("kfp: {experiment: x}\n")
    code, _, err = kubetfx(capsys, "submit", "penguin", "--config", str(config), "--output", str(tmp_path / "p.yaml"))
    assert "no Kubeflow Pipelines endpoint" in user_error(code, err) and "KFP_HOST" in err


def test_an_unreachable_cluster_is_one_line(capsys, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KFP_HOST", f"http://127.0.0.1:{port}")
    code, _, err = submit(capsys, tmp_path)
    assert f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" in user_error(code, err)


def test_a_refused_token_is_one_line(capsys, tmp_path, monkeypatch):
    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("KFP_HOST", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("KFP_TOKEN", "expired")
        code, _, err = kubetfx(capsys, "submit", "penguin", "--env", "prod", "--output", str(tmp_path / "p.yaml"))
    finally:
        server.shutdown()
    assert "answered HTTP 401" in user_error(code, err) and "kfp.token" in err


def test_a_missing_parameter_or_token_fails_before_any_request(api, capsys, tmp_path, monkeypatch):
    code, _, err = kubetfx(capsys, "submit", "penguin", "--env", "dev", "--output", str(tmp_path / "p.yaml"))
    assert "no value for input_uri" in user_error(code, err) and "pipelines/configs/dev.yaml" in err
    code, _, err = submit(capsys, tmp_path, "--param", "epochs=3")
    assert "--param epochs: the pipeline has no parameter 'epochs'" in user_error(code, err)
    code, _, err = kubetfx(capsys, "submit", "penguin", "--env", "prod", "--output", str(tmp_path / "p.yaml"))
    assert "$KFP_TOKEN is empty or unset" in user_error(code, err)
    assert api.requests == []


@pytest.mark.skipif(not kustomize.shutil.which("kubectl"), reason="kubectl not installed")
def test_deploy_without_a_cluster_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    code, _, err = kubetfx(capsys, "deploy", "--env", "dev")
    line = user_error(code, err)
    assert line.startswith("kubetfx: applying manifests/overlays/dev failed: ") and "current context" in line


def test_deploy_leaves_the_inference_service_to_the_pusher(tmp_path):
    """`make deploy` applies the overlay, which holds no InferenceService; one that does is refused before kubectl."""
    for environment in pipeline_config.environments():
        config = pipeline_config.load_environment(environment)
        assert not [o for o in kustomize.render(config.manifests_path()) if o["kind"] == "InferenceService"]
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    template = kustomize.render(pipeline_config.load_environment("dev").serving_template_path())
    (overlay / "isvc.yaml").write_text(yaml.safe_dump_all(template))
    (overlay / "kustomization.yaml").write_text("resources: [isvc.yaml]\n")
    with pytest.raises(ConfigError, match="InferenceServices are the Pusher's"):
        kustomize.apply(str(overlay))


def test_every_environment_compiles_and_names_an_overlay(tmp_path, capsys):
    for environment in pipeline_config.environments():
        code, out, err = kubetfx(capsys, "compile", "penguin", "--env", environment,
                                 "--output", str(tmp_path / f"{environment}.yaml"))
        assert code == 0, err
        assert os.path.isdir(pipeline_config.load_environment(environment).manifests_path())


def test_the_monitors_retrain_trigger_starts_the_newest_training_version(api, capsys, tmp_path):
    """Continuous training's last step, as the monitor pipeline runs it in the cluster (host given here)."""
    from kubetfx.components.retrain_trigger import executor as trigger

    assert submit(capsys, tmp_path)[0] == 0  # the training pipeline is uploaded (and ran once)
    assert submit(capsys, tmp_path, "--image", "registry.example.com/kubetfx:newer")[0] == 0  # a newer version
    newest = list(api.pipeline_versions.values())[-1]
    result = trigger.run("kubetfx-penguin", "kubetfx-dev", params={"input_uri": DATA}, host=api.url,
                         service_account="kubetfx-pipeline-runner", reason="body_mass_g drifted")
    run = api.runs[result["run_id"]]
    assert run["pipeline_version_reference"]["pipeline_version_id"] == newest["pipeline_version_id"]
    assert run["runtime_config"]["parameters"] == {"input_uri": DATA}
    assert run["display_name"].startswith("kubetfx-penguin-retrain-") and result["reason"] == "body_mass_g drifted"
    with pytest.raises(Exception, match="no pipeline named kubetfx-nothing"):
        trigger.run("kubetfx-nothing", "kubetfx-dev", host=api.url)


def test_the_monitor_pipeline_compiles_for_an_environment(tmp_path, capsys):
    code, out, err = kubetfx(capsys, "compile", "monitor", "--env", "dev", "--output", str(tmp_path / "m.yaml"))
    assert code == 0, err
    documents = list(yaml.safe_load_all((tmp_path / "m.yaml").read_text()))
    parameters = documents[0]["root"]["inputDefinitions"]["parameters"]
    assert parameters["prediction_log"]["defaultValue"] == "/mnt/prediction-log"
    assert parameters["model_repository"]["defaultValue"] == "/mnt/model-repository"
    mounts = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-model-monitor"]["pvcMount"]
    assert {m["mountPath"] for m in mounts} == {"/mnt/model-repository", "/mnt/prediction-log"}
    tasks = documents[0]["components"]["comp-condition-2"]["dag"]["tasks"]  # inside "no canary waiting"
    assert tasks["retrain-trigger"]["inputs"]["parameters"]["pipeline_name"]["componentInputParameter"] == \
        "pipelinechannel--training_pipeline"
