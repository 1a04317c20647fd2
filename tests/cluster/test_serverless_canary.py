"""The canary for real: in Serverless mode the Pusher's second push is a Knative canary that the ingress splits.

KServe (its controller, on the local cluster) turns the Pusher's InferenceService into a Knative
Service; Knative Serving (pods on the node) makes a Revision per pushed version and a KIngress with
the split; Traefik's Knative provider serves it. Requests go through the ingress on 127.0.0.1 with
the predictor's host name, and the response's model_version says which revision answered. The
Pusher's own rollout logic (rollout.decide_rollout on the real InferenceService's status) then
promotes version 2, and rolls a third push back. Needs `make cluster-up` with all layers and `make image`.
"""

import collections
import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import knative_serving
import local_cluster
from helpers.cluster_serving import INSTANCES, MODEL_REPOSITORY_CLAIM, NAMESPACE, dev_deploy_settings, push
from kubetfx.components.pusher import executor as pusher
from kubetfx.components.pusher import rollout

MODEL = "penguin_canary"
SERVICE = "penguin-canary"  # the InferenceService's name for MODEL
CANARY_PERCENT = 30
REQUESTS = 40
TIMEOUT_S = 300


def _serverless_deploy() -> dict:
    """The dev overlay's serving shape in Serverless mode with a canary, as prod's overlay has it, sized for a
    two-core node (two revisions serve at once) and without the logger sidecar (test_serving covers it)."""
    deploy = dev_deploy_settings(MODEL)
    deploy.pop("logger", None)
    deploy.update(deployment_mode="Serverless", canary_traffic_percent=CANARY_PERCENT, scale_metric="concurrency",
                  scale_target=8, min_replicas=1, max_replicas=1,
                  resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}})
    return deploy


def _service(cluster) -> dict:
    return cluster.get("inferenceservice", SERVICE, "-n", NAMESPACE)


def _split(service: dict) -> dict:
    """{revision: percent} as the InferenceService's status reports Knative's traffic."""
    traffic = (((service.get("status") or {}).get("components") or {}).get("predictor") or {}).get("traffic") or []
    return {t["revisionName"]: t.get("percent", 0) for t in traffic}


def _host(service: dict) -> str:
    return urlsplit(service["status"]["components"]["predictor"]["url"]).hostname


def _predict(host: str) -> str | None:
    """One V1 request through the ingress as a client sends it; the answering model_version (None: not routed)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{knative_serving.INGRESS_PORT}/v1/models/{SERVICE}:predict",
        data=json.dumps({"instances": INSTANCES}).encode(), headers={"Host": host, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        if error.code in (404, 502, 503):  # the ingress has no route yet, or the revision is not there yet
            return None
        raise
    assert [p["class"] for p in body["predictions"]] == ["Adelie", "Gentoo"], body
    return body["model_version"]


def _answers(host: str, count: int = REQUESTS) -> collections.Counter:
    return collections.Counter(_predict(host) for _ in range(count))


def _wait(cluster, what: str, check) -> dict:
    """Poll the InferenceService until ``check(service)`` holds; its last state and the events if it never does."""
    deadline, service = time.monotonic() + TIMEOUT_S, {}
    while time.monotonic() < deadline:
        service = _service(cluster)
        if check(service):
            return service
        time.sleep(2)
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", check=False).stdout
    raise AssertionError(f"{what}: not reached in {TIMEOUT_S} s; status {json.dumps(service.get('status'))[:2000]}; "
                         f"events:\n{events[-3000:]}")


def _wait_all_answer(host: str, version: str) -> float:
    """Seconds until every one of 10 requests in a row is answered by ``version`` (the ingress converges)."""
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT_S:
        if _answers(host, 10) == collections.Counter({version: 10}):
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"version {version} does not answer every request after {TIMEOUT_S} s: {_answers(host, 10)}")


def _ready(service: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in (service.get("status") or {}).get("conditions", [])}
    predictor = (service.get("status") or {}).get("components", {}).get("predictor", {})
    created = predictor.get("latestCreatedRevision")
    return conditions.get("Ready") == "True" and created is not None and predictor.get("latestReadyRevision") == created


def _revision_versions(cluster) -> dict:
    """{revision: model version} of the Ready predictor pods (what the Pusher annotated each version with)."""
    pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kserve.io/inferenceservice={SERVICE}")["items"]
    return {p["metadata"]["labels"]["serving.knative.dev/revision"]:
            p["metadata"]["annotations"].get("kubetfx.io/model-version") for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}


def test_a_second_push_is_a_canary_split_by_the_ingress_then_promoted_and_a_third_is_rolled_back(
        cluster, deployed, penguin_model, runner_api, tmp_path):
    deploy = _serverless_deploy()
    settings = pusher.deploy_settings.parse_settings(deploy, MODEL)
    api = runner_api(NAMESPACE, tmp_path)
    repository, model = deployed[MODEL_REPOSITORY_CLAIM], penguin_model["model"]
    timings, started = {}, time.monotonic()
    try:
        assert push(tmp_path, model, repository, api, deploy, 1, MODEL)["version"] == 1
        service = _wait(cluster, "version 1 Ready", _ready)
        host = _host(service)
        assert service["status"]["deploymentMode"] in ("Serverless", "Knative")  # KServe's two names for the mode
        knative = cluster.get("ksvc", f"{SERVICE}-predictor", "-n", NAMESPACE)  # a real Knative Service
        assert knative["status"]["url"].endswith(f"{SERVICE}-predictor.{NAMESPACE}.{knative_serving.DOMAIN}")
        timings["push_to_ready_v1_s"] = round(time.monotonic() - started, 1)
        timings["ready_to_answering_v1_s"] = round(_wait_all_answer(host, "1"), 1)
        first_revision = service["status"]["components"]["predictor"]["latestReadyRevision"]

        # Version 2: a canary. KServe gives the new revision CANARY_PERCENT, the one rolled out before the rest.
        started = time.monotonic()
        result = push(tmp_path, model, repository, api, deploy, 2, MODEL)
        assert result["version"] == 2, result
        assert result["inference_service"]["canary_traffic_percent"] == CANARY_PERCENT, result["inference_service"]
        service = _wait(cluster, "the canary split", lambda s: rollout.decide_rollout(s).action == "promote")
        timings["push_to_canary_split_s"] = round(time.monotonic() - started, 1)
        second_revision = service["status"]["components"]["predictor"]["latestCreatedRevision"]
        assert _split(service) == {second_revision: CANARY_PERCENT, first_revision: 100 - CANARY_PERCENT}
        ingress = cluster.get("ingresses.networking.internal.knative.dev", f"{SERVICE}-predictor", "-n", NAMESPACE)
        rule = next(r for r in ingress["spec"]["rules"] if host in r["hosts"])  # not the tagged hosts' rules
        splits = {s["serviceName"]: s["percent"] for path in rule["http"]["paths"] for s in path["splits"]}
        assert splits == {second_revision: CANARY_PERCENT, first_revision: 100 - CANARY_PERCENT}, ingress["spec"]
        assert _revision_versions(cluster) == {first_revision: "1", second_revision: "2"}
        answers = _answers(host)
        assert set(answers) == {"1", "2"}, answers  # both revisions answer, in the asked proportion
        assert 0.5 * CANARY_PERCENT <= 100 * answers["2"] / REQUESTS <= 1.5 * CANARY_PERCENT, answers
        timings["canary_answers"] = dict(answers)

        # The Pusher's rollout logic promotes it: all traffic to version 2.
        decision = rollout.decide_rollout(service)
        started = time.monotonic()
        assert rollout.apply_rollout_decision(decision, settings, api=api)
        service = _wait(cluster, "the promotion", lambda s: _split(s) == {second_revision: 100})
        assert rollout.decide_rollout(service).action == "none"
        _wait_all_answer(host, "2")
        timings["promote_to_all_v2_s"] = round(time.monotonic() - started, 1)

        # Version 3: a canary that fails its check, rolled back to version 2 by the Pusher's logic.
        assert push(tmp_path, model, repository, api, deploy, 3, MODEL)["version"] == 3
        service = _wait(cluster, "the second canary split", lambda s: rollout.decide_rollout(s).action == "promote")
        third_revision = service["status"]["components"]["predictor"]["latestCreatedRevision"]
        assert _split(service) == {third_revision: CANARY_PERCENT, second_revision: 100 - CANARY_PERCENT}
        assert set(_answers(host)) == {"2", "3"}
        decision = rollout.decide_rollout(service, canary_healthy=False)
        assert decision.action == "rollback", decision
        started = time.monotonic()
        assert rollout.apply_rollout_decision(decision, settings, api=api)
        service = _wait(cluster, "the rollback", lambda s: _split(s).get(second_revision) == 100)
        predictor = service["spec"]["predictor"]
        assert predictor["canaryTrafficPercent"] == 0 and predictor["model"]["storageUri"].endswith(f"/{MODEL}/2")
        _wait_all_answer(host, "2")
        timings["rollback_to_all_v2_s"] = round(time.monotonic() - started, 1)
        assert rollout.decide_rollout(service).action == "none"
    finally:
        with open(os.path.join(local_cluster.state_dir(), "canary-timings.json"), "w", encoding="utf-8") as handle:
            json.dump(timings, handle)  # for the record (docs/cluster.md)
        # Gone before the next test: its pods drain for up to a revision's timeout, which would hold up the
        # namespace's deletion at the end of the session.
        cluster.kubectl("delete", "inferenceservice", SERVICE, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
        cluster.kubectl("wait", "--for=delete", "pods", "-n", NAMESPACE, "-l",
                        f"serving.kserve.io/inferenceservice={SERVICE}", "--timeout=300s", check=False)
