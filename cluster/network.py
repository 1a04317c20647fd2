"""The local cluster's own network: a network namespace with a loopback, the node's address and the pod bridge.

Every process of the cluster runs in this namespace, so every address it uses (127.0.0.1, the node
IP, pod IPs, service IPs) lives there and nothing routes anywhere else: the namespace has no route
out of itself. The host reaches the API server through one forwarder (forward.py): 127.0.0.1:<port>
on the host -> a unix socket -> 127.0.0.1:<port> in the namespace.
"""

import ctypes
import os
import subprocess
import threading

NODE_IP = "10.250.0.2"
NODE_CIDR = "10.250.0.0/24"
NODE_LINK = "kubetfx-node0"  # a veth pair with both ends in the namespace (this kernel has no dummy links)
NODE_PEER = "kubetfx-node1"
POD_CIDR = "10.244.0.0/24"
POD_BRIDGE = "kubetfx-pods0"
_CLONE_NEWNET = 0x40000000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"cluster: `ip {' '.join(args)}` failed: {result.stderr.strip()} "
                         "(the local cluster needs root and CAP_NET_ADMIN to make its network namespace)")
    return result


def exists(netns: str) -> bool:
    return os.path.exists(f"/run/netns/{netns}")


def ensure(netns: str) -> None:
    """The namespace, its loopback and the node's address on a link inside it (no route leaves it)."""
    if not exists(netns):
        _ip("netns", "add", netns)
    _ip("-n", netns, "link", "set", "lo", "up")
    if _ip("-n", netns, "link", "show", NODE_LINK, check=False).returncode != 0:
        _ip("-n", netns, "link", "add", NODE_LINK, "type", "veth", "peer", "name", NODE_PEER)
        _ip("-n", netns, "addr", "add", f"{NODE_IP}/24", "dev", NODE_LINK)
    for link in (NODE_PEER, NODE_LINK):
        _ip("-n", netns, "link", "set", link, "up")


def route_services(netns: str, service_cidr: str) -> None:
    """A route for the service addresses to the node's own link, so that processes of the namespace (not only
    pods) reach ClusterIPs: kube-proxy's OUTPUT rules rewrite them to a pod or the node before they leave."""
    _ip("-n", netns, "route", "replace", service_cidr, "dev", NODE_LINK, "src", NODE_IP)


def remove(netns: str) -> None:
    if exists(netns):
        _ip("netns", "del", netns, check=False)


def routes(netns: str) -> list[str]:
    """The namespace's routing table (for the isolation check: no default route)."""
    return [line for line in _ip("-n", netns, "route", "show", "table", "all").stdout.splitlines() if line.strip()]


def call_inside(netns: str, fn, *args):
    """``fn(*args)`` on a thread that has joined the namespace (sockets it opens live there)."""
    outcome = {}

    def run():
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        with open(f"/run/netns/{netns}") as handle:
            if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                outcome["error"] = OSError(ctypes.get_errno(), f"setns into {netns} failed")
                return
        try:
            outcome["value"] = fn(*args)
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
