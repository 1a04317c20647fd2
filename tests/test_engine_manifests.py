"""Beyond one machine on Kubernetes: the Flink and Spark engine components and the Trainer's TFJob.

* manifests/components/flink-engine: the FlinkDeployment against the Flink Kubernetes Operator's CRD
  (vendored, tests/schemas/flink-operator), the job server's Deployment/Service/PVC as core objects;
* manifests/components/spark-engine: core objects only; the SparkApplication has no CRD here (the Kubeflow
  Spark operator's CRD is not on any package registry reachable here: README, Beyond one machine);
* the TFJob the Trainer launches against the Training Operator's CRD (tests/schemas/training-operator),
  with the GPU pool settings; its launcher with recording API objects (a real API server: the
  cluster tests); the environment config's trainer_tfjob.
"""

import copy
import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

import k8s_validation as kv
from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.components.trainer import tfjob
from kubetfx.pipelines import config as config_lib

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).parent / "schemas"
FLINK_CRDS, TRAINING_CRDS = SCHEMAS / "flink-operator", SCHEMAS / "training-operator"
GPU = {"count": 1, "accelerator_type": "nvidia.com/gpu", "node_selector": {"nvidia.com/gpu.present": "true"},
       "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "", "effect": "NoSchedule"}]}


def _split(objects: list[dict], group: str) -> tuple[list[dict], list[dict]]:
    custom = [o for o in objects if o["apiVersion"].startswith(group + "/")]
    return custom, [o for o in objects if o not in custom]


@pytest.mark.parametrize("directory", [FLINK_CRDS, TRAINING_CRDS], ids=["flink-operator", "training-operator"])
def test_vendored_crds_match_the_readme_checksums(directory):
    listed = dict(re.findall(r"\| (\S+\.ya?ml) \| `([0-9a-f]{64})` \|", (directory / "README.md").read_text()))
    vendored = {p.name[:-len(".gz")]: p for p in directory.glob("*.gz")}
    assert set(listed) == set(vendored) and vendored
    for name, path in vendored.items():
        assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == listed[name], name


def test_flink_engine_validates_against_the_operator_crd(tmp_path):
    objects = kv.render_component(tmp_path, "flink-engine")
    flink, core = _split(objects, "flink.apache.org")
    assert [o["kind"] for o in flink] == ["FlinkDeployment"]
    crds = kv.CrdValidator(FLINK_CRDS)
    kv.validate_all(objects, crds)
    kv.validate_core(core)
    session = flink[0]
    assert "job" not in session["spec"]  # a session cluster: Beam's job server submits the jobs
    sidecar = session["spec"]["taskManager"]["podTemplate"]["spec"]["containers"][1]
    assert sidecar["args"] == ["--worker_pool"] and sidecar["ports"][0]["containerPort"] == 50000
    server = next(o for o in core if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--flink-master=kubetfx-flink-rest:8081" in server["args"]

    broken = copy.deepcopy(session)
    broken["spec"]["taskManager"]["replica"] = 2  # misspelt
    broken["spec"]["flinkVersion"] = "v9_99"
    problems = "\n".join(crds.problems(broken))
    assert "spec.taskManager.replica: unknown field (did you mean 'replicas'?)" in problems
    assert "spec.flinkVersion: 'v9_99' is not one of" in problems


def test_spark_engine_core_objects_validate(tmp_path):
    objects = kv.render_component(tmp_path, "spark-engine")
    spark, core = _split(objects, "sparkoperator.k8s.io")
    assert [o["kind"] for o in spark] == ["SparkApplication"]
    kv.validate_core(core)
    app = spark[0]["spec"]
    assert app["mainClass"] == "org.apache.beam.runners.spark.SparkJobServerDriver"
    assert app["executor"]["sidecars"][0]["args"] == ["--worker_pool"]
    service = next(o for o in core if o["kind"] == "Service")
    assert service["spec"]["selector"]["spark-role"] == "driver"


def _job(**kwargs) -> dict:
    arguments = {"examples_dir": "/pipeline-root/examples", "model_dir": "/pipeline-root/model", "seed": 42}
    return tfjob.build("kubetfx-trainer-1", "kubetfx", "ghcr.io/kubetfx/kubetfx:0.1.0-gpu", arguments, **kwargs)


def test_tfjob_validates_against_the_training_operator_crd():
    crds = kv.CrdValidator(TRAINING_CRDS)
    job = _job(workers=3, gpu=GPU, resources={"requests": {"cpu": "4", "memory": "8Gi"}},
               service_account="kubetfx-pipeline-runner")
    assert crds.problems(job) == []
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    pod = worker["template"]["spec"]
    container = pod["containers"][0]
    assert worker["replicas"] == 3 and container["name"] == "tensorflow"
    assert container["command"][:3] == ["python3", "-m", "kubetfx.components.trainer.tfjob"]
    assert json.loads(container["command"][3])["model_dir"] == "/pipeline-root/model"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"},
                                      "requests": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert crds.problems(_job(workers=2)) == []
    broken = _job(workers=2)
    broken["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "two"
    assert any("replicas: 'two' is not of type 'integer'" in p for p in crds.problems(broken))
    with pytest.raises(ConfigError, match="trainer_tfjob.workers: expected an integer >= 2"):
        _job(workers=1)


class RecordingApi:
    """CustomObjectsApi + CoreV1Api stand-in: records calls, replays statuses and growing logs."""

    def __init__(self, statuses: list[dict], logs: list[str]):
        self.calls, self.statuses, self.logs = [], list(statuses), list(logs)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", group, version, namespace, plural, body["metadata"]["name"]))

    def get_namespaced_custom_object_status(self, group, version, namespace, plural, name):
        self.calls.append(("status", name))
        return {"status": self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("delete", name))

    def read_namespaced_pod_log(self, name, namespace, container):
        self.calls.append(("log", name, container))
        if not self.logs:
            raise RuntimeError("pod not found")
        return self.logs.pop(0) if len(self.logs) > 1 else self.logs[0]


def _launch(api, **kwargs):
    printed = []
    status = tfjob.launch(api, api, _job(workers=2), poll_seconds=0, log=printed.append, sleep=lambda s: None,
                          **kwargs)
    return status, printed


RUNNING = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]}


def test_launch_streams_the_chiefs_log_and_waits_for_success():
    done = {"conditions": RUNNING["conditions"] + [{"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded",
                                                    "message": "TFJob kubetfx/kubetfx-trainer-1 successfully completed."}]}
    api = RecordingApi([RUNNING, RUNNING, done], ["Epoch 1/2", "Epoch 1/2\nEpoch 2/2", "Epoch 1/2\nEpoch 2/2\ndone"])
    status, printed = _launch(api)
    assert status == done
    assert api.calls[0] == ("create", "kubeflow.org", "v1", "kubetfx", "tfjobs", "kubetfx-trainer-1")
    assert ("log", "kubetfx-trainer-1-worker-0", "tensorflow") in api.calls
    assert [line for line in printed if line.startswith("[")] == [
        "[kubetfx-trainer-1-worker-0] Epoch 1/2", "[kubetfx-trainer-1-worker-0] Epoch 2/2",
        "[kubetfx-trainer-1-worker-0] done"]  # each line once
    assert printed[-1].startswith("TFJob kubetfx/kubetfx-trainer-1: Succeeded (TFJobSucceeded")


def test_launch_fails_with_the_tfjobs_reason():
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "TFJobFailed",
                              "message": "TFJob kubetfx/kubetfx-trainer-1 has failed because 1 Worker replica(s) failed."}]}
    with pytest.raises(KubetfxError) as error:
        _launch(RecordingApi([RUNNING, failed], []))
    assert str(error.value).startswith("TFJob kubetfx/kubetfx-trainer-1 failed: TFJobFailed: TFJob kubetfx/"
                                       "kubetfx-trainer-1 has failed because 1 Worker replica(s) failed.")


def test_launch_deletes_a_tfjob_that_does_not_finish():
    ticks = iter(range(100))
    api = RecordingApi([RUNNING], [])
    with pytest.raises(KubetfxError, match="did not finish in 3 s; deleted it"):
        _launch(api, timeout_seconds=3, clock=lambda: next(ticks))
    assert api.calls[-1] == ("delete", "kubetfx-trainer-1")


def test_config_chooses_a_tfjob_for_the_trainer():
    config = config_lib.from_dict({"kfp": {"namespace": "kubetfx"}, "trainer_gpu": GPU,
                                   "trainer_tfjob": {"workers": 2, "service_account": "kubetfx-trainer"}})
    settings = config.trainer_tfjob.for_component(config.kfp.resolved_namespace(), config.trainer_gpu)
    assert settings == {"workers": 2, "namespace": "kubetfx", "service_account": "kubetfx-trainer",
                        "timeout_seconds": 86400, "gpu": {**GPU, "tolerations": GPU["tolerations"]}}
    assert config_lib.from_dict({}).trainer_tfjob.for_component("kubetfx", config.trainer_gpu) == {}
    for bad, message in (({"workers": 1}, "trainer_tfjob.workers: 1 would be a TFJob of one worker"),
                         ({"workers": "2"}, "trainer_tfjob.workers: expected int"),
                         ({"workers": 2, "namespace": "Bad_NS"}, "trainer_tfjob.namespace 'Bad_NS' is not a valid"),
                         ({"worker": 2}, "trainer_tfjob: unknown field(s) worker")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            config_lib.from_dict({"trainer_tfjob": bad}, source="prod.yaml")
