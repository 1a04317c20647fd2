"""The KServe layer: KServe's controller manager (cluster/kserve/go.mod) in RawDeployment mode, with its webhooks.

Everything is KServe's own, read from the pinned module (``go env GOMODCACHE``), never committed:
its CRDs (config/crd/full), the manager's ClusterRole (config/rbac/role.yaml) bound to its
ServiceAccount, whose TokenRequest token the manager runs with, the inferenceservice-config
ConfigMap (config/configmap) with the settings a cluster without Knative or an ingress needs
(CONFIG_CHANGES), and its admission webhooks (config/webhook/manifests.yaml), served over TLS by the
manager on 127.0.0.1 in the cluster's network namespace and called by URL with our CA's bundle.
"""

import base64
import copy
import json
import os

import gobuild
import kube_objects
import network
from pki import Pki
from processes import Processes, http_ok

LAYER = "kserve"
NAMES = ("kserve-manager",)
MODULE = "github.com/kserve/kserve"
NAMESPACE = "kserve"
SERVICE_ACCOUNT = "kserve-controller-manager"
WEBHOOK_PORT = 19443
PROBE_PORT = 18081
METRICS_PORT = 18080
AGENT_IMAGE = "localhost/kserve-agent:{version}"  # KServe's agent (logger sidecar), built from the module
# The ConfigMap's settings that differ from KServe's defaults here: no Knative, no ingress controller,
# and the agent image we built instead of one pulled from a registry.
CONFIG_CHANGES = {
    "deploy": {"defaultDeploymentMode": "RawDeployment"},
    "ingress": {"disableIngressCreation": True, "disableIstioVirtualHost": True},
    "agent": {"image": AGENT_IMAGE},
    "logger": {"image": AGENT_IMAGE},
    "batcher": {"image": AGENT_IMAGE},
}


def agent_image() -> str:
    return AGENT_IMAGE.format(version=gobuild.required_version("kserve", MODULE))


def module_dir() -> str:
    """KServe's source at the pinned version, in Go's module cache (downloaded by the build)."""
    return kube_objects.module_dir(MODULE, gobuild.required_version("kserve", MODULE))


CRD_FOLDERS = ("", "clusterstoragecontainer")  # of config/crd/full: what the v1beta1 controller reads


def crd_documents() -> list[dict]:
    folders = [os.path.join(module_dir(), "config", "crd", "full", sub) for sub in CRD_FOLDERS]
    return [doc for folder in folders for doc in kube_objects.folder_documents(folder)
            if doc.get("kind") == "CustomResourceDefinition"]


def _config_map() -> dict:
    path = os.path.join(module_dir(), "config", "configmap", "inferenceservice.yaml")
    (config,) = [d for d in kube_objects.documents(path) if d.get("kind") == "ConfigMap"]
    config = copy.deepcopy(config)
    config["metadata"] = {"name": config["metadata"]["name"], "namespace": NAMESPACE}
    config["data"].pop("_example", None)
    for key, changes in CONFIG_CHANGES.items():
        changes = {k: v.format(version=gobuild.required_version("kserve", MODULE)) if isinstance(v, str) else v
                   for k, v in changes.items()}
        config["data"][key] = json.dumps({**json.loads(config["data"][key]), **changes}, indent=2)
    return config


def _rbac() -> list[dict]:
    folder = os.path.join(module_dir(), "config", "rbac")
    objects = [d for d in kube_objects.documents(os.path.join(folder, "role.yaml")) if d.get("kind") == "ClusterRole"]
    objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}})
    for role in [o for o in objects if o["kind"] == "ClusterRole"]:
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": role["metadata"]["name"].replace("-role", "-rolebinding")},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": role["metadata"]["name"]},
                        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]})
    return objects


def _webhooks(pki: Pki) -> list[dict]:
    """KServe's webhook configurations, calling the manager by URL (it runs as a process, not behind a Service)."""
    with open(pki.path("ca.crt"), "rb") as handle:
        bundle = base64.b64encode(handle.read()).decode()
    configs = kube_objects.documents(os.path.join(module_dir(), "config", "webhook", "manifests.yaml"))
    for config in configs:
        config["metadata"].pop("creationTimestamp", None)
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{WEBHOOK_PORT}{path}", "caBundle": bundle}
    return configs


def install_crds(kubeconfig: str) -> list[str]:
    """KServe's CRDs at the pinned version, Established (KServe's controller watches all of these kinds)."""
    return kube_objects.install_crds(kubeconfig, crd_documents())


def start(processes: Processes, bins: dict, pki: Pki, state: str, log=print) -> dict:
    """CRDs, namespace, RBAC, ConfigMap, webhook certs; the manager; then the webhook configurations."""
    import time

    from cryptography.x509.oid import ExtendedKeyUsageOID

    import node_runtime

    admin = os.path.join(state, "admin.kubeconfig")
    node_runtime.import_binary_image(bins["node"], state, os.path.join(bins["kserve"], "kserve-agent"),
                                     agent_image(), user="1000:1000")  # always: a rebuild keeps its tag
    install_crds(admin)
    kube_objects.apply(admin, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    kube_objects.apply(admin, _rbac() + [_config_map()])
    token = kube_objects.service_account_token(admin, SERVICE_ACCOUNT, NAMESPACE)
    kubeconfig = os.path.join(state, "kserve-manager.kubeconfig")
    import control_plane

    pki.kubeconfig(kubeconfig, control_plane.server_url(), SERVICE_ACCOUNT, token=token)
    temp = os.path.join(state, "kserve", "tmp")
    certs = os.path.join(temp, "k8s-webhook-server", "serving-certs")  # controller-runtime's default, under TMPDIR
    os.makedirs(certs, exist_ok=True)
    pki.issue("kserve-webhook", "kserve-webhook-server", usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
              dns=("localhost",), ips=("127.0.0.1",))
    for source, target in (("kserve-webhook.crt", "tls.crt"), ("kserve-webhook.key", "tls.key")):
        with open(pki.path(source), "rb") as handle, open(os.path.join(certs, target), "wb") as out:
            out.write(handle.read())
    started = time.monotonic()
    processes.start("kserve-manager", [
        os.path.join(bins["kserve"], "kserve-manager"), f"--metrics-addr=127.0.0.1:{METRICS_PORT}",
        f"--health-probe-addr=127.0.0.1:{PROBE_PORT}", f"--webhook-port={WEBHOOK_PORT}", "--leader-elect=false"],
        env={"KUBECONFIG": kubeconfig, "TMPDIR": temp, "POD_NAMESPACE": NAMESPACE})
    processes.wait("ready", lambda: network.call_inside(processes.netns, http_ok,
                                                        f"http://127.0.0.1:{PROBE_PORT}/readyz"), "kserve-manager")
    kube_objects.apply(admin, _webhooks(pki))
    log(f"cluster: KServe {gobuild.required_version('kserve', MODULE)} controller ready in "
        f"{time.monotonic() - started:.1f} s (RawDeployment, webhooks on 127.0.0.1:{WEBHOOK_PORT})")
    return {"kserve_ready_s": round(time.monotonic() - started, 2)}


def stop(processes: Processes, state: str, log=print) -> None:
    if processes.stop("kserve-manager"):
        log("cluster: stopped kserve-manager")
