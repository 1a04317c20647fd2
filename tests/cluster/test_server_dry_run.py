"""Every object kubetfx writes passes the real API server's dry run, and the offline check agrees with it.

The offline validator (tests/k8s_validation.py) stays as the fast path of `make test`, where no
control plane runs; here the same objects go to a real API server with KServe's CRDs installed
(strict field validation, admission, defaulting), and objects the server refuses must be refused
offline too.
"""

import copy

import pytest

import k8s_validation as kv
from kubetfx.pipelines import config as pipeline_config
from kubetfx.pipelines.cluster import kustomize

from helpers.pusher_cases import PUSHER_CASES, pusher_isvc


def _server_dry_run(cluster, objects: list[dict], namespace: str) -> str:
    """'' when the server accepts every object (dry run, strict), else its message."""
    import yaml

    text = yaml.safe_dump_all(objects)
    result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                             "--field-manager=kubetfx-tests", "-n", namespace, "-f", "-", input_text=text,
                             check=False)
    return "" if result.returncode == 0 else result.stderr.strip()


@pytest.fixture(scope="module")
def kubetfx_namespace(cluster, kserve_crds):
    cluster.kubectl("create", "namespace", "kubetfx", check=False)
    yield "kubetfx"
    cluster.delete_namespace("kubetfx", wait=False)


@pytest.mark.parametrize("deploy, build", PUSHER_CASES.values(), ids=PUSHER_CASES.keys())
def test_the_pushers_inference_services_pass_the_servers_dry_run(cluster, kubetfx_namespace, deploy, build):
    assert _server_dry_run(cluster, [pusher_isvc(deploy, **build)], kubetfx_namespace) == ""


@pytest.mark.parametrize("env", pipeline_config.environments())
def test_the_serving_templates_pass_the_servers_dry_run(cluster, kubetfx_namespace, env):
    config = pipeline_config.load_environment(env)
    objects = [o for o in kustomize.render(config.serving_template_path()) if o["kind"] == "InferenceService"]
    assert objects
    for obj in objects:
        obj = copy.deepcopy(obj)
        obj["metadata"]["namespace"] = kubetfx_namespace
        assert _server_dry_run(cluster, [obj], kubetfx_namespace) == ""


def _pvc(size) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "size-check"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def _labelled(value: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "label-check", "labels": {"team": value}}}


@pytest.mark.parametrize("obj, refused", [
    (_pvc("5Gi"), False), (_pvc("5 Gi"), True), (_pvc("1.5Gi"), False), (_pvc("5GB"), True), (_pvc("5e3"), False),
    (_labelled("a" * 63), False), (_labelled("a" * 64), True), (_labelled("ml-team_1.x"), False),
    (_labelled("-ml"), True),
], ids=["5Gi", "5 Gi", "1.5Gi", "5GB", "5e3", "label63", "label64", "label-chars", "label-dash"])
def test_the_offline_check_refuses_what_the_server_refuses(cluster, kubetfx_namespace, obj, refused):
    server = _server_dry_run(cluster, [obj], kubetfx_namespace)
    try:
        kv.validate_core([obj])
        offline = ""
    except kv.InvalidManifest as err:
        offline = str(err)
    assert bool(server) == refused, server
    assert bool(offline) == refused, f"offline: {offline or 'accepted'}; server: {server or 'accepted'}"


@pytest.fixture(scope="module")
def flink_crd(cluster):
    import gzip
    import os

    folder = os.path.join(os.path.dirname(os.path.dirname(__file__)), "schemas", "flink-operator")
    for name in os.listdir(folder):
        if name.endswith(".gz"):
            with gzip.open(os.path.join(folder, name), "rt", encoding="utf-8") as handle:
                cluster.kubectl("apply", "--server-side", "--field-manager=kubetfx-tests", "-f", "-",
                                input_text=handle.read())
    cluster.wait_established(["flinkdeployments.flink.apache.org"])


@pytest.mark.parametrize("component", ["flink-engine", "spark-engine"])
def test_the_beam_engine_components_pass_the_servers_dry_run(cluster, kubetfx_namespace, flink_crd, component,
                                                               tmp_path):
    objects = kv.render_component(tmp_path, component, namespace=kubetfx_namespace)
    # The Spark operator's CRD is not obtainable here (docs/not-verified.md): its SparkApplication is left out.
    checked = [o for o in objects if not o["apiVersion"].startswith("sparkoperator.k8s.io/")]
    assert checked and _server_dry_run(cluster, checked, kubetfx_namespace) == ""
