"""The Tuner on a cluster compiled for Katib: the built-in search as a Katib Experiment, one pod per trial.

What runs in the Tuner's own pod: it copies its inputs (examples, transform graph, schema) to the
workspace volume the trial pods mount, fills in the Experiment the compile built
(``pipelines/cluster/katib.py``: name, trial count, parallelism, seed, workspace folder), creates
it through the Kubernetes API with the pod's service account, waits for it to finish, reads its
Trials and writes the same outputs as a search in the pod (TFX's ``best_hyperparameters.txt``, the
trials table, the report, KFP metrics). A module file's ``tuner_fn`` is KerasTuner code that runs in
this pod as usual; without ``tune`` nothing is searched either way.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
import uuid

from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.components.tuner import executor, trial as trial_lib
from kubetfx.components.tuning import space
from kubetfx.components.tuning.search import Trial

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"
WORKSPACE_TOKEN = "KUBETFX_TUNER_WORKSPACE"
INPUT_DIRS = ("examples", "raw_examples", "transform_graph")


def fill(template: dict, name: str, namespace: str, workspace: str, max_trials: int, parallel_trials: int,
         seed: int) -> dict:
    """The Experiment to create: the compiled template with this run's values."""
    experiment = copy.deepcopy(template)
    experiment["metadata"]["name"] = name
    if namespace:
        experiment["metadata"]["namespace"] = namespace
    spec = experiment["spec"]
    spec["maxTrialCount"], spec["parallelTrialCount"] = max_trials, min(parallel_trials, max_trials)
    if spec["algorithm"]["algorithmName"] in ("tpe", "random", "multivariate-tpe", "cmaes", "bayesianoptimization"):
        spec["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": str(seed)}]
    job = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    for container in job["containers"]:
        container["command"] = [workspace if part == WORKSPACE_TOKEN else part for part in container["command"]]
    return experiment


def trials_from(objects: list[dict]) -> list[Trial]:
    """Katib Trial objects -> the trials table (objective: the latest ``objective`` observation)."""
    trials = []
    for number, obj in enumerate(sorted(objects, key=lambda o: o["metadata"].get("creationTimestamp", ""))):
        status = obj.get("status", {})
        values = {a["name"]: a["value"] for a in obj.get("spec", {}).get("parameterAssignments", [])}
        metrics = {m["name"]: m for m in (status.get("observation") or {}).get("metrics", [])}
        objective = metrics.get("objective", {}).get("latest")
        conditions = [c["type"] for c in status.get("conditions", []) if c.get("status") == "True"]
        state = "PRUNED" if "EarlyStopped" in conditions else "COMPLETE" if "Succeeded" in conditions else "FAIL"
        try:
            typed = space.parse_assignment(values)
        except KubetfxError:
            typed = values
        trials.append(Trial(number, typed, float(objective) if objective not in (None, "") else None, state, 0, 0.0))
    return trials


def _copy_inputs(arguments: dict, workspace: str) -> None:
    os.makedirs(workspace, exist_ok=True)
    sources = {"examples": arguments["examples_dir"], "raw_examples": arguments.get("raw_examples_dir", ""),
               "transform_graph": arguments["transform_graph_dir"]}
    for name, source in sources.items():
        if source:
            shutil.copytree(source, os.path.join(workspace, name))
    from kubetfx.components.common import tfmd

    schema = arguments["schema_path"]
    schema_file = tfmd.schema_path(schema) if os.path.isdir(schema) else schema
    shutil.copyfile(schema_file, os.path.join(workspace, "schema.pbtxt"))
    settings = {name: bool(source) for name, source in sources.items()}
    settings.update(label_column=arguments.get("label_column", ""), seed=arguments.get("seed", 42),
                    schema_file=os.path.join(workspace, "schema.pbtxt"),
                    train_steps=arguments.get("train_steps", 0), eval_steps=arguments.get("eval_steps", 0),
                    problem_type=arguments.get("problem_type", "auto"),
                    hyperparameters=arguments.get("hyperparameters") or {})
    with open(os.path.join(workspace, trial_lib.INPUTS_FILE), "w", encoding="utf-8") as handle:
        json.dump(settings, handle)


def _api():
    from kubernetes import client, config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    return client.CustomObjectsApi()


def _namespace(template: dict) -> str:
    namespace = template["metadata"].get("namespace")
    if namespace:
        return namespace
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    return "default"


def run(experiment: dict, **arguments) -> dict:
    """The Tuner's work, on Katib when the built-in search is asked for."""
    if not arguments.get("tune") or arguments.get("module_file"):
        return executor.run(**arguments)  # no search, or a module's KerasTuner search in this pod
    template, workspace_root = experiment["experiment"], experiment["workspace_path"]
    max_trials = executor.positive("max_trials", arguments.get("max_trials", 12))
    parallel = executor.positive("parallel_trials", arguments.get("parallel_trials", 1))
    name = f"{template['metadata']['name'][:31].rstrip('-')}-{uuid.uuid4().hex[:8]}"  # Katib: <= 40 characters
    namespace = _namespace(template)
    workspace = os.path.join(workspace_root, name)
    _copy_inputs(arguments, workspace)
    body = fill(template, name, namespace, workspace, max_trials, parallel, arguments.get("seed", 42))
    api = _api()
    started = time.perf_counter()
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    print(f"Tuner: created Katib Experiment {namespace}/{name} ({max_trials} trials, {parallel} at once)", flush=True)
    while True:
        time.sleep(experiment.get("poll_seconds", 15))
        status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status", {})
        done = {c["type"] for c in status.get("conditions", []) if c.get("status") == "True"}
        if done & {"Succeeded", "Failed"}:
            break
    objects = api.list_namespaced_custom_object(GROUP, VERSION, namespace, "trials",
                                                label_selector=f"katib.kubeflow.org/experiment={name}")["items"]
    trials = trials_from(objects)
    finished = [t for t in trials if t.state == "COMPLETE" and t.objective is not None]
    if "Failed" in done and not finished:
        raise ConfigError(f"Katib Experiment {namespace}/{name} failed: "
                          f"{next((c.get('message') for c in status['conditions'] if c['type'] == 'Failed'), '')}")
    best = max(finished, key=lambda t: (t.objective, -t.number))
    facts = {"library": "katib (kubeflow.org/v1beta1)", "sampler": template["spec"]["algorithm"]["algorithmName"],
             "objective": "objective", "direction": "max", "seed": arguments.get("seed", 42),
             "trial_seeds": "the run's seed", "max_trials": max_trials, "parallel_trials": parallel,
             "experiment": f"{namespace}/{name}", "search_seconds": round(time.perf_counter() - started, 3)}
    return executor.write_outputs(arguments["best_hyperparameters_dir"], arguments["tuner_results_dir"],
                                  arguments.get("report_path"), space.kerastuner_config(best.values), trials, facts,
                                  best, space.describe())
