"""Pods for real: the Pusher's InferenceService becomes a serving pod on the node, and it answers.

`kubetfx deploy --env dev`, then a real penguin model pushed by the Pusher (as the pipeline runner's
ServiceAccount) into the model repository volume (a hostPath PersistentVolume bound to the
overlay's claim), then KServe's controller makes the Deployment and Service, the pod (our component
image, imported into the node's containerd) loads the model from the volume with no storage
initializer, and V1 and V2 requests through `kubectl port-forward` are answered by it. A second push
rolls out version 2; the Pusher's rollback puts version 1 back; the response's model_version says
which one answers. Needs `make cluster-up` with all layers (make test-cluster) and `make image`. This
is RawDeployment mode; test_serverless_canary.py is the Serverless one, with the canary split.
"""

import json
import os
import socket
import subprocess
import time
import urllib.request

import local_cluster
from helpers.cluster_serving import INSTANCES, MODEL_REPOSITORY_CLAIM, NAMESPACE, PREDICTION_LOG_CLAIM
from helpers.cluster_serving import dev_deploy_settings
from helpers.cluster_serving import model_repository_base, push
from kubetfx.components.common import prediction_log
from kubetfx.components.pusher import executor as pusher
from kubetfx.components.pusher import rollout

READY_TIMEOUT_S = 300


def _wait_serving(cluster, version: int) -> str:
    """The name of a Ready predictor pod serving ``version`` once the InferenceService is Ready."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        service = cluster.get("inferenceservice", "penguin", "-n", NAMESPACE)
        conditions = {c["type"]: c["status"] for c in service.get("status", {}).get("conditions", [])}
        pods = cluster.get("pods", "-n", NAMESPACE, "-l", "serving.kserve.io/inferenceservice=penguin")["items"]
        ready = [p for p in pods if p["metadata"].get("deletionTimestamp") is None
                 and p["metadata"].get("annotations", {}).get("kubetfx.io/model-version") == str(version)
                 and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        if conditions.get("Ready") == "True" and ready and len(pods) == len(ready):
            return ready[0]["metadata"]["name"]
        time.sleep(2)
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", check=False).stdout
    raise AssertionError(f"version {version} not served in {READY_TIMEOUT_S} s; conditions {conditions}; "
                         f"events:\n{events[-3000:]}")


class PortForward:
    """`kubectl port-forward TARGET LOCAL:PORT` (through the API server and the kubelet), closed on exit; TARGET is
    ``pod/NAME`` (the model server's own port) or ``service/NAME`` (the Service's port, as a client in the cluster
    calls it: through KServe's agent when the predictor logs)."""

    def __init__(self, cluster, target: str, remote_port: int = 8080):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            ["kubectl", "port-forward", "-n", NAMESPACE, target, f"{self.port}:{remote_port}", "--address=127.0.0.1"],
            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.process.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> ..."

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        self.process.wait(timeout=10)


def _logged_records(log_dir: str, model_name: str, count: int, timeout_s: float = 60.0) -> list[dict]:
    """The prediction log's records for ``model_name`` once there are ``count`` (the sink pairs two events each)."""
    deadline, records = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        records = prediction_log.read_records(log_dir, model_name, include_open=True)[0] \
            if os.path.isdir(log_dir) else []
        if len(records) >= count:
            return records
        time.sleep(1)
    raise AssertionError(f"{len(records)} of {count} records in the prediction log after {timeout_s:.0f} s: {records}")


def _v2(features: list[dict]) -> dict:
    datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
    return {"inputs": [{"name": f["name"], "shape": [len(INSTANCES)], "datatype": datatypes[f["dtype"]],
                        "data": [instance[f["name"]] for instance in INSTANCES]} for f in features]}


def test_the_pushers_inference_service_is_served_by_a_pod_that_answers(cluster, deployed, penguin_model,
                                                                          runner_api, tmp_path):
    deploy = dev_deploy_settings("penguin")
    api = runner_api(NAMESPACE, tmp_path)
    repository = deployed[MODEL_REPOSITORY_CLAIM]
    model = penguin_model["model"]
    with open(os.path.join(model, "kubetfx_model.json"), encoding="utf-8") as handle:
        features = [f for f in json.load(handle)["raw_features"] if f["name"] in INSTANCES[0]]

    timings, started = {}, time.monotonic()
    assert push(tmp_path, model, repository, api, deploy, 1, "penguin")["version"] == 1
    pod = _wait_serving(cluster, 1)
    timings["push_to_serving_v1_s"] = round(time.monotonic() - started, 1)
    with PortForward(cluster, f"pod/{pod}") as forward:
        v1 = forward.post("/v1/models/penguin:predict", {"instances": INSTANCES})
        v2 = forward.post("/v2/models/penguin/infer", _v2(features))
    assert len(v1["predictions"]) == 2 and v1["model_version"] == "1"
    assert v1["predictions"][0]["class"] == "Adelie" and v1["predictions"][1]["class"] == "Gentoo"
    assert {o["name"] for o in v2["outputs"]} >= {"probabilities", "classes"} and v2["model_version"] == "1"

    # Through the predictor's Service, KServe's agent logs the request and the response as CloudEvents to
    # http://kubetfx-prediction-log-sink/ (a name CoreDNS resolves); the sink writes them to its volume.
    with PortForward(cluster, "service/penguin-predictor", remote_port=80) as forward:
        assert forward.post("/v1/models/penguin:predict", {"instances": INSTANCES})["model_version"] == "1"
    logged = _logged_records(deployed[PREDICTION_LOG_CLAIM], "penguin", len(INSTANCES))
    assert [r["features"]["island"] for r in logged] == [i["island"] for i in INSTANCES], logged
    assert {r["model_version"] for r in logged} == {"1"} and all(r.get("prediction") for r in logged), logged

    deployment = cluster.get("deployments", "-n", NAMESPACE)["items"]
    assert [d["metadata"]["name"] for d in deployment if d["metadata"]["name"].startswith("penguin")]
    volumes = cluster.get("pod", pod, "-n", NAMESPACE)["spec"]
    assert not volumes.get("initContainers"), "a storage initializer ran: the model should come from the volume"

    started = time.monotonic()
    assert push(tmp_path, model, repository, api, deploy, 2, "penguin")["version"] == 2  # a second push rolls out v2
    second = _wait_serving(cluster, 2)
    timings["push_to_serving_v2_s"] = round(time.monotonic() - started, 1)
    with PortForward(cluster, f"pod/{second}") as forward:
        assert forward.post("/v1/models/penguin:predict", {"instances": INSTANCES})["model_version"] == "2"

    base = model_repository_base()
    decision = rollout.RolloutDecision("rollback", "version 2 failed its check",
                                       rollout.rollback_patch(f"{base}/penguin/1", "1", "version 2 failed its check"))
    settings = pusher.deploy_settings.parse_settings(deploy, "penguin")
    started = time.monotonic()
    assert rollout.apply_rollout_decision(decision, settings, api=api)
    back = _wait_serving(cluster, 1)
    timings["rollback_to_serving_v1_s"] = round(time.monotonic() - started, 1)
    with PortForward(cluster, f"pod/{back}") as forward:
        assert forward.post("/v1/models/penguin:predict", {"instances": INSTANCES})["model_version"] == "1"
    with open(os.path.join(local_cluster.state_dir(), "serving-timings.json"), "w", encoding="utf-8") as handle:
        json.dump(timings, handle)  # for the record (docs/cluster.md): how long KServe took to serve each version
