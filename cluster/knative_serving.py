"""The Knative layer: Knative Serving (cluster/knative/go.mod) as pods on the node, and Traefik as its ingress.

This is what KServe's Serverless mode stands on, and with it the canary traffic split: KServe turns an
InferenceService into a Knative Service, Knative into Revisions, Routes and a KIngress with the
split, and Traefik (cluster/ingress/go.mod, its Knative provider) serves that split.

- Knative's own manifests are read from the pinned modules (serving's config/core, networking's
  and caching's CRDs), never committed. Only what this cluster needs changes: images (built here,
  one static binary each, imported into the node's containerd), the ingress class, the queue-proxy
  image, tag resolution skipped for ``localhost/`` images (there is no registry), the PVC features
  KServe's ``pvc://`` models need, and no HorizontalPodAutoscalers (no metrics server).
- Traefik runs as a process in the cluster's network namespace, as its own ServiceAccount, and listens
  on INGRESS_PORT there; the host reaches it through a forwarder on 127.0.0.1:INGRESS_PORT.
"""

import copy
import os
import time

import yaml

import forward
import gobuild
import kube_objects
import network
import node_runtime
from pki import Pki
from processes import Processes, http_ok

LAYER = "knative"
NAMES = ("traefik", "ingress-forward-inside", "ingress-forward-host")
SERVING_MODULE = "knative.dev/serving"
NETWORKING_MODULE = "knative.dev/networking"
CACHING_MODULE = "knative.dev/caching"
TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
NAMESPACE = "knative-serving"
COMPONENTS = ("activator", "autoscaler", "controller", "webhook")  # Knative's Deployments, as pods
IMAGE = "localhost/knative-{name}:{version}"
INGRESS_CLASS = "traefik.ingress.networking.knative.dev"  # the class Traefik's Knative provider serves
INGRESS_PORT = 18090  # Traefik's public entry point (in the namespace; forwarded to the host's loopback)
INGRESS_INTERNAL_PORT = 18091  # cluster-local KIngresses
INGRESS_PING_PORT = 18092
INGRESS_SERVICE = "kubetfx-ingress"  # the Service that names Traefik in the KIngress status
INGRESS_ACCOUNT = "kubetfx-ingress"
DOMAIN = "example.com"  # Knative's and KServe's default domain: hosts are <name>.<namespace>.example.com
# ConfigMap keys that differ from Knative's defaults here.
CONFIG_CHANGES = {
    "config-network": {"ingress-class": INGRESS_CLASS},
    "config-deployment": {"queue-sidecar-image": "{queue}", "registries-skipping-tag-resolving": "{registries}"},
    "config-domain": {DOMAIN: ""},
    "config-features": {"kubernetes.podspec-persistent-volume-claim": "enabled",  # KServe's pvc:// models
                        "kubernetes.podspec-persistent-volume-write": "enabled",
                        "kubernetes.podspec-fieldref": "enabled"},  # the runtime's model version from an annotation
}
SKIPPED_FILES = ("300-knativecertificate.yaml",)  # a cert-manager Certificate for system-internal TLS (off here)
SKIPPED_KINDS = ("HorizontalPodAutoscaler",)
INGRESS_RULES = [  # what Traefik's Knative provider reads and writes
    {"apiGroups": ["networking.internal.knative.dev"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.internal.knative.dev"], "resources": ["ingresses/status"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["services", "endpoints", "secrets"], "verbs": ["get", "list", "watch"]},
]


def version(module: str = SERVING_MODULE) -> str:
    return gobuild.required_version("ingress" if module == TRAEFIK_MODULE else "knative", module)


def image(name: str) -> str:
    return IMAGE.format(name=name, version=version())


def _source(module: str) -> str:
    return kube_objects.module_dir(module, version(module))


def crd_documents() -> list[dict]:
    """Serving's CRDs, and the networking and caching CRDs its controllers watch, at the pinned versions."""
    serving = kube_objects.folder_documents(os.path.join(_source(SERVING_MODULE), "config", "core", "300-resources"))
    others = [doc for module in (NETWORKING_MODULE, CACHING_MODULE)
              for doc in kube_objects.folder_documents(os.path.join(_source(module), "config"))]
    return [doc for doc in serving + others if doc.get("kind") == "CustomResourceDefinition"]


def _local_registries() -> str:
    """Registries whose images the node already has (imported, never pulled): Knative must not ask them for
    digests. Its own defaults, ``localhost`` (our builds) and the registries images/images.env names."""
    from kubetfx.components.common import image as component_images

    names = [name for key, name in component_images.image_names().items() if key in (component_images.CPU,
                                                                                     component_images.GPU)]
    registries = ["kind.local", "ko.local", "dev.local", "localhost"]
    registries += [name.split("/")[0] for name in names if "/" in name and "." in name.split("/")[0]]
    return ",".join(dict.fromkeys(registries))


def _with_changes(config: dict) -> dict:
    changes = CONFIG_CHANGES.get(config["metadata"]["name"])
    if changes:
        values = {"queue": image("queue"), "registries": _local_registries()}
        changed = {key: value.format(**values) for key, value in changes.items()}
        config["data"] = {**(config.get("data") or {}), **changed}
    return config


def _container_images(spec: dict) -> None:
    for container in spec.get("containers", []):
        prefix = f"ko://{SERVING_MODULE}/cmd/"
        if container.get("image", "").startswith(prefix):
            container["image"] = image(container["image"][len(prefix):])
            container["imagePullPolicy"] = "IfNotPresent"


def _changed(doc: dict) -> dict:
    """One of Knative's objects as this cluster runs it (images built here, our settings)."""
    doc = copy.deepcopy(doc)
    kind = doc.get("kind")
    if kind == "ConfigMap":
        return _with_changes(doc)
    if kind == "Deployment":
        _container_images(doc["spec"]["template"]["spec"])
    if kind == "Image" and doc["spec"]["image"].startswith("ko://"):
        doc["spec"]["image"] = image("queue")
    return doc


def serving_documents() -> list[dict]:
    """Serving's core objects (namespace, RBAC, ConfigMaps, Deployments, Services, webhooks) minus its CRDs."""
    core = os.path.join(_source(SERVING_MODULE), "config", "core")
    objects = []
    for root, folders, files in sorted(os.walk(core)):
        folders.sort()
        if os.path.basename(root) == "300-resources":
            continue
        for name in sorted(files):
            if name.endswith(".yaml") and name not in SKIPPED_FILES:
                objects += kube_objects.documents(os.path.join(root, name))
    network_config = os.path.join(_source(NETWORKING_MODULE), "config", "config-network.yaml")
    objects += kube_objects.documents(network_config)
    return [_changed(doc) for doc in objects
            if doc.get("kind") not in SKIPPED_KINDS and doc.get("kind") != "CustomResourceDefinition"]


def _ingress_objects() -> list[dict]:
    """Traefik's ServiceAccount and rights, and the Service (with its endpoint on the node) that names it."""
    meta = {"name": INGRESS_ACCOUNT}
    ports = [{"name": "http", "port": 80, "targetPort": INGRESS_PORT, "protocol": "TCP"}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {**meta, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta, "rules": INGRESS_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": INGRESS_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": INGRESS_ACCOUNT, "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": INGRESS_SERVICE, "namespace": NAMESPACE},
         "spec": {"ports": ports}},
        node_runtime.endpoint_slice(INGRESS_SERVICE, NAMESPACE, [{"name": "http", "port": INGRESS_PORT}]),
    ]


def _traefik_config(state: str, token: str, pki: Pki) -> str:
    """Traefik's static configuration (it holds a token: written 0600)."""
    import control_plane

    service = {"name": INGRESS_SERVICE, "namespace": NAMESPACE}
    config = {
        "entryPoints": {"web": {"address": f":{INGRESS_PORT}"},
                        "web-internal": {"address": f":{INGRESS_INTERNAL_PORT}"},
                        "ping": {"address": f"127.0.0.1:{INGRESS_PING_PORT}"}},
        "ping": {"entryPoint": "ping"},
        "experimental": {"knative": True},
        "providers": {"knative": {"endpoint": control_plane.server_url(), "token": token,
                                  "certAuthFilePath": pki.path("ca.crt"),
                                  "publicEntrypoints": ["web"], "privateEntrypoints": ["web-internal"],
                                  "publicService": service, "privateService": service}},
        "log": {"level": "INFO", "noColor": True},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }
    path = os.path.join(state, "traefik.yaml")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    return path


def start(processes: Processes, bins: dict, pki: Pki, state: str, log=print) -> dict:
    """Knative's images, CRDs and objects; its four Deployments Available; then Traefik and its forwarder."""
    admin = os.path.join(state, "admin.kubeconfig")
    started = time.monotonic()
    for name in COMPONENTS + ("queue",):
        node_runtime.import_binary_image(bins["node"], state, os.path.join(bins["knative"], name), image(name),
                                         user="65532:65532")
    kube_objects.install_crds(admin, crd_documents())
    objects = serving_documents()
    kube_objects.apply(admin, [o for o in objects if o["kind"] == "Namespace"])
    kube_objects.apply(admin, [o for o in objects if o["kind"] != "Namespace"] + _ingress_objects())
    kube_objects.kubectl(admin, "wait", "--for=condition=Available", "deployment", "--all", "-n", NAMESPACE,
                         "--timeout=240s", timeout_s=260)
    serving_s = time.monotonic() - started
    token = kube_objects.service_account_token(admin, INGRESS_ACCOUNT, NAMESPACE)
    processes.start("traefik", [os.path.join(bins["ingress"], "traefik"),
                                f"--configFile={_traefik_config(state, token, pki)}"])
    processes.wait("ready", lambda: network.call_inside(processes.netns, http_ok,
                                                        f"http://127.0.0.1:{INGRESS_PING_PORT}/ping"), "traefik")
    forward.start_pair(processes, "ingress", INGRESS_PORT, state)
    log(f"cluster: Knative Serving {version()} Available in {serving_s:.1f} s; Traefik {version(TRAEFIK_MODULE)} "
        f"ingress on 127.0.0.1:{INGRESS_PORT} (Host: <name>.<namespace>.{DOMAIN})")
    return {"knative_serving_ready_s": round(serving_s, 2),
            "knative_ingress_ready_s": round(time.monotonic() - started - serving_s, 2)}


def stop(processes: Processes, state: str, log=print) -> None:
    """Traefik and its forwarders (Knative's pods go with the node)."""
    for name in reversed(NAMES):
        if processes.stop(name):
            log(f"cluster: stopped {name}")
