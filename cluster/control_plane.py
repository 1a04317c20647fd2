"""The control plane layer: etcd, kube-apiserver, kube-controller-manager and kube-scheduler, with RBAC on.

All four run in the cluster's network namespace (network.py); the API server also listens on the
node's address there, so pods reach it through the ``kubernetes`` Service (kube-proxy, in the node
layer, routes service addresses inside the namespace only). The host reaches it on 127.0.0.1:<port>
through the forwarder.
"""

import os
import ssl

import forward
import network
from pki import Pki
from processes import Processes, http_ok

SERVICE_CIDR = "10.96.0.0/16"
# Ports, the same inside the namespace and (the API server's) on the host's 127.0.0.1.
PORTS = {"etcd": 12379, "etcd-peer": 12380, "apiserver": 16443, "controller-manager": 20257, "scheduler": 20259}
NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
FORWARDERS = ("apiserver-forward-host", "apiserver-forward-inside")


def server_url() -> str:
    return f"https://127.0.0.1:{PORTS['apiserver']}"


def tls_context(pki: Pki, user: str = "admin") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.path("ca.crt"))
    context.load_cert_chain(pki.path(f"{user}.crt"), pki.path(f"{user}.key"))
    return context


def ready(pki: Pki) -> bool:
    """The API server's /readyz, as the host sees it (through the forwarder)."""
    return os.path.exists(pki.path("admin.crt")) and http_ok(server_url() + "/readyz", tls_context(pki))


def _etcd(bin_dir: str, state: str) -> list[str]:
    client, peer = f"http://127.0.0.1:{PORTS['etcd']}", f"http://127.0.0.1:{PORTS['etcd-peer']}"
    return [os.path.join(bin_dir, "etcd"), "--name=local", f"--data-dir={os.path.join(state, 'etcd')}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}", "--unsafe-no-fsync", "--log-level=warn"]


def _apiserver(bin_dir: str, pki: Pki) -> list[str]:
    p = pki.path
    return [os.path.join(bin_dir, "kube-apiserver"),
            "--bind-address=0.0.0.0", f"--advertise-address={network.NODE_IP}", f"--secure-port={PORTS['apiserver']}",
            f"--etcd-servers=http://127.0.0.1:{PORTS['etcd']}", "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
            f"--client-ca-file={p('ca.crt')}", f"--tls-cert-file={p('apiserver.crt')}",
            f"--tls-private-key-file={p('apiserver.key')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p('sa.pub')}", f"--service-account-signing-key-file={p('sa.key')}",
            f"--kubelet-client-certificate={p('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={p('apiserver-kubelet-client.key')}",
            f"--kubelet-certificate-authority={p('ca.crt')}", "--kubelet-preferred-address-types=InternalIP",
            "--enable-aggregator-routing=true", "--profiling=false", "--event-ttl=30m"]


def _controller_manager(bin_dir: str, pki: Pki, kubeconfig: str) -> list[str]:
    return [os.path.join(bin_dir, "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={PORTS['controller-manager']}", "--leader-elect=false",
            f"--tls-cert-file={pki.path('controller-manager-serving.crt')}",
            f"--tls-private-key-file={pki.path('controller-manager-serving.key')}",
            f"--service-account-private-key-file={pki.path('sa.key')}", f"--root-ca-file={pki.path('ca.crt')}",
            "--use-service-account-credentials=true", f"--cluster-signing-cert-file={pki.path('ca.crt')}",
            f"--cluster-signing-key-file={pki.path('ca.key')}", f"--service-cluster-ip-range={SERVICE_CIDR}"]


def _scheduler(bin_dir: str, pki: Pki, kubeconfig: str) -> list[str]:
    return [os.path.join(bin_dir, "kube-scheduler"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={PORTS['scheduler']}", "--leader-elect=false",
            f"--tls-cert-file={pki.path('scheduler-serving.crt')}",
            f"--tls-private-key-file={pki.path('scheduler-serving.key')}"]


def kubeconfig_for(pki: Pki, state: str, user: str) -> str:
    path = os.path.join(state, f"{user}.kubeconfig")
    if not os.path.exists(path):
        pki.kubeconfig(path, server_url(), user)
    return path


def start(processes: Processes, bin_dir: str, pki: Pki, state: str) -> dict:
    """Start what is not running, in order, each once the one before answers; return timings."""
    processes.start("etcd", _etcd(bin_dir, state))
    processes.start("kube-apiserver", _apiserver(bin_dir, pki))
    forward.start_pair(processes, "apiserver", PORTS["apiserver"], state)
    ready_s = processes.wait("ready", lambda: ready(pki), "kube-apiserver")
    processes.start("kube-controller-manager", _controller_manager(bin_dir, pki, kubeconfig_for(
        pki, state, "controller-manager")))
    processes.start("kube-scheduler", _scheduler(bin_dir, pki, kubeconfig_for(pki, state, "scheduler")))
    context = tls_context(pki)
    for name, port in (("kube-controller-manager", PORTS["controller-manager"]),
                       ("kube-scheduler", PORTS["scheduler"])):
        processes.wait("healthy", lambda port=port: network.call_inside(
            processes.netns, http_ok, f"https://127.0.0.1:{port}/healthz", context), name)
    return {"apiserver_ready_s": round(ready_s, 2)}


def host_ports_busy(processes: Processes) -> list[int]:
    """Ports the host side needs that another program holds (only the API server's forwarder listens there)."""
    import socket

    if processes.running("apiserver-forward-host"):
        return []
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", PORTS["apiserver"]))
        except OSError:
            return [PORTS["apiserver"]]
    return []
