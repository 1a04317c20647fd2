"""The Pusher's calls to the Kubernetes API: read, create and patch its InferenceService as ``kubetfx-pusher``.

Calls go through ``kubernetes.client.CustomObjectsApi`` (group ``serving.kserve.io``, version
``v1beta1``, plural ``inferenceservices``): get, then create or merge-patch, always with the
field manager :data:`FIELD_MANAGER`, so ``managedFields`` say who wrote what. Every function
that talks to a cluster takes the API object as a parameter (tests pass a recording one or one
authenticated as a ServiceAccount); :func:`make_api` builds the pod's own (in-cluster config,
falling back to kubeconfig) only when asked. Every refusal is one :class:`DeploymentError` line.
"""

from kubetfx.components.common.errors import KubetfxError
from kubetfx.components.pusher import inference_service as isvc
from kubetfx.components.pusher.deploy_settings import DeploySettings, normalize_mode

FIELD_MANAGER = "kubetfx-pusher"
# Every write: as the Pusher, and refused (not silently pruned) if it carries a field the CRD lacks.
WRITE_OPTIONS = {"field_manager": FIELD_MANAGER, "field_validation": "Strict"}


class DeploymentError(KubetfxError):
    """The cluster refused or could not be reached; the message says what to fix."""


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


def call(what: str, settings: DeploySettings, fn, *args, **kwargs):
    import urllib3
    from kubernetes.client.exceptions import ApiException

    where = f"InferenceService {settings.namespace}/{settings.name}"
    try:
        return fn(*args, **kwargs)
    except ApiException as err:
        hint = {403: f"the pipeline's service account needs get/create/patch on inferenceservices.{isvc.GROUP} "
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
            return api.get_namespaced_custom_object(isvc.GROUP, isvc.VERSION, settings.namespace, isvc.PLURAL,
                                                    settings.name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    return call("reading", settings, _get)


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
        body = isvc.build_inference_service(settings, storage_uri=storage_uri, model_name=model_name,
                                            model_version=model_version, now=now)
        call("creating", settings, api.create_namespaced_custom_object, isvc.GROUP, isvc.VERSION,
             settings.namespace, isvc.PLURAL, body, **WRITE_OPTIONS)
        result.update(action="created", canary_traffic_percent=None, previous_storage_uri=None, manifest=body)
        return result
    old_mode = isvc.get_path(existing, "metadata", "annotations", isvc.DEPLOYMENT_MODE_ANNOTATION) \
        or isvc.get_path(existing, "status", "deploymentMode")
    if old_mode and normalize_mode(old_mode) != normalize_mode(settings.deployment_mode):
        raise DeploymentError(f"InferenceService {settings.namespace}/{settings.name} runs in {old_mode} mode; KServe "
                              f"cannot switch it to {settings.deployment_mode}. Delete it first or use another name")
    previous_uri = isvc.get_path(existing, "spec", "predictor", "model", "storageUri")
    previous_version = isvc.get_path(existing, "metadata", "annotations", isvc.MODEL_VERSION)
    changed = previous_uri != storage_uri or str(previous_version) != str(model_version)
    canary = settings.canary_traffic_percent if changed else None
    previous = {isvc.PREVIOUS_STORAGE_URI: previous_uri, isvc.PREVIOUS_MODEL_VERSION: previous_version}
    desired = isvc.build_inference_service(settings, storage_uri=storage_uri, model_name=model_name,
                                           model_version=model_version, canary_traffic_percent=canary,
                                           previous=previous, now=now)
    patch = isvc.update_patch(existing, desired)
    patch_inference_service(settings, patch, "patching", api)
    result.update(action="patched", canary_traffic_percent=canary, previous_storage_uri=previous_uri,
                  previous_model_version=previous_version, manifest=desired, patch=patch)
    return result


def patch_inference_service(settings: DeploySettings, patch: dict, what: str, api=None) -> dict:
    """Merge-patch the InferenceService as the Pusher (also the rollout decisions' way of writing)."""
    api = api if api is not None else make_api()
    return call(what, settings, api.patch_namespaced_custom_object, isvc.GROUP, isvc.VERSION, settings.namespace,
                isvc.PLURAL, settings.name, patch, **WRITE_OPTIONS)
