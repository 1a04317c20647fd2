"""The built-in trainer (no module file): the same FnArgs a user ``run_fn`` gets, Keras 3 inside.

Reads the transformed examples, decides classification/regression, trains the
default DNN under a distribution strategy (MultiWorkerMirroredStrategy when TF_CONFIG
names several workers, MirroredStrategy with more than one GPU), evaluates it and
exports the SavedModel. Returns what kubetfx_model.json records.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
import tensorflow_transform as tft

from kubetfx.components.common.errors import InputDataError
from kubetfx.components.trainer import data, default_model, distributed, export, problem as problem_lib, scaling

EVALUATE_BATCH = 4096  # final metrics: large batches through one traced forward call


def strategy_and_devices(cluster: distributed.Cluster | None = None):
    """MultiWorkerMirroredStrategy for a multi-worker ``cluster`` (created first: TensorFlow allows it only
    before its first op), else MirroredStrategy over all GPUs when there are several, else the default."""
    strategy = distributed.strategy(cluster) if cluster is not None else None
    gpus = tf.config.list_logical_devices("GPU")
    if strategy is not None:
        name = "MultiWorkerMirroredStrategy"
    elif len(gpus) > 1:
        strategy, name = tf.distribute.MirroredStrategy(), "MirroredStrategy"
    else:
        strategy, name = tf.distribute.get_strategy(), "default"
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    where = f", worker {cluster.task_index} of {cluster.workers}" if cluster is not None else ""
    print(f"Trainer: training on {', '.join(devices)} ({name} strategy{where})", flush=True)
    return strategy, name, devices


def set_seeds(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass
class Prepared:
    """What every training run of one dataset shares (the trainer's one run, or each of the tuner's trials)."""

    tfo: object
    schema: object
    problem: object
    inputs: list
    names: list
    train_labels: object
    eval_labels: object

    def plan(self, fn_args, given: dict, tuned=()) -> scaling.Plan:
        """The hyperparameters and schedule for these splits: ``given`` values (``tuned``: those the Tuner found),
        the others scaled to the data."""
        return scaling.plan(given, int(self.train_labels.size), int(self.eval_labels.size), fn_args.train_steps or 0,
                            fn_args.eval_steps or 0, tuned)

    def datasets(self, fn_args, batch: int, seed: int):
        """(train, eval) tf.data datasets of (features, target) batches."""
        train = data.training_dataset(fn_args, fn_args.train_files, self.schema, self.problem, self.names, batch,
                                      True, seed)
        evaluation = data.training_dataset(fn_args, fn_args.eval_files, self.schema, self.problem, self.names, batch,
                                           False, seed)
        return train, evaluation


def prepare(fn_args, label: str, label_vocabulary: str | None = None, problem_type: str = "auto") -> Prepared:
    """Read the transform output and the labels; decide the problem and the model inputs."""
    tfo = tft.TFTransformOutput(fn_args.transform_graph_path)
    schema = tfo.transformed_metadata.schema
    label_key = problem_lib.transformed_label_key(label, tfo.transformed_feature_spec())
    train_labels = data.scan_labels(fn_args, fn_args.train_files, schema, label_key)
    eval_labels = data.scan_labels(fn_args, fn_args.eval_files, schema, label_key)
    if eval_labels.size == 0:
        raise InputDataError("the eval split of the transformed examples has no examples")
    problem = problem_lib.decide(tfo, label, train_labels, label_vocabulary, problem_type)
    inputs = problem_lib.model_inputs(tfo, problem.label_key)
    return Prepared(tfo, schema, problem, inputs, [i.name for i in inputs], train_labels, eval_labels)


def run(fn_args, label: str, given: dict, label_vocabulary: str | None = None, problem_type: str = "auto",
        cluster: distributed.Cluster | None = None, tuned=()) -> dict:
    """Train on ``fn_args``' data; ``given``: the hyperparameters the user (or the Tuner: the names in
    ``tuned``) set, the others scaled to the data (scaling.py)."""
    strategy, strategy_name, devices = strategy_and_devices(cluster)
    seed = fn_args.seed
    set_seeds(seed)
    prepared = prepare(fn_args, label, label_vocabulary, problem_type)
    tfo, schema, problem, inputs, names = (prepared.tfo, prepared.schema, prepared.problem, prepared.inputs,
                                           prepared.names)
    train_labels, eval_labels = prepared.train_labels, prepared.eval_labels
    plan = prepared.plan(fn_args, given, tuned)
    hp, steps_per_epoch, eval_steps = plan.hyperparameters, plan.steps_per_epoch, plan.eval_steps
    epochs, batch = hp["epochs"], hp["batch_size"]
    print(f"Trainer: {plan.describe()}", flush=True)
    train_ds, eval_ds = prepared.datasets(fn_args, batch, seed)
    if cluster is not None:
        train_ds, eval_ds = distributed.shard_by_data(train_ds), distributed.shard_by_data(eval_ds)

    with strategy.scope():
        model = default_model.build(inputs, problem, hp, seed)
    if cluster is None:
        fitted = default_model.fit(model, train_ds, eval_ds, hp, epochs, steps_per_epoch, eval_steps,
                                   fn_args.model_run_dir)
    else:
        from kubetfx.components.trainer import multi_worker_fit

        fitted = multi_worker_fit.fit(model, strategy, train_ds, eval_ds, problem, hp, epochs, steps_per_epoch,
                                      eval_steps)
    metrics, call = {}, default_model.forward(model)
    for split, files in (("train", fn_args.train_files), ("eval", fn_args.eval_files)):
        dataset = data.training_dataset(fn_args, files, schema, problem, names, max(batch, EVALUATE_BATCH), False,
                                        seed)
        metrics.update(default_model.evaluate(model, dataset, problem, split, call))

    input_specs = {i.name: tfo.transformed_feature_spec()[i.name] for i in inputs}
    export.save(fn_args.serving_model_dir, model, tfo, problem, input_specs)
    examples_seen = min(int(train_labels.size), steps_per_epoch * batch) * fitted["epochs_run"]
    return {
        "problem_type": problem.kind,
        "label": label,
        "transformed_label": problem.label_key,
        "class_names": problem.class_names,
        "label_normalization": None if problem.kind == problem_lib.CLASSIFICATION
        else {"mean": problem.label_mean, "std": problem.label_std},
        "transformed_features": names,
        "train_examples": int(train_labels.size),
        "eval_examples": int(eval_labels.size),
        "epochs_run": fitted["epochs_run"],
        "best_epoch": fitted["best_epoch"],
        "steps_per_epoch": steps_per_epoch,
        "hyperparameters": hp,
        "schedule": plan.as_dict(),
        "fit_seconds": round(fitted["fit_seconds"], 3),
        "examples_per_second": round(examples_seen / fitted["fit_seconds"], 1) if fitted["fit_seconds"] else None,
        "devices": devices,
        "distribution_strategy": strategy_name,
        "metrics": metrics,
        "history": fitted["history"],
    }
