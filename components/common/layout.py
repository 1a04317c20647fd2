"""Artifact layout constants, matching TFX so that TFX tools read our artifacts.

The one place that spells out a file or directory name inside an artifact: every
component that writes or reads one imports its name from here.
"""

import os
import re

SPLIT_DIR_PREFIX = "Split-"
EXAMPLES_FILE_PREFIX = "data_tfrecord"
EXAMPLES_FILE_SUFFIX = ".gz"
STATISTICS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "SchemaDiff.pb"

# Examples artifact (ExampleGen): how the input was read (its format; for CSV, the fields that meant missing), for
# the components after it (the Trainer records those fields with the model, and scoring reads CSVs with them).
EXAMPLES_READING_FILE = "kubetfx_examples_reading.json"

# Model artifact (Trainer): TFX's serving subdirectory with the SavedModel, and kubetfx's
# model facts beside it (also beside the SavedModel of each pushed repository version).
SERVING_MODEL_DIR = "Format-Serving"
MODEL_INFO_FILE = "kubetfx_model.json"
SAVED_MODEL_FILE = "saved_model.pb"  # TensorFlow's: a directory holding it is a SavedModel

# TransformGraph artifact (Transform): TFT's transform_fn/ (with transformed_metadata/ beside it)
# plus kubetfx's summary; a transformed-examples artifact of a run with materialize=False holds
# only the marker naming the raw examples (TFX then has no such output).
TRANSFORM_FN_DIR = "transform_fn"
TRANSFORM_SUMMARY_FILE = "kubetfx_transform.json"
NOT_MATERIALIZED_FILE = "kubetfx_not_materialized.json"

# HyperParameters artifact (Tuner): TFX's best_hyperparameters.txt (the KerasTuner HyperParameters config
# as JSON), kubetfx's record of the search beside it; TunerResults: every trial (TFX 1.14's tuner_results.json).
BEST_HYPERPARAMETERS_FILE = "best_hyperparameters.txt"
TUNING_FILE = "kubetfx_tuning.json"
TUNER_RESULTS_FILE = "tuner_results.json"

# InferenceResult artifact (BulkInferrer): TFX's gzipped TFRecord shards of PredictionLog protos, plus
# kubetfx's tabular copy of the inputs and predictions and the rows it could not score.
PREDICTION_LOGS_PREFIX = "prediction_logs"
PREDICTIONS_TABLE_STEM = "predictions"
REJECTS_FILE = "rejects.csv"
INFERENCE_SUMMARY_FILE = "kubetfx_inference.json"

# Artifact metadata keys (KFP artifact ``metadata``; TFX calls them properties).
TFX_TYPE = "tfx_type"
SPLIT_NAMES = "split_names"
SPAN = "span"

_SPLIT_DIR_RE = re.compile(r"^Split-(.+)$")


def split_dir(artifact_dir: str, split: str) -> str:
    return os.path.join(artifact_dir, f"{SPLIT_DIR_PREFIX}{split}")


def examples_file_name(shard: int, num_shards: int) -> str:
    return f"{EXAMPLES_FILE_PREFIX}-{shard:05d}-of-{num_shards:05d}{EXAMPLES_FILE_SUFFIX}"


def prediction_logs_file_name(shard: int, num_shards: int) -> str:
    return f"{PREDICTION_LOGS_PREFIX}-{shard:05d}-of-{num_shards:05d}.gz"


def list_splits(artifact_dir: str) -> list[str]:
    """Split names present in a TFX-layout artifact directory, sorted."""
    if not os.path.isdir(artifact_dir):
        return []
    names = []
    for entry in os.listdir(artifact_dir):
        match = _SPLIT_DIR_RE.match(entry)
        if match and os.path.isdir(os.path.join(artifact_dir, entry)):
            names.append(match.group(1))
    return sorted(names)
