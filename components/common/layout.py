"""Artifact layout constants, matching TFX so that TFX tools read our artifacts."""

import os
import re

SPLIT_DIR_PREFIX = "Split-"
EXAMPLES_FILE_PREFIX = "data_tfrecord"
EXAMPLES_FILE_SUFFIX = ".gz"
STATISTICS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "SchemaDiff.pb"

# Artifact metadata keys (KFP artifact ``metadata``; TFX calls them properties).
TFX_TYPE = "tfx_type"
SPLIT_NAMES = "split_names"
SPAN = "span"

_SPLIT_DIR_RE = re.compile(r"^Split-(.+)$")


def split_dir(artifact_dir: str, split: str) -> str:
    return os.path.join(artifact_dir, f"{SPLIT_DIR_PREFIX}{split}")


def examples_file_name(shard: int, num_shards: int) -> str:
    return f"{EXAMPLES_FILE_PREFIX}-{shard:05d}-of-{num_shards:05d}{EXAMPLES_FILE_SUFFIX}"


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
