"""Write an evaluation in TFMA's output layout, so ``tfma.load_metrics`` / ``load_plots`` /
``load_validation_result`` / ``load_eval_result`` (and our results.py) read it unchanged.

What ``tfma.run_model_analysis`` (0.52, default writers) leaves in the output directory:
uncompressed TFRecord files of serialized protos, one record per slice —
``metrics-00000-of-00001.tfrecord`` (MetricsForSlice), ``plots-00000-of-00001.tfrecord``
(PlotsForSlice; just the slice key when no plot was asked for),
``attributions-00000-of-00001.tfrecord`` (AttributionsForSlice, slice key only) —
``validations.tfrecord`` (one ValidationResult) and ``eval_config.json`` (an EvalRun
in protobuf JSON: the EvalConfig, TFMA's version, the data and model locations).
"""

from __future__ import annotations

import importlib.metadata
import os

from google.protobuf import json_format

from kubetfx.components.common import tfrecord
from kubetfx.components.evaluator import tfma_protos

METRICS_FILE = "metrics-00000-of-00001.tfrecord"
PLOTS_FILE = "plots-00000-of-00001.tfrecord"
ATTRIBUTIONS_FILE = "attributions-00000-of-00001.tfrecord"
VALIDATIONS_FILE = "validations.tfrecord"
EVAL_CONFIG_FILE = "eval_config.json"
FILE_FORMAT = "tfrecords"


def serialize_slice_key(slice_key: tuple):
    """TFMA's SliceKey proto of ((column, value), ...): text as bytes_value, ints as int64_value."""
    proto = tfma_protos.metrics_for_slice_pb2().SliceKey()
    for column, value in slice_key:
        item = proto.single_slice_keys.add(column=column)
        if isinstance(value, str):
            item.bytes_value = value.encode("utf-8")
        elif isinstance(value, int):
            item.int64_value = value
        else:
            item.float_value = float(value)
    return proto


def eval_run_json(eval_config, data_location: str, model_locations: dict[str, str]) -> str:
    """``eval_config.json`` as TFMA's eval_config_writer writes it."""
    run = tfma_protos.config_pb2().EvalRun(eval_config=eval_config,
                                           version=importlib.metadata.version("tensorflow-model-analysis"),
                                           data_location=data_location, file_format=FILE_FORMAT,
                                           model_locations=model_locations)
    return json_format.MessageToJson(run)


def write(output_dir: str, eval_config, metrics: list, plots: list, validation, data_location: str,
          model_locations: dict[str, str]) -> None:
    """Write MetricsForSlice / PlotsForSlice protos (one per slice) and the ValidationResult."""
    attributions_pb2 = tfma_protos.metrics_for_slice_pb2()
    attributions = [attributions_pb2.AttributionsForSlice(slice_key=record.slice_key) for record in metrics]
    for name, records in ((METRICS_FILE, metrics), (PLOTS_FILE, plots), (ATTRIBUTIONS_FILE, attributions),
                          (VALIDATIONS_FILE, [validation])):
        tfrecord.write_file(os.path.join(output_dir, name), [r.SerializeToString() for r in records],
                            compressed=False)
    with open(os.path.join(output_dir, EVAL_CONFIG_FILE), "w", encoding="utf-8") as handle:
        handle.write(eval_run_json(eval_config, data_location, model_locations))
