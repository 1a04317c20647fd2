"""Render and apply the kustomize overlays in manifests/ with kubectl (works offline for rendering).

Both fail with one line saying what is missing (kubectl, the overlay, a cluster) instead of
kubectl's multi-line output or a Python traceback.
"""

import shutil
import subprocess

import yaml

from kubetfx.components.common.errors import ConfigError, KubetfxError

# The InferenceService template is the Pusher's to apply (with the pushed version), never `make deploy`'s.
APPLIED_BY_PUSHER = "kubetfx.io/applied-by=pusher"


class ClusterError(KubetfxError):
    """kubectl could not reach or change the cluster."""


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise ConfigError("kubectl is not installed: it renders manifests/ (kustomize) and applies them; "
                          "install it (https://kubernetes.io/docs/tasks/tools/) and retry")
    return kubectl


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def render(overlay: str) -> list[dict]:
    """The objects ``kubectl kustomize OVERLAY`` renders."""
    result = subprocess.run([_kubectl(), "kustomize", overlay], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"kubectl kustomize {overlay} failed: {_last_line(result.stderr)}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def apply_command(overlay: str, dry_run: bool = False) -> list[str]:
    """``kubectl apply -k OVERLAY`` for everything but the Pusher's InferenceService template."""
    command = [_kubectl(), "apply", "-k", overlay, "--selector", APPLIED_BY_PUSHER.replace("=", "!=")]
    return command + ["--dry-run=server"] if dry_run else command


def apply(overlay: str, dry_run: bool = False) -> str:
    result = subprocess.run(apply_command(overlay, dry_run), capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"kubectl apply -k {overlay} failed: {_last_line(result.stderr)} "
                           "(is your kubeconfig's current context the cluster you mean? `kubectl config current-context`)")
    return result.stdout
