"""`make e2e`: the compiled penguin pipeline with every task in a container, then the predictor started
exactly as the ServingRuntime in manifests/ declares it, on the version the pipeline pushed.

What a cluster would do, minus the cluster: kfp.local's DockerRunner runs the same KFP IR YAML
`kubetfx compile --env dev` writes (each task in the component image, as uid 1000), and the
predictor container gets the ServingRuntime's command, args, env, port, user and limits, with
the pushed version mounted read-only at /mnt/models as KServe's storage initializer would.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import yaml

from kubetfx.components.common import layout
from kubetfx.components.pusher import inference_service

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENVIRONMENT = "dev"
TASKS = {"example-gen", "statistics-gen", "schema-gen", "example-validator", "transform", "tuner", "trainer",
         "evaluator", "infra-validator", "pusher", "bulk-inferrer"}
CONTAINER_UID = 1000  # the image's USER; the manifests' runAsUser
PENGUIN = {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0, "flipper_length_mm": 230,
           "body_mass_g": 5800, "sex": "male", "year": 2009}  # a Gentoo


def kubetfx(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "kubetfx.pipelines", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def latest_run_dir(root: str) -> str:
    pipeline_root = os.path.join(root, "pipeline-root")
    runs = sorted(os.listdir(pipeline_root), key=lambda d: os.path.getmtime(os.path.join(pipeline_root, d)))
    return os.path.join(pipeline_root, runs[-1])


@pytest.fixture(scope="module")
def e2e_root():
    """A fresh directory the containers' uid 1000 can reach wherever the checkout lives (/tmp is world-enterable)."""
    root = tempfile.mkdtemp(prefix="kubetfx-e2e-")
    os.chmod(root, 0o755)
    yield root
    if os.environ.get("KUBETFX_E2E_KEEP") != "1":
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"\ne2e outputs kept in {root}")


@pytest.fixture(scope="module")
def pipeline_run(docker_api, component_image, e2e_root):
    """`kubetfx run penguin --containers --env dev`; the Pusher writes, not applies, its KServe object."""
    root = os.path.join(e2e_root, "run")
    compiled = kubetfx("compile", "penguin", "--env", ENVIRONMENT, "--output", os.path.join(root, "compiled.yaml"))
    assert compiled.returncode == 0, compiled.stderr
    with open(os.path.join(root, "compiled.yaml")) as handle:
        baked = next(yaml.safe_load_all(handle))["root"]["inputDefinitions"]["parameters"]["deploy"]["defaultValue"]
    deploy = dict(baked, apply=False)  # no cluster here: write inferenceservice.yaml, do not call the API
    started = time.time()
    result = kubetfx("run", "penguin", "--containers", "--env", ENVIRONMENT, "--root", root,
                     "--set", f"deploy={json.dumps(deploy)}")
    return {"result": result, "seconds": time.time() - started, "run_dir": latest_run_dir(root),
            "baked_deploy": baked, "model_repository": os.path.join(root, "model-repository")}


def test_every_stage_ran_in_a_container_and_the_model_was_pushed(pipeline_run, component_image):
    result = pipeline_run["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "kfp.local DockerRunner" in result.stdout
    assert f"{len(TASKS)} tasks ran in containers from {component_image}" in result.stdout
    assert "evaluator: BLESSED" in result.stdout and "infra-validator: BLESSED" in result.stdout
    assert "Pushed model version 1:" in result.stdout
    # Each task wrote its outputs as the image's non-root user: it ran in the container, not on the host.
    run_dir = pipeline_run["run_dir"]
    assert set(os.listdir(run_dir)) >= TASKS
    for task in TASKS:
        output = os.path.join(run_dir, task, "executor_output.json")
        assert os.stat(output).st_uid == CONTAINER_UID, f"{task} did not run as uid {CONTAINER_UID} in a container"
    version_dir = os.path.join(pipeline_run["model_repository"], "penguin", "1")
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.stat(version_dir).st_uid == CONTAINER_UID
    # The image carries kubetfx's C fill for PredictionLogs (compiled in the Dockerfile's native stage).
    (summary,) = glob.glob(os.path.join(run_dir, "bulk-inferrer", "**", layout.INFERENCE_SUMMARY_FILE), recursive=True)
    with open(summary) as handle:
        assert json.load(handle)["prediction_log_fill"] == "C"
    print(f"\ncontainerised penguin pipeline: {pipeline_run['seconds']:.1f} s")


def test_no_task_container_is_left_behind(pipeline_run, docker_api):
    import docker

    client = docker.from_env()
    leftovers = [c.name for c in client.containers.list(all=True)
                 if any("kfp.dsl.executor_main" in part for part in (c.attrs.get("Args") or []) + (c.attrs.get("Config", {}).get("Cmd") or []))]
    assert not leftovers


def test_the_pushers_inference_service_validates_against_kserves_crd(pipeline_run):
    from k8s_validation import crds_or_skip, validate_all

    manifest_path = os.path.join(pipeline_run["run_dir"], "pusher", "pushed_model", "inferenceservice.yaml")
    with open(manifest_path) as handle:
        isvc = yaml.safe_load(handle)
    validate_all([isvc], crds_or_skip())
    assert isvc["metadata"]["namespace"] == pipeline_run["baked_deploy"]["namespace"]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://kubetfx-model-repository/penguin/1"


def test_a_failing_task_fails_the_run(docker_api, component_image, e2e_root):
    """kfp 2.17.3's DockerRunner, with podman, reports a failed task as SUCCESS; ours must not.

    The data passes every check made before the run (it exists, its header has the label) and
    fails inside ExampleGen's container: a row with one field too many.
    """
    root = os.path.join(e2e_root, "failing")
    data = os.path.join(root, "input", "penguins.csv")
    os.makedirs(os.path.dirname(data))
    with open(data, "w") as handle:
        handle.write("species,island,bill_length_mm\nAdelie,Torgersen,39.1\nAdelie,Torgersen,39.5,extra\n")
    result = kubetfx("run", "penguin", "--containers", "--root", root, "--set", f"input_uri={data}")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Task 'example-gen' finished with status FAILURE" in result.stdout
    assert "kubetfx: example-gen failed: " in result.stderr and "line 3 has 4 fields" in result.stderr
    assert "Pushed model version" not in result.stdout
    assert not os.path.exists(os.path.join(root, "model-repository", "penguin"))


def test_a_root_the_container_user_cannot_reach_is_one_clear_line(docker_api, component_image, tmp_path):
    """pytest's tmp dirs are mode 700: the non-root task containers could not write there."""
    result = kubetfx("run", "penguin", "--containers", "--root", str(tmp_path / "root"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot reach" in result.stderr and "uid 1000" in result.stderr


# ----------------------------------------------------------------------------- the ServingRuntime's container


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serving_runtime_container(overlay: str, runtime_name: str) -> dict:
    """The container of the overlay's ServingRuntime that an InferenceService naming ``runtime_name`` runs."""
    from kubetfx.pipelines.cluster import kustomize

    (runtime,) = [o for o in kustomize.render(overlay)
                  if o["kind"] == "ServingRuntime" and o["metadata"]["name"] == runtime_name]
    (container,) = runtime["spec"]["containers"]
    return container


# Fields of the ServingRuntime container this check turns into `docker run` options; any other is an error,
# so the check never silently runs something other than what the manifest declares.
HANDLED_CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "ports", "resources", "securityContext"}


def run_options(container: dict, isvc: dict, model_dir: str) -> dict:
    """docker-py ``containers.run`` options for ``container`` serving ``isvc`` (what KServe + the kubelet do)."""
    unhandled = set(container) - HANDLED_CONTAINER_FIELDS
    assert not unhandled, f"the e2e check does not reproduce {unhandled}: extend run_options"
    pod_annotations = isvc["spec"]["predictor"].get("annotations") or {}
    environment = {}
    for variable in container.get("env") or []:
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:  # the downward API: fieldRef to one of the pod's annotations
            path = variable["valueFrom"]["fieldRef"]["fieldPath"]
            key = path[len("metadata.annotations['"):-2]
            assert path.startswith("metadata.annotations['"), f"unsupported fieldRef {path}"
            environment[variable["name"]] = pod_annotations.get(key, "")
    name = isvc["metadata"]["name"]
    security = container.get("securityContext") or {}
    limits = (container.get("resources") or {}).get("limits") or {}
    from kubernetes.utils import parse_quantity

    options = {
        "image": container["image"], "entrypoint": container["command"],
        "command": [arg.replace("{{.Name}}", name) for arg in container.get("args") or []],
        "environment": environment, "user": str(security["runAsUser"]),
        "cap_drop": (security.get("capabilities") or {}).get("drop") or None,
        "security_opt": ["no-new-privileges"] if security.get("allowPrivilegeEscalation") is False else None,
        "ports": {f"{p['containerPort']}/{p.get('protocol', 'TCP').lower()}": ("127.0.0.1", free_port())
                  for p in container.get("ports") or []},
        "volumes": {model_dir: {"bind": "/mnt/models", "mode": "ro"}},
        "network_mode": "bridge", "detach": True,
    }
    if "cpu" in limits:
        options["nano_cpus"] = int(parse_quantity(limits["cpu"]) * 10**9)
    if "memory" in limits:
        options["mem_limit"] = int(parse_quantity(limits["memory"]))
    assert security.get("runAsNonRoot") is not True or options["user"] != "0"
    return options


def http(method: str, url: str, body: dict | None = None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def predictor(pipeline_run, docker_api):
    """The ServingRuntime's container on the pushed version; its base URL once ready."""
    import docker

    assert pipeline_run["result"].returncode == 0, "the pipeline did not push a model"
    with open(os.path.join(pipeline_run["run_dir"], "pusher", "pushed_model", "inferenceservice.yaml")) as handle:
        isvc = yaml.safe_load(handle)
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == inference_service.KUBETFX_MODEL_FORMAT
    container = serving_runtime_container(os.path.join(ROOT, "manifests", "overlays", ENVIRONMENT), model["runtime"])
    options = run_options(container, isvc, os.path.join(pipeline_run["model_repository"], "penguin", "1"))
    (http_port,) = [host[1] for spec, host in options["ports"].items() if spec.startswith("8080/")]
    client = docker.from_env()
    started = time.time()
    server = client.containers.run(**options)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if http("GET", f"{url}/v2/health/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            server.reload()
            assert server.status == "running", server.logs().decode()[-3000:]
            assert time.time() < deadline, "predictor not ready in 120 s:\n" + server.logs().decode()[-3000:]
            time.sleep(0.25)
        print(f"\npredictor container ready {time.time() - started:.1f} s after start")
        yield {"url": url, "name": isvc["metadata"]["name"], "container": server, "options": options}
    finally:
        server.remove(force=True)


def test_the_predictor_runs_as_the_manifest_declares(predictor):
    attrs = predictor["container"].attrs
    assert attrs["Config"]["User"] == "1000"
    assert attrs["Config"]["Entrypoint"] == ["python3", "-m", "kubetfx.components.predictor"]
    assert "--model_dir=/mnt/models" in attrs["Config"]["Cmd"] and "--model_name=penguin" in attrs["Config"]["Cmd"]
    assert "KUBETFX_MODEL_VERSION=1" in attrs["Config"]["Env"]


def test_the_predictor_answers_v1_v2_and_rejects_bad_input(predictor):
    url, name = predictor["url"], predictor["name"]
    status, body = http("GET", f"{url}/v1/models/{name}")
    assert status == 200 and body["ready"] is True
    status, body = http("POST", f"{url}/v1/models/{name}:predict", {"instances": [PENGUIN]})
    assert status == 200, body
    assert body["predictions"][0]["class"] == "Gentoo" and body["model_version"] == "1"

    datatypes = {"island": "BYTES", "sex": "BYTES", "bill_length_mm": "FP32", "bill_depth_mm": "FP32",
                 "flipper_length_mm": "INT64", "body_mass_g": "INT64", "year": "INT64"}
    inputs = [{"name": k, "datatype": datatypes[k], "shape": [1], "data": [v]} for k, v in PENGUIN.items()]
    status, body = http("POST", f"{url}/v2/models/{name}/infer", {"inputs": inputs})
    assert status == 200, body
    classes = {o["name"]: o["data"] for o in body["outputs"]}["classes"]
    assert classes == ["Gentoo"]

    status, body = http("POST", f"{url}/v1/models/{name}:predict", {"instances": [dict(PENGUIN, island="Atlantis")]})
    assert status == 400
    assert "feature 'island'" in json.dumps(body) and "Atlantis" in json.dumps(body)
