"""The Trainer's TFJob launcher against the real API server: the object is created, its status read, and a TFJob
that does not finish is deleted with a one-line error (no Training Operator runs here, so none finishes)."""

import gzip
import os

import pytest
import yaml

from kubetfx.components.common.errors import KubetfxError
from kubetfx.components.trainer import tfjob

CRD = os.path.join(os.path.dirname(os.path.dirname(__file__)), "schemas", "training-operator",
                   "kubeflow.org_tfjobs.yaml.gz")


@pytest.fixture(scope="module")
def tfjob_crd(cluster):
    with gzip.open(CRD, "rt", encoding="utf-8") as handle:
        text = handle.read()
    cluster.kubectl("apply", "--server-side", "--field-manager=kubetfx-tests", "-f", "-", input_text=text)
    name = yaml.safe_load(text)["metadata"]["name"]
    cluster.wait_established([name])
    return name


def test_the_launcher_creates_the_tfjob_reads_its_status_and_deletes_it_when_it_does_not_finish(
        cluster, tfjob_crd, namespace):
    from kubernetes import client

    api_client = cluster.api_client()
    job = tfjob.build("kubetfx-trainer-test", namespace, "ghcr.io/kubetfx/kubetfx:0.1.0",
                      {"model_dir": "/mnt/pipeline-root/model"}, workers=2,
                      resources={"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}})
    lines, seen = [], []

    def sleep(_seconds):
        seen.append(cluster.get("tfjob", "kubetfx-trainer-test", "-n", namespace))  # it exists while waited on

    ticks = iter(range(100))
    with pytest.raises(KubetfxError, match="did not finish in 3 s; deleted it") as failed:
        tfjob.launch(client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), job, poll_seconds=0,
                     timeout_seconds=3, log=lines.append, sleep=sleep, clock=lambda: next(ticks))
    assert "\n" not in str(failed.value)
    assert seen and seen[0]["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert lines[0] == f"TFJob {namespace}/kubetfx-trainer-test: created (2 workers)"
    assert cluster.kubectl("get", "tfjob", "kubetfx-trainer-test", "-n", namespace, check=False).returncode != 0
