"""Checks of a finished EvalConfig against the models and the eval data, before either engine runs.

Each problem is a ConfigError naming it: slicing features that are neither in the examples nor
transformed features, signatures / label / prediction keys the model lacks, per-slice thresholds
without slicing specs, change thresholds without a direction or value; when TFMA evaluates, also
unknown metric classes and TFMA's own checks (:func:`validate_for_tfma`, the only function here
that imports TFMA).
"""

from __future__ import annotations

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.evaluator import tfma_protos
from kubetfx.components.evaluator.eval_config import SERVING_SIGNATURE, TRANSFORM_SIGNATURE
from kubetfx.components.evaluator.models import ModelRef


def _slicing_features(config) -> list[tuple[str, str]]:
    """(feature, where) for every feature a slicing spec names."""
    found = []

    def add(spec, where):
        for key in spec.feature_keys:
            found.append((key, where))
        for key in spec.feature_values:
            found.append((key, where))

    for spec in config.slicing_specs:
        add(spec, "slicing_specs")
    for spec in config.cross_slicing_specs:
        add(spec.baseline_spec, "cross_slicing_specs")
        for slicing in spec.slicing_specs:
            add(slicing, "cross_slicing_specs")
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            for threshold in metric.per_slice_thresholds:
                for slicing in threshold.slicing_specs:
                    add(slicing, f"per_slice_thresholds of {metric.class_name}")
        for name, group in metrics_spec.per_slice_thresholds.items():
            for threshold in group.thresholds:
                for slicing in threshold.slicing_specs:
                    add(slicing, f"per_slice_thresholds of {name}")
    return found


def _thresholds(config):
    """(metric name, MetricThreshold) for every threshold in the config."""
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.HasField("threshold"):
                yield metric.class_name, metric.threshold
            for group in list(metric.per_slice_thresholds) + list(metric.cross_slice_thresholds):
                yield metric.class_name, group.threshold
        for name, threshold in spec.thresholds.items():
            yield name, threshold
        for name, group in list(spec.per_slice_thresholds.items()) + list(spec.cross_slice_thresholds.items()):
            for item in group.thresholds:
                yield name, item.threshold


def _check_model_spec(spec, model: ModelRef, raw_features: set[str], string_features: set[str]) -> None:
    what = model.describe()
    signature = spec.signature_name or SERVING_SIGNATURE
    if signature not in model.signatures:
        raise ConfigError(f"eval_config: model_specs signature_name '{signature}' is not a signature of the "
                          f"{what} (signatures: {', '.join(sorted(model.signatures))})")
    transformed: set[str] = set()
    for name in spec.preprocessing_function_names:
        if name not in model.signatures:
            raise ConfigError(f"eval_config: preprocessing_function_names '{name}' is not a signature of the "
                              f"{what} (signatures: {', '.join(sorted(model.signatures))})")
        transformed |= set(model.signatures[name]["outputs"])
    labels = [spec.label_key] if spec.label_key else list(spec.label_keys.values())
    for label in labels:
        if label not in raw_features and label not in transformed:
            where = f"the examples ({', '.join(sorted(raw_features))})"
            if spec.preprocessing_function_names:
                where += f" or the outputs of {', '.join(spec.preprocessing_function_names)}"
            raise ConfigError(f"eval_config: label_key '{label}' is not in {where}")
        if label in string_features and label not in transformed:
            hint = ""
            if label in model.signatures.get(TRANSFORM_SIGNATURE, {}).get("outputs", []):
                hint = (f"; add preprocessing_function_names: \"{TRANSFORM_SIGNATURE}\" so TFMA reads the "
                        "vocabulary-encoded label the model was trained on")
            raise ConfigError(f"eval_config: label_key '{label}' is a string feature of the examples; TFMA's metrics "
                              f"need numeric labels (class ids){hint}")
    outputs = model.signatures[signature]["outputs"]
    keys = [spec.prediction_key] if spec.prediction_key else list(spec.prediction_keys.values())
    for key in keys:
        if key not in outputs:
            raise ConfigError(f"eval_config: prediction_key '{key}' is not an output of signature '{signature}' "
                              f"of the {what} (outputs: {', '.join(outputs)})")


def validate(config, candidate: ModelRef, baseline: ModelRef | None, raw_features: set[str],
             string_features: set[str] = frozenset()) -> None:
    """What both engines need, checked without TFMA; ConfigError naming the offending entry.

    ``validate_for_tfma`` adds TFMA's own checks (it imports TFMA) when TFMA evaluates.
    """
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            if not metric.class_name:
                raise ConfigError("eval_config: a metrics entry has no class_name")
            for item in metric.per_slice_thresholds:
                if not item.slicing_specs:
                    raise ConfigError(f"eval_config: a per_slice_thresholds entry of '{metric.class_name}' has no "
                                      "slicing_specs (use slicing_specs {} for the Overall slice)")
        for name, group in metrics_spec.per_slice_thresholds.items():
            if any(not item.slicing_specs for item in group.thresholds):
                raise ConfigError(f"eval_config: a per_slice_thresholds entry of '{name}' has no slicing_specs "
                                  "(use slicing_specs {} for the Overall slice)")
    for spec in config.model_specs:
        model = baseline if spec.is_baseline else candidate
        if model is not None:
            _check_model_spec(spec, model, raw_features, string_features)
    known = set(raw_features)
    for model in (candidate, baseline):
        for spec in config.model_specs:
            for name in spec.preprocessing_function_names:
                if model is not None and name in model.signatures:
                    known |= set(model.signatures[name]["outputs"])
    for feature, where in _slicing_features(config):
        if feature not in known:
            raise ConfigError(f"eval_config: {where} slices on feature '{feature}', which is neither in the "
                              f"examples nor a transformed feature (features: {', '.join(sorted(known))})")


def validate_for_tfma(config) -> None:
    """TFMA's own config checks and metric instantiation (imports TFMA); ConfigError naming the entry."""
    from tensorflow_model_analysis.metrics import metric_specs
    from tensorflow_model_analysis.utils import config_util

    try:
        config_util.verify_eval_config(config)
    except ValueError as err:
        raise ConfigError(f"eval_config: {str(err).splitlines()[0]}") from None
    seen = set()
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            key = (metric.class_name, metric.module, metric.config)
            if key in seen:
                continue
            seen.add(key)
            try:
                metric_specs.metric_instance(metric)
            except Exception as err:  # TFMA/Keras raise ValueError, ImportError, AttributeError, TypeError
                origin = f" from module '{metric.module}'" if metric.module else ""
                detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                detail = detail.split(". Please ensure")[0]
                raise ConfigError(f"eval_config: unknown or invalid metric '{metric.class_name}'{origin}: "
                                  f"{detail[:300]} (use a TFMA metric such as ExampleCount, "
                                  "SparseCategoricalAccuracy, MeanSquaredError, or a tf_keras.metrics class name)") \
                    from None


def validate_thresholds(config) -> None:
    """Thresholds TFMA would only reject while validating; checked before a missing baseline drops them."""
    config_pb2 = tfma_protos.config_pb2()
    directions = (config_pb2.MetricDirection.HIGHER_IS_BETTER, config_pb2.MetricDirection.LOWER_IS_BETTER)
    for name, threshold in _thresholds(config):
        if not threshold.HasField("change_threshold"):
            continue
        change = threshold.change_threshold
        if change.direction not in directions:
            raise ConfigError(f"eval_config: the change_threshold of '{name}' needs direction: HIGHER_IS_BETTER "
                              "or LOWER_IS_BETTER")
        if not (change.HasField("absolute") or change.HasField("relative")):
            raise ConfigError(f"eval_config: the change_threshold of '{name}' needs an absolute or relative value")
