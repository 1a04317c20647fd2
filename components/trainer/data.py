"""tf.data input for the built-in trainer, read through the FnArgs data accessor (TFXIO)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tfx_bsl.public import tfxio

from kubetfx.components.trainer.problem import CLASSIFICATION, Problem

SCAN_BATCH = 4096


def _dataset(fn_args, files, schema, label_key: str, batch_size: int, shuffle: bool, seed: int):
    options = tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=label_key, shuffle=shuffle,
                                             shuffle_seed=seed if shuffle else None, num_epochs=1,
                                             shuffle_buffer_size=10_000)
    return fn_args.data_accessor.tf_dataset_factory(files, options, schema)


def scan_labels(fn_args, files, schema, label_key: str) -> np.ndarray:
    """Every label value of a split (also gives its example count)."""
    values = []
    for _, label in _dataset(fn_args, files, schema, label_key, SCAN_BATCH, False, 0):
        values.append(np.asarray(label.numpy()).reshape(-1))
    return np.concatenate(values) if values else np.zeros(0)


def training_dataset(fn_args, files, schema, problem: Problem, input_names: list[str], batch_size: int,
                     shuffle: bool, seed: int) -> tf.data.Dataset:
    """(features, target) batches: the class index (rows with an unknown class dropped) or the
    standardized regression target."""
    table = None
    if problem.kind == CLASSIFICATION and problem.label_values is not None:
        is_text = isinstance(problem.label_values[0], (bytes, str))
        keys = tf.constant(problem.label_values, dtype=tf.string if is_text else tf.int64)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(problem.label_values), dtype=tf.int64)), -1)

    def prepare(features, label):
        label = tf.reshape(label, [-1])
        features = {name: features[name] for name in input_names}
        if problem.kind != CLASSIFICATION:
            target = (tf.cast(label, tf.float32) - problem.label_mean) / problem.label_std
            return features, target
        index = table.lookup(label) if table is not None else tf.cast(label, tf.int64)
        known = index >= 0
        return {k: tf.boolean_mask(v, known) for k, v in features.items()}, tf.boolean_mask(index, known)

    dataset = _dataset(fn_args, files, schema, problem.label_key, batch_size, shuffle, seed)
    return dataset.map(prepare).prefetch(tf.data.AUTOTUNE)
