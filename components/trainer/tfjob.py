"""The Trainer as a Kubeflow Training Operator TFJob: the object, launching it, waiting for it, its logs.

With ``trainer_tfjob.workers`` > 1 in the environment config, the Trainer task does not train itself:
it creates a TFJob whose worker pods run the same executor call (``python -m
kubetfx.components.trainer.tfjob '<json>'``); the operator gives each its ``TF_CONFIG`` and the
executor trains under MultiWorkerMirroredStrategy (distributed.py), worker 0 writing the model. The
task streams worker 0's log, waits for the TFJob to succeed and fails with its reason otherwise.
The workers must see the task's artifact paths (the pipeline root on storage they all mount).
``launch`` takes the Kubernetes API objects as parameters (``CustomObjectsApi``, ``CoreV1Api``).
"""

from __future__ import annotations

import json
import sys
import time

from kubetfx.components.common import layout
from kubetfx.components.common.errors import ConfigError, KubetfxError

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "tfjobs", "TFJob"
CONTAINER = "tensorflow"  # the container name the Training Operator expects in a TFJob replica


def build(name: str, namespace: str, image: str, executor_kwargs: dict, workers: int, gpu: dict | None = None,
          resources: dict | None = None, service_account: str = "") -> dict:
    """The TFJob: ``workers`` Worker replicas running the Trainer executor with ``executor_kwargs``.

    ``gpu``: {"count", "accelerator_type", "node_selector", "tolerations"} (the config's trainer_gpu);
    ``resources``: a container's {"requests": {...}, "limits": {...}}.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 2:
        raise ConfigError(f"trainer_tfjob.workers: expected an integer >= 2 for a TFJob, got {workers!r}")
    container = {"name": CONTAINER, "image": image,
                 "command": ["python3", "-m",
                             "kubetfx.components.trainer.tfjob", json.dumps(executor_kwargs, sort_keys=True)]}
    pod: dict = {"containers": [container], "restartPolicy": "Never"}
    limits = dict((resources or {}).get("limits") or {})
    requests = dict((resources or {}).get("requests") or {})
    if gpu and gpu.get("count"):
        limits[gpu["accelerator_type"]] = str(gpu["count"])
        requests[gpu["accelerator_type"]] = str(gpu["count"])
        pod["nodeSelector"] = dict(gpu.get("node_selector") or {})
        pod["tolerations"] = [{k: v for k, v in t.items() if v != ""} for t in gpu.get("tolerations") or []]
    if limits or requests:
        container["resources"] = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    if service_account:
        pod["serviceAccountName"] = service_account
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "kubetfx"}},
            "spec": {"runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 0},
                     "tfReplicaSpecs": {"Worker": {"replicas": workers, "restartPolicy": "Never",
                                                   "template": {"spec": pod}}}}}


def _finished(status: dict) -> tuple[str, str] | None:
    """("Succeeded" | "Failed", message) once the TFJob has finished."""
    for condition in reversed(status.get("conditions") or []):
        if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
            return condition["type"], f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ")
    return None


def _new_log_lines(core_api, pod: str, namespace: str, printed: int, log) -> int:
    """Print the lines of ``pod``'s log after the first ``printed``; returns how many are printed now."""
    try:
        text = core_api.read_namespaced_pod_log(pod, namespace, container=CONTAINER)
    except Exception:  # noqa: BLE001 - the pod may not exist or run yet
        return printed
    lines = text.splitlines()
    for line in lines[printed:]:
        log(f"[{pod}] {line}")
    return max(printed, len(lines))


def launch(custom_api, core_api, job: dict, poll_seconds: float = 5.0, timeout_seconds: float = 24 * 3600,
           log=print, sleep=time.sleep, clock=time.monotonic) -> dict:
    """Create ``job``, print worker 0's log as it grows, wait until it finishes; its final status.

    Fails (KubetfxError) when the TFJob fails, naming its reason, and deletes it after ``timeout_seconds``.
    """
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    custom_api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
    log(f"TFJob {namespace}/{name}: created ({job['spec']['tfReplicaSpecs']['Worker']['replicas']} workers)")
    chief, printed, deadline = f"{name}-worker-0", 0, clock() + timeout_seconds
    while True:
        status = custom_api.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name)
        printed = _new_log_lines(core_api, chief, namespace, printed, log)
        finished = _finished(status.get("status") or {})
        if finished is not None:
            state, message = finished
            log(f"TFJob {namespace}/{name}: {state}{' (' + message + ')' if message else ''}")
            if state == "Failed":
                raise KubetfxError(f"TFJob {namespace}/{name} failed: {message or 'no reason given'} "
                                   f"(kubectl logs -n {namespace} {chief})")
            return status.get("status") or {}
        if clock() > deadline:
            custom_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            raise KubetfxError(f"TFJob {namespace}/{name} did not finish in {timeout_seconds:.0f} s; deleted it")
        sleep(poll_seconds)


_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def run_in_cluster(settings: dict, executor_kwargs: dict) -> dict:
    """From the Trainer task's pod: run the TFJob (``settings``: the component's ``tfjob`` parameter),
    then return the Model metadata the chief recorded, as ``executor.run`` would."""
    import os
    import uuid

    from kubernetes import client, config

    from kubetfx.components.trainer import executor

    config.load_incluster_config()
    namespace = settings.get("namespace") or open(_NAMESPACE_FILE, encoding="utf-8").read().strip()
    job = build(f"kubetfx-trainer-{uuid.uuid4().hex[:10]}", namespace, settings["image"], executor_kwargs,
                settings["workers"], settings.get("gpu"), service_account=settings.get("service_account", ""))
    launch(client.CustomObjectsApi(), client.CoreV1Api(), job, timeout_seconds=settings.get("timeout_seconds", 86400))
    info_path = os.path.join(executor_kwargs["model_dir"], layout.MODEL_INFO_FILE)
    if not os.path.isfile(info_path):
        raise KubetfxError(f"the TFJob {namespace}/{job['metadata']['name']} succeeded but wrote no {info_path}: "
                           "its workers must see the task's artifact paths (the pipeline root on shared storage)")
    with open(info_path, encoding="utf-8") as handle:
        return executor.model_metadata(json.load(handle))


def main(argv=None) -> int:
    """A TFJob worker: the Trainer executor with the JSON arguments (TF_CONFIG comes from the operator)."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.trainer import executor

    argv = sys.argv[1:] if argv is None else argv
    call(executor.run, **json.loads(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
