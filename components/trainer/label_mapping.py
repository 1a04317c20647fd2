"""A module file whose transform graph maps a string label to class ids: the facts the Evaluator needs.

TFX module files often turn a string label into an index inside ``preprocessing_fn``
(``tft.compute_and_apply_vocabulary`` or a lookup table) and export only ``serving_default``.
TFMA can then evaluate only on the transformed label, through a ``transform_features``
signature (``preprocessing_function_names``). After ``run_fn`` the Trainer finds the transformed
feature(s) that depend on the label (the graph applied without the label drops exactly those),
maps every label value of the schema's domain through the graph (class id -> name), and, when
the SavedModel has no ``transform_features`` signature, adds one that applies the same graph
to serialized tf.Examples. ``kubetfx_model.json`` then records the transformed label and the
classes, from which the Evaluator derives its EvalConfig.
"""

from __future__ import annotations

import os
import shutil

TRANSFORM_SIGNATURE = "transform_features"


def _placeholder(spec, value):
    import tensorflow as tf

    if isinstance(spec, tf.io.FixedLenFeature):
        shape = [1] + list(spec.shape)
        if spec.dtype == tf.string:
            return tf.fill(shape, value if isinstance(value, str) else "")
        return tf.cast(tf.fill(shape, value if isinstance(value, (int, float)) else 0), spec.dtype)
    values = tf.constant([value if isinstance(value, str) else ""] if spec.dtype == tf.string else [0],
                         dtype=spec.dtype)
    return tf.sparse.SparseTensor(indices=[[0, 0]], values=values, dense_shape=[1, 1])


def _transform(tfo, raw_spec: dict, overrides: dict, drop: str | None = None) -> dict:
    features = {name: _placeholder(spec, overrides.get(name)) for name, spec in raw_spec.items() if name != drop}
    return dict(tfo.transform_raw_features(features, drop_unused_features=True))


def derive(transform_graph_dir: str, label: str, domain: list[str]) -> dict | None:
    """{"transformed_label", "class_names"} when the graph maps the string label to one integer feature, else None."""
    import tensorflow as tf
    import tensorflow_transform as tft

    tfo = tft.TFTransformOutput(transform_graph_dir)
    raw_spec = tfo.raw_feature_spec()
    if label not in raw_spec or raw_spec[label].dtype != tf.string:
        return None
    everything = set(tfo.transformed_feature_spec())
    without_label = set(_transform(tfo, raw_spec, {}, drop=label))
    derived = sorted(everything - without_label)
    integers = [name for name in derived if tfo.transformed_feature_spec()[name].dtype in (tf.int64, tf.int32)]
    if len(integers) != 1:
        return None
    key = integers[0]
    ids = {}
    for value in domain:
        transformed = _transform(tfo, raw_spec, {label: value})[key]
        if isinstance(transformed, tf.SparseTensor):
            transformed = tf.sparse.to_dense(transformed, default_value=-1)
        ids[value] = int(tf.reshape(transformed, [-1])[0].numpy())
    known = {i: v for v, i in ids.items() if i >= 0}
    if not known or sorted(known) != list(range(len(known))):
        return {"transformed_label": key, "class_names": []}  # ids not 0..k-1: names unknown, ids still evaluable
    return {"transformed_label": key, "class_names": [known[i] for i in range(len(known))]}


def label_domain(schema, label: str) -> list[str]:
    """The label's string domain in the (raw) schema, [] when it has none."""
    named = {d.name: list(d.value) for d in schema.string_domain}
    for feature in schema.feature:
        if feature.name == label:
            if feature.HasField("string_domain"):
                return list(feature.string_domain.value)
            return named.get(feature.domain, [])
    return []


def ensure_transform_signature(saved_model_dir: str, transform_graph_dir: str) -> bool:
    """Add ``transform_features`` (serialized tf.Examples -> transformed features) if missing; True if added.

    The SavedModel is loaded, given the signature (its other signatures kept as they are) and saved
    again over itself, so the export stays one directory with the transform graph's assets inside.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    loaded = tf.saved_model.load(saved_model_dir)
    if TRANSFORM_SIGNATURE in loaded.signatures:
        return False
    tfo = tft.TFTransformOutput(transform_graph_dir)
    loaded.kubetfx_transform_layer = tfo.transform_features_layer()
    raw_spec = tfo.raw_feature_spec()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return dict(loaded.kubetfx_transform_layer(tf.io.parse_example(examples, raw_spec)))

    signatures = dict(loaded.signatures)
    signatures[TRANSFORM_SIGNATURE] = transform_features.get_concrete_function()
    staging = saved_model_dir.rstrip(os.sep) + ".with-transform"
    tf.saved_model.save(loaded, staging, signatures=signatures)
    shutil.rmtree(saved_model_dir)
    os.rename(staging, saved_model_dir)
    return True
