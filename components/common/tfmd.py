"""Read and write TensorFlow Metadata protos in TFX's file layout."""

import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from kubetfx.components.common import fileio, layout
from kubetfx.components.common.errors import ConfigError, InputDataError


def _write_split_proto(artifact_dir: str, split: str, file_name: str, message) -> str:
    path = os.path.join(layout.split_dir(artifact_dir, split), file_name)
    fileio.atomic_write(path, message.SerializeToString(deterministic=True))
    return path


def write_statistics(artifact_dir: str, split: str, stats: statistics_pb2.DatasetFeatureStatisticsList) -> str:
    return _write_split_proto(artifact_dir, split, layout.STATISTICS_FILE, stats)


def read_statistics(artifact_dir: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    path = os.path.join(layout.split_dir(artifact_dir, split), layout.STATISTICS_FILE)
    if not os.path.isfile(path):
        raise InputDataError(f"no statistics for split '{split}' at {path} "
                             f"(splits present: {layout.list_splits(artifact_dir) or 'none'})")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as handle:
        stats.ParseFromString(handle.read())
    return stats


def read_all_statistics(artifact_dir: str) -> dict[str, statistics_pb2.DatasetFeatureStatistics]:
    """Split name -> the split's DatasetFeatureStatistics."""
    result = {}
    for split in layout.list_splits(artifact_dir):
        stats_list = read_statistics(artifact_dir, split)
        if len(stats_list.datasets) != 1:
            raise InputDataError(f"{layout.split_dir(artifact_dir, split)}: expected one dataset, "
                                 f"found {len(stats_list.datasets)}")
        result[split] = stats_list.datasets[0]
    if not result:
        raise InputDataError(f"statistics artifact {artifact_dir} has no Split-* directories")
    return result


def schema_path(artifact_dir: str) -> str:
    return os.path.join(artifact_dir, layout.SCHEMA_FILE)


def write_schema(path: str, schema: schema_pb2.Schema) -> None:
    fileio.atomic_write(path, text_format.MessageToString(schema))


def parse_schema_text(text: str, source: str) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as err:
        raise ConfigError(f"{source}: not a valid TFMD Schema text proto: {err}") from None
    return schema


def read_schema(path: str) -> schema_pb2.Schema:
    """Read a schema from a ``schema.pbtxt`` file or a SchemaGen artifact directory."""
    if os.path.isdir(path):
        path = schema_path(path)
    if not os.path.isfile(path):
        raise ConfigError(f"schema file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        return parse_schema_text(handle.read(), path)


def write_anomalies(artifact_dir: str, split: str, anomalies: anomalies_pb2.Anomalies) -> str:
    return _write_split_proto(artifact_dir, split, layout.ANOMALIES_FILE, anomalies)


def read_anomalies(artifact_dir: str, split: str) -> anomalies_pb2.Anomalies:
    path = os.path.join(layout.split_dir(artifact_dir, split), layout.ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies()
    with open(path, "rb") as handle:
        anomalies.ParseFromString(handle.read())
    return anomalies


def feature_name(feature) -> str:
    """Name of a FeatureNameStatistics (``path`` or legacy ``name``)."""
    if feature.HasField("path"):
        return ".".join(feature.path.step)
    return feature.name
