"""Render the kustomize overlays in manifests/ (offline) and apply them server-side as ``kubetfx-deploy``.

``kubetfx deploy`` (``make deploy``) renders the environment's overlay and applies it with
``kubectl apply --server-side --field-manager=kubetfx-deploy``: the overlay's objects are this
field manager's; the InferenceService is not among them (it is the Pusher's, rendered from the
environment's serving template), so a deploy can never conflict with or roll back a pushed version.
``--dry-run`` is the server's dry run; on a cluster where the overlay's namespace does not exist yet
(nothing can be dry-run into a namespace that is not there), its objects are dry-run in ``default``
instead, and the output says so. Every failure is one line naming the object and the server's reason.
"""

import os
import re
import shutil
import subprocess

import yaml

from kubetfx.components.common import kubernetes_values
from kubetfx.components.common.errors import ConfigError, KubetfxError

FIELD_MANAGER = "kubetfx-deploy"
PUSHER_KIND = "InferenceService"  # the Pusher's alone (docs/cluster.md, "Who owns what")
STAND_IN_NAMESPACE = "default"  # where a dry run checks objects whose namespace does not exist yet


class ClusterError(KubetfxError):
    """kubectl could not reach or change the cluster."""


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise ConfigError("kubectl is not installed: it renders manifests/ (kustomize) and applies them; "
                          "install it (https://kubernetes.io/docs/tasks/tools/) and retry")
    return kubectl


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() and not line.startswith("Warning:")]
    return lines[-1] if lines else "no output"


def _first_error(text: str) -> str:
    """kubectl's first error line (one per refused object), and how many more there were."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() and not line.startswith("Warning:")]
    errors = [line for line in lines if line.lower().startswith(("error", "the ", "resource mapping"))] or lines
    if not errors:
        return "no output"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return re.sub(r"^Error from server( \(\w+\))?: (error when \w+ \"STDIN\": )?", "", errors[0]) + more


def render(overlay: str) -> list[dict]:
    """The objects ``kubectl kustomize OVERLAY`` renders."""
    result = subprocess.run([_kubectl(), "kustomize", overlay], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"kubectl kustomize {overlay} failed: {_last_line(result.stderr)}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _run(args: list[str], objects: list[dict] | None = None) -> subprocess.CompletedProcess:
    text = yaml.safe_dump_all(objects, sort_keys=False) if objects is not None else None
    try:
        return subprocess.run([_kubectl(), *args], input=text, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"kubectl {' '.join(args[:2])} did not answer in 300 s (is the API server up?)") from None


def _failure(overlay: str, stderr: str) -> ClusterError:
    """One line: what the server said, with a hint only where the cause is known."""
    message = _first_error(stderr)
    unreachable = ("connection refused", "no such host", "i/o timeout", "the server could not find the requested",
                   "unable to connect", "dial tcp", "context deadline exceeded", "no configuration has been provided")
    lowered = message.lower()
    if any(text in lowered for text in unreachable) or "current-context" in lowered:
        hint = " (is your kubeconfig's current context the cluster you mean? `kubectl config current-context`)"
    elif "forbidden" in lowered:
        hint = " (your kubeconfig's user may not change these objects: ask for the rights, or apply as an admin)"
    elif "conflict" in lowered:
        hint = (f" (another field manager owns that field; `kubetfx deploy` applies as {FIELD_MANAGER} and "
                "does not force: remove the other writer's value or apply the change there)")
    elif "no matches for kind" in lowered or "ensure crds are installed" in lowered:
        hint = " (install KServe, whose CRDs define ServingRuntime and InferenceService)"
    else:
        hint = ""
    return ClusterError(f"applying {_shown(overlay)} failed: {message}{hint}")


def _shown(path: str) -> str:
    """A path as the user would type it: relative to the working directory when it is below it."""
    relative = os.path.relpath(path) if os.path.isabs(path) else path
    return path if relative.startswith("..") else relative


def _namespace_exists(namespace: str) -> bool:
    result = _run(["get", "namespace", namespace, "-o", "name"])
    if result.returncode == 0:
        return True
    if "notfound" in result.stderr.replace(" ", "").lower():
        return False
    raise _failure(f"namespace {namespace}", result.stderr)


def _namespaces(objects: list[dict]) -> set[str]:
    return {obj["metadata"]["namespace"] for obj in objects if obj.get("metadata", {}).get("namespace")}


def _apply(objects: list[dict], overlay: str, dry_run: bool = False) -> str:
    args = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--validate=strict", "-f", "-"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    result = _run(args, objects)
    if result.returncode != 0:
        raise _failure(overlay, result.stderr)
    return result.stdout


def apply(overlay: str, dry_run: bool = False) -> str:
    """Apply the overlay server-side (or dry-run it); return kubectl's lines, plus a note where it checked less."""
    objects = render(overlay)
    problems = [problem for obj in objects for problem in kubernetes_values.object_problems(obj)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{_shown(overlay)}: {problems[0]}{more}; nothing was applied")
    pushers = [o["metadata"].get("name") for o in objects if o.get("kind") == PUSHER_KIND]
    if pushers:
        raise ConfigError(f"{_shown(overlay)} renders InferenceService {', '.join(pushers)}: InferenceServices are the "
                          "Pusher's (a serving template, pipelines/configs/<env>.yaml serving_template), never "
                          "applied with the overlay, which would roll the served model back")
    if not dry_run:
        return _apply(objects, overlay)
    missing = sorted(ns for ns in _namespaces(objects) if not _namespace_exists(ns))
    if not missing:
        return _mark(_apply(objects, overlay, dry_run=True), "(server dry run)")
    # Nothing can be dry-run into a namespace that is not there: dry-run those objects in `default`
    # (same schemas, field validation, defaulting and admission), and say so.
    waiting = [o for o in objects if o.get("metadata", {}).get("namespace") in missing]
    rest = [o for o in objects if o.get("metadata", {}).get("namespace") not in missing]
    moved = [{**o, "metadata": {**o["metadata"], "namespace": STAND_IN_NAMESPACE}} for o in waiting]
    output = _mark(_apply(rest, overlay, dry_run=True), "(server dry run)") if rest else ""
    output += _mark(_apply(moved, overlay, dry_run=True), f"(server dry run in namespace {STAND_IN_NAMESPACE})")
    return output + (f"namespace {', '.join(missing)} does not exist yet (the apply creates it): its "
                     f"{len(waiting)} objects were dry-run on the server in namespace {STAND_IN_NAMESPACE}\n")


def _mark(output: str, note: str) -> str:
    """kubectl's `... (dry run)` / `(server dry run)` lines, with our own note of how far each was checked."""
    lines = [re.sub(r"\s*\((server )?dry run\)\s*$", "", line) for line in output.splitlines() if line.strip()]
    return "".join(f"{line.replace(f' namespace/{STAND_IN_NAMESPACE}', '')} {note}\n" for line in lines)
