"""The KServe InferenceService the Pusher serves a model version with: its names, the object, and update patches.

The object is built with the kserve SDK's typed models and serialized with
``kubernetes.client.ApiClient().sanitize_for_serialization`` (camelCase, what the API server and
``kubectl apply -f`` take). Runtimes: ``kubetfx`` (our predictor, ServingRuntime
``kubetfx-predictor``, model format ``kubetfx``): ``storageUri`` pins the version directory
``<base>/<model>/<version>``, so every revision serves exactly one version; ``tensorflow``
(KServe's TF Serving runtime): ``storageUri`` is ``<base>/<model>`` and each push sets the
predictor annotation ``kubetfx.io/model-version``, which rolls out a new revision.

The Pusher owns the whole object (field manager ``kubetfx-pusher``, kube_api.py): ``make
deploy`` never applies it (docs/cluster.md, "Who owns what").
"""

import datetime as dt
import time

from kubetfx.components.pusher.deploy_settings import DeploySettings

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"

KUBETFX_RUNTIME = "kubetfx-predictor"
KUBETFX_MODEL_FORMAT = "kubetfx"
TENSORFLOW_MODEL_FORMAT = "tensorflow"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"

PREFIX = "kubetfx.io/"
MODEL_NAME = PREFIX + "model-name"
MODEL_VERSION = PREFIX + "model-version"
PREVIOUS_MODEL_VERSION = PREFIX + "previous-model-version"
PREVIOUS_STORAGE_URI = PREFIX + "previous-storage-uri"
ROLLOUT = PREFIX + "rollout"
ROLLOUT_STARTED = PREFIX + "rollout-started"
ROLLOUT_REASON = PREFIX + "rollout-reason"
MANAGED_BY = "app.kubernetes.io/managed-by"

# Predictor / model fields this module owns: on update, ones no longer wanted are removed (null in the merge patch).
OWNED_PREDICTOR_KEYS = ("canaryTrafficPercent", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget",
                        "serviceAccountName", "nodeSelector", "tolerations", "logger")
OWNED_MODEL_KEYS = ("runtime", "runtimeVersion", "protocolVersion", "image")


def _timestamp(now: float | None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_typed(settings: DeploySettings, *, storage_uri: str, model_name: str, model_version: int,
                canary_traffic_percent: int | None = None, previous: dict | None = None, now: float | None = None):
    """The ``kserve.V1beta1InferenceService`` for one model version."""
    from kserve import (V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1ModelFormat,
                        V1beta1ModelSpec, V1beta1PredictorSpec)
    from kserve import V1beta1LoggerSpec
    from kubernetes.client import V1ObjectMeta, V1ResourceRequirements, V1Toleration

    if settings.runtime == "kubetfx":
        model_format = V1beta1ModelFormat(name=KUBETFX_MODEL_FORMAT)
        runtime = settings.runtime_name or KUBETFX_RUNTIME
    else:
        model_format = V1beta1ModelFormat(name=TENSORFLOW_MODEL_FORMAT)
        runtime = settings.runtime_name  # None: KServe picks its TF Serving runtime
    if settings.runtime_version:
        model_format.version = settings.runtime_version
    resources = None
    if settings.resources:
        resources = V1ResourceRequirements(requests=settings.resources.get("requests"),
                                           limits=settings.resources.get("limits"))
    model = V1beta1ModelSpec(name=None, model_format=model_format, runtime=runtime,
                             storage_uri=storage_uri, protocol_version=settings.protocol_version,
                             resources=resources, image=settings.image)
    predictor = V1beta1PredictorSpec(
        model=model, min_replicas=settings.min_replicas, max_replicas=settings.max_replicas,
        scale_metric=settings.scale_metric, scale_target=settings.scale_target,
        service_account_name=settings.service_account_name, canary_traffic_percent=canary_traffic_percent,
        node_selector=settings.node_selector or None,
        tolerations=[V1Toleration(key=t.get("key"), operator=t.get("operator"), value=t.get("value"),
                                  effect=t.get("effect"), toleration_seconds=t.get("tolerationSeconds"))
                     for t in settings.tolerations] or None,
        logger=V1beta1LoggerSpec(mode=settings.logger["mode"], url=settings.logger.get("url"))
        if settings.logger else None,
        annotations={MODEL_VERSION: str(model_version)})
    annotations = dict(settings.annotations)
    annotations.update({
        DEPLOYMENT_MODE_ANNOTATION: settings.deployment_mode,
        MODEL_NAME: model_name,
        MODEL_VERSION: str(model_version),
        ROLLOUT: "canary" if canary_traffic_percent is not None else "full",
        ROLLOUT_STARTED: _timestamp(now),
    })
    for key, value in (previous or {}).items():
        if value is not None:
            annotations[key] = str(value)
    labels = dict(settings.labels)
    labels[MANAGED_BY] = "kubetfx"
    metadata = V1ObjectMeta(name=settings.name, namespace=settings.namespace, labels=labels, annotations=annotations)
    return V1beta1InferenceService(api_version=API_VERSION, kind=KIND, metadata=metadata,
                                   spec=V1beta1InferenceServiceSpec(predictor=predictor))


def serialize(obj) -> dict:
    """A typed kserve/kubernetes object as the camelCase dict the API server takes."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def build_inference_service(settings: DeploySettings, **kwargs) -> dict:
    """:func:`build_typed`, serialized (camelCase)."""
    return serialize(build_typed(settings, **kwargs))


def to_yaml(manifest: dict) -> str:
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


def get_path(obj: dict, *keys, default=None):
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj



def update_patch(existing: dict, desired: dict) -> dict:
    """A JSON merge patch turning ``existing`` into ``desired`` for the fields this module owns.

    Labels/annotations are merged (others' keys kept), except that ``kubetfx.io/`` annotations
    ``desired`` no longer carries are removed (an old rollback's reason never outlives the next
    push); predictor/model fields we own that ``desired`` no longer sets become null (removed),
    e.g. a finished canary's ``canaryTrafficPercent``; resources are replaced as a whole.
    """
    old_pred = get_path(existing, "spec", "predictor", default={}) or {}
    new_pred = dict(get_path(desired, "spec", "predictor", default={}))
    old_model = old_pred.get("model") or {}
    new_model = dict(new_pred.get("model") or {})
    for key in OWNED_PREDICTOR_KEYS:
        if key not in new_pred and key in old_pred:
            new_pred[key] = None
    for key in OWNED_MODEL_KEYS:
        if key not in new_model and key in old_model:
            new_model[key] = None
    old_resources = old_model.get("resources") or {}
    new_resources = dict(new_model.get("resources") or {})
    for section in ("requests", "limits"):
        old_section = old_resources.get(section) or {}
        if old_section:
            merged = dict(new_resources.get(section) or {})
            for resource in old_section:
                merged.setdefault(resource, None)
            new_resources[section] = merged
    if new_resources or old_resources:
        new_model["resources"] = new_resources
    new_pred["model"] = new_model
    annotations = dict(get_path(desired, "metadata", "annotations", default={}))
    for key in get_path(existing, "metadata", "annotations", default={}) or {}:
        if key.startswith(PREFIX) and key not in annotations:
            annotations[key] = None
    return {"metadata": {"labels": get_path(desired, "metadata", "labels", default={}), "annotations": annotations},
            "spec": {"predictor": new_pred}}


