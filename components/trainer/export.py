"""Export the built-in model as one SavedModel with the TFT layer in front of it.

The TFT layer is a tf_keras object and cannot be called on Keras 3 symbolic
inputs, so it stays outside the Keras model: a ``tf.Module`` holds both and its
``tf.function`` signatures chain them (FIELD-NOTES recipe). Signatures:

* ``serving_default``: ``examples`` (tf.string [None], serialized raw tf.Examples) -> outputs
* ``serving_raw``: one input per raw feature except the label (shape [None], named by the
  feature's ``safe_name``: "sepal length (cm)" -> ``sepal_length_cm``) -> outputs; in a feature the
  schema lets be missing (VarLen), a NaN (float) or the missing marker (int64 ``-2**63``, string
  ``feature_values.MISSING_STRING``) is that feature missing, so the transform graph imputes it as it
  imputes a tf.Example without it. ``raw_features`` in kubetfx_model.json say which features the
  graph imputes (``allow_nan`` for a float, ``missing``: the marker, for an int or string), so the
  predictor sends a request's null for those, and only those, as missing
* ``transform_features``: ``examples`` -> the transformed features (for TFMA)

Outputs: classification ``probabilities`` float32 [None, K], ``class_ids`` int64 [None],
``classes`` string [None], ``class_names`` string [None, K]; regression
``predictions`` float32 [None]. The restored object also has
``call_transformed(features)``: the model on already-transformed features.
"""

from __future__ import annotations

import os

import tensorflow as tf

from kubetfx.components.common import feature_values, layout
from kubetfx.components.common.feature_names import safe_name
from kubetfx.components.trainer.problem import CLASSIFICATION, Problem

SIGNATURES = ("serving_default", "serving_raw", "transform_features")


def _raw_input_spec(name: str, feature) -> tf.TensorSpec:
    """A ``serving_raw`` argument: named by the column's safe name (see common.feature_names)."""
    return tf.TensorSpec([None], feature.dtype, name=safe_name(name))


def _to_raw_feature(value: tf.Tensor, feature):
    """A [None] request column -> what parse_example would give for this feature spec."""
    if isinstance(feature, tf.io.FixedLenFeature):
        shape = list(feature.shape)
        return tf.reshape(value, [-1] + shape) if shape else value
    # VarLen / sparse: one value per example; a NaN or the missing marker (a request's null) is no value,
    # imputed by the graph.
    rows = tf.shape(value, out_type=tf.int64)[0]
    indices = tf.stack([tf.range(rows), tf.zeros([rows], tf.int64)], axis=1)
    sparse = tf.SparseTensor(indices, value, tf.stack([rows, tf.constant(1, tf.int64)]))
    if value.dtype.is_floating:
        return tf.sparse.retain(sparse, tf.logical_not(tf.math.is_nan(value)))
    marker = feature_values.MARKERS.get(value.dtype.name)
    if marker is not None:
        sparse = tf.sparse.retain(sparse, tf.not_equal(value, tf.constant(marker, value.dtype)))
    return sparse


class _Config:
    """Plain (untracked) settings: tf.Module would wrap dicts/namedtuples assigned to it."""

    def __init__(self, raw_spec: dict, problem: Problem, input_specs: dict):
        self.problem_kind = problem.kind
        self.label_std = float(problem.label_std)
        self.label_mean = float(problem.label_mean)
        self.class_names = list(problem.class_names)
        self.raw_spec = dict(raw_spec)
        self.serving_spec = {k: v for k, v in raw_spec.items() if k != problem.label}
        self.raw_names = sorted(self.serving_spec)
        self.input_names = sorted(input_specs)
        self.input_specs = dict(input_specs)


class ServingModule(tf.Module):
    def __init__(self, model, tft_layer, raw_spec: dict, problem: Problem, input_specs: dict):
        super().__init__(name="kubetfx_serving")
        self.model = model
        self.tft_layer = tft_layer
        self._config = config = _Config(raw_spec, problem, input_specs)
        examples_spec = tf.TensorSpec([None], tf.string, name="examples")
        self.serve_examples = tf.function(self._serve_examples, input_signature=[examples_spec])
        self.transform_features = tf.function(self._transform_features, input_signature=[examples_spec])
        self.serve_raw = tf.function(self._serve_raw, input_signature=[
            _raw_input_spec(name, config.serving_spec[name]) for name in config.raw_names])
        self.call_transformed = tf.function(self._call_transformed, input_signature=[
            {name: tf.TensorSpec([None] + list(spec.shape), spec.dtype, name=safe_name(name))
             for name, spec in config.input_specs.items()}])

    def _outputs(self, transformed) -> dict:
        config = self._config
        features = {name: transformed[name] for name in config.input_names}
        output = self.model(features, training=False)
        if config.problem_kind != CLASSIFICATION:
            return {"predictions": tf.reshape(tf.cast(output, tf.float32), [-1]) * config.label_std
                    + config.label_mean}
        probabilities = tf.cast(output, tf.float32)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        names = tf.constant(config.class_names, dtype=tf.string)
        return {"probabilities": probabilities, "class_ids": class_ids, "classes": tf.gather(names, class_ids),
                "class_names": tf.tile(tf.expand_dims(names, 0), [tf.shape(probabilities)[0], 1])}

    def _serve_examples(self, examples):
        parsed = tf.io.parse_example(examples, self._config.serving_spec)
        return self._outputs(dict(self.tft_layer(parsed)))

    def _serve_raw(self, *columns):
        config = self._config
        raw = {name: _to_raw_feature(value, config.serving_spec[name])
               for name, value in zip(config.raw_names, columns)}
        return self._outputs(dict(self.tft_layer(raw)))

    def _transform_features(self, examples):
        parsed = tf.io.parse_example(examples, self._config.raw_spec)
        return dict(self.tft_layer(parsed))

    def _call_transformed(self, features):
        return self._outputs(dict(features))


def save(path: str, model, tft_output, problem: Problem, input_specs: dict) -> ServingModule:
    """Write the SavedModel to ``path`` (``<model_dir>/Format-Serving``)."""
    module = ServingModule(model, tft_output.transform_features_layer(), tft_output.raw_feature_spec(), problem,
                           input_specs)
    functions = (module.serve_examples, module.serve_raw, module.transform_features)
    signatures = {name: function.get_concrete_function() for name, function in zip(SIGNATURES, functions)}
    tf.saved_model.save(module, path, signatures=signatures)
    return module


def raw_feature_entries(raw_spec: dict, label: str, imputed=(), markers: bool = True) -> list[dict]:
    """``kubetfx_model.json``'s ``raw_features``: each request feature's name, dtype and ``serving_raw`` input;
    for a feature the transform graph imputes (``imputed``: Transform's imputation) ``allow_nan`` (a float)
    or ``missing``: the marker :func:`_to_raw_feature` drops (an int or string; only with ``markers``: the
    model's signatures understand them), so a request's null for it is served as missing."""
    entries = []
    for name in sorted(raw_spec):
        if name == label:
            continue
        spec = raw_spec[name]
        entry = {"name": name, "dtype": spec.dtype.name, "input": safe_name(name)}
        if name in imputed and spec.dtype.is_floating:
            entry["allow_nan"] = True
        elif name in imputed and markers and spec.dtype.name in feature_values.MARKERS \
                and not isinstance(spec, tf.io.FixedLenFeature):  # the signature drops markers of VarLen ones
            entry[feature_values.MISSING_KEY] = feature_values.MARKERS[spec.dtype.name]
        entries.append(entry)
    return entries


def describe_signatures(saved_model_dir: str) -> dict:
    """Signature name -> {"inputs": {name: {dtype, shape}}, "outputs": {...}}, read from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, layout.SAVED_MODEL_FILE), "rb") as handle:
        saved.ParseFromString(handle.read())

    def tensors(mapping) -> dict:
        return {name: {"dtype": tf.dtypes.as_dtype(info.dtype).name,
                       "shape": None if info.tensor_shape.unknown_rank
                       else [d.size for d in info.tensor_shape.dim]}
                for name, info in sorted(mapping.items())}

    result = {}
    for graph in saved.meta_graphs:
        for name, signature in sorted(graph.signature_def.items()):
            if name.startswith("__"):
                continue
            result[name] = {"inputs": tensors(signature.inputs), "outputs": tensors(signature.outputs)}
    return result
