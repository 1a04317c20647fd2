"""The built-in ``preprocessing_fn``, derived from the schema (used when no module_file is given).

Per feature (output names = raw names):

* numeric (INT/FLOAT) -> ``tft.scale_to_z_score`` of the value cast to float32;
* string (BYTES)      -> ``tft.compute_and_apply_vocabulary`` (vocabulary file
  ``vocab_<feature>``, one OOV bucket, so unseen values map to index = vocabulary size);
* the label: a string label -> its integer index in the vocabulary file
  ``label_vocabulary`` (no OOV bucket: an unseen label maps to -1); a numeric label
  is kept unchanged. The label must be in every example (schema ``shape [1]``).

Missing values are imputed inside the graph, so the exported model imputes a
request that lacks the feature exactly as training did. A feature the schema
allows to be missing (no ``shape {dim {size: 1}}``: VarLen) keeps the first value
of each example, and where it has none:

* numeric -> the mean (or approximate median) of the analyzed (train) values,
  computed by a TFT analyzer, before the z-score (which then describes the imputed data);
* string  -> the token ``__missing__``, which the vocabulary learns when training
  rows lack the feature (otherwise it maps to the OOV bucket).

Features with a fixed shape are present in every example (the schema says so;
Transform fails with the feature, split and count when the data disagree). The
plan (what happens to each feature) is plain data, computed without TensorFlow.
"""

from __future__ import annotations


from tensorflow_metadata.proto.v0 import schema_pb2

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.common.feature_names import safe_name

LABEL_VOCABULARY = "label_vocabulary"
FEATURE_VOCABULARY_PREFIX = "vocab_"
NUM_OOV_BUCKETS = 1
Z_SCORE, VOCABULARY, LABEL_VOCAB, IDENTITY = "z_score", "vocabulary", "label_vocabulary", "identity"
MEAN, MEDIAN, MISSING_TOKEN_STRATEGY = "mean", "median", "missing_token"
NUMERIC_IMPUTATIONS = (MEAN, MEDIAN)
MISSING_TOKEN = "__missing__"
# Rank error of the approximate median (tft.quantiles).
MEDIAN_EPSILON = 0.01


class LabelNotScalarError(ConfigError):
    """The label may be missing or hold several values: the built-in path cannot impute a label."""

    def __init__(self, feature: str):
        super().__init__(f"label_column '{feature}' must have exactly one value per example (schema shape "
                         "{dim {size: 1}}), but the schema lets it be missing or hold several values")
        self.feature = feature


def vocabulary_name(feature: str) -> str:
    return f"{FEATURE_VOCABULARY_PREFIX}{safe_name(feature)}"


def z_score_scope(feature: str) -> str:
    """The TF name scope of a feature's scale_to_z_score (names the saved analyzer constants)."""
    return f"zscore_{safe_name(feature)}"


def imputation_scope(feature: str) -> str:
    """The TF name scope of a feature's imputation value (names the saved analyzer constant)."""
    return f"impute_{safe_name(feature)}"


def is_fixed_scalar(feature: schema_pb2.Feature) -> bool:
    """Present in every example with one value: nothing to impute."""
    return feature.HasField("shape") and [d.size for d in feature.shape.dim] == [1]


def _imputation(raw_dtype: str, name: str, numeric_imputation: str) -> dict:
    if raw_dtype == "string":
        return {"strategy": MISSING_TOKEN_STRATEGY, "value": MISSING_TOKEN}
    return {"strategy": numeric_imputation, "scope": imputation_scope(name)}


def check_numeric_imputation(numeric_imputation: str) -> None:
    if numeric_imputation not in NUMERIC_IMPUTATIONS:
        raise ConfigError(f"numeric_imputation must be one of {', '.join(NUMERIC_IMPUTATIONS)}, "
                          f"got {numeric_imputation!r}")


def plan(schema: schema_pb2.Schema, label_column: str = "", numeric_imputation: str = MEAN) -> dict[str, dict]:
    """Feature name -> {"transform", "output", "dtype", "vocabulary", "num_oov_buckets", "fixed", "impute"}.

    ``impute`` is None for fixed-shape features, else {"strategy", and "scope" or "value"}.
    """
    check_numeric_imputation(numeric_imputation)
    steps: dict[str, dict] = {}
    for feature in schema.feature:
        name = feature.name
        fixed = is_fixed_scalar(feature)
        if feature.type == schema_pb2.BYTES:
            raw_dtype = "string"
        elif feature.type == schema_pb2.INT:
            raw_dtype = "int64"
        elif feature.type == schema_pb2.FLOAT:
            raw_dtype = "float32"
        else:
            raise ConfigError(f"schema feature '{name}' has type {schema_pb2.FeatureType.Name(feature.type)}, "
                              "which the default preprocessing_fn cannot handle; give a module_file")
        step = {"output": name, "raw_dtype": raw_dtype, "fixed": fixed, "vocabulary": None, "num_oov_buckets": 0,
                "impute": None}
        if name == label_column:
            if not fixed:
                raise LabelNotScalarError(name)
            if raw_dtype == "string":
                step.update(transform=LABEL_VOCAB, dtype="int64", vocabulary=LABEL_VOCABULARY)
            else:
                step.update(transform=IDENTITY, dtype=raw_dtype)
        elif raw_dtype == "string":
            step.update(transform=VOCABULARY, dtype="int64", vocabulary=vocabulary_name(name),
                        num_oov_buckets=NUM_OOV_BUCKETS)
        else:
            step.update(transform=Z_SCORE, dtype="float32", scope=z_score_scope(name))
        if not fixed and name != label_column:
            step["impute"] = _imputation(raw_dtype, name, numeric_imputation)
        steps[name] = step
    if not steps:
        raise ConfigError("the schema has no features to transform")
    return steps


def _first_values(tensor):
    """The first value of each example of a sparse (VarLen) [batch, n] tensor, as a sparse [batch, 1]."""
    import tensorflow as tf

    return tf.sparse.slice(tensor, [0, 0], tf.stack([tensor.dense_shape[0], tf.constant(1, tf.int64)]))


def _imputed_number(tensor, step: dict):
    """Dense float32 [batch, 1]: the value, or the analyzer's mean/median of the present values where missing."""
    import tensorflow as tf
    import tensorflow_transform as tft

    if step["impute"] is None:
        return tf.cast(tensor, tf.float32)
    first = tf.cast(_first_values(tensor), tf.float32)
    with tf.name_scope(step["impute"]["scope"]):
        if step["impute"]["strategy"] == MEDIAN:
            fill = tft.quantiles(first.values, num_buckets=2, epsilon=MEDIAN_EPSILON)  # [[median]]
        else:
            fill = tft.mean(first.values)
        # The analyzer result's first consumer names the saved constant: <scope>_value_input.
        fill = tf.reshape(tf.identity(fill, name="value"), [])
    return tft.sparse_tensor_to_dense_with_shape(first, [None, 1], default_value=fill)


def _imputed_string(tensor, step: dict):
    """Dense string [batch, 1]: the value, or MISSING_TOKEN where missing."""
    import tensorflow_transform as tft

    if step["impute"] is None:
        return tensor
    return tft.sparse_tensor_to_dense_with_shape(_first_values(tensor), [None, 1],
                                                  default_value=step["impute"]["value"])


def make_preprocessing_fn(schema: schema_pb2.Schema, label_column: str = "", numeric_imputation: str = MEAN):
    """A ``preprocessing_fn(inputs)`` implementing :func:`plan` for ``schema``."""
    steps = plan(schema, label_column, numeric_imputation)

    def preprocessing_fn(inputs):
        import tensorflow as tf
        import tensorflow_transform as tft

        outputs = {}
        for name, step in steps.items():
            value = inputs[name]
            if step["transform"] == Z_SCORE:
                outputs[name] = tft.scale_to_z_score(_imputed_number(value, step), name=step["scope"])
            elif step["transform"] == VOCABULARY:
                outputs[name] = tft.compute_and_apply_vocabulary(
                    _imputed_string(value, step), num_oov_buckets=step["num_oov_buckets"],
                    vocab_filename=step["vocabulary"])
            elif step["transform"] == LABEL_VOCAB:
                outputs[name] = tft.compute_and_apply_vocabulary(value, vocab_filename=step["vocabulary"])
            else:
                outputs[name] = tf.identity(value)
        return outputs

    preprocessing_fn.plan = steps
    return preprocessing_fn
