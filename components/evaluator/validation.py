"""TFMA's threshold validation for the fast path: the same ValidationResult TFMA writes.

Follows TFMA 0.52's ``metric_specs.metric_thresholds_from_metrics_specs`` (for the
MetricConfig thresholds the fast path supports), ``metrics_validator.validate_metrics``
per slice and ``CombineValidations`` over slices:

* a value threshold is checked on the metric's key, a change threshold on its diff key
  (candidate - baseline); thresholds of the baseline model are not checked;
* a threshold whose metric a slice lacks fails there with "Metric not found.";
* ``validation_details`` counts, per slicing spec, the slices that had a check;
  a threshold's slicing spec that matched no slice is a ``missing_slices`` failure;
* no thresholds at all: blessed only when rubber-stamping (TFMA's ``missing_thresholds``).
"""

from __future__ import annotations

from kubetfx.components.evaluator import fast_metrics, slicing, tfma_protos
from kubetfx.components.evaluator.results import MetricId, passes_change, passes_value


def metric_keys(config):
    """(MetricConfig, MetricId) for every metric (not plot) the config asks for, keyed as TFMA keys them.

    TFMA's ``keys_and_metrics_from_specs`` for what the fast path covers: one key per model name of the
    metrics spec and per ``binarize`` class id; unweighted (no example weights), no output names.
    """
    for spec in config.metrics_specs:
        class_ids = list(spec.binarize.class_ids.values) or [None]
        for metric in spec.metrics:
            name = fast_metrics.METRIC_NAMES.get(metric.class_name)
            if name is None:
                continue
            for model_name in spec.model_names or [""]:
                for class_id in class_ids:
                    yield metric, MetricId(name, model_name, class_id=class_id, example_weighted=False)


def resolve_thresholds(config) -> dict[MetricId, list]:
    """MetricId -> [(SlicingSpec or None, Generic{Value,Change}Threshold)], de-duplicated as TFMA does."""
    result: dict[MetricId, list] = {}
    seen = set()

    def add(key: MetricId, spec, threshold) -> None:
        identity = (key, None if spec is None else slicing.spec_identity(spec), threshold.SerializeToString())
        if identity not in seen:
            seen.add(identity)
            result.setdefault(key, []).append((spec, threshold))

    def add_threshold(key: MetricId, spec, threshold) -> None:
        if threshold.HasField("value_threshold"):
            add(key, spec, threshold.value_threshold)
        if threshold.HasField("change_threshold"):
            add(key.diff(), spec, threshold.change_threshold)

    for metric, key in metric_keys(config):
        if metric.HasField("threshold"):
            add_threshold(key, None, metric.threshold)
        for item in metric.per_slice_thresholds:
            for spec in item.slicing_specs:
                add_threshold(key, spec, item.threshold)
    return result


def _check(key: MetricId, threshold, value: float, metrics: dict, baseline_name: str | None) -> bool:
    config_pb2 = tfma_protos.config_pb2()
    if isinstance(threshold, config_pb2.GenericValueThreshold):
        return passes_value(threshold, value)
    baseline_value = metrics.get(key.of_model(baseline_name)) if baseline_name is not None else None
    return passes_change(threshold, value, baseline_value)


def validate(sliced_metrics: dict[tuple, dict], thresholds: dict, baseline_name: str | None, rubber_stamp: bool,
             serialize_slice_key):
    """The ValidationResult TFMA writes, from slice key -> {MetricId: value}."""
    validation_pb2 = tfma_protos.validation_result_pb2()
    config_pb2 = tfma_protos.config_pb2()
    result = validation_pb2.ValidationResult(validation_ok=True)
    matching: dict[tuple, list] = {}  # spec identity -> [SlicingSpec, number of slices with a check]
    for slice_key, metrics in sliced_metrics.items():
        per_slice = validation_pb2.MetricsValidationForSlice()
        checked_specs = {}

        def fail(key: MetricId, threshold, value: float | None, message: str = "") -> None:
            failure = per_slice.failures.add(message=message)
            failure.metric_key.CopyFrom(key.to_proto())
            if value is not None:
                failure.metric_value.double_value.value = float(value)
            if isinstance(threshold, config_pb2.GenericValueThreshold):
                failure.metric_threshold.value_threshold.CopyFrom(threshold)
            else:
                failure.metric_threshold.change_threshold.CopyFrom(threshold)

        for key, items in thresholds.items():
            if key.model_name == baseline_name:
                continue
            failed = set()
            value = metrics.get(key)
            for spec, threshold in items:
                if value is None:  # TFMA: the metric is missing in this slice, whatever the spec
                    if threshold.SerializeToString() not in failed:
                        failed.add(threshold.SerializeToString())
                        fail(key, threshold, None, "Metric not found.")
                    continue
                if spec is not None and not slicing.applies(spec, slice_key):
                    continue
                if not _check(key, threshold, value, metrics, baseline_name):
                    if threshold.SerializeToString() in failed:
                        continue  # TFMA reports a threshold once per slice (and skips its details)
                    failed.add(threshold.SerializeToString())
                    fail(key, threshold, value)
                checked = spec if spec is not None else config_pb2.SlicingSpec()
                checked_specs.setdefault(slicing.spec_identity(checked), checked)
        for identity, spec in checked_specs.items():
            matching.setdefault(identity, [spec, 0])[1] += 1
        if per_slice.failures:
            per_slice.slice_key.CopyFrom(serialize_slice_key(slice_key))
            result.validation_ok = False
            result.metric_validations_per_slice.append(per_slice)
    for spec, count in matching.values():
        result.validation_details.slicing_details.add(slicing_spec=spec, num_matching_slices=count)
    if not thresholds:
        result.validation_ok = rubber_stamp
        result.missing_thresholds = not rubber_stamp
    missing = {}
    for key, items in thresholds.items():
        if key.model_name == baseline_name:
            continue
        for spec, _ in items:
            spec = spec if spec is not None else config_pb2.SlicingSpec()
            identity = slicing.spec_identity(spec)
            if identity not in matching and identity not in missing:
                missing[identity] = spec
    if missing:
        result.validation_ok = False
        result.missing_slices.extend(missing.values())
    if rubber_stamp:
        result.rubber_stamp = True
    return result
