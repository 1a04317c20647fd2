"""The Pusher's InferenceService in every shape it takes: one case matrix for the offline and the server checks."""

from kubetfx.components.common import image
from kubetfx.components.pusher import deploy_settings, inference_service


def images_env() -> dict[str, str]:
    return image._read_env_file(image.IMAGES_ENV)


STORAGE_BASE = "pvc://kubetfx-model-repository"
PREVIOUS = {inference_service.PREVIOUS_STORAGE_URI: f"{STORAGE_BASE}/penguin/2", inference_service.PREVIOUS_MODEL_VERSION: "2"}
PUSHER_CASES = {
    "kubetfx-default": ({}, {}),
    "tensorflow-runtime": ({"runtime": "tensorflow", "protocol_version": "v2"}, {}),
    "serverless-canary-concurrency": (
        {"deployment_mode": "Serverless", "min_replicas": 0, "max_replicas": 5, "scale_metric": "concurrency",
         "scale_target": 8, "canary_traffic_percent": 10},
        {"canary_traffic_percent": 10, "previous": PREVIOUS}),
    "raw-min-max-cpu": (
        {"deployment_mode": "RawDeployment", "min_replicas": 1, "max_replicas": 3, "scale_metric": "cpu",
         "scale_target": 70}, {}),
    "resources-gpus": (
        {"resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": 4, "memory": "8Gi"}},
         "gpus": 1, "runtime_version": "1", "service_account_name": "kubetfx-model-reader",
         "labels": {"team": "ml"}, "annotations": {"example.com/owner": "ml-platform"}}, {}),
    "gpu-pool-placement": (
        {"gpus": 1, "image": images_env()["KUBETFX_GPU_IMAGE"], "node_selector": {"nvidia.com/gpu.present": "true"},
         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                         {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute",
                          "tolerationSeconds": 60}]}, {}),
}


def pusher_isvc(deploy: dict, **build) -> dict:
    settings = deploy_settings.parse_settings({"namespace": "kubetfx", **deploy}, "penguin_v2")
    uri = deploy_settings.storage_uri(settings, STORAGE_BASE, "penguin_v2", 3)
    return inference_service.build_inference_service(settings, storage_uri=uri, model_name="penguin_v2",
                                                     model_version=3, now=1_795_000_000.0, **build)
