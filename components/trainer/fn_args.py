"""``FnArgs`` and ``DataAccessor``: what a TFX ``run_fn(fn_args)`` receives.

Same field names and meaning as TFX's ``tfx.components.trainer.fn_args_utils``:
``train_files``/``eval_files`` are file patterns (``.../Split-train/*``) of the
Trainer's examples; ``data_accessor.tf_dataset_factory(file_pattern, options,
schema)`` returns a ``tf.data.Dataset`` of (features, label) batches read with
tfx-bsl's TFXIO from gzipped tf.Example TFRecords. Importing this module does
not import TensorFlow.

When Transform did not materialize (``materialize=False``), the files are the RAW
examples, as in TFX. TFX then leaves applying the transform graph to the module;
here, a dataset asked for with the transformed schema (what TFX module files pass:
``tf_transform_output.transformed_metadata.schema``) is parsed raw and transformed
in tf.data with the graph's TFT layer, so it holds what materialized examples would.
A dataset asked for with the raw schema (or none) stays raw, for modules that apply
``tft_layer`` themselves.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

from kubetfx.components.common.errors import ConfigError

TELEMETRY_DESCRIPTORS = ["kubetfx", "Trainer"]


class DataAccessor(NamedTuple):
    """Factories that read the train/eval data, whatever its on-disk format (TFX's DataAccessor)."""

    tf_dataset_factory: Callable[..., Any]
    record_batch_factory: Callable[..., Any]
    data_view_decode_fn: Optional[Callable[..., Any]] = None


@dataclasses.dataclass
class FnArgs:
    """Args of a user ``run_fn`` (TFX's FnArgs fields, plus ``label_column`` and ``seed``)."""

    working_dir: Optional[str] = None
    train_files: Optional[list] = None
    eval_files: Optional[list] = None
    train_steps: Optional[int] = None
    eval_steps: Optional[int] = None
    schema_path: Optional[str] = None
    schema_file: Optional[str] = None
    transform_graph_path: Optional[str] = None
    transform_output: Optional[str] = None
    data_accessor: Optional[DataAccessor] = None
    serving_model_dir: Optional[str] = None
    eval_model_dir: Optional[str] = None
    model_run_dir: Optional[str] = None
    base_model: Optional[str] = None
    hyperparameters: Any = None
    custom_config: Optional[dict] = None
    label_column: Optional[str] = None
    seed: Optional[int] = None


def _tfxio(file_pattern, schema):
    from tfx_bsl.public import tfxio

    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    return tfxio.TFExampleRecord(file_pattern=patterns, schema=schema, telemetry_descriptors=TELEMETRY_DESCRIPTORS)


def tf_dataset_factory(file_pattern, options, schema=None):
    """tf.data.Dataset of the gzipped tf.Examples at ``file_pattern``, per ``TensorFlowDatasetOptions``."""
    return _tfxio(file_pattern, schema).TensorFlowDataset(options)


def record_batch_factory(file_pattern, options, schema=None):
    """Iterator of Arrow RecordBatches, per ``RecordBatchesOptions``."""
    return _tfxio(file_pattern, schema).RecordBatches(options)


def transformed_dataset(file_pattern, options, transform_output):
    """The raw tf.Examples at ``file_pattern`` parsed with the raw schema, then the transform graph applied per
    batch (the TFT layer the exported model serves with): (transformed features, transformed label) batches."""
    import tensorflow as tf

    label_key = options.label_key
    transformed_names = transform_output.transformed_feature_spec()
    if label_key is not None and label_key not in transformed_names:
        raise ConfigError(f"label_key '{label_key}' is not a transformed feature of the transform graph "
                          f"({', '.join(sorted(transformed_names))})")
    raw = _tfxio(file_pattern, transform_output.raw_metadata.schema).TensorFlowDataset(
        options._replace(label_key=None))
    tft_layer = transform_output.transform_features_layer()

    def transform(raw_features):
        transformed = dict(tft_layer(raw_features))
        if label_key is None:
            return transformed
        label = transformed.pop(label_key)
        return transformed, label

    return raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class _RawExamplesAccessor:
    """DataAccessor factories over raw examples + the transform graph (Transform's materialize=False)."""

    def __init__(self, transform_graph_dir: str):
        self._transform_graph_dir = transform_graph_dir
        self._output = None

    def transform_output(self):
        if self._output is None:
            import tensorflow_transform as tft

            self._output = tft.TFTransformOutput(self._transform_graph_dir)
        return self._output

    def wants_transformed(self, schema) -> bool:
        """Whether ``schema`` describes the transformed features rather than the raw ones."""
        if schema is None:
            return False
        output = self.transform_output()
        if schema == output.transformed_metadata.schema:
            return True
        names = {feature.name for feature in schema.feature}
        return names <= set(output.transformed_feature_spec()) and not names <= set(output.raw_feature_spec())

    def tf_dataset_factory(self, file_pattern, options, schema=None):
        if self.wants_transformed(schema):
            return transformed_dataset(file_pattern, options, self.transform_output())
        return tf_dataset_factory(file_pattern, options, schema)

    def record_batch_factory(self, file_pattern, options, schema=None):
        if self.wants_transformed(schema):
            raise ConfigError("data_accessor.record_batch_factory cannot give transformed record batches: Transform "
                              "ran with materialize=False, so the files are raw examples. Ask for the raw schema "
                              "(tf_transform_output.raw_metadata.schema), use tf_dataset_factory, or run Transform "
                              "with materialize=True")
        return record_batch_factory(file_pattern, options, schema)


def make_data_accessor(raw_examples_transform_graph: str | None = None) -> DataAccessor:
    """TFX's DataAccessor. ``raw_examples_transform_graph``: the files are raw examples (Transform's
    materialize=False) and this transform graph turns them into what the module asks for."""
    if not raw_examples_transform_graph:
        return DataAccessor(tf_dataset_factory=tf_dataset_factory, record_batch_factory=record_batch_factory,
                            data_view_decode_fn=None)
    accessor = _RawExamplesAccessor(raw_examples_transform_graph)
    return DataAccessor(tf_dataset_factory=accessor.tf_dataset_factory,
                        record_batch_factory=accessor.record_batch_factory, data_view_decode_fn=None)
