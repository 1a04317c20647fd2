"""The Pusher's InferenceService writes on a real API server, as the pipeline runner's ServiceAccount.

create → patch (a new version) → canary → rollback → a newer canary → promote, each read back from
the server: the spec, the kubetfx.io annotations (no stale rollout reason after a promote), and the
field manager of every write (``kubetfx-pusher``). KServe's controller is not running here, so its
status stays empty; the promote/rollback decisions are applied as the Pusher's rollout code applies them.
"""

import pytest

from kubetfx.components.pusher import deploy_settings, inference_service, kube_api, rollout

from helpers.managed_fields import spec_writers

NAMESPACE = "kubetfx-dev"
BASE = "pvc://kubetfx-model-repository"


@pytest.fixture(scope="module")
def deployed(cluster, kserve_crds):
    cluster.delete_namespace(NAMESPACE)
    result = cluster.kubetfx("deploy", "--env", "dev")
    assert result.returncode == 0, result.stderr
    yield NAMESPACE
    cluster.delete_namespace(NAMESPACE)


def _live(cluster, name: str) -> dict:
    return cluster.get("inferenceservice", name, "-n", NAMESPACE)


def _annotations(obj: dict) -> dict:
    return {k: v for k, v in obj["metadata"]["annotations"].items() if k.startswith(inference_service.PREFIX)}


def test_create_patch_canary_rollback_promote_as_the_runner(cluster, deployed, runner_api, tmp_path):
    api = runner_api(NAMESPACE, tmp_path)
    settings = deploy_settings.parse_settings({
        "name": "penguin-canary", "namespace": NAMESPACE, "deployment_mode": "Serverless",
        "canary_traffic_percent": 10, "storage_uri_base": BASE, "max_replicas": 2}, "penguin")

    def push(version: int) -> dict:
        return kube_api.deploy(settings, storage_uri=f"{BASE}/penguin/{version}", model_name="penguin",
                               model_version=version, api=api)

    created = push(1)
    live = _live(cluster, "penguin-canary")
    assert created["action"] == "created" and "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert live["spec"]["predictor"]["model"]["storageUri"] == f"{BASE}/penguin/1"
    assert _annotations(live)[inference_service.ROLLOUT] == "full"

    patched = push(2)
    live = _live(cluster, "penguin-canary")
    assert patched["action"] == "patched" and live["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert live["spec"]["predictor"]["model"]["storageUri"] == f"{BASE}/penguin/2"
    assert _annotations(live)[inference_service.PREVIOUS_STORAGE_URI] == f"{BASE}/penguin/1"
    assert _annotations(live)[inference_service.ROLLOUT] == "canary"

    reason = "canary answered 5xx on 12% of requests"
    decision = rollout.RolloutDecision("rollback", reason, rollout.rollback_patch(f"{BASE}/penguin/1", "1", reason))
    assert rollout.apply_rollout_decision(decision, settings, api=api)
    live = _live(cluster, "penguin-canary")
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert live["spec"]["predictor"]["model"]["storageUri"] == f"{BASE}/penguin/1"
    assert _annotations(live)[inference_service.MODEL_VERSION] == "1"
    assert _annotations(live)[inference_service.ROLLOUT] == "rolled-back"
    assert _annotations(live)[inference_service.ROLLOUT_REASON] == reason

    push(3)  # a newer candidate: a canary again, and the old rollback's reason is gone
    live = _live(cluster, "penguin-canary")
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert inference_service.ROLLOUT_REASON not in _annotations(live)
    assert _annotations(live)[inference_service.PREVIOUS_MODEL_VERSION] == "1"

    decision = rollout.RolloutDecision("promote", "canary ready", rollout.promote_patch())
    assert rollout.apply_rollout_decision(decision, settings, api=api)
    live = _live(cluster, "penguin-canary")
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert live["spec"]["predictor"]["model"]["storageUri"] == f"{BASE}/penguin/3"
    assert _annotations(live)[inference_service.ROLLOUT] == "promoted"
    assert inference_service.ROLLOUT_REASON not in _annotations(live)
    assert spec_writers(live) == {kube_api.FIELD_MANAGER}


def test_a_rollback_then_promote_leaves_no_stale_reason(cluster, deployed, runner_api, tmp_path):
    api = runner_api(NAMESPACE, tmp_path)
    settings = deploy_settings.parse_settings({
        "name": "penguin-reason", "namespace": NAMESPACE, "deployment_mode": "Serverless",
        "canary_traffic_percent": 20, "storage_uri_base": BASE}, "penguin")
    for version in (1, 2):
        kube_api.deploy(settings, storage_uri=f"{BASE}/penguin/{version}", model_name="penguin",
                        model_version=version, api=api)
    for decision in (rollout.RolloutDecision("rollback", "slow", rollout.rollback_patch(f"{BASE}/penguin/1", "1",
                                                                                       "slow")),
                     rollout.RolloutDecision("promote", "ok", rollout.promote_patch())):
        rollout.apply_rollout_decision(decision, settings, api=api)
    assert inference_service.ROLLOUT_REASON not in _annotations(_live(cluster, "penguin-reason"))


def test_the_runner_cannot_delete_what_it_deployed(cluster, deployed, runner_api, tmp_path):
    from kubernetes.client.exceptions import ApiException

    api = runner_api(NAMESPACE, tmp_path)
    settings = deploy_settings.parse_settings({"name": "penguin-keep", "namespace": NAMESPACE,
                                               "deployment_mode": "RawDeployment", "storage_uri_base": BASE},
                                              "penguin")
    kube_api.deploy(settings, storage_uri=f"{BASE}/penguin/1", model_name="penguin", model_version=1, api=api)
    with pytest.raises(ApiException) as refused:
        api.delete_namespaced_custom_object(inference_service.GROUP, inference_service.VERSION, NAMESPACE,
                                            inference_service.PLURAL, "penguin-keep")
    assert refused.value.status == 403
