"""TFDV-style validation of a split's statistics against a TFMD schema: findings and the ``Anomalies`` proto.

Checks, with the ``AnomalyInfo.Type`` TFDV uses:

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
  ``FLOAT_TYPE_HAS_NAN`` (disallow_nan), ``FLOAT_TYPE_HAS_INF`` (infinite values in a FLOAT feature unless
  its float_domain sets ``disallow_inf: false``: TFDV flags them only with ``disallow_inf: true``, and an
  inferred schema never says so, so one ``inf`` cell reached the Trainer as NaN losses);
* a split without examples: ``NO_DATA_IN_SPAN`` (dataset-level, ``data_missing``).

Drift and skew distances (``comparison.py``) are added to a split's result as
``Measurement``s; :func:`build_anomalies` writes both into the ``Anomalies`` proto.

Environments: when the schema declares any (``default_environment`` or a
feature's ``in_environment``/``not_in_environment``), a split named ``serving``
is validated in ``SERVING`` and every other split in ``TRAINING``; otherwise all
schema features apply to every split.

Anomaly counts count reasons: a feature with two problems counts twice. Used by
the ExampleValidator and the model monitor; no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from kubetfx.components.common import tfmd
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.data_validation import statistics

TRAINING, SERVING = "TRAINING", "SERVING"
# Skew compares the split "train" with the comparison's "serving" split; "serving" is validated in SERVING.
SKEW_TRAIN_SPLIT, SKEW_SERVING_SPLIT = "train", "serving"
# Key of dataset-level findings (no feature).
DATASET_KEY = "(dataset)"
# Examples of unexpected string values quoted in a description.
MAX_EXAMPLE_VALUES = 5

_T = anomalies_pb2.AnomalyInfo.Type
_Stats = statistics_pb2.FeatureNameStatistics
_INACTIVE_STAGES = frozenset({schema_pb2.PLANNED, schema_pb2.ALPHA, schema_pb2.DEPRECATED,
                              schema_pb2.DEBUG_ONLY, schema_pb2.DISABLED})
# Statistics types a schema type accepts.
_COMPATIBLE = {
    schema_pb2.INT: {_Stats.INT},
    schema_pb2.FLOAT: {_Stats.FLOAT},
    schema_pb2.BYTES: {_Stats.STRING, _Stats.BYTES},
    schema_pb2.STRUCT: {_Stats.STRUCT},
}


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
    """What was found in one split: anomalies, and the drift/skew distances when compared."""
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


def quote(value: str, limit: int = 60) -> str:
    """A value for a description: repr, cut at ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _stats_type_name(stats: _Stats) -> str:
    return _Stats.Type.Name(stats.type)


def _schema_type_name(feature: schema_pb2.Feature) -> str:
    return schema_pb2.FeatureType.Name(feature.type)


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
    total = max(float(statistics.common_stats(stats).tot_num_values), sum(counts.values()))
    unexpected_mass = sum(c for _, c in unexpected)
    fraction = unexpected_mass / total if total else 1.0
    constraint = ""
    if feature.HasField("distribution_constraints"):
        min_mass = feature.distribution_constraints.min_domain_mass
        if 1.0 - fraction >= min_mass:
            return []
        constraint = (f"; distribution_constraints.min_domain_mass {_num(float(min_mass))} allows at most "
                      f"{_pct(1.0 - min_mass)}")
    examples = ", ".join(f"{quote(v)} ({_num(c)})" for v, c in unexpected[:MAX_EXAMPLE_VALUES])
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
    if (domain.disallow_inf or not domain.HasField("disallow_inf")) and (math.isinf(num.min) or math.isinf(num.max)):
        why = ("the schema's float_domain sets disallow_inf" if domain.disallow_inf else
               "no model can learn from them (a curated schema with float_domain { disallow_inf: false } allows them)")
        findings.append(Finding(
            name, steps, _T.FLOAT_TYPE_HAS_INF, "Invalid values",
            f"Feature '{name}' has infinite values (min {_num(num.min)}, max {_num(num.max)}); {why}."))
    return findings


def check_feature(index: SchemaIndex, name: str, steps, feature: schema_pb2.Feature, stats: _Stats,
                  num_examples: int) -> list[Finding]:
    """Every check of one schema feature against its statistics."""
    common = statistics.common_stats(stats)
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
        elif stats.type == _Stats.FLOAT and stats.HasField("num_stats") and \
                (kind == "float" or (kind is None and feature.type == schema_pb2.FLOAT)):
            findings += _check_float_domain(name, steps, stats, domain if kind == "float" else schema_pb2.FloatDomain())
    return findings


def validate_split(index: SchemaIndex, split: str, dataset: statistics_pb2.DatasetFeatureStatistics) -> SplitResult:
    """Schema checks of one split (no drift/skew)."""
    stats_by_name = {tfmd.feature_name(f): f for f in dataset.features}
    num_examples = int(dataset.num_examples)
    if num_examples == 0 and not any(statistics.common_stats(f).num_non_missing for f in dataset.features):
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
