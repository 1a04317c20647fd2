"""Exact TFMD feature statistics of Arrow list columns: what TFDV's ``GenerateStatistics`` computes, without TFDV.

Per feature, from a list column (as decoded from tf.Examples; a null list = feature missing in
that example): common statistics (presence, values per example), numeric statistics (mean, std
dev, zeros, min/median/max, equal-width and quantile histograms) or string statistics (unique
count, top values, average length, rank histogram). Everything is exact (pyarrow.compute +
NumPy), and features can be computed in parallel threads (both release the GIL). StatisticsGen
writes these per split; the model monitor computes them of logged requests.

Infinite values are kept, as TFDV keeps them: min/max are -inf/+inf, the
STANDARD histogram counts them in extreme buckets [-inf, -inf] / [inf, inf]
(equal-width buckets over the finite values in between), quantile boundaries
among them are infinite, and the mean is ±inf (NaN with both signs). The
standard deviation is then NaN (TFDV writes 0 there, from max(0, NaN)).
NaN values are not values: they are counted in each histogram's ``num_nan``.

Also the look-ups other checks need (a feature's common statistics, a histogram by type).
Nothing here imports TensorFlow or Beam.
"""

from concurrent.futures import Executor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import statistics_pb2

from kubetfx.components.common import tfmd
from kubetfx.components.common.errors import InputDataError

NUM_TOP_VALUES = 20
NUM_RANK_HISTOGRAM_BUCKETS = 1000
NUM_HISTOGRAM_BUCKETS = 10

_FeatureStats = statistics_pb2.FeatureNameStatistics
_STANDARD = statistics_pb2.Histogram.STANDARD
_QUANTILES = statistics_pb2.Histogram.QUANTILES


# --------------------------------------------------------------------------- histograms


def quantiles(values: np.ndarray, num_buckets: int = NUM_HISTOGRAM_BUCKETS) -> np.ndarray:
    """The ``num_buckets + 1`` boundaries 0, 1/n, ..., 1 of ``values`` (NumPy's linear method).

    ``values`` must be non-empty and free of NaN. Boundaries 0 and 1 are the
    exact min and max, ±inf included: a boundary that falls among infinite
    values is infinite (NumPy would interpolate inf - inf = NaN there).
    """
    low, high = values.min(), values.max()
    if low == high:  # common for value counts (every example has one value): skip the partition
        return np.full(num_buckets + 1, float(low))
    fractions = np.linspace(0.0, 1.0, num_buckets + 1)
    if np.isfinite(low) and np.isfinite(high):
        return np.quantile(values, fractions)
    ordered = np.sort(values.astype(np.float64, copy=False))
    positions = fractions * (ordered.size - 1)
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, ordered.size - 1)
    weight = positions - below
    lower, upper = ordered[below], ordered[above]
    with np.errstate(invalid="ignore"):
        interpolated = lower + (upper - lower) * weight
    # Between an infinite and any other value the linear interpolation is that infinity (or the
    # lower value itself when the position lands on it exactly).
    exact = (weight == 0) | (lower == upper)
    return np.where(exact, lower, np.where(np.isfinite(lower) & np.isfinite(upper), interpolated,
                                           np.where(np.isneginf(lower), lower, upper)))


def quantiles_histogram(boundaries: np.ndarray, count: int, num_nan: int = 0) -> statistics_pb2.Histogram:
    """An equal-count (QUANTILES) histogram: bucket i spans boundaries[i]..boundaries[i+1]."""
    histogram = statistics_pb2.Histogram(type=_QUANTILES, num_nan=num_nan)
    if count:
        per_bucket = count / (len(boundaries) - 1)
        for low, high in zip(boundaries[:-1], boundaries[1:]):
            histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=per_bucket)
    return histogram


def standard_histogram(values: np.ndarray, low: float, high: float, num_nan: int = 0,
                       num_buckets: int = NUM_HISTOGRAM_BUCKETS) -> statistics_pb2.Histogram:
    """An equal-width (STANDARD) histogram of ``values`` (no NaN) with min ``low`` and max ``high``.

    As TFDV builds it: equal-width buckets over the finite values, and infinite
    values counted in their own extreme buckets [-inf, -inf] (first) and
    [inf, inf] (last). A constant feature gets one bucket.
    """
    histogram = statistics_pb2.Histogram(type=_STANDARD, num_nan=num_nan)
    if values.size == 0:
        return histogram
    values = values.astype(np.float64, copy=False)  # bucket edges in float64, whatever the data type
    num_neg_inf = num_pos_inf = 0
    if not (np.isfinite(low) and np.isfinite(high)):
        num_neg_inf = int(np.count_nonzero(values == -np.inf))
        num_pos_inf = int(np.count_nonzero(values == np.inf))
        values = values[np.isfinite(values)]
        low, high = (float(values.min()), float(values.max())) if values.size else (None, None)
    if num_neg_inf:
        histogram.buckets.add(low_value=-np.inf, high_value=-np.inf, sample_count=float(num_neg_inf))
    if low is not None and low == high:
        histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=float(values.size))
    elif low is not None:
        counts, edges = np.histogram(values, bins=num_buckets, range=(float(low), float(high)))
        for i, count in enumerate(counts):
            histogram.buckets.add(low_value=float(edges[i]), high_value=float(edges[i + 1]),
                                  sample_count=float(count))
    if num_pos_inf:
        histogram.buckets.add(low_value=np.inf, high_value=np.inf, sample_count=float(num_pos_inf))
    return histogram


def infinity_counts(histogram: statistics_pb2.Histogram) -> tuple[int, int]:
    """(-inf count, +inf count) of a STANDARD histogram built by :func:`standard_histogram`."""
    negative = sum(b.sample_count for b in histogram.buckets if b.high_value == -np.inf)
    positive = sum(b.sample_count for b in histogram.buckets if b.low_value == np.inf)
    return int(negative), int(positive)


# --------------------------------------------------------------------------- look-ups


def histogram_by_type(numeric_stats: statistics_pb2.NumericStatistics, kind) -> statistics_pb2.Histogram | None:
    for histogram in numeric_stats.histograms:
        if histogram.type == kind:
            return histogram
    return None


def common_stats(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    """The CommonStatistics of a feature, wherever its type puts them."""
    kind = feature.WhichOneof("stats")
    if kind is None:
        return statistics_pb2.CommonStatistics()
    return getattr(feature, kind).common_stats


def features_by_name(
        dataset: statistics_pb2.DatasetFeatureStatistics) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    """Feature name -> its FeatureNameStatistics, in the order of the dataset."""
    return {tfmd.feature_name(feature): feature for feature in dataset.features}


# --------------------------------------------------------------------------- per-feature statistics


def _fill_common_stats(stats: statistics_pb2.CommonStatistics, column: pa.Array) -> None:
    num_missing = column.null_count
    lengths = pc.list_value_length(column)
    if num_missing:
        lengths = lengths.drop_null()
    lengths = lengths.to_numpy(zero_copy_only=False)
    stats.num_non_missing = len(lengths)
    stats.num_missing = num_missing
    if len(lengths):
        total = int(lengths.sum())
        stats.min_num_values = int(lengths.min())
        stats.max_num_values = int(lengths.max())
        stats.tot_num_values = total
        stats.avg_num_values = total / len(lengths)
        stats.num_values_histogram.CopyFrom(
            quantiles_histogram(quantiles(lengths), len(lengths)))


def _fill_numeric_stats(stats: statistics_pb2.NumericStatistics, values: pa.Array) -> None:
    array = values.to_numpy(zero_copy_only=False)
    num_nan = 0
    if array.dtype.kind == "f":
        nan = np.isnan(array)
        num_nan = int(np.count_nonzero(nan))
        if num_nan:
            array = array[~nan]
    elif array.dtype.kind == "b":
        array = array.astype(np.int64)
    if array.size:
        boundaries = quantiles(array)  # 0, 0.1, ..., 1: min, deciles, max
        with np.errstate(invalid="ignore"):  # inf - inf in the mean/variance of infinite values: NaN
            stats.mean = float(array.mean(dtype=np.float64))
            stats.std_dev = float(array.std(dtype=np.float64))
        stats.num_zeros = int(np.count_nonzero(array == 0))
        stats.min = float(boundaries[0])
        stats.median = float(boundaries[len(boundaries) // 2])
        stats.max = float(boundaries[-1])
        stats.histograms.append(standard_histogram(array, stats.min, stats.max, num_nan))
        stats.histograms.append(quantiles_histogram(boundaries, array.size, num_nan))
    elif num_nan:
        for kind in (statistics_pb2.Histogram.STANDARD, statistics_pb2.Histogram.QUANTILES):
            stats.histograms.add(type=kind, num_nan=num_nan)


def _label(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _fill_string_stats(stats: statistics_pb2.StringStatistics, values: pa.Array) -> bool:
    """Fill ``stats``; returns whether every value is valid UTF-8."""
    counts = pc.value_counts(values)
    uniques, frequencies = counts.field("values"), counts.field("counts")
    stats.unique = len(counts)
    if len(values):
        stats.avg_length = pc.sum(pc.binary_length(values)).as_py() / len(values)
    try:
        uniques.cast(pa.large_string())
        is_utf8 = True
    except pa.ArrowInvalid:
        is_utf8 = False
        invalid = 0
        for value, frequency in zip(uniques.to_pylist(), frequencies.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                invalid += frequency
        stats.invalid_utf8_count = invalid
    # Rank by frequency, ties broken by value, so that the output is deterministic.
    ranked = pa.table({"frequency": frequencies, "value": uniques})
    order = [("frequency", "descending"), ("value", "ascending")]
    if ranked.num_rows > NUM_RANK_HISTOGRAM_BUCKETS:
        ranked = ranked.take(pc.select_k_unstable(ranked, NUM_RANK_HISTOGRAM_BUCKETS, sort_keys=order))
    ranked = ranked.take(pc.sort_indices(ranked, sort_keys=order))
    labels = [_label(value) for value in ranked.column("value").to_pylist()]
    ranked_frequencies = ranked.column("frequency").to_pylist()
    for label, frequency in zip(labels[:NUM_TOP_VALUES], ranked_frequencies):
        stats.top_values.add(value=label, frequency=frequency)
    for rank, (label, frequency) in enumerate(zip(labels, ranked_frequencies)):
        stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=frequency)
    return is_utf8


def feature_statistics(name: str, column: pa.Array | pa.ChunkedArray) -> statistics_pb2.FeatureNameStatistics:
    """Statistics of one feature given as a list column (a null list = missing in that example)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise InputDataError(f"feature '{name}': expected a list column (as decoded from tf.Examples), "
                             f"got {column.type}")
    value_type = column.type.value_type
    feature = _FeatureStats()
    feature.path.step.append(name)
    values = pc.list_flatten(column)
    if pa.types.is_integer(value_type) or pa.types.is_boolean(value_type) or pa.types.is_floating(value_type):
        feature.type = _FeatureStats.FLOAT if pa.types.is_floating(value_type) else _FeatureStats.INT
        _fill_common_stats(feature.num_stats.common_stats, column)
        _fill_numeric_stats(feature.num_stats, values)
    elif (pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type) or pa.types.is_string(value_type)
          or pa.types.is_large_string(value_type) or pa.types.is_null(value_type)):
        # A null value type means the feature is present but never has a value: treat it as empty strings.
        if not pa.types.is_large_binary(value_type):
            values = values.cast(pa.large_binary())
        _fill_common_stats(feature.string_stats.common_stats, column)
        is_utf8 = _fill_string_stats(feature.string_stats, values)
        feature.type = _FeatureStats.STRING if is_utf8 else _FeatureStats.BYTES
    else:
        raise InputDataError(f"feature '{name}': values of type {value_type} are not supported "
                             "(tf.Example features are int64, float or bytes)")
    return feature


def submit_features(batch: pa.RecordBatch | pa.Table, executor: Executor | None) -> list:
    """Every feature's statistics, by name: computed now, or submitted to ``executor`` (futures)."""
    names = sorted(batch.schema.names)
    columns = [batch.column(batch.schema.get_field_index(n)) for n in names]
    if executor is None:
        return [feature_statistics(n, c) for n, c in zip(names, columns)]
    return [executor.submit(feature_statistics, n, c) for n, c in zip(names, columns)]


def assemble(name: str, num_examples: int, features: list) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One dataset ``name`` of :func:`submit_features`' results (waiting for futures)."""
    stats_list = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats_list.datasets.add(name=name, num_examples=num_examples)
    dataset.features.extend(f if isinstance(f, _FeatureStats) else f.result() for f in features)
    return stats_list


def generate_statistics(batch: pa.RecordBatch | pa.Table, name: str,
                        executor: Executor | None = None) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A DatasetFeatureStatisticsList with one dataset ``name`` for the list columns of ``batch``.

    Features are listed by name and computed in ``executor`` (a thread pool) if given.
    """
    return assemble(name, batch.num_rows, submit_features(batch, executor))
