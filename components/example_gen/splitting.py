"""ExampleGen's deterministic splits: the split weights, and a 64-bit hash per row deciding its split.

Splits are assigned by a 64-bit hash of each row (or of a partition column), so
re-running on the same data gives byte-identical files, and adding rows never
moves existing rows between splits.
"""

import hashlib
import math
import re

import numpy as np
import pyarrow as pa

from kubetfx.components.common.errors import ConfigError

DEFAULT_SPLITS = {"train": 2.0, "eval": 1.0}
HASH_ALGORITHM = "blake2b-64 per value, splitmix64 row mix over sorted column names"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)


def parse_splits(splits) -> dict[str, float]:
    """Accept {"train": 2, "eval": 1} or "train:2,eval:1"; weights need not sum to 1."""
    if splits is None or splits == "" or splits == {}:
        return dict(DEFAULT_SPLITS)
    if isinstance(splits, str):
        parsed = {}
        for part in splits.split(","):
            name, sep, weight = part.partition(":")
            if not sep:
                raise ConfigError(f"splits: '{part}' is not name:weight (example: 'train:8,eval:1,test:1')")
            parsed[name.strip()] = weight
        splits = parsed
    result = {}
    for name, weight in splits.items():
        if not _SPLIT_NAME.match(str(name)):
            raise ConfigError(f"splits: split name '{name}' must use only letters, digits, '_' or '-'")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"splits: weight of '{name}' must be a number, got {weight!r}") from None
        if not weight > 0 or math.isinf(weight):
            raise ConfigError(f"splits: weight of '{name}' must be positive, got {weight}")
        result[str(name)] = weight
    if len(result) < 1:
        raise ConfigError("splits: give at least one split")
    return result


# ---------------------------------------------------------------------------
# Hash partitioning


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a fast, well-distributed, platform-independent uint64 mix."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash_bytes(values) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(v, digest_size=8).digest(), "little") for v in values],
                    dtype=np.uint64)


def _column_hash(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """uint64 hash per value; numbers hash by value (181 == 181.0), nulls to a constant."""
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False))
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        numbers = column.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        numbers = np.where(numbers == 0.0, 0.0, numbers)  # -0.0 and 0.0 hash alike
        hashes = _mix(numbers.view(np.uint64))
    else:
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            column = column.cast(pa.string())
        encoded = pc.dictionary_encode(column)
        dictionary = [v.encode() if isinstance(v, str) else v for v in encoded.dictionary.to_pylist()]
        unique_hashes = _hash_bytes(dictionary) if dictionary else np.zeros(0, np.uint64)
        indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        hashes = unique_hashes[indices] if len(unique_hashes) else np.zeros(len(column), np.uint64)
    return np.where(valid, hashes, _NULL_HASH)


def row_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """One uint64 per row from the given columns, independent of column order."""
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in sorted(columns):
            combined = _mix(combined * np.uint64(0x100000001B3) ^ _column_hash(table.column(name)))
    return combined


def record_hashes(records: list[bytes]) -> np.ndarray:
    """One uint64 per serialized record (TFRecord input without a partition column)."""
    return _mix(_hash_bytes(records))


def assign_splits(hashes: np.ndarray, weights: list[float]) -> np.ndarray:
    """Split index per row: the hash as a fraction in [0, 1) against cumulative weights."""
    fractions = (hashes >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    bounds = np.cumsum(weights) / sum(weights)
    return np.minimum(np.searchsorted(bounds, fractions, side="right"), len(weights) - 1)
