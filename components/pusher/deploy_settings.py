"""The Pusher's ``deploy`` settings: parsed and checked before anything is pushed, with the API server's rules.

``parse_settings`` turns the ``deploy`` parameter (from the environment's serving template,
pipelines/cluster/serving_template.py, or given by hand) into :class:`DeploySettings`; every
mistake is one ConfigError naming the setting. Quantities, names and labels follow
components/common/kubernetes_values.py, so what passes here the cluster accepts.
"""

import math
import re
from dataclasses import dataclass, field

from kubetfx.components.common import kubernetes_values
from kubetfx.components.common.errors import ConfigError

RUNTIMES = ("kubetfx", "tensorflow")
# KServe >= 0.16 also calls these "Knative" and "Standard"; both spellings are accepted and passed through.
KNATIVE_MODES = ("Serverless", "Knative")
RAW_MODES = ("RawDeployment", "Standard")
DEPLOYMENT_MODES = KNATIVE_MODES + RAW_MODES
SCALE_METRICS = ("cpu", "memory", "concurrency", "rps")
RAW_SCALE_METRICS = ("cpu", "memory")  # HPA; concurrency/rps need the Knative autoscaler
STORAGE_SCHEMES = ("gs://", "s3://", "pvc://", "https://", "http://", "hdfs://", "webhdfs://", "oci://", "hf://")
GPU_RESOURCE = "nvidia.com/gpu"
PROTOCOL_VERSIONS = ("v1", "v2", "grpc-v2")

SETTINGS_KEYS = ("name", "namespace", "runtime", "runtime_name", "runtime_version", "protocol_version",
                 "storage_uri_base", "deployment_mode", "min_replicas", "max_replicas", "scale_metric",
                 "scale_target", "resources", "gpus", "service_account_name", "canary_traffic_percent",
                 "labels", "annotations", "image", "node_selector", "tolerations", "logger", "apply")
LOGGER_MODES = ("all", "request", "response")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")

_SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"



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
    """A Kubernetes resource quantity ("500m", "1Gi", 2) as a string; ConfigError if the API server would refuse it."""
    try:
        parsed = kubernetes_values.parse_quantity(value)
    except ValueError as err:
        raise ConfigError(f"deploy.{where}: {err}") from None
    if parsed <= 0:
        raise ConfigError(f"deploy.{where}: must be positive, got {value!r}")
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _resources(raw, gpus) -> dict:
    parse_quantity = kubernetes_values.parse_quantity
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
    if len(name) > 63 or not kubernetes_values.DNS1035_LABEL.match(name):
        raise ConfigError(f"deploy.name '{name}' is not a valid InferenceService name: lower-case letters, digits "
                          "and '-', starting with a letter, at most 63 characters")
    namespace = _str(deploy.get("namespace"), "namespace") or default_namespace()
    if len(namespace) > 63 or not kubernetes_values.DNS1123_LABEL.match(namespace):
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
    problems = kubernetes_values.labels_problems(settings.labels, "deploy.labels") + \
        kubernetes_values.annotations_problems(settings.annotations, "deploy.annotations")
    if problems:
        raise ConfigError(problems[0])
    settings.image = _str(deploy.get("image"), "image")
    settings.node_selector = _string_map(deploy.get("node_selector"), "node_selector")
    problems = kubernetes_values.labels_problems(settings.node_selector, "deploy.node_selector")
    if problems:
        raise ConfigError(problems[0])
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

def normalize_mode(mode: str | None) -> str | None:
    """Knative/Standard, whichever of KServe's two spellings a mode is written in."""
    if mode in KNATIVE_MODES:
        return "Knative"
    if mode in RAW_MODES:
        return "Standard"
    return mode
