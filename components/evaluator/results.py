"""Read TFMA's output (metrics, plots, validation) into plain Python for the blessing, report and metadata."""

from __future__ import annotations

import dataclasses
import math

from kubetfx.components.common import report

OVERALL = "Overall"
CONFUSION_PLOT = "multi_class_confusion_matrix_plot"


@dataclasses.dataclass
class SliceMetrics:
    name: str                                  # "Overall", "island:Biscoe", ...
    key: tuple                                 # TFMA slice key ((column, value), ...)
    metrics: dict                              # display name -> {"candidate": v, "baseline": v, "diff": v}
    raw: dict = dataclasses.field(default_factory=dict)  # MetricKey -> float


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


def metric_display_name(key) -> str:
    """A readable name for a tfma MetricKey (sub keys, output names, weighting)."""
    name = key.name
    sub = key.sub_key
    if sub is not None:
        if sub.class_id is not None:
            name += f"/class_{sub.class_id}"
        elif sub.top_k is not None:
            name += f"@top{sub.top_k}"
        elif sub.k is not None:
            name += f"@k{sub.k}"
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


def slice_name(slice_key) -> str:
    from tensorflow_model_analysis.slicer import slicer_lib

    return slicer_lib.stringify_slice_key(slice_key)


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
    from tensorflow_model_analysis.metrics import metric_types
    from tensorflow_model_analysis.slicer import slicer_lib

    candidate, baseline = model_names(eval_config)
    slices = []
    for record in tfma.load_metrics(output_path):
        if record.HasField("cross_slice_key"):
            continue
        key = slicer_lib.deserialize_slice_key(record.slice_key)
        result = SliceMetrics(slice_name(key), key, {})
        for item in record.metric_keys_and_values:
            metric_key = metric_types.MetricKey.from_proto(item.key)
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


def confusion_matrix(output_path: str, eval_config, num_classes: int) -> list[list[int]] | None:
    """The candidate's Overall multi-class confusion matrix (rows: actual, columns: predicted)."""
    import tensorflow_model_analysis as tfma

    candidate, _ = model_names(eval_config)
    for record in tfma.load_plots(output_path):
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
    from tensorflow_model_analysis.proto import config_pb2

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


def _passes_value(threshold, value: float) -> bool:
    lower = threshold.lower_bound.value if threshold.HasField("lower_bound") else -math.inf
    upper = threshold.upper_bound.value if threshold.HasField("upper_bound") else math.inf
    return lower <= value <= upper


def _passes_change(threshold, diff: float, baseline: float | None) -> bool:
    from tensorflow_model_analysis.proto import config_pb2

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


def checks(slices: list[SliceMetrics], eval_config) -> list[Check]:
    """Every threshold of the config applied to every slice it covers (what TFMA validates)."""
    from tensorflow_model_analysis.metrics import metric_specs
    from tensorflow_model_analysis.proto import config_pb2
    from tensorflow_model_analysis.slicer import slicer_lib

    candidate, baseline = model_names(eval_config)
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(eval_config.metrics_specs,
                                                                  eval_config=eval_config)
    found = []
    for result in slices:
        for key, items in thresholds.items():
            if key.model_name != candidate:
                continue
            for slicing_spec, threshold in items:
                if isinstance(slicing_spec, config_pb2.CrossSlicingSpec):
                    continue
                if slicing_spec is not None and \
                        not slicer_lib.SingleSliceSpec(spec=slicing_spec).is_slice_applicable(result.key):
                    continue
                if isinstance(threshold, config_pb2.GenericValueThreshold):
                    value = result.raw.get(key)
                    if value is not None:
                        found.append(Check(result.name, metric_display_name(key), "value", _value_rule(threshold),
                                           value, None, None, _passes_value(threshold, value)))
                    continue
                diff = result.raw.get(key)  # change thresholds are keyed by the diff key
                if diff is None:
                    continue
                plain = key._replace(is_diff=False)
                base_value = result.raw.get(key.make_baseline_key(baseline)) if baseline is not None else None
                found.append(Check(result.name, metric_display_name(plain), "change", _change_rule(threshold),
                                   result.raw.get(plain), base_value, diff,
                                   _passes_change(threshold, diff, base_value)))
    return found


def failures(validation, eval_config, slices: list[SliceMetrics], baseline_label: str) -> list[str]:
    """Human-readable reasons from TFMA's ValidationResult (the verdict's source of truth)."""
    from tensorflow_model_analysis.metrics import metric_types
    from tensorflow_model_analysis.slicer import slicer_lib

    by_name = {s.name: s for s in slices}
    _, baseline = model_names(eval_config)
    reasons = []
    for per_slice in validation.metric_validations_per_slice:
        if per_slice.HasField("cross_slice_key"):
            name = "cross slice"
        else:
            name = slice_name(slicer_lib.deserialize_slice_key(per_slice.slice_key))
        for failure in per_slice.failures:
            key = metric_types.MetricKey.from_proto(failure.metric_key)
            value = _value(failure.metric_value)
            threshold = failure.metric_threshold
            if threshold.HasField("value_threshold"):
                check = Check(name, metric_display_name(key), "value", _value_rule(threshold.value_threshold),
                              value, None, None, False)
            else:
                plain = key._replace(is_diff=False)
                result = by_name.get(name)
                candidate_value = result.raw.get(plain) if result else None
                base_value = result.raw.get(plain.make_baseline_key(baseline)) if result and baseline else None
                check = Check(name, metric_display_name(plain), "change", _change_rule(threshold.change_threshold),
                              candidate_value, base_value, value, False)
            reasons.append(check.describe(baseline_label))
            if failure.message.strip():
                reasons[-1] += f" ({' '.join(failure.message.split())})"
    for spec in validation.missing_slices:
        from google.protobuf import text_format

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
