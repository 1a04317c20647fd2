"""The cluster tests (`make test-cluster`): a real control plane from `make cluster-up`; skipped by `make test`.

Every test talks only to the API server on 127.0.0.1 that cluster/local_cluster.py started (the
kubeconfig it wrote is checked before anything is sent). Each test works in namespaces of its
own and deletes them after, so tests do not depend on each other's leftovers.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "cluster"))

import local_cluster  # noqa: E402
from helpers.gates import skip_folder_unless  # noqa: E402

CLUSTER_ENV = "KUBETFX_CLUSTER"
KSERVE_CRDS = os.path.join(REPO, "tests", "schemas", "kserve")


def pytest_collection_modifyitems(config, items):
    skip_folder_unless(items, CLUSTER_ENV, "cluster", "test-cluster")


class Cluster:
    """The running local cluster: its kubeconfig, kubectl and the Python client as admin."""

    def __init__(self, kubeconfig: str):
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def kubectl(self, *args, check: bool = True, input_text: str | None = None,
                kubeconfig: str | None = None) -> subprocess.CompletedProcess:
        env = {**self.env, "KUBECONFIG": kubeconfig or self.kubeconfig}
        result = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, input=input_text,
                                timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def get(self, *args) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json", "--show-managed-fields").stdout)

    def api_client(self, kubeconfig: str | None = None):
        from kubernetes import config

        return config.new_client_from_config(config_file=kubeconfig or self.kubeconfig)

    def kubetfx(self, *args, env: dict | None = None) -> subprocess.CompletedProcess:
        """The CLI as a user runs it (a fresh process), against this cluster."""
        return subprocess.run([sys.executable, "-m", "kubetfx.pipelines", *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, cwd=REPO, timeout=300)

    def wait_established(self, crd_names: list[str], timeout_s: float = 60.0) -> None:
        """Wait until every CRD is Established (right after creation .status.conditions may not exist yet, and
        ``kubectl wait`` then fails at once instead of waiting: retry)."""
        deadline = time.monotonic() + timeout_s
        for name in crd_names:
            while self.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=10s",
                               check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise AssertionError(f"CRD {name} not Established in {timeout_s:.0f} s")
                time.sleep(0.5)

    def delete_namespace(self, name: str, wait: bool = True, timeout_s: float = 90.0) -> None:
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
        deadline = time.monotonic() + timeout_s
        while wait and time.monotonic() < deadline:
            if self.kubectl("get", "namespace", name, check=False).returncode != 0:
                return
            time.sleep(0.5)
        if wait:
            raise AssertionError(f"namespace {name} was not finalized in {timeout_s:.0f} s")

    def token(self, namespace: str, service_account: str, audience: str = "", seconds: int = 3600) -> str:
        """A TokenRequest token of a ServiceAccount (as a pod's projected token would be)."""
        args = ["create", "token", service_account, "-n", namespace, f"--duration={seconds}s"]
        return self.kubectl(*args, *(["--audience", audience] if audience else [])).stdout.strip()

    def kubeconfig_for_token(self, path: str, token: str) -> str:
        with open(self.kubeconfig, encoding="utf-8") as handle:
            admin = yaml.safe_load(handle)
        admin["users"] = [{"name": "token", "user": {"token": token}}]
        admin["contexts"][0]["context"]["user"] = "token"
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(admin, handle)
        return path


def _loopback_only(kubeconfig: str) -> None:
    with open(kubeconfig, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    for entry in config["clusters"]:
        host = urlsplit(entry["cluster"]["server"]).hostname
        if host != "127.0.0.1":
            pytest.fail(f"{kubeconfig} points at {host}: the cluster tests talk only to 127.0.0.1")


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    kubeconfig = local_cluster.kubeconfig_path()
    if local_cluster.status(log=lambda line: None) != 0:
        pytest.fail(f"the local control plane is not running ({kubeconfig}): run `make cluster-up` "
                    "(make test-cluster does it first)")
    _loopback_only(kubeconfig)
    os.environ["KUBECONFIG"] = kubeconfig  # the Pusher's kubernetes client and kubectl find it there
    return Cluster(kubeconfig)


@pytest.fixture(scope="session")
def kserve_crds(cluster, tmp_path_factory) -> list[str]:
    """KServe's CRDs, Established: the vendored copies applied server-side, or, when the cluster's KServe layer
    is up, the ones it installed from KServe's module (the same InferenceService schema)."""
    import gzip

    folder = tmp_path_factory.mktemp("crds")
    names = []
    for file_name in sorted(os.listdir(KSERVE_CRDS)):
        if file_name.endswith(".yaml.gz"):
            with gzip.open(os.path.join(KSERVE_CRDS, file_name), "rt", encoding="utf-8") as handle:
                text = handle.read()
            (folder / file_name[:-3]).write_text(text)
            names += [doc["metadata"]["name"] for doc in yaml.safe_load_all(text) if doc]
    if "kserve" not in local_cluster.layers():
        cluster.kubectl("apply", "--server-side", "--field-manager=kubetfx-tests", "-f", str(folder))
    cluster.wait_established(names)
    return names


@pytest.fixture
def namespace(cluster):
    """A fresh namespace for one test, deleted (and finalized) after it."""
    name = f"kubetfx-test-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.delete_namespace(name, wait=False)


@pytest.fixture
def runner_api(cluster):
    """``runner_api(namespace, folder)``: a CustomObjectsApi authenticated as the pipeline runner's
    ServiceAccount with a TokenRequest token (what the Pusher's pod has), never as admin."""
    from kubernetes import client

    def _api(namespace: str, folder, service_account: str = "kubetfx-pipeline-runner"):
        token = cluster.token(namespace, service_account)
        kubeconfig = cluster.kubeconfig_for_token(os.path.join(str(folder), f"{service_account}.kubeconfig"), token)
        return client.CustomObjectsApi(cluster.api_client(kubeconfig))

    return _api



def serving_layers_up() -> None:
    """Skip unless the node, Knative and KServe layers are up (the serving tests' pods need all three)."""
    if "kserve" not in local_cluster.layers():
        pytest.skip("the node, Knative and KServe layers are not up (KUBETFX_CLUSTER_LAYERS)")


@pytest.fixture(scope="session")
def component_image(cluster):
    """The component image in the node's containerd (copied from podman, which `make image` built)."""
    import gobuild
    import node_runtime
    from kubetfx.components.common import image

    if "node" not in local_cluster.layers():
        pytest.skip("the node layer is not up (KUBETFX_CLUSTER_LAYERS)")
    name = image.component_image()
    if not node_runtime.load_podman_image(gobuild.bin_dir("node"), local_cluster.state_dir(), name):
        pytest.fail(f"image {name} is not built: run `make image` (CI runs make e2e first)")
    return name


def _host_path_volume(name: str, path: str, namespace: str, claim: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "50Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": path, "type": "Directory"},
                     "claimRef": {"namespace": namespace, "name": claim}}}


@pytest.fixture(scope="session")
def deployed(cluster, component_image, tmp_path_factory):
    """The dev overlay applied once for the serving tests, its two claims bound to hostPath volumes on the node
    ({claim: folder}); each test serves its own InferenceService in it."""
    from helpers.cluster_serving import MODEL_REPOSITORY_CLAIM, NAMESPACE, PREDICTION_LOG_CLAIM

    serving_layers_up()
    cluster.delete_namespace(NAMESPACE)
    root = tmp_path_factory.mktemp("volumes")
    folders = {}
    for claim in (MODEL_REPOSITORY_CLAIM, PREDICTION_LOG_CLAIM):
        folder = root / claim
        folder.mkdir()
        os.chmod(folder, 0o777)  # the pods run as uid 1000
        folders[claim] = str(folder)
    volumes = [_host_path_volume(f"{NAMESPACE}-{claim}", path, NAMESPACE, claim) for claim, path in folders.items()]
    cluster.kubectl("delete", "pv", *[v["metadata"]["name"] for v in volumes], "--ignore-not-found")
    cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(volumes))
    result = cluster.kubetfx("deploy", "--env", "dev")
    assert result.returncode == 0, result.stderr
    for claim in folders:
        cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Bound", f"pvc/{claim}", "-n", NAMESPACE,
                        "--timeout=60s")
    yield folders
    cluster.delete_namespace(NAMESPACE)
    cluster.kubectl("delete", "pv", *[v["metadata"]["name"] for v in volumes], "--ignore-not-found")
