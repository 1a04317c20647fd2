"""The built-in search as a Katib ``Experiment`` (kubeflow.org/v1beta1), built at compile time as a plain dict.

The kubeflow-katib SDK is not used: its 0.19.0 release pins protobuf 4 and kubetfx runs on protobuf 6.
The object follows Katib 0.19.0's API (``tests/schemas/katib``: the CRD and the API's OpenAPI
definitions, checked in the tests). What is known only at run time the Tuner fills in
(``components/tuner/katib_run.py``): the name, the trial count and parallelism, the seed, and where
on the shared workspace volume the trials find the data (the token :data:`WORKSPACE`).

Each trial is a batch Job in the component image (the GPU image, with GPUs and the GPU pool's node
selector and tolerations, when the environment has one) running ``python -m
kubetfx.components.tuner.trial`` with ``${trialParameters.*}`` filled in by Katib; it prints
``objective=<value>`` after every epoch for Katib's StdOut metrics collector, so Katib's median-stop
early stopping can stop bad trials. The objective is always maximized (validation accuracy, or the
negated validation loss of a regression).
"""

from __future__ import annotations

from kubetfx.components.common.image import component_image
from kubetfx.components.tuning import space
from kubetfx.pipelines.config import PipelineConfig

API_VERSION, KIND = "kubeflow.org/v1beta1", "Experiment"
WORKSPACE = "KUBETFX_TUNER_WORKSPACE"  # replaced by the experiment's folder on the workspace volume
TRIAL_MODULE = "kubetfx.components.tuner.trial"
CONTAINER = "training"
OBJECTIVE = "objective"
# Katib's success/failure conditions for a batch Job (pkg/apis/controller/experiments/v1beta1/constants.go).
JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _trial_pod(config: PipelineConfig) -> dict:
    gpu = config.trainer_gpu
    container = {
        "name": CONTAINER,
        "image": component_image(gpu=bool(gpu.count)),
        "command": ["python", "-m", TRIAL_MODULE, "--workspace", WORKSPACE]
        + [arg for p in space.BUILTIN for arg in (f"--{p.name}", f"${{trialParameters.{_camel(p.name)}}}")],
        "volumeMounts": [{"name": "workspace", "mountPath": config.tuner.workspace_path}],
    }
    resources = config.resources.get("trainer")
    requests = {k: v for k, v in (("cpu", getattr(resources, "cpu_request", "")),
                                  ("memory", getattr(resources, "memory_request", ""))) if v}
    limits = {k: v for k, v in (("cpu", getattr(resources, "cpu_limit", "")),
                                ("memory", getattr(resources, "memory_limit", ""))) if v}
    if gpu.count:
        limits[gpu.accelerator_type] = str(gpu.count)
    if requests or limits:
        container["resources"] = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    pod = {"restartPolicy": "Never", "containers": [container],
           "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": config.tuner.workspace_pvc}}]}
    if config.kfp.service_account:
        pod["serviceAccountName"] = config.kfp.service_account
    if gpu.count:
        pod["nodeSelector"] = dict(gpu.node_selector)
        pod["tolerations"] = [{k: v for k, v in (("key", t.key), ("operator", t.operator), ("value", t.value),
                                                 ("effect", t.effect)) if v} for t in gpu.tolerations]
    return pod


def experiment_template(config: PipelineConfig, pipeline_name: str) -> dict:
    """``{"experiment": the Experiment with the environment's settings, "workspace_path", "poll_seconds"}``;
    run-time values are filled in by the Tuner."""
    settings = config.tuner
    spec = {
        "objective": {"type": "maximize", "objectiveMetricName": OBJECTIVE},
        "algorithm": {"algorithmName": settings.algorithm},
        "parallelTrialCount": 1,  # the pipeline's parallel_trials, at run time
        "maxTrialCount": 12,      # the pipeline's max_trials, at run time
        "maxFailedTrialCount": settings.max_failed_trials,
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "parameters": space.katib_parameters(),
        "trialTemplate": {
            "primaryContainerName": CONTAINER,
            "successCondition": JOB_SUCCESS,
            "failureCondition": JOB_FAILURE,
            "trialParameters": [{"name": _camel(p.name), "reference": p.name, "description": p.describe()}
                                for p in space.BUILTIN],
            "trialSpec": {"apiVersion": "batch/v1", "kind": "Job",
                          "spec": {"backoffLimit": 0,
                                   "template": {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                                                "spec": _trial_pod(config)}}},
        },
    }
    if settings.early_stopping:
        spec["earlyStopping"] = {"algorithmName": "medianstop",
                                 "algorithmSettings": [{"name": "min_trials_required", "value": "3"},
                                                       {"name": "start_step", "value": "4"}]}
    metadata = {"name": pipeline_name[:40], "labels": {"app.kubernetes.io/part-of": "kubetfx"}}
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    return {"experiment": {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec},
            "workspace_path": settings.workspace_path, "poll_seconds": settings.poll_seconds}
