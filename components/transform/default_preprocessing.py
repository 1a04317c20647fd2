"""The built-in ``preprocessing_fn``, derived from the schema (used when no module_file is given).

Per feature (output names = raw names):

* numeric (INT/FLOAT) -> ``tft.scale_to_z_score`` of the value cast to float32;
* string (BYTES)      -> ``tft.compute_and_apply_vocabulary`` (vocabulary file
  ``vocab_<feature>``, one OOV bucket, so unseen values map to index = vocabulary size);
* the label: a string label -> its integer index in the vocabulary file
  ``label_vocabulary`` (no OOV bucket: an unseen label maps to -1); a numeric label
  is kept unchanged.

Features without ``shape {dim {size: 1}}`` (VarLen) keep the first value of each
example (missing -> 0 / empty string) so every output is a dense [batch, 1] tensor.
The plan (what happens to each feature) is plain data, computed without TensorFlow.
"""

from __future__ import annotations

import re

from tensorflow_metadata.proto.v0 import schema_pb2

from kubetfx.components.common.errors import ConfigError

LABEL_VOCABULARY = "label_vocabulary"
FEATURE_VOCABULARY_PREFIX = "vocab_"
NUM_OOV_BUCKETS = 1
Z_SCORE, VOCABULARY, LABEL_VOCAB, IDENTITY = "z_score", "vocabulary", "label_vocabulary", "identity"
_SCOPE_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def vocabulary_name(feature: str) -> str:
    return f"{FEATURE_VOCABULARY_PREFIX}{_SCOPE_UNSAFE.sub('_', feature)}"


def z_score_scope(feature: str) -> str:
    """The TF name scope of a feature's scale_to_z_score (names the saved analyzer constants)."""
    return f"zscore_{_SCOPE_UNSAFE.sub('_', feature)}"


def _is_fixed_scalar(feature: schema_pb2.Feature) -> bool:
    return feature.HasField("shape") and [d.size for d in feature.shape.dim] == [1]


def plan(schema: schema_pb2.Schema, label_column: str = "") -> dict[str, dict]:
    """Feature name -> {"transform", "output", "dtype", "vocabulary", "num_oov_buckets", "fixed"}."""
    steps: dict[str, dict] = {}
    for feature in schema.feature:
        name = feature.name
        fixed = _is_fixed_scalar(feature)
        if feature.type == schema_pb2.BYTES:
            raw_dtype = "string"
        elif feature.type == schema_pb2.INT:
            raw_dtype = "int64"
        elif feature.type == schema_pb2.FLOAT:
            raw_dtype = "float32"
        else:
            raise ConfigError(f"schema feature '{name}' has type {schema_pb2.FeatureType.Name(feature.type)}, "
                              "which the default preprocessing_fn cannot handle; give a module_file")
        step = {"output": name, "raw_dtype": raw_dtype, "fixed": fixed, "vocabulary": None, "num_oov_buckets": 0}
        if name == label_column:
            if not fixed:
                raise ConfigError(f"label_column '{name}' must have exactly one value per example "
                                  "(schema shape {dim {size: 1}}), but the schema gives it a variable length")
            if raw_dtype == "string":
                step.update(transform=LABEL_VOCAB, dtype="int64", vocabulary=LABEL_VOCABULARY)
            else:
                step.update(transform=IDENTITY, dtype=raw_dtype)
        elif raw_dtype == "string":
            step.update(transform=VOCABULARY, dtype="int64", vocabulary=vocabulary_name(name),
                        num_oov_buckets=NUM_OOV_BUCKETS)
        else:
            step.update(transform=Z_SCORE, dtype="float32", scope=z_score_scope(name))
        steps[name] = step
    if not steps:
        raise ConfigError("the schema has no features to transform")
    return steps


def _first_value(tensor, default):
    """Dense [batch, 1] from a dense or sparse (VarLen) tensor."""
    import tensorflow as tf
    import tensorflow_transform as tft

    if isinstance(tensor, tf.SparseTensor):
        batch = tensor.dense_shape[0]
        first = tf.sparse.slice(tensor, [0, 0], tf.stack([batch, tf.constant(1, tf.int64)]))
        return tft.sparse_tensor_to_dense_with_shape(first, [None, 1], default_value=default)
    return tensor


def make_preprocessing_fn(schema: schema_pb2.Schema, label_column: str = ""):
    """A ``preprocessing_fn(inputs)`` implementing :func:`plan` for ``schema``."""
    steps = plan(schema, label_column)

    def preprocessing_fn(inputs):
        import tensorflow as tf
        import tensorflow_transform as tft

        outputs = {}
        for name, step in steps.items():
            value = inputs[name]
            if step["transform"] == Z_SCORE:
                value = tf.cast(_first_value(value, 0 if step["raw_dtype"] == "int64" else 0.0), tf.float32)
                outputs[name] = tft.scale_to_z_score(value, name=step["scope"])
            elif step["transform"] == VOCABULARY:
                outputs[name] = tft.compute_and_apply_vocabulary(
                    _first_value(value, b""), num_oov_buckets=step["num_oov_buckets"],
                    vocab_filename=step["vocabulary"])
            elif step["transform"] == LABEL_VOCAB:
                outputs[name] = tft.compute_and_apply_vocabulary(value, vocab_filename=step["vocabulary"])
            else:
                outputs[name] = tf.identity(value)
        return outputs

    preprocessing_fn.plan = steps
    return preprocessing_fn
