"""The node layer: containerd and a kubelet in the cluster's network namespace; pods on a CNI bridge there.

containerd (cluster/node/go.mod, with Debian's runc) keeps its root, state and socket under the
cluster's state folder; the kubelet registers this machine as node ``kubetfx-node`` at the node
address inside the namespace, with the flags a cgroup v1 sandbox needs (KUBELET_CONFIG). Pods get
addresses on a bridge in the namespace, whose routing table has no way out. Images come from
podman (``make image``), imported into containerd: nothing is ever pulled.
"""

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
import urllib.request

import cluster_dns
import gobuild
import network
from pki import Pki
from processes import Processes, http_ok

LAYER = "node"
NAMES = ("containerd", "kubelet", "kube-proxy")
NODE_NAME = "kubetfx-node"
PAUSE_IMAGE = "localhost/kubetfx-pause:1"
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for CRI images
# What this sandbox needed (cgroup v1, no systemd, swap, no iptables chains of the kubelet's own).
KUBELET_CONFIG = {
    "apiVersion": "kubelet.config.k8s.io/v1beta1",
    "kind": "KubeletConfiguration",
    "cgroupDriver": "cgroupfs",
    "failCgroupV1": False,
    "failSwapOn": False,
    "cgroupsPerQOS": False,
    "enforceNodeAllocatable": [],
    "readOnlyPort": 0,
    "makeIPTablesUtilChains": False,
    "imageGCHighThresholdPercent": 100,  # never garbage-collect the imported images: they cannot be pulled back
    "imageGCLowThresholdPercent": 99,
    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
    "serializeImagePulls": False,
    "maxPods": 40,
    "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}},
    "authorization": {"mode": "Webhook"},
    "clusterDomain": "cluster.local",
    "clusterDNS": [cluster_dns.DNS_IP],  # CoreDNS, started with the node
}


KUBE_PROXY_PORTS = {"healthz": 10256, "metrics": 10249}
# kube-proxy in iptables mode, inside the namespace: service addresses route only there. No conntrack
# sysctls (the namespace cannot set the host's), and no NodePorts on 127.0.0.1 (route_localnet).
KUBE_PROXY_CONFIG = {
    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
    "kind": "KubeProxyConfiguration",
    "mode": "iptables",
    "clusterCIDR": network.POD_CIDR,
    "hostnameOverride": NODE_NAME,
    "healthzBindAddress": f"127.0.0.1:{KUBE_PROXY_PORTS['healthz']}",
    "metricsBindAddress": f"127.0.0.1:{KUBE_PROXY_PORTS['metrics']}",
    "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    "iptables": {"localhostNodePorts": False},
}


def endpoint_slice(service: str, namespace: str, ports: list[dict], address: str = network.NODE_IP) -> dict:
    """An EndpointSlice pointing a selector-less Service at a process on the node's address (kube-proxy routes
    the Service's ClusterIP to it): the API server, or a process of a layer that does not run as a pod."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-node", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by": "kubetfx-cluster"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}, "nodeName": NODE_NAME}],
            "ports": [{"name": p["name"], "port": p["port"], "protocol": "TCP"} for p in ports]}


def _start_kube_proxy(processes: Processes, bins: dict, pki: Pki, state: str) -> float:
    """kube-proxy as ``system:kube-proxy`` (the built-in node-proxier role); pods reach the API server through
    the ``kubernetes`` Service, whose endpoint (the apiserver runs with no endpoint reconciler) is set here."""
    import control_plane
    import kube_objects
    import yaml

    pki.issue("kube-proxy", "system:kube-proxy", usages=(_client_usage(),))
    kubeconfig = os.path.join(state, "kube-proxy.kubeconfig")
    pki.kubeconfig(kubeconfig, control_plane.server_url(), "kube-proxy")
    config_path = os.path.join(_paths(state)["base"], "kube-proxy.yaml")
    _write(config_path, yaml.safe_dump(dict(KUBE_PROXY_CONFIG, clientConnection={"kubeconfig": kubeconfig}),
                                       sort_keys=False))
    kube_objects.apply(os.path.join(state, "admin.kubeconfig"), [endpoint_slice(
        "kubernetes", "default", [{"name": "https", "port": control_plane.PORTS["apiserver"]}])])
    network.route_services(processes.netns, control_plane.SERVICE_CIDR)
    processes.start("kube-proxy", [os.path.join(bins["kubernetes"], "kube-proxy"), f"--config={config_path}"])
    return processes.wait("serving", lambda: network.call_inside(
        processes.netns, http_ok, f"http://127.0.0.1:{KUBE_PROXY_PORTS['healthz']}/healthz"), "kube-proxy",
        timeout_s=60)


def _paths(state: str) -> dict:
    base = os.path.join(state, "node")
    return {"base": base, "socket": os.path.join(base, "containerd", "containerd.sock"),
            "containerd_config": os.path.join(base, "containerd.toml"),
            "kubelet_config": os.path.join(base, "kubelet.yaml"), "cni_conf": os.path.join(base, "cni", "net.d"),
            "kubelet_root": os.path.join(base, "kubelet"), "resolv": os.path.join(base, "resolv.conf")}


def _containerd_config(paths: dict, bin_dir: str) -> str:
    base, runc = paths["base"], os.environ.get("KUBETFX_RUNC", "/usr/sbin/runc")
    return f"""version = 3
root = "{base}/containerd/root"
state = "{base}/containerd/state"

[grpc]
  address = "{paths['socket']}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true  # pods' network namespaces under our state, not the host's /run/netns
  restrict_oom_score_adj = true  # no CAP_SYS_RESOURCE in this sandbox: runc may not lower a pod's OOM score
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{bin_dir}"]
    conf_dir = "{paths['cni_conf']}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def _cni_config(paths: dict) -> dict:
    return {"cniVersion": "1.0.0", "name": "kubetfx-pods", "plugins": [
        {"type": "bridge", "bridge": network.POD_BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": network.POD_CIDR}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": os.path.join(paths["base"], "cni", "ipam")}}]}


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def ctr(bin_dir: str, state: str, *args: str, stdin=None) -> subprocess.CompletedProcess:
    """containerd's own CLI against this node's containerd (k8s.io namespace, where the kubelet's images live)."""
    command = [os.path.join(bin_dir, "ctr"), "--address", _paths(state)["socket"], "--namespace", K8S_NAMESPACE,
               *args]
    return subprocess.run(command, stdin=stdin, capture_output=True)


def binary_image_archive(binary: str, image: str, user: str = "65535:65535") -> bytes:
    """A docker-archive image (what `podman save` writes) of one static binary as its entrypoint, built without
    podman: our pause process, KServe's agent."""
    name = os.path.basename(binary)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(binary, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with open(binary, "rb") as handle:
            tar.addfile(info, handle)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": [f"/{name}"], "User": user},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [image], "Layers": ["layer.tar"]}]).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for member, data in (("layer.tar", layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def import_binary_image(bin_dir: str, state: str, binary: str, image: str, user: str = "65535:65535") -> None:
    """One static binary as the image ``image`` in the node's containerd (a rebuild keeps its tag)."""
    import_archive(bin_dir, state, binary_image_archive(binary, image, user=user))


def image_present(bin_dir: str, state: str, image: str) -> bool:
    result = ctr(bin_dir, state, "images", "ls", "-q", f"name=={image}")
    return result.returncode == 0 and image in result.stdout.decode().split()


def import_archive(bin_dir: str, state: str, archive: bytes | str) -> None:
    """``ctr images import`` of a docker/OCI archive (bytes, or a file path)."""
    if isinstance(archive, str):
        with open(archive, "rb") as handle:
            result = ctr(bin_dir, state, "images", "import", "--no-unpack=false", "-", stdin=handle)
    else:
        result = subprocess.run([os.path.join(bin_dir, "ctr"), "--address", _paths(state)["socket"], "--namespace",
                                 K8S_NAMESPACE, "images", "import", "-"], input=archive, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"cluster: importing an image into containerd failed: {result.stderr.decode().strip()}")


def load_podman_image(bin_dir: str, state: str, image: str, log=print) -> bool:
    """Copy ``image`` from podman's store into the node's containerd when podman's build of it is not the one
    imported last (a rebuild keeps its tag); False if podman does not have it."""
    inspected = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True,
                               text=True)
    if inspected.returncode != 0:
        return False
    record = os.path.join(_paths(state)["base"], "imported-images.json")
    try:
        with open(record, encoding="utf-8") as handle:
            imported = json.load(handle)
    except (OSError, ValueError):
        imported = {}
    image_id = inspected.stdout.strip()
    if imported.get(image) == image_id and image_present(bin_dir, state, image):
        return True
    archive = os.path.join(_paths(state)["base"], "import.tar")
    started = time.monotonic()
    saved = subprocess.run(["podman", "save", "--format", "docker-archive", "-o", archive, image],
                           capture_output=True, text=True)
    if saved.returncode != 0:
        raise SystemExit(f"cluster: podman save {image} failed: {saved.stderr.strip()}")
    try:
        import_archive(bin_dir, state, archive)
    finally:
        os.remove(archive)
    imported[image] = image_id
    with open(record, "w", encoding="utf-8") as handle:
        json.dump(imported, handle)
    log(f"cluster: imported {image} ({image_id[:12]}) into the node's containerd in {time.monotonic() - started:.0f} s")
    return True


def _node_ready(pki: Pki) -> bool:
    import control_plane

    url = f"{control_plane.server_url()}/api/v1/nodes/{NODE_NAME}"
    try:
        with urllib.request.urlopen(url, timeout=2, context=control_plane.tls_context(pki)) as response:
            node = json.load(response)
    except (OSError, ValueError):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in node["status"].get("conditions", []))


def start(processes: Processes, bins: dict, pki: Pki, state: str, log=print) -> dict:
    """containerd, our pause image, the kubelet; returns how long the node took to turn Ready."""
    import control_plane
    import yaml

    bin_dir, paths = bins["node"], _paths(state)
    _write(paths["containerd_config"], _containerd_config(paths, bin_dir))
    _write(os.path.join(paths["cni_conf"], "10-kubetfx-pods.conflist"), json.dumps(_cni_config(paths), indent=2))
    _write(paths["resolv"], "# no upstream DNS server: CoreDNS answers for cluster.local only\n")
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
    processes.start("containerd", [os.path.join(bin_dir, "containerd"), "--config", paths["containerd_config"]],
                    env=env)
    processes.wait("serving", lambda: os.path.exists(paths["socket"]) and
                   ctr(bin_dir, state, "version").returncode == 0, "containerd", timeout_s=60)
    import_archive(bin_dir, state, binary_image_archive(os.path.join(bin_dir, "pause"), PAUSE_IMAGE))

    pki.issue("kubelet-client", f"system:node:{NODE_NAME}", "system:nodes", usages=(_client_usage(),))
    serving = pki.issue("kubelet-serving", NODE_NAME, usages=(_server_usage(),), dns=(NODE_NAME,),
                        ips=(network.NODE_IP, "127.0.0.1"))
    kubeconfig = os.path.join(state, "kubelet.kubeconfig")
    pki.kubeconfig(kubeconfig, f"https://127.0.0.1:{control_plane.PORTS['apiserver']}", "kubelet-client")
    config = dict(KUBELET_CONFIG, containerRuntimeEndpoint=f"unix://{paths['socket']}", resolvConf=paths["resolv"],
                  podLogsDir=os.path.join(paths["base"], "pod-logs"),
                  volumePluginDir=os.path.join(paths["base"], "volume-plugins"),
                  tlsCertFile=serving, tlsPrivateKeyFile=pki.path("kubelet-serving.key"))
    config["authentication"] = dict(config["authentication"], x509={"clientCAFile": pki.path("ca.crt")})
    _write(paths["kubelet_config"], yaml.safe_dump(config, sort_keys=False))
    started = time.monotonic()
    processes.start("kubelet", [os.path.join(bins["kubernetes"], "kubelet"), f"--config={paths['kubelet_config']}",
                                f"--kubeconfig={kubeconfig}", f"--root-dir={paths['kubelet_root']}",
                                f"--hostname-override={NODE_NAME}", f"--node-ip={network.NODE_IP}", "--v=1"],
                    env=env)
    ready_s = processes.wait("Ready", lambda: _node_ready(pki), "kubelet", timeout_s=120)
    log(f"cluster: node {NODE_NAME} Ready {ready_s:.1f} s after the kubelet started")
    timings = {"node_ready_s": round(time.monotonic() - started, 2)}
    proxy_s = _start_kube_proxy(processes, bins, pki, state)
    log(f"cluster: kube-proxy serving {proxy_s:.1f} s after it started (iptables, inside the namespace)")
    dns_started = time.monotonic()
    cluster_dns.start(bins, state)
    dns_s = time.monotonic() - dns_started
    log(f"cluster: CoreDNS {gobuild.required_version('dns', cluster_dns.MODULE)} Available in {dns_s:.1f} s "
        f"(kube-dns {cluster_dns.DNS_IP}, {cluster_dns.CLUSTER_DOMAIN} only)")
    return {**timings, "kube_proxy_ready_s": round(proxy_s, 2), "dns_ready_s": round(dns_s, 2)}


def stop(processes: Processes, state: str, log=print) -> None:
    """kube-proxy, the kubelet, then every container still running (containerd's shims outlive it), then
    containerd."""
    if processes.stop("kube-proxy"):
        log("cluster: stopped kube-proxy")
    if processes.stop("kubelet"):
        log("cluster: stopped kubelet")
    bin_dir = _bin_dir_of(processes)
    if bin_dir and processes.running("containerd"):
        tasks = ctr(bin_dir, state, "tasks", "ls", "-q")
        for task in tasks.stdout.decode().split():
            ctr(bin_dir, state, "tasks", "kill", "--signal", "SIGKILL", task)
        time.sleep(1)
        for task in tasks.stdout.decode().split():
            ctr(bin_dir, state, "tasks", "delete", "--force", task)
    if processes.stop("containerd"):
        log("cluster: stopped containerd")
    _stop_shims(state)


def _bin_dir_of(processes: Processes) -> str:
    """The node tools' bin dir, from the running containerd's PID file (no build needed to stop it)."""
    try:
        with open(os.path.join(processes.state_dir, "run", "containerd.pid"), encoding="utf-8") as handle:
            return os.path.dirname(handle.read().split("\n")[1])
    except (OSError, IndexError):
        return ""


def _stop_shims(state: str) -> None:
    """Kill runc shims of this node's containerd that outlived it (found by its socket in their argv)."""
    socket = _paths(state)["socket"].encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"containerd-shim-runc-v2") and any(socket in arg for arg in argv):
            subprocess.run(["kill", "-9", pid], capture_output=True)
    _unmount(os.path.dirname(os.path.dirname(_paths(state)["socket"])))


def _unmount(base: str) -> None:
    """Unmount what the kubelet and containerd left mounted under the node's folder (deepest first)."""
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        mounts = [line.split()[1] for line in handle]
    for mount in sorted((m for m in mounts if m.startswith(base + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


def _client_usage():
    from cryptography.x509.oid import ExtendedKeyUsageOID

    return ExtendedKeyUsageOID.CLIENT_AUTH


def _server_usage():
    from cryptography.x509.oid import ExtendedKeyUsageOID

    return ExtendedKeyUsageOID.SERVER_AUTH
