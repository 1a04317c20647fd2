"""``FnArgs`` and ``DataAccessor``: what a TFX ``run_fn(fn_args)`` receives.

Same field names and meaning as TFX's ``tfx.components.trainer.fn_args_utils``:
``train_files``/``eval_files`` are file patterns (``.../Split-train/*``) of the
transformed examples; ``data_accessor.tf_dataset_factory(file_pattern, options,
schema)`` returns a ``tf.data.Dataset`` of (features, label) batches read with
tfx-bsl's TFXIO from gzipped tf.Example TFRecords. Importing this module does
not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

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


def make_data_accessor() -> DataAccessor:
    return DataAccessor(tf_dataset_factory=tf_dataset_factory, record_batch_factory=record_batch_factory,
                        data_view_decode_fn=None)
