"""The built-in Keras 3 DNN: build, train (early stopping, TensorBoard), evaluate.

Inputs are the transformed features: float features go in as they are,
vocabulary-encoded integer features are one-hot encoded (an extra last slot takes
OOV / out-of-range indices). Hidden ReLU layers (``hidden_units``, optional
dropout), then softmax over the classes or one linear unit (standardized target).
"""

from __future__ import annotations

import time

import keras
import numpy as np

from kubetfx.components.common.errors import InputDataError
from kubetfx.components.common.feature_names import safe_name
from kubetfx.components.trainer.problem import CLASSIFICATION, ModelInput, Problem


def build(inputs: list[ModelInput], problem: Problem, hp: dict, seed: int) -> keras.Model:
    tensors, parts = {}, []
    for spec in inputs:
        tensor = keras.Input(shape=(spec.width,), name=safe_name(spec.name), dtype=spec.dtype)
        tensors[spec.name] = tensor
        if spec.kind == "categorical":
            last = spec.num_tokens - 1
            index = keras.ops.where(keras.ops.logical_or(tensor < 0, tensor > last), last, tensor)
            mode = "one_hot" if spec.width == 1 else "multi_hot"
            parts.append(keras.layers.CategoryEncoding(spec.num_tokens, output_mode=mode)(index))
        else:
            parts.append(keras.ops.cast(tensor, "float32"))
    hidden = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
    for i, units in enumerate(hp["hidden_units"]):
        hidden = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(hidden)
        if hp["dropout"] > 0:
            hidden = keras.layers.Dropout(hp["dropout"], seed=seed + i)(hidden)
    if problem.kind == CLASSIFICATION:
        output = keras.layers.Dense(len(problem.class_names), activation="softmax", name="probabilities")(hidden)
        loss, metrics = "sparse_categorical_crossentropy", [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        output = keras.layers.Dense(1, name="prediction")(hidden)
        loss, metrics = "mse", [keras.metrics.MeanAbsoluteError(name="mae")]
    model = keras.Model(tensors, output, name="kubetfx_dnn")
    model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss=loss, metrics=metrics)
    return model


def validation_batches(eval_ds, eval_steps: int):
    """The first ``eval_steps`` eval batches, read once and cached: every epoch validates on the same ones."""
    return eval_ds.repeat().take(eval_steps).cache().repeat()


def fit(model: keras.Model, train_ds, eval_ds, hp: dict, epochs: int, steps_per_epoch: int, eval_steps: int,
        log_dir: str | None, extra_callbacks: list | None = None, verbose: int = 2) -> dict:
    """Train; returns epochs run, best epoch, seconds and the per-epoch history.

    Each dataset is repeated and read by one iterator for all epochs (``steps_per_epoch`` training
    batches per epoch; validation: the same first ``eval_steps`` batches, cached after the first
    epoch): a new iterator per epoch would set up the input pipeline again each epoch, ~50 ms with
    the transform graph in it.
    ``log_dir`` None: no TensorBoard logs (the tuner's trials); ``extra_callbacks`` run after early stopping.
    """
    callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir)] if log_dir else []
    if hp["early_stopping_patience"] > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=hp["early_stopping_patience"],
                                                       restore_best_weights=True))
    callbacks += extra_callbacks or []
    start = time.perf_counter()
    history = model.fit(train_ds.repeat(), steps_per_epoch=steps_per_epoch,
                        validation_data=validation_batches(eval_ds, eval_steps), validation_steps=eval_steps,
                        epochs=epochs, callbacks=callbacks, shuffle=False, verbose=verbose)  # the dataset shuffles
    seconds = time.perf_counter() - start
    losses = history.history.get("val_loss", [])
    return {"epochs_run": len(history.history.get("loss", [])),
            "best_epoch": int(np.argmin(losses)) + 1 if losses else None,
            "fit_seconds": seconds,
            "history": {k: [float(v) for v in values] for k, values in history.history.items()}}


def forward(model: keras.Model):
    """The model's inference call as one traced graph (as the exported SavedModel runs it): an eager call
    per batch costs ~3 ms of Python dispatch, a full pass over 1M rows seconds."""
    import tensorflow as tf

    return tf.function(lambda features: model(features, training=False), reduce_retracing=True)


def _count_non_finite(features, counts: dict) -> None:
    """Add each floating feature's count of NaN/infinite values in this batch to ``counts``."""
    if not isinstance(features, dict):
        return
    for name, value in features.items():
        if hasattr(value, "numpy") and getattr(value.dtype, "is_floating", False):
            array = value.numpy()
            counts[name] = counts.get(name, 0) + int(array.size - np.count_nonzero(np.isfinite(array)))


def evaluate(model: keras.Model, dataset, problem: Problem, prefix: str, call=None) -> dict:
    """Loss and accuracy (classification) or MAE/RMSE in label units (regression) on ``dataset``;
    ``call``: :func:`forward` of the model (traced once for several datasets)."""
    call = call or forward(model)
    targets, outputs, non_finite = [], [], {}
    for features, target in dataset:
        _count_non_finite(features, non_finite)
        outputs.append(call(features).numpy())
        targets.append(target.numpy())
    if not targets:
        return {}
    if any(non_finite.values()):
        # The traced (fused) graph may turn a NaN input into a finite output, so the loss alone would hide it.
        found = ", ".join(f"'{name}' ({count} value{'s' if count > 1 else ''})"
                          for name, count in sorted(non_finite.items()) if count)
        raise InputDataError(f"NaN or infinite values in the transformed feature(s) {found} of the {prefix} split: "
                             "the model's loss and metrics are not defined; the data holds non-finite cells "
                             "(ExampleValidator reports FLOAT_TYPE_HAS_INF) or the preprocessing makes them")
    y, out = np.concatenate(targets), np.concatenate(outputs)
    if problem.kind == CLASSIFICATION:
        probabilities = np.clip(out, 1e-7, 1.0)
        loss = float(-np.mean(np.log(probabilities[np.arange(len(y)), y])))
        return {f"{prefix}_loss": loss, f"{prefix}_accuracy": float(np.mean(np.argmax(out, axis=1) == y))}
    prediction = out.reshape(-1)
    loss = float(np.mean((prediction - y) ** 2))
    error = (prediction - y) * problem.label_std
    return {f"{prefix}_loss": loss, f"{prefix}_mae": float(np.mean(np.abs(error))),
            f"{prefix}_rmse": float(np.sqrt(np.mean(error ** 2)))}
