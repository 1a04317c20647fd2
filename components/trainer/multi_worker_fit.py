"""The built-in model's training loop under MultiWorkerMirroredStrategy (what ``model.fit`` does, by hand).

Keras 3.15's ``model.fit`` cannot run under MultiWorkerMirroredStrategy: it reduces every step's
scalar logs with ``strategy.reduce(MEAN, axis=0)`` (``Invalid reduction dimension 0 for input with
0 dimensions``) and, before the first step, reduces a whole batch of dict features
(``Attempt to convert a value ({...: PerReplica})``). This loop does the same training: each
replica computes the loss of its share of the global batch, the optimizer all-reduces the gradients
(Keras's TF optimizer does), and the epoch's loss and accuracy / MAE are summed over all workers, so
every worker sees the same numbers and early stopping decides alike everywhere (the collectives need
every worker in every step). Returns what ``default_model.fit`` returns.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from kubetfx.components.trainer import default_model
from kubetfx.components.trainer.problem import CLASSIFICATION


def _step_functions(model, strategy, problem):
    classification = problem.kind == CLASSIFICATION
    per_example_loss = keras.losses.SparseCategoricalCrossentropy(reduction=None) if classification \
        else keras.losses.MeanSquaredError(reduction=None)

    def sums(target, output, losses):
        """[loss sum, examples, correct (classification) or absolute error sum]."""
        if classification:
            score = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(output, axis=-1), tf.cast(target, tf.int64)),
                                          tf.float32))
        else:
            score = tf.reduce_sum(tf.abs(tf.reshape(output, [-1]) - tf.cast(target, tf.float32)))
        return tf.stack([tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32), score])

    def train_replica(features, target):
        with tf.GradientTape() as tape:
            output = model(features, training=True)
            losses = per_example_loss(target, output)
            loss = tf.nn.compute_average_loss(losses)  # / the global batch: the all-reduced sum is the mean
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return sums(target, output, losses)

    def eval_replica(features, target):
        output = model(features, training=False)
        return sums(target, output, per_example_loss(target, output))

    @tf.function
    def train_step(iterator):
        return strategy.reduce("SUM", strategy.run(train_replica, args=next(iterator)), axis=None)

    @tf.function
    def eval_step(iterator):
        return strategy.reduce("SUM", strategy.run(eval_replica, args=next(iterator)), axis=None)

    return train_step, eval_step


def _epoch_logs(totals: np.ndarray, classification: bool, prefix: str = "") -> dict:
    loss, examples, score = (float(v) for v in totals)
    examples = max(examples, 1.0)
    second = "accuracy" if classification else "mae"
    return {f"{prefix}loss": loss / examples, f"{prefix}{second}": score / examples}


def fit(model, strategy, train_ds, eval_ds, problem, hp: dict, epochs: int, steps_per_epoch: int,
        eval_steps: int) -> dict:
    """Train ``epochs`` epochs of ``steps_per_epoch`` global batches; early stopping on val_loss with the
    best weights restored, as ``default_model.fit``."""
    classification = problem.kind == CLASSIFICATION
    train_step, eval_step = _step_functions(model, strategy, problem)
    train_iterator = iter(strategy.experimental_distribute_dataset(train_ds.repeat()))
    validation = default_model.validation_batches(eval_ds, eval_steps)
    eval_iterator = iter(strategy.experimental_distribute_dataset(validation))
    patience = hp["early_stopping_patience"]
    history: dict[str, list[float]] = {}
    best_loss, best_epoch, best_weights, waited = np.inf, None, None, 0
    start = time.perf_counter()
    for epoch in range(epochs):
        totals = sum(train_step(train_iterator).numpy() for _ in range(steps_per_epoch))
        logs = _epoch_logs(totals, classification)
        totals = sum(eval_step(eval_iterator).numpy() for _ in range(eval_steps))
        logs.update(_epoch_logs(totals, classification, "val_"))
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        print(f"Epoch {epoch + 1}/{epochs} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        if logs["val_loss"] < best_loss:
            best_loss, best_epoch, waited = logs["val_loss"], epoch + 1, 0
            best_weights = model.get_weights() if patience > 0 else None
        elif patience > 0:
            waited += 1
            if waited >= patience:
                break
    if best_weights is not None:
        model.set_weights(best_weights)
    return {"epochs_run": len(history.get("loss", [])), "best_epoch": best_epoch,
            "fit_seconds": time.perf_counter() - start, "history": history}
