"""Helpers for TFMD feature statistics: histograms and look-ups.

Exact, NumPy-based counterparts of what TFDV computes approximately. Nothing
here imports TensorFlow or Beam.
"""

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from kubetfx.components.common import tfmd

NUM_HISTOGRAM_BUCKETS = 10

_STANDARD = statistics_pb2.Histogram.STANDARD
_QUANTILES = statistics_pb2.Histogram.QUANTILES


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
