"""The kustomize overlays and the Pusher's InferenceServices are objects a cluster accepts, offline.

Core kinds are checked with kubernetes-validate, KServe kinds with KServe's own CRDs
(tests/schemas/kserve); see k8s_validation. Negative tests prove each check can fail.
"""

import copy
import functools
import gzip
import hashlib
import re
from pathlib import Path

import jsonschema
import pytest

import k8s_validation as kv
from kubetfx.components.common.kubernetes_values import walk
from kubetfx.components.pusher import deploy_settings, inference_service, rollout

from helpers.kube_fakes import merge_patch
from helpers.pusher_cases import PREVIOUS, PUSHER_CASES, images_env, pusher_isvc

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = sorted(p.parent.name for p in (ROOT / "manifests" / "overlays").glob("*/kustomization.yaml"))
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass", "ClusterServingRuntime",
                  "ClusterStorageContainer"}
# registry host (with a dot, or localhost; optional port) / repository : tag
_REGISTRY_IMAGE = re.compile(r"^([a-z0-9-]+\.[a-z0-9.-]+|localhost)(:[0-9]+)?/[a-z0-9._/-]+:\w[\w.-]*$")


def test_overlays_are_found():
    assert {"dev", "prod"} <= set(OVERLAYS), f"overlays found under manifests/overlays: {OVERLAYS}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_inference_service_is_the_pushers_never_the_overlays(overlay):
    """kubectl applies the overlay; the InferenceService comes only from the serving template (the Pusher's)."""
    assert not [o for o in _applied(overlay) if o["kind"] == "InferenceService"]
    template = kv.render_overlay(ROOT / "manifests" / "overlays" / overlay / "serving")
    assert len([o for o in template if o["kind"] == "InferenceService"]) == 1


@functools.lru_cache(maxsize=None)
def _applied(overlay: str) -> tuple:
    """What `kubetfx deploy` applies: the overlay."""
    return tuple(kv.render_overlay(ROOT / "manifests" / "overlays" / overlay))


@functools.lru_cache(maxsize=None)
def _render(overlay: str) -> tuple:
    """The environment's objects: the overlay and the Pusher's InferenceService from its serving template."""
    template = kv.render_overlay(ROOT / "manifests" / "overlays" / overlay / "serving")
    return _applied(overlay) + tuple(o for o in template if o["kind"] == "InferenceService")


def rendered(overlay: str) -> list[dict]:
    """A fresh copy of the overlay's objects (tests may mutate them)."""
    return copy.deepcopy(list(_render(overlay)))


def only(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[kv.describe(o) for o in found]}"
    return found[0]


def where(obj: dict, path, key) -> str:
    return f"{kv.describe(obj)} {'.'.join(map(str, path + (key,)))}"


# ---------------------------------------------------------------------------
# Every overlay renders and validates


@pytest.fixture(scope="module")
def crds():
    return kv.crds_or_skip()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_core_objects_validate(overlay):
    objects = rendered(overlay)
    assert objects, f"kubectl kustomize manifests/overlays/{overlay} rendered nothing"
    kv.validate_core([o for o in objects if not o["apiVersion"].startswith(kv.KSERVE_GROUP + "/")])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_with_kserve_crds(crds, overlay):
    kv.validate_all(rendered(overlay), crds)


# ---------------------------------------------------------------------------
# The validators can fail


@pytest.fixture
def isvc():
    return only(rendered("prod"), "InferenceService")


@pytest.fixture
def runtime():
    return only(rendered("dev"), "ServingRuntime")


def rejected(obj: dict, crds: kv.CrdValidator | None = None) -> str:
    """The message of the InvalidManifest that validate_all (with ``crds``) or validate_core raises."""
    with pytest.raises(kv.InvalidManifest) as caught:
        kv.validate_all([obj], crds) if crds else kv.validate_core([obj])
    return str(caught.value)


def test_wrong_type_is_rejected_with_object_and_path(crds, isvc):
    isvc["spec"]["predictor"]["minReplicas"] = "two"
    message = rejected(isvc, crds)
    assert "InferenceService kubetfx/penguin: spec.predictor.minReplicas: 'two' is not of type 'integer'" in message


def test_misspelt_field_is_rejected(crds, isvc):
    isvc["spec"]["predictor"]["minReplica"] = 2
    message = rejected(isvc, crds)
    assert "spec.predictor.minReplica: unknown field (did you mean 'minReplicas'?)" in message


def test_bad_enum_and_bad_quantity_are_rejected(crds, isvc):
    isvc["spec"]["predictor"]["scaleMetric"] = "latency"
    isvc["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = "2 cores"
    message = rejected(isvc, crds)
    assert "spec.predictor.scaleMetric: 'latency' is not one of" in message
    assert "spec.predictor.model.resources.limits.cpu: '2 cores' does not match" in message


def test_int_or_string_and_unknown_fields_under_maps_are_accepted(crds, isvc):
    """Quantities may be numbers; label/annotation/selector maps take any key (not 'unknown fields')."""
    isvc["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = 4
    isvc["spec"]["predictor"]["nodeSelector"]["example.com/any-key"] = "x"
    isvc["spec"]["predictor"]["annotations"] = {"example.com/any": "x"}
    kv.validate_all([isvc], crds)


def test_inference_service_name_must_be_a_dns1035_label(crds, isvc):
    isvc["metadata"]["name"] = "2penguin"
    message = rejected(isvc, crds)
    assert "InferenceService kubetfx/2penguin: metadata.name '2penguin' must be a DNS-1035 label" in message


@pytest.mark.parametrize("field, value, expected", [
    ("labels", {"replicas": 3}, "metadata.labels.replicas: 3 is not of type 'string'"),
    ("lables", {}, "metadata.lables: unknown field (did you mean 'labels'?)")])
def test_custom_resource_metadata_is_checked_as_object_meta(crds, isvc, field, value, expected):
    isvc["metadata"][field] = value
    assert expected in rejected(isvc, crds)


def test_serving_runtime_without_containers_is_rejected(crds, runtime):
    del runtime["spec"]["containers"]
    message = rejected(runtime, crds)
    assert "ServingRuntime kubetfx-dev/kubetfx-predictor: spec.containers: required field is missing" in message


def test_serving_runtime_protocol_versions_must_be_a_list(crds, runtime):
    """The CRD declares protocolVersions as a list of strings (no enum to check values against)."""
    runtime["spec"]["protocolVersions"] = "v2"
    message = rejected(runtime, crds)
    assert "spec.protocolVersions: 'v2' is not of type 'array'" in message


def test_unknown_kserve_version_or_kind_is_an_error(crds, runtime):
    runtime["apiVersion"] = "serving.kserve.io/v1beta1"
    message = rejected(runtime, crds)
    assert "no CRD for apiVersion 'serving.kserve.io/v1beta1' kind 'ServingRuntime'" in message


def test_unknown_api_group_is_an_error(crds):
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    message = rejected(widget, crds)
    assert "Widget w: apiVersion 'example.com/v1' kind 'Widget' is not a built-in kind of Kubernetes " \
           f"{kv.KUBERNETES_VERSION}, and no CRD in" in message


def test_core_unknown_field_is_rejected():
    role = next(o for o in rendered("dev") if o["kind"] == "Role")
    role["rulez"] = role.pop("rules")
    message = rejected(role)
    assert "Role kubetfx-dev/kubetfx-inferenceservice-deployer: rulez: unknown field (did you mean 'rules'?)" \
        in message


def test_core_wrong_type_is_rejected():
    claim = next(o for o in rendered("dev") if o["kind"] == "PersistentVolumeClaim")
    claim["spec"]["accessModes"] = "ReadWriteMany"
    assert "spec.accessModes: 'ReadWriteMany' is not of type 'array'" in rejected(claim)


def test_namespace_without_name_is_rejected():
    namespace = only(rendered("dev"), "Namespace")
    del namespace["metadata"]["name"]
    assert "Namespace <no name>: metadata.name: required" in rejected(namespace)


def test_translation_of_kubernetes_extensions():
    """nullable, int-or-string, preserve-unknown-fields and format as the API server reads them."""
    schema = kv.translate_schema({"type": "object", "properties": {
        "count": {"type": "integer", "format": "int32", "nullable": True},
        "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "at": {"type": "string", "format": "date-time"}}})
    validator = jsonschema.Draft7Validator(schema)
    assert not list(validator.iter_errors({"count": None, "port": "http", "free": {"b": 1}, "at": "soon"}))
    assert not list(validator.iter_errors({"count": 3, "port": 8080}))
    bad = {"count": "3", "port": 1.5, "other": 1}
    assert sorted(e.validator for e in validator.iter_errors(bad)) == ["additionalProperties", "anyOf", "type"]


# ---------------------------------------------------------------------------
# The Pusher's InferenceServices


@pytest.mark.parametrize("deploy, build", PUSHER_CASES.values(), ids=PUSHER_CASES.keys())
def test_pusher_inference_service_validates(crds, deploy, build):
    kv.validate_all([pusher_isvc(deploy, **build)], crds)


def test_pusher_rollout_patches_leave_a_valid_inference_service(crds):
    """Update (canary), then rollback or promote: each object the server ends up with validates."""
    deploy, build = PUSHER_CASES["serverless-canary-concurrency"]
    first = pusher_isvc({**deploy, "canary_traffic_percent": None})
    updated = merge_patch(first, inference_service.update_patch(first, pusher_isvc(deploy, **build)))
    assert updated["spec"]["predictor"]["canaryTrafficPercent"] == 10
    rolled_back = merge_patch(updated, rollout.rollback_patch(PREVIOUS[inference_service.PREVIOUS_STORAGE_URI], "2", "failed"))
    promoted = merge_patch(updated, rollout.promote_patch())
    kv.validate_all([first, updated, rolled_back, promoted], crds)


# ---------------------------------------------------------------------------
# Facts of the rendered overlays


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_a_tagged_registry_image_from_images_env(overlay):
    allowed = set(images_env().values())
    images = [(where(obj, path, key), value) for obj in rendered(overlay)
              for path, key, value in walk(obj) if key == "image"]
    assert images, f"{overlay}: no image in the rendered objects"
    for place, name in images:
        assert name in allowed, f"{place}: image '{name}' is not one of images/images.env's {sorted(allowed)} " \
                                "(a placeholder the images component did not replace?)"
        assert _REGISTRY_IMAGE.match(name), f"{place}: image '{name}' is not registry/repository:tag"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_runtime_uses_the_component_image(overlay):
    runtime = only(rendered(overlay), "ServingRuntime")
    images = {c["name"]: c.get("image") for c in runtime["spec"]["containers"]}
    assert images == {"kserve-container": images_env()["KUBETFX_IMAGE"]}, kv.describe(runtime)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inference_service_is_served_by_the_overlays_serving_runtime(overlay):
    objects = rendered(overlay)
    model = only(objects, "InferenceService")["spec"]["predictor"]["model"]
    runtime = only(objects, "ServingRuntime")
    assert model["runtime"] == runtime["metadata"]["name"] == inference_service.KUBETFX_RUNTIME
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert model.get("protocolVersion", "v1") in runtime["spec"]["protocolVersions"]


def test_prod_serves_on_gpus_with_the_gpu_image():
    isvc = only(rendered("prod"), "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"].get("image") == images_env()["KUBETFX_GPU_IMAGE"]
    resources = predictor["model"]["resources"]
    assert resources["limits"].get(deploy_settings.GPU_RESOURCE) == "1" and resources["requests"].get(deploy_settings.GPU_RESOURCE) == "1"
    assert predictor.get("nodeSelector"), "prod InferenceService has no nodeSelector for the GPU pool"
    assert any(t.get("key") == deploy_settings.GPU_RESOURCE for t in predictor.get("tolerations") or []), \
        f"prod InferenceService does not tolerate the {deploy_settings.GPU_RESOURCE} taint: {predictor.get('tolerations')}"


def test_dev_requests_no_gpu():
    gpu_image = images_env()["KUBETFX_GPU_IMAGE"]
    for obj in rendered("dev"):
        for path, key, value in walk(obj):
            assert not (key.endswith("/gpu") and "resources" in path), f"{where(obj, path, key)}: requests a GPU"
            assert not (key == "image" and value == gpu_image), f"{where(obj, path, key)}: the GPU image in dev"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_grants_only_inferenceservices_and_kfp_runs_in_the_namespace(overlay):
    """The offline half; tests/cluster/test_rbac.py asks the real authorizer the whole table."""
    objects = rendered(overlay)
    cluster_wide = [kv.describe(o) for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert not cluster_wide, f"{overlay}: cluster-wide RBAC {cluster_wide}"
    allowed = {(inference_service.GROUP, inference_service.PLURAL), ("pipelines.kubeflow.org", "pipelines"),
               ("pipelines.kubeflow.org", "experiments"), ("pipelines.kubeflow.org", "runs")}
    verbs = set()
    for role in [o for o in objects if o["kind"] == "Role"]:
        for rule in role["rules"]:
            granted = {(group, resource) for group in rule.get("apiGroups", []) for resource in rule.get("resources", [])}
            assert granted <= allowed and not rule.get("nonResourceURLs"), f"{kv.describe(role)} grants {rule}"
            assert not {"*", "delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"]), \
                f"{kv.describe(role)}: {rule}"
            if rule.get("apiGroups") == [inference_service.GROUP]:
                verbs |= set(rule["verbs"])
    assert {"get", "create", "patch"} <= verbs, f"the Pusher needs get/create/patch on InferenceServices, has {verbs}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaced_objects_share_the_overlays_one_namespace(overlay):
    objects = rendered(overlay)
    namespaces = {kv.describe(o): o["metadata"].get("namespace") for o in objects if o["kind"] not in CLUSTER_SCOPED}
    assert len(set(namespaces.values())) == 1 and None not in namespaces.values(), f"{overlay}: {namespaces}"
    declared = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    assert declared in ([], list(set(namespaces.values()))), \
        f"{overlay}: Namespace object(s) {declared}, objects in {set(namespaces.values())}"


# ---------------------------------------------------------------------------
# Where the CRDs come from


def test_vendored_crds_match_the_readme_checksums():
    readme = (kv.VENDORED_CRDS / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"\| (\S+\.yaml) \| `([0-9a-f]{64})` \|", readme))
    vendored = {p.name[:-len(".gz")]: p for p in kv.VENDORED_CRDS.glob("*.yaml.gz")}
    assert set(listed) == set(vendored) and vendored, f"README lists {sorted(listed)}, vendored {sorted(vendored)}"
    for name, path in vendored.items():
        assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == listed[name], name


def test_crd_dir_defaults_to_the_vendored_copies(monkeypatch):
    monkeypatch.delenv(kv.CRDS_ENV, raising=False)
    assert kv.kserve_crd_dir() == kv.VENDORED_CRDS
    assert "serving.kserve.io/v1beta1 InferenceService" in kv.crds_or_skip().kinds()


def test_crd_dir_from_env_reads_plain_yaml(monkeypatch, tmp_path):
    source = kv.VENDORED_CRDS / "serving.kserve.io_servingruntimes.yaml.gz"
    (tmp_path / "servingruntimes.yaml").write_bytes(gzip.decompress(source.read_bytes()))
    monkeypatch.setenv(kv.CRDS_ENV, str(tmp_path))
    assert kv.crds_or_skip().kinds() == ["serving.kserve.io/v1alpha1 ServingRuntime"]


@pytest.mark.parametrize("ci, outcome", [(None, pytest.skip.Exception), ("false", pytest.skip.Exception),
                                         ("true", pytest.fail.Exception)])
def test_missing_crds_skip_locally_and_fail_on_ci(monkeypatch, tmp_path, ci, outcome):
    (tmp_path / "notes.txt").write_text("no CRDs here")
    monkeypatch.setenv(kv.CRDS_ENV, str(tmp_path))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=re.escape(str(tmp_path))):
        kv.crds_or_skip()
