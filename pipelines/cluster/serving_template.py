"""The Pusher's KServe settings, read from the InferenceService an overlay declares.

The serving shape of an environment (runtime, KServe mode, replicas, autoscaling, resources,
GPU pool, image) is written once, in ``manifests/`` (kustomize). Compiling for that
environment turns the rendered InferenceService into the Pusher's ``deploy`` parameter; the
Pusher adds the pushed version. A field the Pusher cannot carry is an error, never dropped.
"""

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.pusher import deploy_settings as pusher_settings
from kubetfx.components.pusher import inference_service

# Where each field of the template goes in the Pusher's deploy settings.
_PREDICTOR_FIELDS = {"minReplicas": "min_replicas", "maxReplicas": "max_replicas", "scaleMetric": "scale_metric",
                     "scaleTarget": "scale_target", "canaryTrafficPercent": "canary_traffic_percent",
                     "serviceAccountName": "service_account_name", "nodeSelector": "node_selector",
                     "tolerations": "tolerations", "logger": "logger"}
_MODEL_FIELDS = {"runtime": "runtime_name", "protocolVersion": "protocol_version", "resources": "resources",
                 "image": "image"}
_IGNORED_MODEL_FIELDS = ("modelFormat", "storageUri")  # the runtime kind / the pushed version: the Pusher's
_PUSHER_LABEL = inference_service.PREFIX + "applied-by"


def _template(objects: list[dict], model_name: str, where: str) -> dict:
    services = [o for o in objects if o.get("kind") == inference_service.KIND
                and (o.get("metadata", {}).get("labels") or {}).get(_PUSHER_LABEL) == "pusher"]
    wanted = pusher_settings.default_name(model_name)
    named = [s for s in services if s["metadata"].get("name") == wanted]
    if named:
        return named[0]
    if len(services) == 1:  # one serving shape for every model of this environment
        return services[0]
    found = ", ".join(s["metadata"].get("name", "?") for s in services) or "none"
    raise ConfigError(f"{where}: no InferenceService template (label {_PUSHER_LABEL}: pusher) named '{wanted}' "
                      f"for model '{model_name}' (found: {found})")


def deploy_settings(objects: list[dict], *, model_name: str, storage_uri_base: str, apply: bool,
                    where: str) -> dict:
    """The Pusher's ``deploy`` dict for ``model_name`` from an overlay's rendered objects."""
    template = _template(objects, model_name, where)
    metadata, spec = template.get("metadata") or {}, template.get("spec") or {}
    predictor = dict(spec.get("predictor") or {})
    model = dict(predictor.pop("model", None) or {})
    unknown = [f"spec.{key}" for key in spec if key != "predictor"]
    unknown += [f"spec.predictor.{key}" for key in predictor if key not in _PREDICTOR_FIELDS]
    unknown += [f"spec.predictor.model.{key}" for key in model
                if key not in _MODEL_FIELDS and key not in _IGNORED_MODEL_FIELDS]
    if unknown:
        raise ConfigError(f"{where}: InferenceService {metadata.get('name')} sets {', '.join(unknown)}, which the "
                          "Pusher does not carry; remove them or extend components/pusher/deploy_settings.py")
    format_name = (model.get("modelFormat") or {}).get("name", inference_service.KUBETFX_MODEL_FORMAT)
    if format_name not in (inference_service.KUBETFX_MODEL_FORMAT, inference_service.TENSORFLOW_MODEL_FORMAT):
        raise ConfigError(f"{where}: InferenceService {metadata.get('name')}: model format '{format_name}' is not "
                          f"one the Pusher pushes (kubetfx, tensorflow)")
    template_uri = model.get("storageUri", "")
    if storage_uri_base and template_uri and not template_uri.startswith(storage_uri_base.rstrip("/") + "/"):
        raise ConfigError(f"{where}: InferenceService {metadata.get('name')} reads models from '{template_uri}' but "
                          f"the environment's model repository is '{storage_uri_base}': make them agree")
    annotations = dict(metadata.get("annotations") or {})
    deploy = {"name": pusher_settings.default_name(model_name), "namespace": metadata.get("namespace"),
              "runtime": "kubetfx" if format_name == inference_service.KUBETFX_MODEL_FORMAT else "tensorflow",
              "deployment_mode": annotations.pop(inference_service.DEPLOYMENT_MODE_ANNOTATION, None),
              "runtime_version": (model.get("modelFormat") or {}).get("version"),
              "storage_uri_base": storage_uri_base or None, "apply": apply,
              "labels": {k: v for k, v in (metadata.get("labels") or {}).items() if k != _PUSHER_LABEL},
              "annotations": annotations}
    deploy.update({setting: predictor[key] for key, setting in _PREDICTOR_FIELDS.items() if key in predictor})
    deploy.update({setting: model[key] for key, setting in _MODEL_FIELDS.items() if key in model})
    deploy = {key: value for key, value in deploy.items() if value not in (None, {}, [])}
    pusher_settings.parse_settings(deploy, model_name)  # the Pusher's own checks, now rather than after training
    return deploy
