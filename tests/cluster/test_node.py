"""The node layer: a Ready node whose pods run, log and exec, on a network with no way off the machine;
Service addresses routed by kube-proxy and Service names resolved by CoreDNS, for cluster names only."""

import json
import time
import uuid

import pytest

import local_cluster
import network
import node_runtime


@pytest.fixture(scope="module")
def node(cluster):
    if "node" not in local_cluster.layers():
        pytest.skip("the node layer is not up (KUBETFX_CLUSTER_LAYERS)")
    return node_runtime.NODE_NAME


def test_the_node_is_ready_at_its_address_inside_the_cluster_namespace(cluster, node):
    live = cluster.get("node", node)
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert {"type": "InternalIP", "address": network.NODE_IP} in live["status"]["addresses"]
    assert live["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")


def test_the_cluster_network_has_no_route_off_the_machine(cluster, node):
    routes = network.routes(local_cluster.netns_name())
    assert not [r for r in routes if r.startswith("default")], routes
    onward = [r for r in routes if " via " in r]  # a gateway would be a way out
    assert not onward, onward


def test_a_pod_runs_on_the_pod_network_and_its_logs_come_through_the_kubelet(cluster, node, namespace):
    name = f"probe-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("run", name, "-n", namespace, f"--image={node_runtime.PAUSE_IMAGE}", "--image-pull-policy=Never",
                    "--restart=Never")
    cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace, "--timeout=60s")
    pod = cluster.get("pod", name, "-n", namespace)
    assert pod["status"]["podIP"].startswith("10.244.0."), pod["status"]
    logs = cluster.kubectl("logs", name, "-n", namespace, check=False)
    assert logs.returncode == 0, logs.stderr  # API server -> kubelet at the node's address, TLS both ways


def test_a_pod_with_an_image_the_node_lacks_is_never_pulled(cluster, node, namespace):
    cluster.kubectl("run", "remote", "-n", namespace, "--image=registry.example.com/nothing:1", "--restart=Never")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = cluster.get("pod", "remote", "-n", namespace)["status"]
        waiting = [c["state"].get("waiting", {}) for c in status.get("containerStatuses", [])]
        if waiting and waiting[0].get("reason") in ("ErrImagePull", "ImagePullBackOff"):
            return  # the pull failed inside the namespace (no route, no DNS server): nothing left the machine
        time.sleep(1)
    raise AssertionError(f"the pull neither failed nor succeeded in 60 s: {status}")


# Run in a pod of the component image: names resolved through kube-dns, the API server's /version through the
# `kubernetes` Service (its ClusterIP, kube-proxy, the node's address), TLS checked with the pod's own CA bundle.
_DNS_PROBE = """
import json, socket, ssl, urllib.request
def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError:
        return None
ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
with urllib.request.urlopen("https://kubernetes.default.svc/version", context=ssl.create_default_context(cafile=ca),
                            timeout=10) as response:
    version = json.load(response)["gitVersion"]
print(json.dumps({"api": resolve("kubernetes.default.svc.cluster.local"), "short": resolve("kube-dns.kube-system"),
                  "outside": resolve("example.org"), "version": version}))
"""


def test_pods_resolve_service_names_and_reach_the_api_server_through_its_service(cluster, node, namespace,
                                                                                   component_image):
    import cluster_dns
    import pki

    cluster.kubectl("run", "dns-probe", "-n", namespace, f"--image={component_image}", "--image-pull-policy=Never",
                    "--restart=Never", "--command", "--", "python3", "-c", _DNS_PROBE)
    cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/dns-probe", "-n", namespace,
                    "--timeout=90s", check=False)
    logs = cluster.kubectl("logs", "dns-probe", "-n", namespace, check=False).stdout
    answers = json.loads(logs.strip().splitlines()[-1]) if logs.strip() else {}
    assert answers.get("api") == pki.SERVICE_IP, logs
    assert answers.get("short") == cluster_dns.DNS_IP, logs  # the pod's search path: <name>.<namespace>
    assert answers.get("outside") is None, logs  # CoreDNS answers for cluster.local only: no query leaves
    assert answers.get("version", "").startswith("v1."), logs
