"""Training beyond one process: which worker this is (``TF_CONFIG``) and its ``MultiWorkerMirroredStrategy``.

A multi-worker run starts the same Trainer command in every worker with ``TF_CONFIG`` naming the
cluster (``{"cluster": {"worker": [host:port, ...]}, "task": {"type": "worker", "index": i}}``, what
Kubeflow's TFJob sets). Every worker trains (the strategy's collectives need them all), worker 0 is
the chief: only it writes the Model and ModelRun artifacts; the others write theirs to a scratch
directory that is removed. Without ``TF_CONFIG``, or with one worker, nothing changes.
Imports no TensorFlow until a strategy is asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os

from kubetfx.components.common.errors import ConfigError

ENV_VAR = "TF_CONFIG"
_TASK_TYPES = ("worker", "chief")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker training run."""

    workers: int  # all training processes (chief included)
    task_type: str
    task_index: int
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """Writes the artifacts: the ``chief`` task, else worker 0 when the cluster has no chief."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and not self.has_chief)

    def describe(self) -> dict:
        """What kubetfx_model.json records."""
        return {"workers": self.workers, "task_type": self.task_type, "task_index": self.task_index}


def _bad(message: str) -> ConfigError:
    return ConfigError(f"{ENV_VAR}: {message}")


def cluster(env=os.environ) -> Cluster | None:
    """This process's Cluster from ``TF_CONFIG``; None for single-process training (unset, or one worker)."""
    text = env.get(ENV_VAR, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise _bad(f"not JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise _bad('expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}')
    jobs = config["cluster"]
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise _bad(f'cluster.{job}: expected a list of "host:port" strings, got {addresses!r}')
    unknown = sorted(set(jobs) - set(_TASK_TYPES) - {"evaluator", "ps"})
    if unknown:
        raise _bad(f"cluster: unknown task type(s) {', '.join(unknown)} (known: chief, worker, evaluator, ps)")
    if jobs.get("ps"):
        raise _bad("cluster.ps: parameter servers are not supported; the Trainer trains with "
                   "MultiWorkerMirroredStrategy (chief and workers only)")
    task = config.get("task")
    if not isinstance(task, dict):
        raise _bad('task: expected {"type": "worker", "index": N}')
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in jobs:
        raise _bad(f"task.type: {task_type!r} is not a task type of the cluster ({', '.join(jobs)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(jobs[task_type]):
        raise _bad(f"task.index: expected 0..{len(jobs[task_type]) - 1} for the {len(jobs[task_type])} "
                   f"{task_type} address(es), got {index!r}")
    if task_type == "evaluator":
        raise _bad("task.type: an evaluator task is not supported (the Trainer evaluates in every worker)")
    workers = sum(len(jobs.get(kind, [])) for kind in _TASK_TYPES)
    if workers <= 1:
        return None
    return Cluster(workers=workers, task_type=task_type, task_index=index, has_chief=bool(jobs.get("chief")))


def strategy(found: Cluster):
    """``MultiWorkerMirroredStrategy`` for ``found``. TensorFlow allows it only before its first op runs."""
    import tensorflow as tf

    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        raise ConfigError(f"{ENV_VAR}: MultiWorkerMirroredStrategy must be created before TensorFlow runs its "
                          f"first operation in this process ({err})") from None


def shard_by_data(dataset):
    """Every worker reads the same files and takes its share of the batches (the input is shared, not split)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)

