"""Read TFMA's output (metrics, plots, validation) into plain Python for the blessing, report and metadata.

Metric keys and slice keys are read from TFMA's protos (``MetricId``, ``slice_name``)
without importing TFMA, so the fast path (fast_path.py) shares the failure reasons
and display names; only reading TFMA's files and resolving its thresholds (the TFMA
path) import TFMA.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

from kubetfx.components.common import report
from kubetfx.components.evaluator import tfma_protos

OVERALL = "Overall"
CONFUSION_PLOT = "multi_class_confusion_matrix_plot"


@dataclasses.dataclass
class SliceMetrics:
    name: str                                  # "Overall", "island:Biscoe", ...
    key: tuple                                 # TFMA slice key ((column, value), ...)
    metrics: dict                              # display name -> {"candidate": v, "baseline": v, "diff": v}
    raw: dict = dataclasses.field(default_factory=dict)  # MetricId -> float


class MetricId(NamedTuple):
    """A TFMA MetricKey as plain values, read from (and written to) its proto without TFMA."""

    name: str
    model_name: str = ""
    output_name: str = ""
    class_id: int | None = None
    k: int | None = None
    top_k: int | None = None
    aggregation: str = ""                      # "" | micro_average | macro_average | weighted_macro_average
    example_weighted: bool | None = None
    is_diff: bool = False

    @classmethod
    def from_proto(cls, key) -> MetricId:
        sub = key.sub_key

        def number(field):
            return getattr(sub, field).value if sub.HasField(field) else None

        aggregation = key.aggregation_type.WhichOneof("type") if key.HasField("aggregation_type") else None
        return cls(key.name, key.model_name, key.output_name, number("class_id"), number("k"), number("top_k"),
                   aggregation or "", key.example_weighted.value if key.HasField("example_weighted") else None,
                   key.is_diff)

    def to_proto(self):
        key = tfma_protos.metrics_for_slice_pb2().MetricKey(name=self.name, model_name=self.model_name,
                                                            output_name=self.output_name, is_diff=self.is_diff)
        for field in ("class_id", "k", "top_k"):
            if getattr(self, field) is not None:
                getattr(key.sub_key, field).value = getattr(self, field)
        if self.aggregation:
            setattr(key.aggregation_type, self.aggregation, True)
        if self.example_weighted is not None:
            key.example_weighted.value = self.example_weighted
        return key

    def diff(self) -> MetricId:
        return self._replace(is_diff=True)

    def plain(self) -> MetricId:
        return self._replace(is_diff=False)

    def of_model(self, model_name: str) -> MetricId:
        """The same metric of another model (e.g. the baseline's value behind a diff)."""
        return self._replace(model_name=model_name, is_diff=False)


@dataclasses.dataclass
class Check:
    """One threshold applied to one slice."""

    slice: str
    metric: str
    kind: str                                  # "value" | "change"
    rule: str                                  # "≥ 0.6", "not worse than the baseline", ...
    value: float | None                        # the candidate's value (change: the candidate's value too)
    baseline: float | None
    diff: float | None
    passed: bool

    def describe(self, baseline_name: str = "the baseline") -> str:
        if self.kind == "value":
            return f"{self.metric} on slice {self.slice} = {_num(self.value)}: must be {self.rule}"
        return (f"{self.metric} on slice {self.slice}: candidate {_num(self.value)} vs {_num(self.baseline)} for "
                f"{baseline_name} (change {_num(self.diff, signed=True)}): must be {self.rule}")


def _num(value, signed: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def metric_display_name(key: MetricId) -> str:
    """A readable name for a metric (sub keys, output names, weighting)."""
    name = key.name
    if key.class_id is not None:
        name += f"/class_{key.class_id}"
    elif key.top_k is not None:
        name += f"@top{key.top_k}"
    elif key.k is not None:
        name += f"@k{key.k}"
    if key.aggregation:
        name += f" ({key.aggregation.replace('_', ' ')})"
    if key.output_name:
        name = f"{key.output_name}/{name}"
    if key.example_weighted:
        name += " (weighted)"
    return name


def _value(metric_value) -> float | None:
    kind = metric_value.WhichOneof("type")
    if kind == "double_value":
        return float(metric_value.double_value.value)
    if kind == "bounded_value":
        return float(metric_value.bounded_value.value.value)
    return None


def slice_key_values(slice_key_proto) -> tuple:
    """((column, value), ...) of a SliceKey proto, as TFMA's ``deserialize_slice_key`` gives it."""
    items = []
    for item in slice_key_proto.single_slice_keys:
        kind = item.WhichOneof("kind")
        if kind == "bytes_value":
            value = item.bytes_value.decode("utf-8")
        elif kind is None:
            raise ValueError(f"slice key of column '{item.column}' has no value")
        else:
            value = getattr(item, kind)
        items.append((item.column, value))
    return tuple(items)


def slice_name(slice_key: tuple) -> str:
    """TFMA's name of a slice: ``Overall``, ``island:Biscoe``, ``island_X_sex:Biscoe_X_male``."""
    if not slice_key:
        return OVERALL
    return "_X_".join(str(column) for column, _ in slice_key) + ":" + "_X_".join(str(v) for _, v in slice_key)


def model_names(eval_config) -> tuple[str, str | None]:
    """(candidate model name, baseline model name or None) as TFMA keys them."""
    candidate, baseline = "", None
    for spec in eval_config.model_specs:
        if spec.is_baseline:
            baseline = spec.name
        else:
            candidate = spec.name
    return candidate, baseline


def load_metrics(output_path: str, eval_config) -> list[SliceMetrics]:
    """Per-slice metrics, Overall first, then by name (cross slices are skipped)."""
    import tensorflow_model_analysis as tfma

    return slices_from_protos(tfma.load_metrics(output_path), eval_config)


def slices_from_protos(records, eval_config) -> list[SliceMetrics]:
    """SliceMetrics from MetricsForSlice protos (what TFMA writes), Overall first, then by name."""
    candidate, baseline = model_names(eval_config)
    slices = []
    for record in records:
        if record.HasField("cross_slice_key"):
            continue
        key = slice_key_values(record.slice_key)
        result = SliceMetrics(slice_name(key), key, {})
        for item in record.metric_keys_and_values:
            metric_key = MetricId.from_proto(item.key)
            value = _value(item.value)
            if value is None:
                continue
            result.raw[metric_key] = value
            if metric_key.model_name == candidate:
                role = "diff" if metric_key.is_diff else "candidate"
            elif baseline is not None and metric_key.model_name == baseline and not metric_key.is_diff:
                role = "baseline"
            else:
                continue
            result.metrics.setdefault(metric_display_name(metric_key), {})[role] = value
        slices.append(result)
    slices.sort(key=lambda s: (s.name != OVERALL, s.name))
    return slices


def confusion_matrix_from_protos(records, eval_config, num_classes: int) -> list[list[int]] | None:
    """The candidate's Overall confusion matrix from PlotsForSlice protos."""
    candidate, _ = model_names(eval_config)
    for record in records:
        if record.HasField("cross_slice_key") or record.slice_key.single_slice_keys:
            continue
        for item in record.plot_keys_and_values:
            if item.key.name != CONFUSION_PLOT or item.key.model_name != candidate:
                continue
            matrices = item.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                return None
            size = num_classes or 1 + max([max(e.actual_class_id, e.predicted_class_id)
                                           for e in matrices[0].entries] or [0])
            matrix = [[0] * size for _ in range(size)]
            for entry in matrices[0].entries:
                if 0 <= entry.actual_class_id < size and 0 <= entry.predicted_class_id < size:
                    matrix[entry.actual_class_id][entry.predicted_class_id] += int(round(entry.num_weighted_examples))
            return matrix
    return None


def _value_rule(threshold) -> str:
    lower = threshold.lower_bound.value if threshold.HasField("lower_bound") else None
    upper = threshold.upper_bound.value if threshold.HasField("upper_bound") else None
    text = report.bounds(lower, upper, lambda value: f"{value:.6g}", unbounded="anything (no bound set)")
    return f"in {text}" if text.startswith("[") else text


def _change_rule(threshold) -> str:
    config_pb2 = tfma_protos.config_pb2()
    higher = threshold.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER
    parts = []
    if threshold.HasField("absolute"):
        value = threshold.absolute.value
        if abs(value) <= 1e-6:
            parts.append("no worse than the baseline")
        elif higher:
            parts.append(f"at least {value:.6g} above the baseline" if value > 0
                         else f"at most {-value:.6g} below the baseline")
        else:
            parts.append(f"at least {-value:.6g} below the baseline" if value < 0
                         else f"at most {value:.6g} above the baseline")
    if threshold.HasField("relative"):
        value = threshold.relative.value
        word = "higher" if higher else "lower"
        parts.append(f"relative change ({word} is better) {'≥' if higher else '≤'} {value:+.6g}")
    return " and ".join(parts) or "anything (no change bound set)"


def passes_value(threshold, value: float) -> bool:
    """TFMA's value check (metrics_validator): lower <= value <= upper; NaN fails."""
    lower = threshold.lower_bound.value if threshold.HasField("lower_bound") else -math.inf
    upper = threshold.upper_bound.value if threshold.HasField("upper_bound") else math.inf
    return lower <= value <= upper


def passes_change(threshold, diff: float, baseline: float | None) -> bool:
    """TFMA's change check: the absolute and/or relative change in the threshold's direction."""
    config_pb2 = tfma_protos.config_pb2()
    higher = threshold.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER
    ok = True
    if threshold.HasField("absolute"):
        ok &= diff >= threshold.absolute.value if higher else diff <= threshold.absolute.value
    if threshold.HasField("relative"):
        if baseline is None or math.isclose(baseline, 0.0):
            return False
        ratio = diff / baseline
        ok &= ratio >= threshold.relative.value if higher else ratio <= threshold.relative.value
    return ok


def tfma_thresholds(eval_config) -> dict:
    """MetricId -> [(SlicingSpec | CrossSlicingSpec | None, threshold)], resolved by TFMA (imports it)."""
    from tensorflow_model_analysis.metrics import metric_specs

    resolved = metric_specs.metric_thresholds_from_metrics_specs(eval_config.metrics_specs, eval_config=eval_config)
    return {MetricId.from_proto(key.to_proto()): list(items) for key, items in resolved.items()}


def _tfma_applies(slicing_spec, slice_key: tuple) -> bool:
    from tensorflow_model_analysis.slicer import slicer_lib

    return slicer_lib.SingleSliceSpec(spec=slicing_spec).is_slice_applicable(slice_key)


def checks(slices: list[SliceMetrics], eval_config, thresholds: dict | None = None, applies=None) -> list[Check]:
    """Every threshold of the config applied to every slice it covers (what TFMA validates).

    ``thresholds`` (see ``tfma_thresholds``) and ``applies(slicing_spec, slice_key)`` default to TFMA's;
    the fast path passes its own.
    """
    config_pb2 = tfma_protos.config_pb2()
    candidate, baseline = model_names(eval_config)
    thresholds = tfma_thresholds(eval_config) if thresholds is None else thresholds
    applies = applies or _tfma_applies
    found = []
    for result in slices:
        for key, items in thresholds.items():
            if key.model_name != candidate:
                continue
            for slicing_spec, threshold in items:
                if isinstance(slicing_spec, config_pb2.CrossSlicingSpec):
                    continue
                if slicing_spec is not None and not applies(slicing_spec, result.key):
                    continue
                if isinstance(threshold, config_pb2.GenericValueThreshold):
                    value = result.raw.get(key)
                    if value is not None:
                        found.append(Check(result.name, metric_display_name(key), "value", _value_rule(threshold),
                                           value, None, None, passes_value(threshold, value)))
                    continue
                diff = result.raw.get(key)  # change thresholds are keyed by the diff key
                if diff is None:
                    continue
                plain = key.plain()
                base_value = result.raw.get(key.of_model(baseline)) if baseline is not None else None
                found.append(Check(result.name, metric_display_name(plain), "change", _change_rule(threshold),
                                   result.raw.get(plain), base_value, diff,
                                   passes_change(threshold, diff, base_value)))
    return found


def failures(validation, eval_config, slices: list[SliceMetrics], baseline_label: str) -> list[str]:
    """Human-readable reasons from TFMA's ValidationResult (the verdict's source of truth)."""
    from google.protobuf import text_format

    by_name = {s.name: s for s in slices}
    _, baseline = model_names(eval_config)
    named = [("cross slice" if per_slice.HasField("cross_slice_key")
              else slice_name(slice_key_values(per_slice.slice_key)), per_slice)
             for per_slice in validation.metric_validations_per_slice]
    named.sort(key=lambda item: (item[0] != OVERALL, item[0]))  # TFMA's order is Beam's: make it stable
    reasons = []
    for name, per_slice in named:
        for failure in sorted(per_slice.failures, key=lambda f: (f.metric_key.name, f.metric_key.is_diff)):
            key = MetricId.from_proto(failure.metric_key)
            value = _value(failure.metric_value)
            threshold = failure.metric_threshold
            if threshold.HasField("value_threshold"):
                check = Check(name, metric_display_name(key), "value", _value_rule(threshold.value_threshold),
                              value, None, None, False)
            else:
                plain = key.plain()
                result = by_name.get(name)
                candidate_value = result.raw.get(plain) if result else None
                base_value = result.raw.get(plain.of_model(baseline)) if result and baseline else None
                check = Check(name, metric_display_name(plain), "change", _change_rule(threshold.change_threshold),
                              candidate_value, base_value, value, False)
            reasons.append(check.describe(baseline_label))
            if failure.message.strip():
                reasons[-1] += f" ({' '.join(failure.message.split())})"
    for spec in validation.missing_slices:
        reasons.append(f"no examples in slice {{{text_format.MessageToString(spec, as_one_line=True)}}}, which "
                       "has a threshold: the threshold cannot be checked")
    if validation.missing_cross_slices:
        reasons.append(f"{len(validation.missing_cross_slices)} cross-slice spec(s) with thresholds matched no data")
    if validation.missing_thresholds:
        reasons.append("the eval_config has no thresholds, so nothing was validated (TFMA does not bless a model "
                       "without thresholds when a baseline is given); add value or change thresholds")
    if not validation.validation_ok and not reasons:
        reasons.append("TFMA reported the validation as failed without details")
    return reasons
