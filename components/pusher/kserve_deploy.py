"""Create or update a KServe InferenceService for a pushed model version.

The object is built with the kserve SDK's typed models and serialized with
``kubernetes.client.ApiClient().sanitize_for_serialization`` (camelCase, what the
API server and ``kubectl apply -f`` take). API calls go through
``kubernetes.client.CustomObjectsApi`` (group ``serving.kserve.io``, version
``v1beta1``, plural ``inferenceservices``): get, then create or merge-patch.
Every function that talks to a cluster takes the API object as a parameter, so
tests pass a fake; :func:`make_api` builds the real one (in-cluster config,
falling back to kubeconfig) only when asked.

Runtimes (``deploy["runtime"]``):

* ``"kubetfx"`` (default): our predictor, ServingRuntime ``kubetfx-predictor``,
  model format ``kubetfx``; ``storageUri`` is pinned to the version directory
  ``<base>/<model>/<version>``, so every revision serves exactly one version and
  a canary compares two known versions.
* ``"tensorflow"``: KServe's TF Serving runtime (model format ``tensorflow``);
  ``storageUri`` is ``<base>/<model>`` and TF Serving serves the highest version
  dir it finds. The storage initializer copies the model only when a pod starts,
  so each push also sets the predictor annotation ``kubetfx.io/model-version``,
  which changes the pod template and rolls out a new revision.

Canary rollouts (``canary_traffic_percent``) need Knative (``Serverless``) mode:
on update the new revision gets that share of traffic and the previous rolled-out
revision the rest. :func:`decide_rollout` reads the InferenceService status and
says promote / rollback / wait; :func:`apply_rollout_decision` patches it.
"""

import datetime as dt
import math
import re
import time
from dataclasses import dataclass, field

from kubetfx.components.common.errors import ConfigError, KubetfxError

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"

KUBETFX_RUNTIME = "kubetfx-predictor"
KUBETFX_MODEL_FORMAT = "kubetfx"
TENSORFLOW_MODEL_FORMAT = "tensorflow"
RUNTIMES = ("kubetfx", "tensorflow")

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# KServe >= 0.16 also calls these "Knative" and "Standard"; both spellings are accepted and passed through.
KNATIVE_MODES = ("Serverless", "Knative")
RAW_MODES = ("RawDeployment", "Standard")
DEPLOYMENT_MODES = KNATIVE_MODES + RAW_MODES

SCALE_METRICS = ("cpu", "memory", "concurrency", "rps")
RAW_SCALE_METRICS = ("cpu", "memory")  # HPA; concurrency/rps need the Knative autoscaler
STORAGE_SCHEMES = ("gs://", "s3://", "pvc://", "https://", "http://", "hdfs://", "webhdfs://", "oci://", "hf://")
GPU_RESOURCE = "nvidia.com/gpu"
PROTOCOL_VERSIONS = ("v1", "v2", "grpc-v2")

ANNOTATION_PREFIX = "kubetfx.io/"
MODEL_NAME = ANNOTATION_PREFIX + "model-name"
MODEL_VERSION = ANNOTATION_PREFIX + "model-version"
PREVIOUS_MODEL_VERSION = ANNOTATION_PREFIX + "previous-model-version"
PREVIOUS_STORAGE_URI = ANNOTATION_PREFIX + "previous-storage-uri"
ROLLOUT = ANNOTATION_PREFIX + "rollout"
ROLLOUT_STARTED = ANNOTATION_PREFIX + "rollout-started"
ROLLOUT_REASON = ANNOTATION_PREFIX + "rollout-reason"
MANAGED_BY = "app.kubernetes.io/managed-by"

# Predictor / model fields this module owns: on update, ones no longer wanted are removed (null in the merge patch).
OWNED_PREDICTOR_KEYS = ("canaryTrafficPercent", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget",
                        "serviceAccountName")
OWNED_MODEL_KEYS = ("runtime", "runtimeVersion", "protocolVersion")
FAILURE_CONDITIONS = ("PredictorConfigurationReady", "LatestDeploymentReady", "PredictorReady", "Ready")
FAILED_MODEL_STATES = ("BlockedByFailedLoad", "InvalidSpec")

SETTINGS_KEYS = ("name", "namespace", "runtime", "runtime_name", "runtime_version", "protocol_version",
                 "storage_uri_base", "deployment_mode", "min_replicas", "max_replicas", "scale_metric",
                 "scale_target", "resources", "gpus", "service_account_name", "canary_traffic_percent",
                 "labels", "annotations", "image", "node_selector", "tolerations", "logger", "apply")
LOGGER_MODES = ("all", "request", "response")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class DeploymentError(KubetfxError):
    """The cluster refused or could not be reached; the message says what to fix."""


# ---------------------------------------------------------------------------
# Settings


@dataclass
class DeploySettings:
    """Validated ``deploy`` parameters (see :data:`SETTINGS_KEYS`)."""

    name: str
    namespace: str
    runtime: str = "kubetfx"
    runtime_name: str | None = None
    runtime_version: str | None = None
    protocol_version: str | None = None
    storage_uri_base: str | None = None
    deployment_mode: str = "Serverless"
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_metric: str | None = None
    scale_target: int | None = None
    resources: dict = field(default_factory=dict)  # {"requests": {...}, "limits": {...}}
    service_account_name: str | None = None
    canary_traffic_percent: int | None = None
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    image: str | None = None  # overrides the runtime's image (e.g. the GPU image on a GPU pool)
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)  # [{"key", "operator", "value", "effect"}]
    logger: dict = field(default_factory=dict)  # KServe's inference logger: {"mode": "all", "url": sink}
    apply: bool = True

    @property
    def knative(self) -> bool:
        return self.deployment_mode in KNATIVE_MODES


def default_name(model_name: str) -> str:
    """A DNS-1035 InferenceService name from a repository model name (``penguin_v2`` -> ``penguin-v2``)."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    return name[:63].rstrip("-")


def default_namespace() -> str:
    """The pod's namespace on a cluster, else ``default``."""
    try:
        with open(_SA_NAMESPACE_FILE, encoding="utf-8") as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


def _int(value, key: str, minimum: int, maximum: int | None = None) -> int:
    # KFP passes dict parameters as protobuf Structs: integers may arrive as 3.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
        raise ConfigError(f"deploy.{key} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"deploy.{key} must be {bound}, got {value}")
    return value


def _str(value, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"deploy.{key} must be a string, got {value!r}")
    return value.strip()


def _quantity(value, where: str) -> str:
    """A Kubernetes resource quantity ("500m", "1Gi", 2) as a string; ConfigError if malformed."""
    from kubernetes.utils import parse_quantity

    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        raise ConfigError(f"deploy.{where}: {value!r} is not a resource quantity (examples: '500m', '2', '1Gi')")
    text = str(int(value)) if isinstance(value, float) and value == int(value) else str(value).strip()
    try:
        parsed = parse_quantity(text)
    except (ValueError, TypeError, ArithmeticError):
        raise ConfigError(f"deploy.{where}: {value!r} is not a resource quantity "
                          "(examples: '500m', '2', '1.5', '512Mi', '1Gi')") from None
    if parsed <= 0:
        raise ConfigError(f"deploy.{where}: must be positive, got {value!r}")
    return text


def _resources(raw, gpus) -> dict:
    from kubernetes.utils import parse_quantity

    if raw in (None, ""):
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"deploy.resources must be a dict like {{'requests': {{'cpu': '500m'}}, "
                          f"'limits': {{'memory': '1Gi'}}}}, got {raw!r}")
    unknown = set(raw) - {"requests", "limits"}
    if unknown:
        raise ConfigError(f"deploy.resources: unknown key(s) {', '.join(sorted(unknown))}; use 'requests' and 'limits'")
    result = {}
    for section in ("requests", "limits"):
        entries = raw.get(section) or {}
        if not isinstance(entries, dict):
            raise ConfigError(f"deploy.resources.{section} must be a dict of resource name -> quantity")
        checked = {}
        for resource, value in entries.items():
            if resource != "cpu" and resource != "memory" and resource != "ephemeral-storage" and "/" not in resource:
                raise ConfigError(f"deploy.resources.{section}: unknown resource '{resource}' "
                                  f"(use cpu, memory, ephemeral-storage or an extended resource like {GPU_RESOURCE})")
            if "/" in resource:  # extended resources (GPUs) are whole numbers; YAML often quotes them ("1")
                whole = int(value) if isinstance(value, str) and value.strip().isdigit() else value
                checked[resource] = str(_int(whole, f"resources.{section}.{resource}", 1))
            else:
                checked[resource] = _quantity(value, f"resources.{section}.{resource}")
        if checked:
            result[section] = checked
    if gpus not in (None, 0):
        count = str(_int(gpus, "gpus", 0))
        existing = result.get("limits", {}).get(GPU_RESOURCE)
        if existing is not None and existing != count:
            raise ConfigError(f"deploy.gpus={count} contradicts deploy.resources.limits.{GPU_RESOURCE}={existing}")
        result.setdefault("limits", {})[GPU_RESOURCE] = count
    requests, limits = result.get("requests", {}), result.get("limits", {})
    for resource, request in requests.items():
        if "/" in resource:
            if resource in limits and limits[resource] != request:
                raise ConfigError(f"deploy.resources: {resource} request ({request}) and limit ({limits[resource]}) "
                                  "must be equal for extended resources")
            result.setdefault("limits", {})[resource] = request  # Kubernetes needs the limit for these
        elif resource in limits and parse_quantity(request) > parse_quantity(limits[resource]):
            raise ConfigError(f"deploy.resources: {resource} request {request} is above its limit {limits[resource]}")
    return result


def _string_map(raw, key: str) -> dict:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"deploy.{key} must be a dict of string -> string")
    return dict(raw)


def parse_settings(deploy: dict | None, model_name: str) -> DeploySettings | None:
    """Validate the ``deploy`` parameter; None when it is empty (no deployment)."""
    if not deploy:
        return None
    if not isinstance(deploy, dict):
        raise ConfigError(f"deploy must be a dict of settings, got {type(deploy).__name__}")
    unknown = sorted(set(deploy) - set(SETTINGS_KEYS))
    if unknown:
        raise ConfigError(f"deploy: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS_KEYS)}")
    name = _str(deploy.get("name"), "name") or default_name(model_name)
    if len(name) > 63 or not _DNS1035.match(name):
        raise ConfigError(f"deploy.name '{name}' is not a valid InferenceService name: lower-case letters, digits "
                          "and '-', starting with a letter, at most 63 characters")
    namespace = _str(deploy.get("namespace"), "namespace") or default_namespace()
    if len(namespace) > 63 or not _DNS1123.match(namespace):
        raise ConfigError(f"deploy.namespace '{namespace}' is not a valid namespace name")
    runtime = _str(deploy.get("runtime"), "runtime") or "kubetfx"
    if runtime not in RUNTIMES:
        raise ConfigError(f"deploy.runtime '{runtime}' is unknown: use 'kubetfx' (our predictor, pins the exact "
                          "version) or 'tensorflow' (KServe's TF Serving runtime, serves the latest version)")
    mode = _str(deploy.get("deployment_mode"), "deployment_mode") or "Serverless"
    if mode not in DEPLOYMENT_MODES:
        raise ConfigError(f"deploy.deployment_mode '{mode}' is unknown: use one of {', '.join(DEPLOYMENT_MODES)}")
    settings = DeploySettings(name=name, namespace=namespace, runtime=runtime, deployment_mode=mode)
    settings.runtime_name = _str(deploy.get("runtime_name"), "runtime_name")
    settings.runtime_version = _str(deploy.get("runtime_version"), "runtime_version")
    settings.protocol_version = _str(deploy.get("protocol_version"), "protocol_version")
    if settings.protocol_version and settings.protocol_version not in PROTOCOL_VERSIONS:
        raise ConfigError(f"deploy.protocol_version must be one of {', '.join(PROTOCOL_VERSIONS)}, "
                          f"got '{settings.protocol_version}'")
    base = _str(deploy.get("storage_uri_base"), "storage_uri_base")
    if base:
        _check_storage_uri(base, "deploy.storage_uri_base")
        settings.storage_uri_base = base.rstrip("/")
    if deploy.get("min_replicas") is not None:
        settings.min_replicas = _int(deploy["min_replicas"], "min_replicas", 0)
    if deploy.get("max_replicas") is not None:
        settings.max_replicas = _int(deploy["max_replicas"], "max_replicas", 1)
    if settings.min_replicas is not None and settings.max_replicas is not None \
            and settings.min_replicas > settings.max_replicas:
        raise ConfigError(f"deploy.min_replicas ({settings.min_replicas}) is above deploy.max_replicas "
                          f"({settings.max_replicas})")
    if not settings.knative and settings.min_replicas == 0:
        raise ConfigError(f"deploy.min_replicas=0 (scale to zero) needs Knative mode, not {mode}")
    metric = _str(deploy.get("scale_metric"), "scale_metric")
    if metric is not None:
        allowed = SCALE_METRICS if settings.knative else RAW_SCALE_METRICS
        if metric not in allowed:
            raise ConfigError(f"deploy.scale_metric '{metric}' is not supported in {mode} mode: "
                              f"use one of {', '.join(allowed)}")
        settings.scale_metric = metric
    if deploy.get("scale_target") is not None:
        settings.scale_target = _int(deploy["scale_target"], "scale_target", 1)
    settings.resources = _resources(deploy.get("resources"), deploy.get("gpus"))
    settings.service_account_name = _str(deploy.get("service_account_name"), "service_account_name")
    if deploy.get("canary_traffic_percent") is not None:
        settings.canary_traffic_percent = _int(deploy["canary_traffic_percent"], "canary_traffic_percent", 0, 100)
        if not settings.knative:
            raise ConfigError(f"deploy.canary_traffic_percent needs deployment_mode Serverless (Knative revisions); "
                              f"KServe does not split traffic in {mode} mode")
    settings.labels = _string_map(deploy.get("labels"), "labels")
    settings.annotations = _string_map(deploy.get("annotations"), "annotations")
    settings.image = _str(deploy.get("image"), "image")
    settings.node_selector = _string_map(deploy.get("node_selector"), "node_selector")
    settings.tolerations = _tolerations(deploy.get("tolerations"))
    settings.logger = _logger(deploy.get("logger"))
    apply = deploy.get("apply", True)
    if not isinstance(apply, bool):
        raise ConfigError(f"deploy.apply must be true or false, got {apply!r}")
    settings.apply = apply
    return settings


def _tolerations(raw) -> list:
    if raw in (None, ""):
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError("deploy.tolerations must be a list of {key, operator, value, effect} dicts")
    for i, toleration in enumerate(raw):
        unknown = sorted(set(toleration) - set(TOLERATION_KEYS))
        if unknown:
            raise ConfigError(f"deploy.tolerations[{i}]: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(TOLERATION_KEYS)}")
        if toleration.get("operator", "Equal") not in ("Exists", "Equal"):
            raise ConfigError(f"deploy.tolerations[{i}].operator must be Exists or Equal")
    return [dict(t) for t in raw]


def _logger(raw) -> dict:
    """KServe's inference logger (CloudEvents of every request/response to ``url``: the monitor's sink)."""
    if raw in (None, "", {}):
        return {}
    if not isinstance(raw, dict) or set(raw) - {"mode", "url"}:
        raise ConfigError(f"deploy.logger must be {{'mode': 'all'|'request'|'response', 'url': 'http://...'}}, "
                          f"got {raw!r}")
    mode = raw.get("mode", "all")
    if mode not in LOGGER_MODES:
        raise ConfigError(f"deploy.logger.mode must be one of {', '.join(LOGGER_MODES)}, got {mode!r}")
    url = raw.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ConfigError(f"deploy.logger.url must be an http(s) URL (the prediction log sink), got {url!r}")
    return {"mode": mode, **({"url": url} if url else {})}


def _check_storage_uri(uri: str, where: str) -> None:
    if not uri.startswith(STORAGE_SCHEMES):
        raise ConfigError(f"{where}: KServe cannot load a model from '{uri}'. Give the URI under which the cluster "
                          f"sees the model repository ({', '.join(STORAGE_SCHEMES)}), e.g. pvc://<claim>/<path> "
                          "when the push destination is a mounted PVC (set deploy.storage_uri_base)")


def storage_uri(settings: DeploySettings, push_destination: str, model_name: str, version: int) -> str:
    """The ``storageUri`` for this runtime: the version dir (kubetfx) or the model dir (tensorflow)."""
    base = settings.storage_uri_base or str(push_destination).rstrip("/")
    _check_storage_uri(base, "deploy.storage_uri_base" if settings.storage_uri_base else "push_destination")
    return f"{base}/{model_name}/{version}" if settings.runtime == "kubetfx" else f"{base}/{model_name}"


# ---------------------------------------------------------------------------
# The InferenceService object


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


def _get_path(obj: dict, *keys, default=None):
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def _normalize_mode(mode: str | None) -> str | None:
    if mode in KNATIVE_MODES:
        return "Knative"
    if mode in RAW_MODES:
        return "Standard"
    return mode


def update_patch(existing: dict, desired: dict) -> dict:
    """A JSON merge patch turning ``existing`` into ``desired`` for the fields this module owns.

    Labels/annotations are merged (others' keys kept); predictor/model fields we
    own that ``desired`` no longer sets become null (removed), e.g. a finished
    canary's ``canaryTrafficPercent``; resources are replaced as a whole.
    Fields set by others (node selectors, tolerations...) are left alone.
    """
    old_pred = _get_path(existing, "spec", "predictor", default={}) or {}
    new_pred = dict(_get_path(desired, "spec", "predictor", default={}))
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
    return {"metadata": {"labels": _get_path(desired, "metadata", "labels", default={}),
                         "annotations": _get_path(desired, "metadata", "annotations", default={})},
            "spec": {"predictor": new_pred}}


# ---------------------------------------------------------------------------
# Talking to the cluster


def make_api():
    """A ``CustomObjectsApi`` for this pod's cluster (in-cluster config, else kubeconfig)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as in_cluster_err:
        try:
            config.load_kube_config()
        except Exception as err:  # ConfigException, FileNotFoundError, malformed kubeconfig
            raise DeploymentError(
                "no Kubernetes cluster reachable to deploy the InferenceService: not running in a pod "
                f"({in_cluster_err}) and no usable kubeconfig ({err}). Run the pipeline on the cluster, or set "
                "deploy.apply=false to only write inferenceservice.yaml into the PushedModel artifact") from None
    return client.CustomObjectsApi()


def _call(what: str, settings: DeploySettings, fn, *args):
    import urllib3
    from kubernetes.client.exceptions import ApiException

    where = f"InferenceService {settings.namespace}/{settings.name}"
    try:
        return fn(*args)
    except ApiException as err:
        hint = {403: f"the pipeline's service account needs get/create/patch on inferenceservices.{GROUP} "
                     f"in namespace {settings.namespace}",
                404: "is KServe installed (InferenceService CRD) and does the namespace exist?",
                409: "it was changed concurrently; re-run the Pusher",
                422: "the KServe webhook rejected the spec"}.get(err.status, "")
        detail = _api_message(err)
        raise DeploymentError(f"{what} {where} failed: HTTP {err.status} {detail}" + (f" ({hint})" if hint else "")) \
            from None
    except (OSError, urllib3.exceptions.HTTPError) as err:  # connection refused, DNS, TLS, timeouts
        raise DeploymentError(f"{what} {where}: cannot reach the Kubernetes API: {err}") from None


def _api_message(err) -> str:
    """The API server's message from an ApiException (its body is a JSON Status)."""
    import json

    body = err.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip():
        try:
            return str(json.loads(body).get("message") or body.strip())
        except (ValueError, AttributeError):
            return body.strip()[:500]
    return str(err.reason or "")


def get_inference_service(settings: DeploySettings, api) -> dict | None:
    """The current object, or None if it does not exist."""
    from kubernetes.client.exceptions import ApiException

    def _get():
        try:
            return api.get_namespaced_custom_object(GROUP, VERSION, settings.namespace, PLURAL, settings.name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    return _call("reading", settings, _get)


def deploy(settings: DeploySettings, *, storage_uri: str, model_name: str, model_version: int, api=None,
           now: float | None = None) -> dict:
    """Create the InferenceService, or merge-patch it to serve ``model_version``.

    On update, ``canary_traffic_percent`` (Knative mode) sends that share to the
    new revision, and the previous ``storageUri``/version are kept as
    annotations for :func:`decide_rollout`'s rollback. On create, the only
    revision gets all traffic and no canary is set. Returns what was done.
    """
    api = api if api is not None else make_api()
    existing = get_inference_service(settings, api)
    result = {"name": settings.name, "namespace": settings.namespace, "runtime": settings.runtime,
              "deployment_mode": settings.deployment_mode, "storage_uri": storage_uri}
    if existing is None:
        body = build_inference_service(settings, storage_uri=storage_uri, model_name=model_name,
                                       model_version=model_version, now=now)
        _call("creating", settings, api.create_namespaced_custom_object, GROUP, VERSION, settings.namespace,
              PLURAL, body)
        result.update(action="created", canary_traffic_percent=None, previous_storage_uri=None, manifest=body)
        return result
    old_mode = _get_path(existing, "metadata", "annotations", DEPLOYMENT_MODE_ANNOTATION) \
        or _get_path(existing, "status", "deploymentMode")
    if old_mode and _normalize_mode(old_mode) != _normalize_mode(settings.deployment_mode):
        raise DeploymentError(f"InferenceService {settings.namespace}/{settings.name} runs in {old_mode} mode; KServe "
                              f"cannot switch it to {settings.deployment_mode}. Delete it first or use another name")
    previous_uri = _get_path(existing, "spec", "predictor", "model", "storageUri")
    previous_version = _get_path(existing, "metadata", "annotations", MODEL_VERSION)
    changed = previous_uri != storage_uri or str(previous_version) != str(model_version)
    canary = settings.canary_traffic_percent if changed else None
    previous = {PREVIOUS_STORAGE_URI: previous_uri, PREVIOUS_MODEL_VERSION: previous_version}
    desired = build_inference_service(settings, storage_uri=storage_uri, model_name=model_name,
                                      model_version=model_version, canary_traffic_percent=canary,
                                      previous=previous, now=now)
    patch = update_patch(existing, desired)
    _call("patching", settings, api.patch_namespaced_custom_object, GROUP, VERSION, settings.namespace, PLURAL,
          settings.name, patch)
    result.update(action="patched", canary_traffic_percent=canary, previous_storage_uri=previous_uri,
                  previous_model_version=previous_version, manifest=desired, patch=patch)
    return result


# ---------------------------------------------------------------------------
# Canary: promote, roll back or wait


@dataclass
class RolloutDecision:
    """``action``: promote | rollback | wait | none (no canary in progress)."""

    action: str
    reason: str
    patch: dict | None = None

    def to_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "patch": self.patch}


def _parse_time(value) -> float | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def promote_patch() -> dict:
    """All traffic to the latest revision: drop ``canaryTrafficPercent``."""
    return {"metadata": {"annotations": {ROLLOUT: "promoted"}},
            "spec": {"predictor": {"canaryTrafficPercent": None}}}


def rollback_patch(previous_storage_uri: str | None, previous_version: str | None, reason: str) -> dict:
    """All traffic back to the previous rolled-out revision, and the spec back to the previous model.

    ``canaryTrafficPercent: 0`` moves traffic at once; restoring ``storageUri``
    makes the spec say what is served, so removing the canary later cannot
    promote the bad version.
    """
    predictor = {"canaryTrafficPercent": 0}
    if previous_storage_uri:
        predictor["model"] = {"storageUri": previous_storage_uri}
    annotations = {ROLLOUT: "rolled-back", ROLLOUT_REASON: reason[:1000]}
    if previous_version:
        predictor["annotations"] = {MODEL_VERSION: str(previous_version)}
        annotations[MODEL_VERSION] = str(previous_version)
    return {"metadata": {"annotations": annotations}, "spec": {"predictor": predictor}}


def decide_rollout(isvc: dict, *, now: float | None = None, progress_deadline_s: float = 600.0,
                   min_ready_s: float = 0.0, canary_healthy: bool | None = None) -> RolloutDecision:
    """Read an InferenceService (dict as returned by the API) and decide the canary's fate.

    * rollback: a failure condition is ``False`` (e.g. ``LatestDeploymentReady``
      with reason RevisionFailed), the model status is BlockedByFailedLoad /
      InvalidSpec, the new revision is not ready ``progress_deadline_s`` after the
      rollout started, or ``canary_healthy`` is False (your metrics check);
    * wait: the controller has not reconciled the latest generation, the new
      revision is not ready yet, traffic is not yet split as asked, or it has
      been Ready for less than ``min_ready_s``;
    * promote: the new revision is ready, carries the canary share, and nothing failed;
    * none: no canary in progress (``canaryTrafficPercent`` unset, 100 or 0).
    """
    now = time.time() if now is None else now
    metadata = isvc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = isvc.get("status") or {}
    percent = _get_path(isvc, "spec", "predictor", "canaryTrafficPercent")
    if percent is None or percent >= 100:
        return RolloutDecision("none", "no canary rollout in progress (canaryTrafficPercent not set)")
    if percent == 0:
        return RolloutDecision("none", "canary traffic is 0% (rolled back or paused)")

    def rollback(reason: str) -> RolloutDecision:
        return RolloutDecision("rollback", reason, rollback_patch(
            annotations.get(PREVIOUS_STORAGE_URI), annotations.get(PREVIOUS_MODEL_VERSION), reason))

    generation, observed = metadata.get("generation"), status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return RolloutDecision("wait", f"the KServe controller has not reconciled generation {generation} yet "
                                       f"(observed {observed})")
    predictor = _get_path(status, "components", "predictor", default={}) or {}
    created, ready = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    model_state = _get_path(status, "modelStatus", "transitionStatus")
    if model_state in FAILED_MODEL_STATES:
        failure = _get_path(status, "modelStatus", "lastFailureInfo", default={}) or {}
        detail = ": ".join(str(x) for x in (failure.get("reason"), failure.get("message")) if x)
        return rollback(f"model status {model_state}" + (f" ({detail})" if detail else ""))
    for kind in FAILURE_CONDITIONS:
        condition = conditions.get(kind)
        if condition and condition.get("status") == "False":
            detail = ": ".join(str(x) for x in (condition.get("reason"), condition.get("message")) if x)
            return rollback(f"condition {kind} is False" + (f" ({detail})" if detail else "")
                            + (f"; revision {created}" if created else ""))
    started = _parse_time(annotations.get(ROLLOUT_STARTED))
    if not created or created != ready:
        elapsed = None if started is None else now - started
        what = f"revision {created}" if created else "the new revision"
        if elapsed is not None and elapsed > progress_deadline_s:
            return rollback(f"{what} is not ready {elapsed:.0f} s after the rollout started "
                            f"(deadline {progress_deadline_s:.0f} s; latest ready: {ready})")
        return RolloutDecision("wait", f"{what} is not ready yet (latest ready: {ready})")
    traffic = predictor.get("traffic") or []
    entry = next((t for t in traffic if t.get("revisionName") == created), None)
    share = entry.get("percent") if entry else None
    if share != percent:
        return RolloutDecision("wait", f"traffic not split yet: revision {created} has {share}% , "
                                       f"canary asks for {percent}%")
    if canary_healthy is False:
        return rollback(f"canary revision {created} failed the health check at {percent}% traffic")
    ready_condition = conditions.get("Ready") or conditions.get("PredictorReady")
    if not ready_condition or ready_condition.get("status") != "True":
        return RolloutDecision("wait", f"InferenceService is not Ready yet "
                                       f"({(ready_condition or {}).get('reason') or 'no Ready condition'})")
    since = max(t for t in (started, _parse_time(ready_condition.get("lastTransitionTime")), 0.0) if t is not None)
    if min_ready_s and now - since < min_ready_s:
        return RolloutDecision("wait", f"canary revision {created} serves {percent}%; observed for "
                                       f"{max(0.0, now - since):.0f} s of the required {min_ready_s:.0f} s")
    return RolloutDecision("promote", f"canary revision {created} is ready and serves {percent}% without failures",
                           promote_patch())


def apply_rollout_decision(decision: RolloutDecision, settings: DeploySettings, api=None) -> bool:
    """Patch the InferenceService for promote/rollback; False for wait/none."""
    if decision.action not in ("promote", "rollback") or not decision.patch:
        return False
    api = api if api is not None else make_api()
    _call(f"{decision.action} of", settings, api.patch_namespaced_custom_object, GROUP, VERSION,
          settings.namespace, PLURAL, settings.name, decision.patch)
    return True
