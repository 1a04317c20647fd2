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
    exact min and max.
    """
    low, high = values.min(), values.max()
    if low == high:  # common for value counts (every example has one value): skip the partition
        return np.full(num_buckets + 1, float(low))
    return np.quantile(values, np.linspace(0.0, 1.0, num_buckets + 1))


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
    """An equal-width (STANDARD) histogram of ``values`` (no NaN) over [low, high].

    Infinite values fall into the first/last bucket, whose outer boundary is
    then -inf/+inf; the width comes from the finite values. A constant feature
    gets one bucket.
    """
    histogram = statistics_pb2.Histogram(type=_STANDARD, num_nan=num_nan)
    if values.size == 0:
        return histogram
    values = values.astype(np.float64, copy=False)  # bucket edges in float64, whatever the data type
    edge_low, edge_high = float(low), float(high)
    if not (np.isfinite(edge_low) and np.isfinite(edge_high)):
        finite = values[np.isfinite(values)]
        if finite.size:
            edge_low, edge_high = float(finite.min()), float(finite.max())
            values = np.clip(values, edge_low, edge_high)
    if not (np.isfinite(edge_low) and np.isfinite(edge_high)) or edge_low == edge_high:
        histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=float(values.size))
        return histogram
    counts, edges = np.histogram(values, bins=num_buckets, range=(edge_low, edge_high))
    edges[0], edges[-1] = low, high
    for i, count in enumerate(counts):
        histogram.buckets.add(low_value=float(edges[i]), high_value=float(edges[i + 1]), sample_count=float(count))
    return histogram


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
