"""ExampleValidator executor: TFDV-style validation of statistics against a schema, without TFDV.

For every split of a StatisticsGen artifact it checks the split's
``DatasetFeatureStatistics`` against a TFMD ``Schema`` and writes a TFMD
``Anomalies`` proto to ``Split-<split>/SchemaDiff.pb`` (TFX layout), plus an
optional Markdown report. Checks, with the ``AnomalyInfo.Type`` TFDV uses:

* schema feature absent from the data: ``SCHEMA_MISSING_COLUMN`` (features not
  in the split's environment, deprecated ones, and ones whose ``presence``
  explicitly allows absence — min_count 0 and min_fraction 0 — are skipped);
* data feature absent from the schema: ``SCHEMA_NEW_COLUMN``;
* statistics type differs from the schema type: ``UNEXPECTED_DATA_TYPE``;
* presence: ``FEATURE_TYPE_LOW_FRACTION_PRESENT`` / ``FEATURE_TYPE_LOW_NUMBER_PRESENT``;
* values per example vs ``value_count`` or ``shape``:
  ``FEATURE_TYPE_LOW_NUMBER_VALUES`` / ``FEATURE_TYPE_HIGH_NUMBER_VALUES``, and
  ``INVALID_FEATURE_SHAPE`` when a feature with a fixed shape is sometimes missing;
* domains: ``ENUM_TYPE_UNEXPECTED_STRING_VALUES`` (string_domain, honouring
  ``distribution_constraints.min_domain_mass``), ``INT_TYPE_SMALL_INT`` /
  ``INT_TYPE_BIG_INT``, ``FLOAT_TYPE_SMALL_FLOAT`` / ``FLOAT_TYPE_BIG_FLOAT``,
  ``FLOAT_TYPE_HAS_NAN`` (disallow_nan), ``FLOAT_TYPE_HAS_INF`` (disallow_inf);
* a split without examples: ``NO_DATA_IN_SPAN`` (dataset-level, ``data_missing``);
* drift (each split vs the same split of ``comparison_statistics_dir``) or skew
  (split ``train`` vs the comparison's ``serving`` split): L-infinity distance
  for categorical features, Jensen–Shannon divergence for numeric ones
  (``COMPARATOR_L_INFTY_HIGH`` / ``COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH``
  above the threshold). Every measured distance is recorded in
  ``drift_skew_info``, with or without a threshold.

Environments: when the schema declares any (``default_environment`` or a
feature's ``in_environment``/``not_in_environment``), a split named ``serving``
is validated in ``SERVING`` and every other split in ``TRAINING``; otherwise all
schema features apply to every split.

Anomaly counts count reasons: a feature with two problems counts twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from kubetfx.components.common import drift, fileio, layout, report, tfmd
from kubetfx.components.common.errors import AnomaliesFoundError, ConfigError, InputDataError

ARTIFACT_TYPE = "ExampleAnomalies"
COMPARISON_MODES = ("drift", "skew")
TRAINING, SERVING = "TRAINING", "SERVING"
SKEW_TRAIN_SPLIT, SKEW_SERVING_SPLIT = "train", "serving"
# Key of dataset-level findings (no feature).
DATASET_KEY = "(dataset)"
# Examples of unexpected string values quoted in a description.
MAX_EXAMPLE_VALUES = 5

_T = anomalies_pb2.AnomalyInfo.Type
_Measure = anomalies_pb2.DriftSkewInfo.Measurement
_Stats = statistics_pb2.FeatureNameStatistics
_Histogram = statistics_pb2.Histogram
_INACTIVE_STAGES = frozenset({schema_pb2.PLANNED, schema_pb2.ALPHA, schema_pb2.DEPRECATED,
                              schema_pb2.DEBUG_ONLY, schema_pb2.DISABLED})
# Statistics types a schema type accepts.
_COMPATIBLE = {
    schema_pb2.INT: {_Stats.INT},
    schema_pb2.FLOAT: {_Stats.FLOAT},
    schema_pb2.BYTES: {_Stats.STRING, _Stats.BYTES},
    schema_pb2.STRUCT: {_Stats.STRUCT},
}
_MEASURE_NAMES = {_Measure.L_INFTY: "L-infinity", _Measure.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence"}


@dataclasses.dataclass
class Finding:
    """One anomaly reason on one feature (or on the dataset)."""
    feature: str
    steps: tuple[str, ...]
    type: int
    short: str
    description: str

    @property
    def type_name(self) -> str:
        return _T.Name(self.type)


@dataclasses.dataclass
class Measurement:
    """One drift/skew distance of one feature."""
    feature: str
    steps: tuple[str, ...]
    measure: int
    value: float
    threshold: float | None
    max_diff_value: str | None = None

    @property
    def anomalous(self) -> bool:
        return self.threshold is not None and self.value > self.threshold


@dataclasses.dataclass
class SplitResult:
    split: str
    findings: list[Finding]
    measurements: list[Measurement]
    comparison_kind: str | None = None      # "drift" / "skew" / None
    comparison_note: str | None = None      # what was compared, or why nothing was
    data_missing: bool = False


# --------------------------------------------------------------------------- helpers


def _num(value) -> str:
    """A number for a description: integers as integers, others with 6 significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _pct(fraction: float) -> str:
    pct = 100.0 * fraction
    return "<0.1%" if 0 < pct < 0.1 else f"{pct:.1f}%"


def _quote(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _stats_type_name(stats: _Stats) -> str:
    return _Stats.Type.Name(stats.type)


def _schema_type_name(feature: schema_pb2.Feature) -> str:
    return schema_pb2.FeatureType.Name(feature.type)


def _common_stats(stats: _Stats) -> statistics_pb2.CommonStatistics:
    for field in ("num_stats", "string_stats", "bytes_stats", "struct_stats"):
        if stats.HasField(field):
            return getattr(stats, field).common_stats
    return statistics_pb2.CommonStatistics()


def _stats_steps(stats: _Stats) -> tuple[str, ...]:
    return tuple(stats.path.step) if stats.HasField("path") else (stats.name,)


def string_value_counts(stats: _Stats) -> tuple[dict[str, float], bool]:
    """Value -> count of a string feature (rank histogram, else top values), and whether it is complete."""
    if not stats.HasField("string_stats"):
        return {}, False
    string = stats.string_stats
    counts: dict[str, float] = {}
    if string.rank_histogram.buckets:
        for bucket in string.rank_histogram.buckets:
            counts[bucket.label] = counts.get(bucket.label, 0.0) + bucket.sample_count
    else:
        for item in string.top_values:
            counts[item.value] = counts.get(item.value, 0.0) + item.frequency
    complete = len(counts) >= string.unique if string.unique else bool(counts)
    return counts, complete


def _num_nan(stats: _Stats) -> float:
    return max((h.num_nan for h in stats.num_stats.histograms), default=0)


def _histogram(stats: _Stats, kind: int) -> _Histogram | None:
    for histogram in stats.num_stats.histograms:
        if histogram.type == kind:
            return histogram
    return None


def _comparable_histograms(a: _Stats, b: _Stats) -> tuple[_Histogram, _Histogram] | None:
    """Histograms of the same type from both sides (STANDARD preferred, else QUANTILES)."""
    for kind in (_Histogram.STANDARD, _Histogram.QUANTILES):
        ha, hb = _histogram(a, kind), _histogram(b, kind)
        if ha is not None and hb is not None:
            return ha, hb
    return None


def _buckets(histogram: _Histogram) -> list[tuple[float, float, float]]:
    return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]


# --------------------------------------------------------------------------- schema index


def _is_inactive(feature: schema_pb2.Feature) -> bool:
    return feature.deprecated or feature.lifecycle_stage in _INACTIVE_STAGES


def in_environment(feature: schema_pb2.Feature, environment: str | None) -> bool:
    """TFDV's rule: in_environment lists the only environments; not_in_environment excludes."""
    if environment is None:
        return True
    if feature.in_environment:
        return environment in feature.in_environment
    return environment not in feature.not_in_environment


class SchemaIndex:
    """Schema features by dotted path, with their (resolved) domains; validates domain references."""

    def __init__(self, schema: schema_pb2.Schema, source: str):
        self.schema = schema
        self.features: dict[str, tuple[tuple[str, ...], schema_pb2.Feature]] = {}
        self.inactive_prefixes: set[str] = set()
        self._string_domains = {d.name: d for d in schema.string_domain}
        self._int_domains = {d.name: d for d in schema.int_domain}
        self._float_domains = {d.name: d for d in schema.float_domain}
        self.other_names = {f.name for f in schema.sparse_feature} | {f.name for f in schema.weighted_feature}
        self._add(schema.feature, (), source)
        self.uses_environments = bool(schema.default_environment) or any(
            f.in_environment or f.not_in_environment for _, f in self.features.values())

    def _add(self, features, prefix: tuple[str, ...], source: str) -> None:
        for feature in features:
            if not feature.name:
                raise ConfigError(f"{source}: a feature without a name (under '{'.'.join(prefix) or 'top level'}')")
            steps = prefix + (feature.name,)
            name = ".".join(steps)
            self.features[name] = (steps, feature)
            self.domain(feature, name, source)  # raises ConfigError for a dangling reference
            if _is_inactive(feature):
                self.inactive_prefixes.add(name)
            if feature.HasField("struct_domain"):
                self._add(feature.struct_domain.feature, steps, source)

    def domain(self, feature: schema_pb2.Feature, name: str, source: str = "schema"):
        """("string"|"int"|"float"|None, domain proto) of a feature; named domains resolved."""
        which = feature.WhichOneof("domain_info")
        if which in ("string_domain", "int_domain", "float_domain"):
            return which.split("_")[0], getattr(feature, which)
        if which == "domain":
            for kind, table in (("string", self._string_domains), ("int", self._int_domains),
                                ("float", self._float_domains)):
                if feature.domain in table:
                    return kind, table[feature.domain]
            known = sorted(self._string_domains) + sorted(self._int_domains) + sorted(self._float_domains)
            raise ConfigError(f"{source}: feature '{name}' refers to domain '{feature.domain}', which the schema "
                              f"does not define (domains defined: {', '.join(known) or 'none'})")
        return None, None

    def is_inactive(self, name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in self.inactive_prefixes for i in range(1, len(parts) + 1))

    def environment_for_split(self, split: str) -> str | None:
        if not self.uses_environments:
            return None
        return SERVING if split.lower() == SKEW_SERVING_SPLIT else TRAINING

    def active(self, environment: str | None, *more_environments: str):
        """(name, steps, feature) of active features in all the given environments, in schema order."""
        for name, (steps, feature) in self.features.items():
            if self.is_inactive(name):
                continue
            if all(in_environment(feature, env) for env in (environment, *more_environments)):
                yield name, steps, feature


# --------------------------------------------------------------------------- per-feature checks


def _check_type(name, steps, feature, stats) -> Finding | None:
    allowed = _COMPATIBLE.get(feature.type)
    if allowed is None or stats.type in allowed:
        return None
    expected, got = _schema_type_name(feature), _stats_type_name(stats)
    return Finding(name, steps, _T.UNEXPECTED_DATA_TYPE, "Unexpected data type",
                   f"Expected data of type {expected} (from the schema) but got {got} in feature '{name}'. "
                   f"If the column's type changed on purpose, update the schema; otherwise fix the data.")


def _check_presence(name, steps, feature, present: int, num_examples: int) -> list[Finding]:
    findings = []
    if not feature.HasField("presence"):
        return findings
    presence = feature.presence
    if presence.min_fraction > 0 and num_examples > 0:
        fraction = present / num_examples
        if fraction < presence.min_fraction:
            findings.append(Finding(
                name, steps, _T.FEATURE_TYPE_LOW_FRACTION_PRESENT, "Column dropped",
                f"Feature '{name}' is present in {_pct(fraction)} of examples ({present} of {num_examples}), "
                f"below the schema's presence.min_fraction {_num(float(presence.min_fraction))} "
                f"({num_examples - present} examples lack it)."))
    if present < presence.min_count:
        findings.append(Finding(
            name, steps, _T.FEATURE_TYPE_LOW_NUMBER_PRESENT, "Column dropped",
            f"Feature '{name}' is present in {present} examples, below the schema's presence.min_count "
            f"{presence.min_count}."))
    return findings


def _check_value_counts(name, steps, feature, common: statistics_pb2.CommonStatistics) -> list[Finding]:
    findings = []
    if common.num_non_missing <= 0:
        return findings
    low, high = int(common.min_num_values), int(common.max_num_values)
    if feature.HasField("shape"):
        expected = math.prod(int(d.size) for d in feature.shape.dim)
        source = f"shape [{', '.join(str(d.size) for d in feature.shape.dim)}] (exactly {expected} values)"
        if common.num_missing > 0:
            findings.append(Finding(
                name, steps, _T.INVALID_FEATURE_SHAPE, "Missing values for a fixed-shape feature",
                f"Feature '{name}' has a fixed shape in the schema, so it must be present in every example, "
                f"but {int(common.num_missing)} examples lack it."))
        min_allowed, max_allowed = expected, expected
    elif feature.HasField("value_count"):
        value_count = feature.value_count
        source = f"value_count [{value_count.min}, {value_count.max if value_count.HasField('max') else '∞'}]"
        min_allowed = value_count.min
        max_allowed = value_count.max if value_count.HasField("max") else None
    else:
        return findings
    if low < min_allowed:
        findings.append(Finding(
            name, steps, _T.FEATURE_TYPE_LOW_NUMBER_VALUES, "Missing values",
            f"Some examples have fewer values than expected for feature '{name}': minimum {low} values per "
            f"example, the schema's {source} requires at least {min_allowed}."))
    if max_allowed is not None and high > max_allowed:
        findings.append(Finding(
            name, steps, _T.FEATURE_TYPE_HIGH_NUMBER_VALUES, "Superfluous values",
            f"Some examples have more values than expected for feature '{name}': maximum {high} values per "
            f"example, the schema's {source} allows at most {max_allowed}."))
    return findings


def _check_string_domain(name, steps, feature, stats, domain: schema_pb2.StringDomain) -> list[Finding]:
    counts, complete = string_value_counts(stats)
    if not counts:
        return []
    allowed = set(domain.value)
    unexpected = sorted(((v, c) for v, c in counts.items() if v not in allowed and c > 0),
                        key=lambda item: (-item[1], item[0]))
    if not unexpected:
        return []
    total = max(float(_common_stats(stats).tot_num_values), sum(counts.values()))
    unexpected_mass = sum(c for _, c in unexpected)
    fraction = unexpected_mass / total if total else 1.0
    constraint = ""
    if feature.HasField("distribution_constraints"):
        min_mass = feature.distribution_constraints.min_domain_mass
        if 1.0 - fraction >= min_mass:
            return []
        constraint = (f"; distribution_constraints.min_domain_mass {_num(float(min_mass))} allows at most "
                      f"{_pct(1.0 - min_mass)}")
    examples = ", ".join(f"{_quote(v)} ({_num(c)})" for v, c in unexpected[:MAX_EXAMPLE_VALUES])
    more = f" and {len(unexpected) - MAX_EXAMPLE_VALUES} more" if len(unexpected) > MAX_EXAMPLE_VALUES else ""
    at_least = "" if complete else "at least "
    domain_name = f" '{domain.name}'" if domain.name else ""
    return [Finding(
        name, steps, _T.ENUM_TYPE_UNEXPECTED_STRING_VALUES, "Unexpected string values",
        f"Feature '{name}' has {at_least}{len(unexpected)} values not in the schema's string domain{domain_name}: "
        f"{examples}{more}; {at_least}{_pct(fraction)} of the feature's values are unexpected "
        f"({_num(unexpected_mass)} of {_num(total)}){constraint}.")]


_RANGE_ANOMALIES = {  # domain kind -> (below-min type, above-max type)
    "int_domain": (_T.INT_TYPE_SMALL_INT, _T.INT_TYPE_BIG_INT),
    "float_domain": (_T.FLOAT_TYPE_SMALL_FLOAT, _T.FLOAT_TYPE_BIG_FLOAT),
}


def _check_range(name, steps, stats, domain, kind: str) -> list[Finding]:
    """Values below ``domain.min`` or above ``domain.max`` (int_domain or float_domain)."""
    findings = []
    num = stats.num_stats
    small, big = _RANGE_ANOMALIES[kind]
    for bound, value, anomaly, side, direction in (("min", num.min, small, "small", "below"),
                                                   ("max", num.max, big, "large", "above")):
        limit = getattr(domain, bound)
        if domain.HasField(bound) and (value < limit if bound == "min" else value > limit):
            findings.append(Finding(
                name, steps, anomaly, "Out-of-range values",
                f"Feature '{name}' has values as {side} as {_num(value)}, {direction} the schema's {kind} "
                f"{bound} {_num(limit) if kind == 'float_domain' else limit}."))
    return findings


def _check_int_domain(name, steps, stats, domain: schema_pb2.IntDomain) -> list[Finding]:
    return _check_range(name, steps, stats, domain, "int_domain")


def _check_float_domain(name, steps, stats, domain: schema_pb2.FloatDomain) -> list[Finding]:
    findings = _check_range(name, steps, stats, domain, "float_domain")
    num = stats.num_stats
    num_nan = _num_nan(stats)
    if domain.disallow_nan and num_nan > 0:
        findings.append(Finding(
            name, steps, _T.FLOAT_TYPE_HAS_NAN, "Invalid values",
            f"Feature '{name}' has {_num(float(num_nan))} NaN values, but the schema's float_domain sets "
            f"disallow_nan."))
    if domain.disallow_inf and (math.isinf(num.min) or math.isinf(num.max)):
        findings.append(Finding(
            name, steps, _T.FLOAT_TYPE_HAS_INF, "Invalid values",
            f"Feature '{name}' has infinite values (min {_num(num.min)}, max {_num(num.max)}), but the schema's "
            f"float_domain sets disallow_inf."))
    return findings


def check_feature(index: SchemaIndex, name: str, steps, feature: schema_pb2.Feature, stats: _Stats,
                  num_examples: int) -> list[Finding]:
    """Every check of one schema feature against its statistics."""
    common = _common_stats(stats)
    present = int(common.num_non_missing)
    findings = []
    type_finding = _check_type(name, steps, feature, stats) if present > 0 else None
    if type_finding is not None:
        findings.append(type_finding)
    findings += _check_presence(name, steps, feature, present, num_examples)
    findings += _check_value_counts(name, steps, feature, common)
    if type_finding is None and present > 0:
        kind, domain = index.domain(feature, name)
        if kind == "string" and stats.HasField("string_stats"):
            findings += _check_string_domain(name, steps, feature, stats, domain)
        elif kind == "int" and stats.type == _Stats.INT and stats.HasField("num_stats"):
            findings += _check_int_domain(name, steps, stats, domain)
        elif kind == "float" and stats.type == _Stats.FLOAT and stats.HasField("num_stats"):
            findings += _check_float_domain(name, steps, stats, domain)
    return findings


def validate_split(index: SchemaIndex, split: str, dataset: statistics_pb2.DatasetFeatureStatistics) -> SplitResult:
    """Schema checks of one split (no drift/skew)."""
    stats_by_name = {tfmd.feature_name(f): f for f in dataset.features}
    num_examples = int(dataset.num_examples)
    if num_examples == 0 and not any(_common_stats(f).num_non_missing for f in dataset.features):
        return SplitResult(split, [Finding(
            DATASET_KEY, (), _T.NO_DATA_IN_SPAN, "No data",
            f"Split '{split}' has no examples (statistics num_examples = 0); nothing could be validated.")],
            [], data_missing=True)
    findings: list[Finding] = []
    environment = index.environment_for_split(split)
    for name, steps, feature in index.active(environment):
        stats = stats_by_name.get(name)
        if stats is None:
            presence = feature.presence
            optional = (feature.HasField("presence") and presence.min_count == 0 and presence.min_fraction == 0
                        and not feature.HasField("shape"))
            if not optional:
                env_note = f" (environment {environment})" if environment else ""
                findings.append(Finding(
                    name, steps, _T.SCHEMA_MISSING_COLUMN, "Column dropped",
                    f"Feature '{name}' (type {_schema_type_name(feature)}) is in the schema{env_note} but "
                    f"missing from the statistics of split '{split}'."))
            continue
        findings += check_feature(index, name, steps, feature, stats, num_examples)
    for name, stats in stats_by_name.items():
        if name in index.features or name in index.other_names or index.is_inactive(name):
            continue
        findings.append(Finding(
            name, _stats_steps(stats), _T.SCHEMA_NEW_COLUMN, "New column",
            f"Feature '{name}' (type {_stats_type_name(stats)}) is in the data of split '{split}' but not in the "
            f"schema (column in data but not in schema)."))
    return SplitResult(split, findings, [])


# --------------------------------------------------------------------------- drift / skew


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
    current, control = ("current", "previous") if kind == "drift" else ("training", "serving")
    if m.measure == _Measure.L_INFTY:
        return Finding(
            m.feature, m.steps, _T.COMPARATOR_L_INFTY_HIGH, f"High Linfty distance between {current} and {control}",
            f"The Linfty distance of feature '{m.feature}' between {current} and {control} is {m.value:.6g}, "
            f"above the threshold {m.threshold:.6g}. The feature value with maximum difference is: "
            f"{_quote(m.max_diff_value or '')}.")
    return Finding(
        m.feature, m.steps, _T.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
        f"High approximate Jensen-Shannon divergence between {current} and {control}",
        f"The approximate Jensen-Shannon divergence of feature '{m.feature}' between {current} and {control} is "
        f"{m.value:.6g}, above the threshold {m.threshold:.6g}.")


def _skew_serving_split(splits: list[str]) -> str:
    return SKEW_SERVING_SPLIT if SKEW_SERVING_SPLIT in splits else splits[0]


def _add_comparisons(index, results, current, comparison, mode, linf_threshold, jsd_threshold,
                     comparison_dir: str) -> None:
    if mode == "drift":
        for split, result in results.items():
            if result.data_missing:
                continue
            result.comparison_kind = "drift"
            if split not in comparison:
                result.comparison_note = (f"No split '{split}' in the comparison statistics {comparison_dir} "
                                          f"(splits: {', '.join(sorted(comparison))}); drift not checked.")
                continue
            result.comparison_note = f"Drift: split `{split}` vs split `{split}` of `{comparison_dir}`."
            result.measurements = compare_split(index, current[split], comparison[split], "drift",
                                                linf_threshold, jsd_threshold,
                                                (index.environment_for_split(split),))
    else:
        if SKEW_TRAIN_SPLIT not in current:
            raise InputDataError(f"comparison_mode='skew' compares split '{SKEW_TRAIN_SPLIT}' with the serving "
                                 f"statistics, but the statistics have no such split (splits: "
                                 f"{', '.join(sorted(current))})")
        result = results[SKEW_TRAIN_SPLIT]
        if result.data_missing:
            return
        serving = _skew_serving_split(sorted(comparison))
        result.comparison_kind = "skew"
        result.comparison_note = (f"Skew: split `{SKEW_TRAIN_SPLIT}` vs split `{serving}` of `{comparison_dir}` "
                                  f"(features not in the {SERVING} environment skipped).")
        training_env = TRAINING if index.uses_environments else None
        result.measurements = compare_split(index, current[SKEW_TRAIN_SPLIT], comparison[serving], "skew",
                                            linf_threshold, jsd_threshold, (training_env, SERVING))
    for result in results.values():
        result.findings += [comparison_finding(m, result.comparison_kind) for m in result.measurements
                            if m.anomalous]


# --------------------------------------------------------------------------- outputs


def build_anomalies(schema: schema_pb2.Schema, result: SplitResult) -> anomalies_pb2.Anomalies:
    anomalies = anomalies_pb2.Anomalies()
    anomalies.baseline.CopyFrom(schema)
    anomalies.anomaly_name_format = anomalies_pb2.Anomalies.SERIALIZED_PATH
    anomalies.data_missing = result.data_missing
    grouped: dict[str, list[Finding]] = {}
    for finding in result.findings:
        grouped.setdefault(finding.feature, []).append(finding)
    for feature, findings in grouped.items():
        info = anomalies.dataset_anomaly_info if feature == DATASET_KEY else anomalies.anomaly_info[feature]
        info.path.step.extend(findings[0].steps)
        info.severity = anomalies_pb2.AnomalyInfo.ERROR
        for finding in findings:
            info.reason.add(type=finding.type, short_description=finding.short, description=finding.description)
        if len(findings) == 1:
            info.short_description, info.description = findings[0].short, findings[0].description
        else:
            info.short_description = "Multiple errors"
            info.description = " ".join(f.description for f in findings)
    by_feature: dict[str, anomalies_pb2.DriftSkewInfo] = {}
    for m in result.measurements:
        info = by_feature.get(m.feature)
        if info is None:
            info = by_feature[m.feature] = anomalies.drift_skew_info.add()
            info.path.step.extend(m.steps)
        target = info.drift_measurements if result.comparison_kind == "drift" else info.skew_measurements
        measurement = target.add(type=m.measure, value=m.value)
        if m.threshold is not None:
            measurement.threshold = m.threshold
    return anomalies


def render_report(results: dict[str, SplitResult], statistics_dir: str, schema_path: str,
                  comparison_dir: str | None, mode: str) -> str:
    total = sum(len(r.findings) for r in results.values())
    lines = ["# ExampleValidator", "",
             f"Statistics `{statistics_dir}` validated against schema `{schema_path}`"
             + (f"; {mode} vs `{comparison_dir}`." if comparison_dir else "."), "",
             f"**{total} anomalies found — not blessed.**" if total else "**No anomalies found — blessed.**", ""]
    for split, result in results.items():
        count = len(result.findings)
        lines += [f"## Split `{split}`: {count} anomal{'y' if count == 1 else 'ies'}", ""]
        if result.findings:
            lines += [report.table(["Feature", "Anomaly type", "Description"],
                                   [[f"`{f.feature}`", f.type_name, f.description] for f in result.findings]), ""]
        else:
            lines += ["No anomalies", ""]
        if result.comparison_kind:
            lines += [f"### {result.comparison_kind.capitalize()}", "", result.comparison_note or "", ""]
            if result.measurements:
                rows = []
                for m in result.measurements:
                    status = ("ANOMALY" if m.anomalous else "ok") if m.threshold is not None else "no threshold"
                    rows.append([f"`{m.feature}`", _MEASURE_NAMES[m.measure], report.fmt(m.value),
                                 report.fmt(m.threshold), status])
                lines += [report.table(["Feature", "Measure", "Value", "Threshold", "Status"], rows), ""]
    return "\n".join(lines)


def _error_message(results: dict[str, SplitResult], output_dir: str, total: int) -> str:
    lines = [f"ExampleValidator found {total} anomal{'y' if total == 1 else 'ies'} "
             f"(anomalies written to {output_dir}):"]
    for split, result in results.items():
        lines += [f"{split}/{f.feature}: {f.type_name}: {f.description}" for f in result.findings]
    lines.append("To proceed: fix the data; or, if the change is expected, update/curate the schema (extend the "
                 "domain, relax presence/value counts, set drift/skew comparator thresholds, mark features "
                 "not_in_environment); or set fail_on_anomalies=False to record anomalies without failing.")
    return "\n".join(lines)


def _check_threshold(name: str, value) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number ≥ 0 or None, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a number ≥ 0 or None, got {value!r}")
    return value


# --------------------------------------------------------------------------- entry point


def run(statistics_dir: str, schema_path: str, output_dir: str, report_path: str | None = None,
        comparison_statistics_dir: str | None = None, comparison_mode: str = "drift",
        linf_threshold: float | None = None, jsd_threshold: float | None = None,
        fail_on_anomalies: bool = True) -> dict:
    """Validate every split of ``statistics_dir`` against the schema; write Anomalies (+ report).

    Returns artifact metadata. Raises AnomaliesFoundError after writing everything
    if ``fail_on_anomalies`` and any anomaly was found.
    """
    mode = comparison_mode.strip().lower() if isinstance(comparison_mode, str) else comparison_mode
    if mode not in COMPARISON_MODES:
        raise ConfigError(f"comparison_mode must be one of {', '.join(COMPARISON_MODES)}, got {comparison_mode!r}")
    linf_threshold = _check_threshold("linf_threshold", linf_threshold)
    jsd_threshold = _check_threshold("jsd_threshold", jsd_threshold)

    schema = tfmd.read_schema(schema_path)
    schema_file = tfmd.schema_path(schema_path) if os.path.isdir(schema_path) else schema_path
    index = SchemaIndex(schema, schema_file)
    current = tfmd.read_all_statistics(statistics_dir)
    results = {split: validate_split(index, split, dataset) for split, dataset in current.items()}
    if comparison_statistics_dir:
        comparison = tfmd.read_all_statistics(comparison_statistics_dir)
        _add_comparisons(index, results, current, comparison, mode, linf_threshold, jsd_threshold,
                         comparison_statistics_dir)

    with fileio.atomic_directory(output_dir) as temp:
        for split, result in results.items():
            tfmd.write_anomalies(temp, split, build_anomalies(schema, result))
    if report_path:
        fileio.atomic_write(report_path, render_report(results, statistics_dir, schema_file,
                                                       comparison_statistics_dir, mode))

    splits = list(results)
    counts = {split: len(result.findings) for split, result in results.items()}
    total = sum(counts.values())
    if fail_on_anomalies and total:
        raise AnomaliesFoundError(_error_message(results, output_dir, total))
    return {
        layout.TFX_TYPE: ARTIFACT_TYPE,
        layout.SPLIT_NAMES: json.dumps(splits),
        "anomaly_counts": counts,
        "anomalies_found": total,
        "blessed": 0 if total else 1,
    }
