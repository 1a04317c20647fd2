"""Offline validation of Kubernetes objects: core kinds and KServe custom resources.

A cluster would reject a bad manifest at ``kubectl apply`` time; these checks catch the
same mistakes (wrong types, missing required fields, misspelt fields, bad names) in the
test suite, without a cluster:

* core kinds (Namespace, Role, PVC, ...) with ``kubernetes-validate``'s strict schemas
  for :data:`KUBERNETES_VERSION` (it reports the first problem of each object);
* KServe kinds with the ``openAPIV3Schema`` of KServe's own CRDs (vendored in
  ``tests/schemas/kserve``), translated to JSON Schema and made strict like
  ``kubectl apply --validate=strict``.
"""

import difflib
import functools
import gzip
import os
import re
import shutil
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubetfx.components.common import kubernetes_values
from kubetfx.pipelines.cluster import kustomize

# The kubectl these tests run with (and the cluster version we target): one place to bump.
KUBERNETES_VERSION = "1.32"
CRDS_ENV = "KUBETFX_KSERVE_CRDS"
VENDORED_CRDS = Path(__file__).parent / "schemas" / "kserve"
KSERVE_GROUP = "serving.kserve.io"

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the InferenceService CRD is 2 MB of YAML
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


class InvalidManifest(ValueError):
    """Objects a cluster would reject; ``problems`` has one line per failing field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class NoCrds(LookupError):
    """The CRD directory holds no CustomResourceDefinition."""


def describe(obj: dict) -> str:
    """``Kind namespace/name`` for messages, tolerant of broken objects."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = metadata.get("name") or "<no name>"
    where = f"{metadata['namespace']}/{name}" if metadata.get("namespace") else name
    return f"{obj.get('kind') or '<no kind>'} {where}"


def _json_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# ---------------------------------------------------------------------------
# metadata: CRD schemas say only ``metadata: {type: object}``; the API server checks more.


def _name_problem(kind: str, name: str) -> str | None:
    if kind == "InferenceService":  # the KServe webhook: the name becomes a Service/host name
        if len(name) > 63 or not _DNS1035_LABEL.match(name):
            return "must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, " \
                   "at most 63 characters) for an InferenceService"
    elif kind == "Namespace":
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return "must be a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)"
    elif kind in _RBAC_KINDS:  # path segment names: "system:controller:foo" is fine
        if name in (".", "..") or "/" in name or "%" in name:
            return "must be a valid path segment (not '.' or '..', no '/' or '%')"
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)"
    return None


def name_problems(obj: dict) -> list[str]:
    """metadata.name and metadata.namespace as the API server checks them."""
    who, metadata = describe(obj), obj.get("metadata")
    if not isinstance(metadata, dict):
        return [f"{who}: metadata: required (a mapping with at least a name)"]
    problems = []
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{who}: metadata.name: required (kubectl apply needs a name)")
    else:
        problem = _name_problem(obj.get("kind"), name)
        if problem:
            problems.append(f"{who}: metadata.name '{name}' {problem}")
    namespace = metadata.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or len(namespace) > 63
                                  or not _DNS1123_LABEL.match(namespace)):
        problems.append(f"{who}: metadata.namespace {namespace!r} must be a DNS-1123 label")
    return problems


def value_problems(obj: dict) -> list[str]:
    """What the API server checks beyond the schemas (label keys and values, resource quantities): the
    product's own rules (components/common/kubernetes_values.py), which `kubetfx deploy` applies too."""
    return kubernetes_values.object_problems(obj)


def object_meta_problems(obj: dict, kubernetes_version: str = KUBERNETES_VERSION) -> list[str]:
    """The rest of a custom resource's ObjectMeta (string labels, no unknown fields), which CRD schemas leave out.

    Wrapped in a ConfigMap (a built-in kind with no other required field) for kubernetes-validate.
    """
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return []  # name_problems says so
    try:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata},
                                     kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{describe(obj)}: {_describe_error(err)}"]
    return []


# ---------------------------------------------------------------------------
# OpenAPI v3 (Kubernetes flavour) -> JSON Schema


_TRIVIAL_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
_ANNOTATIONS_ONLY = ("description", "format", "default", "example", "externalDocs", "nullable")


def translate_schema(node: dict, strict: bool = True) -> dict:
    """One CRD ``openAPIV3Schema`` node as JSON Schema (Draft 7), strict about unknown fields.

    * ``nullable: true``: null is allowed as well;
    * ``x-kubernetes-int-or-string``: integer or string (these nodes have no ``type``);
    * ``x-kubernetes-preserve-unknown-fields``: any extra field is kept, so none is unknown;
    * ``x-kubernetes-embedded-resource``: apiVersion/kind/metadata are implied;
    * ``format`` (int32, int64, date-time...) is an annotation here, never a check;
    * strict: a node listing ``properties`` without ``additionalProperties`` rejects other
      fields, as ``kubectl apply --validate=strict`` does. Not inside anyOf/allOf/oneOf/not:
      there ``properties``/``required`` only constrain values, they do not declare fields.
    """
    out = {}
    for key, value in node.items():
        if key in _ANNOTATIONS_ONLY or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: translate_schema(sub, strict) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = translate_schema(value, strict)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [translate_schema(sub, strict=False) for sub in value]
        elif key == "not":
            out[key] = translate_schema(value, strict=False)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        if out.get("anyOf") == _TRIVIAL_INT_OR_STRING:
            del out["anyOf"]  # the type below says it, with a clearer message
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-embedded-resource"):
        out.setdefault("properties", {})
        for field in ("apiVersion", "kind"):
            out["properties"].setdefault(field, {"type": "string"})
        out["properties"].setdefault("metadata", {"type": "object"})
    if strict and "properties" in out and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [{"type": "null"}, out]}
    return out


def _describe_error(error: jsonschema.ValidationError) -> str:
    """``path: what is wrong`` with the failing field in the path (jsonschema names its parent)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in known)
        lines = []
        for field in unknown:
            close = difflib.get_close_matches(field, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"{_json_path(path + [field])}: unknown field{hint}")
        return "; ".join(lines)
    if error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        if missing:
            return f"{_json_path(path + [missing.group(1)])}: required field is missing"
    return f"{_json_path(path)}: {error.message}"


# ---------------------------------------------------------------------------
# CRDs


def kserve_crd_dir() -> Path:
    """Where KServe's CRDs are read from: ``$KUBETFX_KSERVE_CRDS``, else the vendored copies."""
    return Path(os.environ.get(CRDS_ENV) or VENDORED_CRDS)


def crd_files(directory: Path) -> list[Path]:
    """The ``*.yaml``/``*.yml`` files of ``directory``, gzipped or not (none if it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith((".yaml", ".yml", ".yaml.gz", ".yml.gz")))


def _read_yaml_documents(path: Path) -> list:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [doc for doc in yaml.load_all(handle, Loader=_LOADER) if doc]


class CrdValidator:
    """Validates custom resources against the CRDs of one directory."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._schemas = {}  # (group, version, kind) -> openAPIV3Schema
        self._validators = {}
        for path in crd_files(self.directory):
            for doc in _read_yaml_documents(path):
                if doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served", True) and "schema" in version:
                        key = (spec["group"], version["name"], spec["names"]["kind"])
                        self._schemas[key] = version["schema"]["openAPIV3Schema"]
        if not self._schemas:
            raise NoCrds(f"no CustomResourceDefinition in {self.directory}")

    @property
    def groups(self) -> set[str]:
        return {group for group, _, _ in self._schemas}

    def kinds(self) -> list[str]:
        return sorted(f"{group}/{version} {kind}" for group, version, kind in self._schemas)

    def _validator(self, key) -> jsonschema.Draft7Validator:
        if key not in self._validators:
            schema = translate_schema(self._schemas[key])
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}  # name_problems, object_meta_problems
            for field in ("apiVersion", "kind"):  # every object has them; some CRDs (fabric8's) leave them out
                schema["properties"].setdefault(field, {"type": "string"})
            schema.setdefault("required", [])
            schema["required"] = sorted(set(schema["required"]) | {"apiVersion", "kind", "metadata"})
            self._validators[key] = jsonschema.Draft7Validator(schema)  # no format checker: formats annotate
        return self._validators[key]

    def problems(self, obj: dict) -> list[str]:
        """What a cluster with these CRDs would reject in ``obj`` (empty: valid)."""
        who = describe(obj)
        group, version = _split_api_version(str(obj.get("apiVersion", "")))
        key = (group, version, obj.get("kind"))
        if key not in self._schemas:
            return [f"{who}: no CRD for apiVersion '{obj.get('apiVersion')}' kind '{obj.get('kind')}' in "
                    f"{self.directory} (it has: {', '.join(self.kinds())})"]
        errors = sorted(self._validator(key).iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
        return name_problems(obj) + object_meta_problems(obj) + value_problems(obj) + \
            [f"{who}: {_describe_error(e)}" for e in errors]


@functools.lru_cache(maxsize=4)
def load_crds(directory: Path) -> CrdValidator:
    """A :class:`CrdValidator`, parsed once per directory (the InferenceService CRD is large)."""
    return CrdValidator(directory)


def skip_or_fail(message: str):
    """Skip locally; on CI (``CI=true``) a missing prerequisite must fail, not pass silently."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: required on CI)")
    pytest.skip(message)


def crds_or_skip() -> CrdValidator:
    """The KServe CRD validator, or skip (fail on CI) saying where the CRDs were looked for."""
    directory = kserve_crd_dir()
    try:
        return load_crds(directory.resolve())
    except NoCrds:
        source = f"${CRDS_ENV}" if os.environ.get(CRDS_ENV) else "the vendored copies"
        skip_or_fail(f"KServe CRDs not found: no CustomResourceDefinition in {directory} ({source}; "
                     "*.yaml or *.yml files, gzipped or not), KServe objects not validated")


# ---------------------------------------------------------------------------
# Core kinds and dispatch


def _core_problems(obj: dict, kubernetes_version: str) -> list[str] | None:
    """Problems of a built-in kind (strict: unknown fields too); None if it is not one."""
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return name_problems(obj) + value_problems(obj) + [f"{describe(obj)}: {_describe_error(err)}"]
    except kubernetes_validate.SchemaNotFoundError:
        return None
    return name_problems(obj) + value_problems(obj)


def _not_built_in(obj: dict, kubernetes_version: str) -> str:
    return (f"{describe(obj)}: apiVersion '{obj.get('apiVersion')}' kind '{obj.get('kind')}' is not a built-in "
            f"kind of Kubernetes {kubernetes_version}")


def validate_core(objects: list[dict], kubernetes_version: str = KUBERNETES_VERSION) -> None:
    """Validate built-in kinds against Kubernetes ``kubernetes_version``; InvalidManifest lists every problem."""
    problems = []
    for obj in objects:
        found = _core_problems(obj, kubernetes_version)
        problems += found if found is not None else [_not_built_in(obj, kubernetes_version)]
    if problems:
        raise InvalidManifest(problems)


def validate_all(objects: list[dict], crds: CrdValidator | None = None,
                 kubernetes_version: str = KUBERNETES_VERSION) -> None:
    """KServe kinds (and any other group ``crds`` defines) against the CRDs, the rest as built-in kinds.

    An object neither knows is an error: a silent pass would hide a typo in apiVersion.
    Without ``crds``, loads :func:`kserve_crd_dir` (NoCrds if it has none).
    """
    crds = crds if crds is not None else load_crds(kserve_crd_dir().resolve())
    problems = []
    for obj in objects:
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
            problems.append(f"{describe(obj) if isinstance(obj, dict) else repr(obj)[:80]}: "
                            "apiVersion and kind are required")
            continue
        group, _ = _split_api_version(obj["apiVersion"])
        if group in crds.groups or group == KSERVE_GROUP:
            problems += crds.problems(obj)
            continue
        found = _core_problems(obj, kubernetes_version)
        problems += found if found is not None else \
            [f"{_not_built_in(obj, kubernetes_version)}, and no CRD in {crds.directory} defines it"]
    if problems:
        raise InvalidManifest(problems)


def render_overlay(path) -> list[dict]:
    """The objects ``kubectl kustomize PATH`` renders (offline), with kubetfx's own renderer."""
    if not shutil.which("kubectl"):
        skip_or_fail("kubectl not on PATH: cannot render kustomize overlays")
    return kustomize.render(str(path))


def render_component(folder, name: str, namespace: str = "kubetfx") -> list[dict]:
    """The objects a kustomization in ``folder`` that only includes ``manifests/components/<name>`` renders."""
    root = Path(__file__).resolve().parent.parent
    relative = os.path.relpath(root / "manifests" / "components" / name, folder)
    (Path(folder) / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": namespace,
        "components": [relative]}))
    return render_overlay(folder)
