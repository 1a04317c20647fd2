"""The Pusher's KServe settings come from the InferenceService an environment's serving template declares."""

import copy

import pytest

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.pusher import deploy_settings, inference_service
from kubetfx.pipelines import config as pipeline_config
from kubetfx.pipelines.cluster import kustomize
from kubetfx.pipelines.cluster import serving_template


@pytest.fixture(scope="module")
def rendered() -> dict:
    return {env: kustomize.render(pipeline_config.load_environment(env).serving_template_path())
            for env in ("dev", "prod")}


def settings_for(objects, base="pvc://kubetfx-model-repository", model_name="penguin"):
    return serving_template.deploy_settings(objects, model_name=model_name, storage_uri_base=base, apply=True,
                                            where="test")


def test_prod_serves_on_the_gpu_pool_with_canaries(rendered):
    deploy = settings_for(rendered["prod"], base="s3://kubetfx-models/models")
    settings = deploy_settings.parse_settings(deploy, "penguin")
    assert settings.deployment_mode == "Serverless" and settings.canary_traffic_percent == 10
    assert settings.resources["limits"]["nvidia.com/gpu"] == "1"
    assert settings.node_selector and settings.tolerations and settings.image.endswith("-gpu")
    isvc = inference_service.build_inference_service(settings, storage_uri="s3://kubetfx-models/models/penguin/3",
                                                 model_name="penguin", model_version=3)
    template = next(o for o in rendered["prod"] if o["kind"] == "InferenceService")
    for key in ("nodeSelector", "tolerations", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget",
                "serviceAccountName", "logger"):
        assert isvc["spec"]["predictor"][key] == template["spec"]["predictor"][key], key
    assert isvc["spec"]["predictor"]["model"]["resources"] == template["spec"]["predictor"]["model"]["resources"]
    assert isvc["spec"]["predictor"]["model"]["image"] == template["spec"]["predictor"]["model"]["image"]


def test_dev_is_cpu_only_and_raw(rendered):
    deploy = settings_for(rendered["dev"])
    assert deploy["deployment_mode"] == "RawDeployment" and deploy["namespace"] == "kubetfx-dev"
    assert "nvidia.com/gpu" not in str(deploy) and "image" not in deploy
    assert deploy["logger"] == {"mode": "all", "url": "http://kubetfx-prediction-log-sink/"}  # the monitor's input


def test_a_model_without_its_own_template_uses_the_environments_only_one(rendered):
    deploy = settings_for(rendered["dev"], model_name="churn")
    assert deploy["name"] == "churn" and deploy["max_replicas"] == 1


def test_a_template_field_the_pusher_cannot_carry_is_an_error_not_dropped(rendered):
    objects = copy.deepcopy(rendered["dev"])
    isvc = next(o for o in objects if o["kind"] == "InferenceService")
    isvc["spec"]["transformer"] = {"containers": [{"name": "t", "image": "x"}]}
    isvc["spec"]["predictor"]["model"]["env"] = [{"name": "A", "value": "1"}]
    with pytest.raises(ConfigError, match=r"sets spec\.transformer, spec\.predictor\.model\.env, which the Pusher"):
        settings_for(objects)


def test_the_template_and_the_environments_model_repository_must_agree(rendered):
    with pytest.raises(ConfigError, match="reads models from 'pvc://kubetfx-model-repository/penguin/1' but the "
                                          "environment's model repository is 's3://elsewhere'"):
        settings_for(rendered["dev"], base="s3://elsewhere")


def test_a_bad_template_fails_at_compile_time_with_the_pushers_own_check(rendered):
    objects = copy.deepcopy(rendered["dev"])
    next(o for o in objects if o["kind"] == "InferenceService")["spec"]["predictor"]["minReplicas"] = 0
    with pytest.raises(ConfigError, match="min_replicas=0 .scale to zero. needs Knative mode"):
        settings_for(objects)


def test_gpu_counts_may_be_quoted_as_kubernetes_writes_them():
    settings = deploy_settings.parse_settings({"namespace": "ns", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
                                            "penguin")
    assert settings.resources["limits"]["nvidia.com/gpu"] == "2"
    with pytest.raises(ConfigError, match="must be an integer"):
        deploy_settings.parse_settings({"namespace": "ns", "resources": {"limits": {"nvidia.com/gpu": "two"}}}, "m")
    with pytest.raises(ConfigError, match=r"tolerations\[0\]\.operator must be Exists or Equal"):
        deploy_settings.parse_settings({"namespace": "ns", "tolerations": [{"key": "k", "operator": "Maybe"}]}, "m")
