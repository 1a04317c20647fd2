"""Drift and skew: distances between two statistics of the same features, and the findings above a threshold.

For every active schema feature present on both sides: the L-infinity distance for
categorical features (value counts), the Jensen-Shannon divergence for numeric ones
(histograms rebinned onto common boundaries, ``drift.py``), and for categorical ones
also the Jensen-Shannon divergence when the feature's comparator sets a threshold for
it. Thresholds come from the schema's ``drift_comparator`` / ``skew_comparator``,
else from the caller's defaults. Used by the ExampleValidator (drift between spans,
training/serving skew) and the model monitor (training vs logged requests).
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from kubetfx.components.common import tfmd
from kubetfx.components.data_validation import drift, statistics
from kubetfx.components.data_validation.validation import Finding, Measurement, SchemaIndex, quote, string_value_counts

_T = anomalies_pb2.AnomalyInfo.Type
_Measure = anomalies_pb2.DriftSkewInfo.Measurement
_Stats = statistics_pb2.FeatureNameStatistics
_Histogram = statistics_pb2.Histogram


def _comparable_histograms(a: _Stats, b: _Stats) -> tuple[_Histogram, _Histogram] | None:
    """Histograms of the same type from both sides (STANDARD preferred, else QUANTILES)."""
    for kind in (_Histogram.STANDARD, _Histogram.QUANTILES):
        ha, hb = statistics.histogram_by_type(a.num_stats, kind), statistics.histogram_by_type(b.num_stats, kind)
        if ha is not None and hb is not None:
            return ha, hb
    return None


def _buckets(histogram: _Histogram) -> list[tuple[float, float, float]]:
    return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]


def _threshold(comparator: schema_pb2.FeatureComparator, field: str, default: float | None) -> float | None:
    if comparator.HasField(field):
        return float(getattr(comparator, field).threshold)
    return default


def compare_split(index: SchemaIndex, current: statistics_pb2.DatasetFeatureStatistics,
                  control: statistics_pb2.DatasetFeatureStatistics, kind: str,
                  linf_threshold: float | None, jsd_threshold: float | None,
                  environments: tuple[str | None, ...]) -> list[Measurement]:
    """Distances between ``current`` and ``control`` for every schema feature present in both."""
    current_by_name = {tfmd.feature_name(f): f for f in current.features}
    control_by_name = {tfmd.feature_name(f): f for f in control.features}
    measurements = []
    for name, steps, feature in index.active(*environments):
        a, b = current_by_name.get(name), control_by_name.get(name)
        if a is None or b is None:
            continue
        comparator = feature.drift_comparator if kind == "drift" else feature.skew_comparator
        counts_a, _ = string_value_counts(a)
        counts_b, _ = string_value_counts(b)
        if counts_a and counts_b:
            result = drift.linf_distance(counts_a, counts_b)
            if result is not None:
                measurements.append(Measurement(name, steps, _Measure.L_INFTY, result[0],
                                                _threshold(comparator, "infinity_norm", linf_threshold),
                                                str(result[1])))
            if comparator.HasField("jensen_shannon_divergence"):
                value = drift.jensen_shannon_divergence(counts_a, counts_b)
                if value is not None:
                    measurements.append(Measurement(name, steps, _Measure.JENSEN_SHANNON_DIVERGENCE, value,
                                                    _threshold(comparator, "jensen_shannon_divergence", None)))
        elif a.HasField("num_stats") and b.HasField("num_stats"):
            pair = _comparable_histograms(a, b)
            if pair is None:
                continue
            value = drift.histogram_jensen_shannon_divergence(
                _buckets(pair[0]), _buckets(pair[1]), pair[0].num_nan, pair[1].num_nan)
            if value is not None:
                measurements.append(Measurement(name, steps, _Measure.JENSEN_SHANNON_DIVERGENCE, value,
                                                _threshold(comparator, "jensen_shannon_divergence", jsd_threshold)))
    return measurements


def comparison_finding(m: Measurement, kind: str) -> Finding:
    """The anomaly of a measurement above its threshold (``kind``: "drift" or "skew"), worded as TFDV words it."""
    current, control = ("current", "previous") if kind == "drift" else ("training", "serving")
    if m.measure == _Measure.L_INFTY:
        return Finding(
            m.feature, m.steps, _T.COMPARATOR_L_INFTY_HIGH, f"High Linfty distance between {current} and {control}",
            f"The Linfty distance of feature '{m.feature}' between {current} and {control} is {m.value:.6g}, "
            f"above the threshold {m.threshold:.6g}. The feature value with maximum difference is: "
            f"{quote(m.max_diff_value or '')}.")
    return Finding(
        m.feature, m.steps, _T.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
        f"High approximate Jensen-Shannon divergence between {current} and {control}",
        f"The approximate Jensen-Shannon divergence of feature '{m.feature}' between {current} and {control} is "
        f"{m.value:.6g}, above the threshold {m.threshold:.6g}.")
