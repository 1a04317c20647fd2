"""The local cluster's DNS: CoreDNS (cluster/dns/go.mod) as a pod, so Service names resolve in pods.

Part of the node layer (node_runtime.py starts it after kube-proxy): the kubelet gives every
ClusterFirst pod DNS_IP as its nameserver and the usual ``<namespace>.svc.cluster.local`` search
path; ``kube-dns`` at that fixed ClusterIP routes (kube-proxy) to the CoreDNS pod, which answers
for ``cluster.local`` from the API server and for nothing else: there is no ``forward``, so a name
outside the cluster gets no answer and no query leaves the namespace.
"""

import os

import gobuild
import kube_objects

MODULE = "github.com/coredns/coredns"
NAMESPACE = "kube-system"
NAME = "coredns"
DNS_IP = "10.96.0.10"  # the kubelet's clusterDNS, kube-dns's ClusterIP
CLUSTER_DOMAIN = "cluster.local"
IMAGE = "localhost/coredns:{version}"
COREFILE = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""
RULES = [  # what CoreDNS's kubernetes plugin watches (upstream's system:coredns ClusterRole)
    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
]


def image() -> str:
    return IMAGE.format(version=gobuild.required_version("dns", MODULE))


def objects() -> list[dict]:
    """CoreDNS's ServiceAccount, rights, Corefile, Deployment and the ``kube-dns`` Service."""
    labels = {"k8s-app": "kube-dns"}
    account = {"name": NAME, "namespace": NAMESPACE}
    container = {
        "name": NAME, "image": image(), "imagePullPolicy": "IfNotPresent", "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "40Mi"}, "limits": {"memory": "170Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kubetfx:coredns"},
         "rules": RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "kubetfx:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubetfx:coredns"},
         "subjects": [{"kind": "ServiceAccount", **account}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": account, "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**account, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": NAME, "dnsPolicy": "Default",
                                        # port 53 as a non-root user (a safe sysctl, allowed by default)
                                        "securityContext": {"sysctls": [
                                            {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]},
                                        "containers": [container],
                                        "volumes": [{"name": "config", "configMap": {"name": NAME}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": NAMESPACE,
                                                              "labels": labels},
         "spec": {"selector": labels, "clusterIP": DNS_IP,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]


def start(bins: dict, state: str) -> None:
    """CoreDNS's image into the node's containerd, its objects applied, its Deployment Available."""
    import node_runtime

    admin = os.path.join(state, "admin.kubeconfig")
    node_runtime.import_binary_image(bins["node"], state, os.path.join(bins["dns"], "coredns"), image(),
                                     user="65532:65532")
    kube_objects.apply(admin, objects())
    kube_objects.kubectl(admin, "wait", "--for=condition=Available", f"deployment/{NAME}", "-n", NAMESPACE,
                         "--timeout=120s", timeout_s=140)
