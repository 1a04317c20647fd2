"""Kubernetes objects for the local cluster's layers: read an upstream module's YAML, apply it, wait for it.

Every layer reads its upstream release's own manifests from Go's module cache (never committed),
changes only what this cluster needs, and applies them server-side as ``kubetfx-cluster``.
"""

import functools
import os
import subprocess
import time

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FIELD_MANAGER = "kubetfx-cluster"


@functools.cache
def _go_module_cache() -> str:
    return subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True).stdout.strip()


def module_dir(module: str, version: str) -> str:
    """An upstream module's source at ``version``, in Go's module cache (downloaded by the layer's build)."""
    return os.path.join(_go_module_cache(), f"{module}@{version}")


def documents(path: str) -> list[dict]:
    """The objects of one YAML file (empty documents and comment-only ones dropped)."""
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.load_all(handle, Loader=_LOADER) if doc]


def folder_documents(folder: str, recursive: bool = False) -> list[dict]:
    """The objects of every ``*.yaml`` in ``folder`` (and below it, if ``recursive``), in name order."""
    objects = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if recursive and os.path.isdir(path):
            objects += folder_documents(path, recursive=True)
        elif name.endswith(".yaml"):
            objects += documents(path)
    return objects


def kubectl(kubeconfig: str, *args: str, text: str | None = None, timeout_s: float = 300) -> str:
    result = subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", *args], input=text, capture_output=True,
                            text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise SystemExit(f"cluster: kubectl {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout


def apply(kubeconfig: str, objects: list[dict]) -> None:
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", "-",
            text=yaml.safe_dump_all(objects, sort_keys=False))


def install_crds(kubeconfig: str, crds: list[dict], timeout_s: float = 60) -> list[str]:
    """Apply CustomResourceDefinitions and wait until each is Established (a controller watching one that is
    not yet served fails at start)."""
    apply(kubeconfig, crds)
    names = [crd["metadata"]["name"] for crd in crds]
    deadline = time.monotonic() + timeout_s
    for name in names:
        while subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "wait", "--for=condition=Established",
                              f"crd/{name}", "--timeout=10s"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"cluster: CRD {name} not Established after {timeout_s:.0f} s")
            time.sleep(0.5)
    return names


def service_account_token(kubeconfig: str, name: str, namespace: str) -> str:
    """A TokenRequest token for a ServiceAccount (what a process of a layer runs as; 48 h, like a session)."""
    return kubectl(kubeconfig, "create", "token", name, "-n", namespace, "--duration=48h").strip()
