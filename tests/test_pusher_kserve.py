"""The Pusher's KServe side offline: settings, the InferenceService object, create-vs-patch calls, canary decisions."""

import copy

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.pusher import deploy_settings, inference_service, kube_api, rollout

from helpers.kube_fakes import RecordingCustomObjectsApi

NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z
BASE = "gs://acme-models/repo"


def settings(**overrides):
    deploy = {"namespace": "ml"}
    deploy.update(overrides)
    return deploy_settings.parse_settings(deploy, "penguin")


def manifest(s=None, version=3, **kwargs):
    s = s or settings()
    uri = deploy_settings.storage_uri(s, BASE, "penguin", version)
    return inference_service.build_inference_service(s, storage_uri=uri, model_name="penguin", model_version=version,
                                      now=NOW, **kwargs)


# ---------------------------------------------------------------------------
# The serialized object


def test_kubetfx_runtime_manifest_fields():
    s = settings(min_replicas=1, max_replicas=4, scale_metric="concurrency", scale_target=8,
                 resources={"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
                 gpus=1, service_account_name="model-reader", labels={"team": "ml"})
    m = manifest(s)
    assert m["apiVersion"] == "serving.kserve.io/v1beta1" and m["kind"] == "InferenceService"
    assert m["metadata"]["name"] == "penguin" and m["metadata"]["namespace"] == "ml"
    assert m["metadata"]["labels"] == {"team": "ml", "app.kubernetes.io/managed-by": "kubetfx"}
    annotations = m["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"
    assert annotations["kubetfx.io/model-version"] == "3"
    assert annotations["kubetfx.io/rollout-started"] == "2026-11-18T11:06:40Z"
    predictor = m["spec"]["predictor"]
    assert predictor["minReplicas"] == 1 and predictor["maxReplicas"] == 4
    assert predictor["scaleMetric"] == "concurrency" and predictor["scaleTarget"] == 8
    assert predictor["serviceAccountName"] == "model-reader"
    assert "canaryTrafficPercent" not in predictor
    assert predictor["annotations"] == {"kubetfx.io/model-version": "3"}
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "kubetfx"}
    assert model["runtime"] == "kubetfx-predictor"
    assert model["storageUri"] == "gs://acme-models/repo/penguin/3"  # pinned to the version dir
    assert model["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                  "limits": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"}}
    assert set(model) == {"modelFormat", "runtime", "storageUri", "resources"}  # camelCase, no nulls/snake_case
    assert yaml.safe_load(inference_service.to_yaml(m)) == m


def test_tensorflow_runtime_serves_the_model_dir():
    s = settings(runtime="tensorflow", runtime_version="2.14.1")
    m = manifest(s, version=5)
    model = m["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "tensorflow", "version": "2.14.1"}
    assert model["storageUri"] == "gs://acme-models/repo/penguin"  # TF Serving picks the highest version dir
    assert "runtime" not in model  # KServe selects its TF Serving runtime
    # The version annotation changes the pod template, so each push rolls out and re-downloads.
    assert m["spec"]["predictor"]["annotations"] == {"kubetfx.io/model-version": "5"}


def test_raw_deployment_and_canary_annotations():
    m = manifest(settings(deployment_mode="RawDeployment", min_replicas=2, max_replicas=2, scale_metric="cpu"))
    assert m["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert m["spec"]["predictor"]["scaleMetric"] == "cpu"
    m = manifest(settings(canary_traffic_percent=10), canary_traffic_percent=10)
    assert m["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert m["metadata"]["annotations"]["kubetfx.io/rollout"] == "canary"


def test_defaults_and_struct_floats():
    s = deploy_settings.parse_settings({"min_replicas": 1.0, "max_replicas": 3.0, "canary_traffic_percent": 25.0,
                           "resources": {"limits": {"cpu": 1.5, "nvidia.com/gpu": 2.0}}}, "Penguin_Model.v2")
    assert s.name == "penguin-model-v2" and s.namespace == "default"
    assert s.runtime == "kubetfx" and s.deployment_mode == "Serverless" and s.apply is True
    assert (s.min_replicas, s.max_replicas, s.canary_traffic_percent) == (1, 3, 25)
    assert s.resources == {"limits": {"cpu": "1.5", "nvidia.com/gpu": "2"}}
    assert deploy_settings.parse_settings({}, "m") is None and deploy_settings.parse_settings(None, "m") is None
    assert deploy_settings.default_name("2024_model") == "m-2024-model"


def test_gpu_request_is_mirrored_into_limits():
    s = settings(resources={"requests": {"nvidia.com/gpu": 1, "cpu": "1"}})
    assert s.resources == {"requests": {"nvidia.com/gpu": "1", "cpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}


@pytest.mark.parametrize("deploy, message", [
    ({"runtime": "triton"}, "runtime 'triton' is unknown"),
    ({"deployment_mode": "RawDeployment", "canary_traffic_percent": 10}, "needs deployment_mode Serverless"),
    ({"deployment_mode": "Standard", "canary_traffic_percent": 10}, "needs deployment_mode Serverless"),
    ({"deployment_mode": "Fancy"}, "deployment_mode 'Fancy' is unknown"),
    ({"min_replicas": 3, "max_replicas": 2}, r"min_replicas \(3\) is above deploy.max_replicas \(2\)"),
    ({"min_replicas": -1}, "min_replicas must be >= 0"),
    ({"min_replicas": 1.5}, "min_replicas must be an integer"),
    ({"max_replicas": True}, "max_replicas must be an integer"),
    ({"canary_traffic_percent": 101}, "between 0 and 100"),
    ({"resources": {"limits": {"memory": "1.5.3Gi"}}}, r"resources.limits.memory: '1.5.3Gi' is not a resource"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu: 'lots' is not a resource quantity"),
    ({"resources": {"requests": {"cpu": "-1"}}}, "must be positive"),
    ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}, "cpu request 2 is above its limit 1"),
    ({"resources": {"limits": {"gpu": 1}}}, "unknown resource 'gpu'"),
    ({"resources": {"limits": {"nvidia.com/gpu": "half"}}}, "must be an integer"),
    ({"resources": {"cpu": "1"}}, "use 'requests' and 'limits'"),
    ({"gpus": 2, "resources": {"limits": {"nvidia.com/gpu": 1}}}, "contradicts"),
    ({"scale_metric": "latency"}, "scale_metric 'latency' is not supported"),
    ({"deployment_mode": "RawDeployment", "scale_metric": "concurrency"}, "not supported in RawDeployment"),
    ({"deployment_mode": "RawDeployment", "min_replicas": 0}, "scale to zero"),
    ({"name": "Penguin_Service"}, "not a valid InferenceService name"),
    ({"namespace": "ML Team"}, "not a valid namespace"),
    ({"storage_uri_base": "/mnt/models"}, "KServe cannot load a model from '/mnt/models'"),
    ({"replicas": 2}, "unknown setting.s. replicas"),
    ({"apply": "yes"}, "apply must be true or false"),
    ({"protocol_version": "v3"}, "protocol_version"),
])
def test_bad_settings_are_config_errors(deploy, message):
    with pytest.raises(ConfigError, match=message):
        deploy_settings.parse_settings(deploy, "penguin")


def test_storage_uri_needs_a_uri_kserve_can_read():
    with pytest.raises(ConfigError, match="storage_uri_base"):
        deploy_settings.storage_uri(settings(), "/mnt/models", "penguin", 1)
    s = settings(storage_uri_base="pvc://model-store/repo/")
    assert deploy_settings.storage_uri(s, "/mnt/models", "penguin", 4) == "pvc://model-store/repo/penguin/4"


# ---------------------------------------------------------------------------
# Create or patch


def test_deploy_creates_when_absent():
    api = RecordingCustomObjectsApi()
    s = settings(canary_traffic_percent=10)
    result = kube_api.deploy(s, storage_uri=f"{BASE}/penguin/1", model_name="penguin", model_version=1, api=api, now=NOW)
    assert [c[0] for c in api.calls] == ["get", "create"]
    assert api.calls[1][1:5] == ("serving.kserve.io", "v1beta1", "ml", "inferenceservices")
    body = api.calls[1][5]
    assert body == result["manifest"] and result["action"] == "created"
    assert "canaryTrafficPercent" not in body["spec"]["predictor"]  # a new service's only revision gets 100%
    assert body["spec"]["predictor"]["model"]["storageUri"] == f"{BASE}/penguin/1"


def test_deploy_patches_an_existing_service_with_a_canary():
    existing = manifest(settings(min_replicas=1, resources={"limits": {"nvidia.com/gpu": 1, "memory": "2Gi"}}),
                        version=1)
    existing["status"] = {"deploymentMode": "Serverless"}
    api = RecordingCustomObjectsApi({("ml", "penguin"): existing})
    s = settings(canary_traffic_percent=10, resources={"limits": {"memory": "1Gi"}})
    result = kube_api.deploy(s, storage_uri=f"{BASE}/penguin/2", model_name="penguin", model_version=2, api=api, now=NOW)
    assert [c[0] for c in api.calls] == ["get", "patch"]
    name, patch = api.calls[1][5], api.calls[1][6]
    assert name == "penguin" and result["action"] == "patched"
    predictor = patch["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"] == f"{BASE}/penguin/2"
    assert predictor["minReplicas"] is None  # no longer asked for: removed (merge-patch null)
    assert predictor["model"]["resources"] == {"limits": {"memory": "1Gi", "nvidia.com/gpu": None}}
    annotations = patch["metadata"]["annotations"]
    assert annotations["kubetfx.io/previous-storage-uri"] == f"{BASE}/penguin/1"
    assert annotations["kubetfx.io/previous-model-version"] == "1"
    assert annotations["kubetfx.io/model-version"] == "2"
    assert result["manifest"]["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_redeploying_the_same_version_is_not_a_canary():
    existing = manifest(version=2)
    api = RecordingCustomObjectsApi({("ml", "penguin"): existing})
    result = kube_api.deploy(settings(canary_traffic_percent=10), storage_uri=f"{BASE}/penguin/2", model_name="penguin",
                       model_version=2, api=api, now=NOW)
    assert result["canary_traffic_percent"] is None
    assert "canaryTrafficPercent" not in api.calls[1][6]["spec"]["predictor"]


def test_deploy_refuses_to_switch_deployment_mode():
    api = RecordingCustomObjectsApi({("ml", "penguin"): manifest(settings(deployment_mode="RawDeployment"))})
    with pytest.raises(kube_api.DeploymentError, match="cannot switch it to Serverless"):
        kube_api.deploy(settings(), storage_uri=f"{BASE}/penguin/4", model_name="penguin", model_version=4, api=api)
    api = RecordingCustomObjectsApi({("ml", "penguin"): manifest(settings(deployment_mode="Knative"))})
    kube_api.deploy(settings(), storage_uri=f"{BASE}/penguin/4", model_name="penguin", model_version=4, api=api)


def test_api_errors_become_actionable_messages():
    api = RecordingCustomObjectsApi(fail=ApiException(status=403, reason="Forbidden"))
    with pytest.raises(kube_api.DeploymentError, match="needs get/create/patch on inferenceservices.serving.kserve.io"):
        kube_api.deploy(settings(), storage_uri=f"{BASE}/penguin/1", model_name="penguin", model_version=1, api=api)


def test_unreachable_api_server_is_a_deployment_error():
    from kubernetes import client

    config = client.Configuration(host="http://127.0.0.1:1")  # nothing listens on port 1
    config.retries = 0
    api = client.CustomObjectsApi(client.ApiClient(config))
    with pytest.raises(kube_api.DeploymentError, match="cannot reach the Kubernetes API"):
        kube_api.deploy(settings(), storage_uri=f"{BASE}/penguin/1", model_name="penguin", model_version=1, api=api)


def test_make_api_without_a_cluster_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(kube_api.DeploymentError, match="no Kubernetes cluster reachable.*deploy.apply=false"):
        kube_api.make_api()


# ---------------------------------------------------------------------------
# Canary decisions on realistic status objects


def canary_service(status: dict, generation: int = 2, started: str = "2026-11-18T11:00:00Z") -> dict:
    isvc = manifest(settings(canary_traffic_percent=10), version=2, canary_traffic_percent=10,
                    previous={inference_service.PREVIOUS_STORAGE_URI: f"{BASE}/penguin/1", inference_service.PREVIOUS_MODEL_VERSION: "1"})
    isvc["metadata"]["annotations"][inference_service.ROLLOUT_STARTED] = started
    isvc["metadata"]["generation"] = generation
    isvc["status"] = status
    return isvc


def conditions(**states):
    return [{"type": kind, "status": value[0], "reason": value[1] if len(value) > 1 else None,
             "message": value[2] if len(value) > 2 else None, "lastTransitionTime": "2026-11-18T11:02:00Z"}
            for kind, value in states.items()]


SPLIT = [{"latestRevision": True, "percent": 10, "revisionName": "penguin-predictor-00002", "tag": "latest"},
         {"latestRevision": False, "percent": 90, "revisionName": "penguin-predictor-00001", "tag": "prev"}]
HEALTHY = {
    "observedGeneration": 2,
    "conditions": conditions(IngressReady=("True",), LatestDeploymentReady=("True",),
                             PredictorConfigurationReady=("True",), PredictorReady=("True",), Ready=("True",)),
    "components": {"predictor": {"latestCreatedRevision": "penguin-predictor-00002",
                                 "latestReadyRevision": "penguin-predictor-00002",
                                 "latestRolledoutRevision": "penguin-predictor-00001",
                                 "traffic": SPLIT}},
    "modelStatus": {"transitionStatus": "UpToDate"},
}


def test_healthy_canary_is_promoted():
    decision = rollout.decide_rollout(canary_service(HEALTHY), now=NOW)
    assert decision.action == "promote" and "00002" in decision.reason
    assert decision.patch["spec"]["predictor"] == {"canaryTrafficPercent": None}


def test_promotion_waits_for_min_ready_time_and_health():
    assert rollout.decide_rollout(canary_service(HEALTHY), now=NOW, min_ready_s=600).action == "wait"
    assert rollout.decide_rollout(canary_service(HEALTHY), now=NOW + 600, min_ready_s=600).action == "promote"
    decision = rollout.decide_rollout(canary_service(HEALTHY), now=NOW, canary_healthy=False)
    assert decision.action == "rollback" and "health check" in decision.reason


def test_failed_revision_is_rolled_back_to_the_previous_version():
    status = copy.deepcopy(HEALTHY)
    status["conditions"] = conditions(
        IngressReady=("True",), PredictorReady=("True",), Ready=("True",),
        LatestDeploymentReady=("False", "RevisionFailed",
                               'Revision "penguin-predictor-00002" failed with message: container exited (1).'),
        PredictorConfigurationReady=("False", "RevisionFailed"))
    status["components"]["predictor"]["latestReadyRevision"] = "penguin-predictor-00001"
    status["components"]["predictor"]["traffic"] = [{"latestRevision": False, "percent": 100,
                                                      "revisionName": "penguin-predictor-00001", "tag": "prev"}]
    decision = rollout.decide_rollout(canary_service(status), now=NOW)
    assert decision.action == "rollback"
    assert "RevisionFailed" in decision.reason and "penguin-predictor-00002" in decision.reason
    predictor = decision.patch["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 0
    assert predictor["model"] == {"storageUri": f"{BASE}/penguin/1"}
    assert predictor["annotations"] == {inference_service.MODEL_VERSION: "1"}
    assert decision.patch["metadata"]["annotations"][inference_service.ROLLOUT] == "rolled-back"


def test_model_load_failure_is_rolled_back():
    status = copy.deepcopy(HEALTHY)
    status["modelStatus"] = {"transitionStatus": "BlockedByFailedLoad",
                             "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "bad saved_model.pb"}}
    decision = rollout.decide_rollout(canary_service(status), now=NOW)
    assert decision.action == "rollback" and "ModelLoadFailed" in decision.reason


def test_revision_still_starting_waits_then_times_out():
    status = copy.deepcopy(HEALTHY)
    status["conditions"] = conditions(LatestDeploymentReady=("Unknown", "Deploying"), Ready=("True",))
    status["components"]["predictor"]["latestReadyRevision"] = "penguin-predictor-00001"
    isvc = canary_service(status)
    assert rollout.decide_rollout(isvc, now=NOW).action == "wait"
    late = rollout.decide_rollout(isvc, now=NOW + 3600, progress_deadline_s=600)
    assert late.action == "rollback" and "not ready" in late.reason


def test_unreconciled_generation_and_unsplit_traffic_wait():
    status = copy.deepcopy(HEALTHY)
    status["observedGeneration"] = 1
    assert "generation 2" in rollout.decide_rollout(canary_service(status), now=NOW).reason
    status = copy.deepcopy(HEALTHY)
    status["components"]["predictor"]["traffic"] = [{"latestRevision": True, "percent": 100,
                                                      "revisionName": "penguin-predictor-00002"}]
    decision = rollout.decide_rollout(canary_service(status), now=NOW)
    assert decision.action == "wait" and "traffic not split" in decision.reason


def test_no_canary_in_progress():
    isvc = canary_service(HEALTHY)
    del isvc["spec"]["predictor"]["canaryTrafficPercent"]
    assert rollout.decide_rollout(isvc, now=NOW).action == "none"
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = 0
    assert rollout.decide_rollout(isvc, now=NOW).action == "none"


def test_apply_rollout_decision_patches_only_for_promote_or_rollback():
    api = RecordingCustomObjectsApi()
    s = settings()
    decision = rollout.decide_rollout(canary_service(HEALTHY), now=NOW)
    assert rollout.apply_rollout_decision(decision, s, api=api) is True
    assert api.calls == [("patch", "serving.kserve.io", "v1beta1", "ml", "inferenceservices", "penguin",
                          decision.patch)]
    assert rollout.apply_rollout_decision(rollout.RolloutDecision("wait", "not yet"), s, api=api) is False
    assert len(api.calls) == 1
