"""The TFMA EvalConfig: parse the user's (text proto or JSON, inline or a file), derive a default, complete it.

The format is TFX's: ``tensorflow_model_analysis.proto.config_pb2.EvalConfig``, e.g.::

    model_specs { label_key: "species" prediction_key: "probabilities"
                  preprocessing_function_names: "transform_features" }
    slicing_specs {}
    slicing_specs { feature_keys: "island" }
    metrics_specs {
      metrics { class_name: "ExampleCount" }
      metrics { class_name: "SparseCategoricalAccuracy"
        threshold { value_threshold { lower_bound { value: 0.6 } }
                    change_threshold { direction: HIGHER_IS_BETTER absolute { value: -1e-10 } } } }
    }

Fields of the (single) candidate ModelSpec that the user leaves empty are filled
from the Trainer's ``kubetfx_model.json``: ``signature_name`` (serving_default),
``label_key`` (the transformed label) together with
``preprocessing_function_names: "transform_features"`` (the raw label is a string;
TFMA reads the vocabulary-encoded label from that signature), ``prediction_key``
(``probabilities`` / ``predictions``).

Without a config the default is derived from ``kubetfx_model.json`` and the eval data:

* classification: ExampleCount, SparseCategoricalAccuracy, SparseCategoricalCrossentropy,
  MultiClassConfusionMatrixPlot; accuracy must be >= max(0.6, the majority-class
  accuracy) and not worse than the baseline (HIGHER_IS_BETTER, absolute -1e-10);
* regression: ExampleCount, MeanSquaredError, MeanAbsoluteError, MeanLabel,
  MeanPrediction; MSE must be <= the MSE of predicting the mean label, and not
  worse than the baseline (LOWER_IS_BETTER, absolute 1e-10);
* the thresholds apply to the Overall slice (a per-slice gate on a 13-example
  slice rejects models for noise); every slice is computed and reported;
* slices: Overall plus each string feature with 2..10 values in the eval data
  (or the ``slice_features`` given);
* a module file's model (TFX ``run_fn``): the same, on its ``serving_default`` and raw label,
  classification when the label has at most 20 integral values, else regression; when its
  transform graph maps a string label to class ids, on the transformed label through
  ``preprocessing_function_names: "transform_features"`` (the Trainer records the mapping).

The finished config is checked before either engine runs (``config_checks.py``). Nothing
here imports TFMA: the EvalConfig proto comes from tfma_protos.
"""

from __future__ import annotations

import os

from google.protobuf import json_format, text_format

from kubetfx.components.common import params, storage
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.evaluator.models import ModelRef

SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"
CANDIDATE_NAME, BASELINE_NAME = "candidate", "baseline"  # TFMA's model names with a baseline
MIN_ACCURACY = 0.6
CHANGE_TOLERANCE = 1e-10
MAX_SLICE_VALUES = 10
MAX_DERIVED_CLASSES = 20  # a module model's integral label with at most this many values: classification
CONFIG_FILE_SUFFIXES = (".pbtxt", ".textproto", ".txt", ".json", ".config", ".cfg")


def _config_pb2():
    from kubetfx.components.evaluator import tfma_protos

    return tfma_protos.config_pb2()


def to_text(config) -> str:
    return text_format.MessageToString(config)


# --------------------------------------------------------------------------- parsing


def _looks_like_path(text: str) -> bool:
    if "\n" in text or "{" in text or ":" in text.split("://", 1)[-1]:
        return False
    return text.lower().endswith(CONFIG_FILE_SUFFIXES) or os.path.isfile(text) or "://" in text


def load(eval_config: str):
    """Parse ``eval_config`` (inline text proto / JSON, or a path to a .pbtxt/.json file); None if empty."""
    if eval_config is None:
        return None
    if not isinstance(eval_config, str):
        raise ConfigError(f"eval_config: expected a string (text proto, JSON or a file path), "
                          f"got {type(eval_config).__name__}")
    text = eval_config.strip()
    if not text:
        return None
    source = "eval_config"
    if _looks_like_path(text):
        source = f"eval_config file {text}"
        try:
            text = storage.read_bytes(text).decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"eval_config file {text} not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{source} cannot be read: {err}") from None
        if not text.strip():
            raise ConfigError(f"{source} is empty")
    config_pb2 = _config_pb2()
    config = config_pb2.EvalConfig()
    if text.lstrip().startswith("{"):
        try:
            json_format.Parse(text, config)
        except json_format.ParseError as err:
            raise ConfigError(f"{source}: not a valid EvalConfig in JSON: {err}") from None
    else:
        try:
            text_format.Parse(text, config)
        except text_format.ParseError as err:
            raise ConfigError(f"{source}: not a valid EvalConfig text proto: {err} "
                              "(the format is tensorflow_model_analysis EvalConfig, as in TFX)") from None
    return config


# --------------------------------------------------------------------------- defaults


def _is_string_column(column) -> bool:
    import pyarrow as pa

    value_type = column.type.value_type if hasattr(column.type, "value_type") else column.type
    return pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type) or \
        pa.types.is_string(value_type) or pa.types.is_large_string(value_type)


def string_features(batch) -> set[str]:
    return {name for name in batch.schema.names if _is_string_column(batch.column(name))}


def default_slice_features(batch, label: str) -> list[str]:
    """String features of the eval data with 2..MAX_SLICE_VALUES distinct values (not the label)."""
    import pyarrow.compute as pc

    names = []
    for name in sorted(batch.schema.names):
        column = batch.column(name)
        if name == label or not _is_string_column(column):
            continue
        distinct = len(pc.unique(pc.list_flatten(column)))
        if 2 <= distinct <= MAX_SLICE_VALUES:
            names.append(name)
    return names


def candidate_model_spec(candidate: ModelRef):
    """The ModelSpec for a Trainer model, from its kubetfx_model.json and signatures."""
    spec = _config_pb2().ModelSpec()
    fill_model_spec(spec, candidate)
    return spec


def fill_model_spec(spec, model: ModelRef) -> list[str]:
    """Fill the empty fields of ``spec`` from the model's description; returns the names filled."""
    filled = []
    info = model.info
    if not spec.signature_name and SERVING_SIGNATURE in model.signatures:
        spec.signature_name = SERVING_SIGNATURE
        filled.append("signature_name")
    if not spec.label_key and not spec.label_keys:
        label = info.get("transformed_label") or info.get("label")
        transform = model.signatures.get(TRANSFORM_SIGNATURE)
        if label and transform and label in transform["outputs"] and not spec.preprocessing_function_names:
            spec.preprocessing_function_names.append(TRANSFORM_SIGNATURE)
            filled.append("preprocessing_function_names")
        elif info.get("label"):
            label = info["label"]
        if label:
            spec.label_key = label
            filled.append("label_key")
    if not spec.prediction_key and not spec.prediction_keys:
        outputs = (model.signatures.get(spec.signature_name or SERVING_SIGNATURE) or {}).get("outputs", [])
        wanted = {"classification": "probabilities", "regression": "predictions"}.get(model.problem_type)
        if wanted and wanted in outputs:
            spec.prediction_key = wanted
            filled.append("prediction_key")
    return filled


def _threshold_overall(metric, value_threshold: dict, higher_is_better: bool):
    config_pb2 = _config_pb2()
    per_slice = metric.per_slice_thresholds.add()
    per_slice.slicing_specs.add()  # the Overall slice
    threshold = per_slice.threshold
    for bound, value in value_threshold.items():
        getattr(threshold.value_threshold, bound).value = value
    change = threshold.change_threshold
    if higher_is_better:
        change.direction = config_pb2.MetricDirection.HIGHER_IS_BETTER
        change.absolute.value = -CHANGE_TOLERANCE
    else:
        change.direction = config_pb2.MetricDirection.LOWER_IS_BETTER
        change.absolute.value = CHANGE_TOLERANCE


def problem_type(candidate: ModelRef, batch) -> str:
    """classification/regression: the Trainer's record, or, for a module file's model, read off the label.

    A module's ``serving_default`` predicts from the raw label's values (TFX's penguin module:
    species 0, 1, 2), so few integral values mean classes and other numbers a regression; a
    string label means the module maps it to classes in a way only its own EvalConfig can say.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if candidate.problem_type in ("classification", "regression"):
        return candidate.problem_type
    label = candidate.label
    origin = (f"the model was trained by the user module {candidate.info.get('module_file')}"
              if candidate.info.get("module_file") else f"{candidate.saved_model_dir} has no kubetfx_model.json "
                                                        "from the built-in trainer")
    advice = f"give one, e.g. --set eval_config='{example_config(label or 'LABEL')}'"
    if not label or label not in batch.schema.names:
        raise ConfigError(f"no eval_config given and none can be derived: {origin} and names no label "
                          f"(label_column) found in the eval examples; {advice}")
    values = pc.list_flatten(batch.column(label))
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise ConfigError(f"no eval_config given and none can be derived: {origin} and its label '{label}' holds "
                          f"strings, which the module maps to classes its own way; {advice}")
    numbers = np.unique(np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64))
    integral = bool(np.all(np.mod(numbers, 1) == 0))
    return "classification" if integral and len(numbers) <= MAX_DERIVED_CLASSES else "regression"


def example_config(label: str) -> str:
    """An EvalConfig to start from for a module's model, in one line (what the messages show)."""
    return (f'model_specs {{ label_key: "{label}" }} metrics_specs {{ metrics {{ class_name: "ExampleCount" }} '
            'metrics { class_name: "SparseCategoricalAccuracy" threshold { value_threshold { lower_bound '
            '{ value: 0.6 } } } } }')


def default_config(candidate: ModelRef, slice_features: list[str], no_skill: dict, problem: str):
    """The default EvalConfig for a model whose problem is ``problem`` (see the module docstring)."""
    config_pb2 = _config_pb2()
    config = config_pb2.EvalConfig()
    config.model_specs.append(candidate_model_spec(candidate))
    config.slicing_specs.add()
    for name in slice_features:
        config.slicing_specs.add().feature_keys.append(name)
    metrics = config.metrics_specs.add()
    metrics.metrics.add(class_name="ExampleCount")
    if problem == "classification":
        accuracy = metrics.metrics.add(class_name="SparseCategoricalAccuracy")
        lower = max(MIN_ACCURACY, float(no_skill.get("accuracy") or 0.0))
        _threshold_overall(accuracy, {"lower_bound": round(lower, 6)}, higher_is_better=True)
        metrics.metrics.add(class_name="SparseCategoricalCrossentropy")
        metrics.metrics.add(class_name="MultiClassConfusionMatrixPlot")
    else:
        mse = metrics.metrics.add(class_name="MeanSquaredError")
        bound = {"upper_bound": float(no_skill["mean_squared_error"])} if no_skill.get("mean_squared_error") else {}
        _threshold_overall(mse, bound, higher_is_better=False)
        for name in ("MeanAbsoluteError", "MeanLabel", "MeanPrediction"):
            metrics.metrics.add(class_name=name)
    return config


def complete(config, candidate: ModelRef) -> list[str]:
    """Fill the user config's candidate ModelSpec gaps from kubetfx_model.json; returns notes."""
    config_pb2 = _config_pb2()
    candidates = [spec for spec in config.model_specs if not spec.is_baseline]
    if len(candidates) > 1:
        raise ConfigError(f"eval_config has {len(candidates)} candidate model_specs "
                          f"({', '.join(repr(s.name) for s in candidates)}); the Evaluator evaluates one model "
                          "(plus the baseline from the model repository)")
    if not candidates:  # no model_specs (or only a baseline one): the candidate gets a fresh spec
        specs = [config_pb2.ModelSpec()] + [copy for copy in config.model_specs]
        del config.model_specs[:]
        config.model_specs.extend(specs)
        candidates = [config.model_specs[0]]
    notes = []
    filled = fill_model_spec(candidates[0], candidate)
    if filled:
        notes.append(f"model_specs: {', '.join(filled)} filled in from kubetfx_model.json")
    if not candidates[0].label_key and not candidates[0].label_keys:
        raise ConfigError("eval_config: the model spec has no label_key and the model has no kubetfx_model.json "
                          "naming its label; set model_specs { label_key: \"...\" }")
    if not config.metrics_specs or not any(spec.metrics for spec in config.metrics_specs):
        raise ConfigError("eval_config has no metrics_specs with metrics; add e.g. "
                          "metrics_specs { metrics { class_name: \"ExampleCount\" } }")
    if not config.slicing_specs:
        config.slicing_specs.add()
        notes.append("slicing_specs: none given, the Overall slice added")
    return notes


def ensure_confusion_matrix(config) -> bool:
    """Add MultiClassConfusionMatrixPlot (classification) if absent; True if added.

    It goes into the first metrics spec that neither binarizes nor aggregates (there the plot would be
    per class or averaged), else into a new spec of its own.
    """
    for spec in config.metrics_specs:
        if any(m.class_name == "MultiClassConfusionMatrixPlot" for m in spec.metrics):
            return False
    plain = [spec for spec in config.metrics_specs if not spec.HasField("binarize") and
             not spec.HasField("aggregate")]
    target = plain[0] if plain else config.metrics_specs.add()
    target.metrics.add(class_name="MultiClassConfusionMatrixPlot")
    return True


# --------------------------------------------------------------------------- baseline


def count_change_thresholds(config) -> int:
    count = 0
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            count += int(metric.threshold.HasField("change_threshold"))
            count += sum(int(t.threshold.HasField("change_threshold")) for t in metric.per_slice_thresholds)
            count += sum(int(t.threshold.HasField("change_threshold")) for t in metric.cross_slice_thresholds)
        count += sum(int(t.HasField("change_threshold")) for t in spec.thresholds.values())
        for group in list(spec.per_slice_thresholds.values()) + list(spec.cross_slice_thresholds.values()):
            count += sum(int(t.threshold.HasField("change_threshold")) for t in group.thresholds)
    return count


def _clear_change_thresholds(config) -> None:
    """Drop every change threshold (TFX rubber stamp); value thresholds stay."""
    def clear(threshold):
        if threshold.ByteSize():
            threshold.ClearField("change_threshold")

    for spec in config.metrics_specs:
        for metric in spec.metrics:
            clear(metric.threshold)
            for item in list(metric.per_slice_thresholds) + list(metric.cross_slice_thresholds):
                clear(item.threshold)
        for threshold in spec.thresholds.values():
            clear(threshold)
        for group in list(spec.per_slice_thresholds.values()) + list(spec.cross_slice_thresholds.values()):
            for item in group.thresholds:
                clear(item.threshold)


def apply_baseline(config, has_baseline: bool):
    """TFX semantics: with a baseline, add it as a copy of the candidate spec ("candidate"/"baseline");
    without one, drop the baseline spec and every change threshold (rubber stamp).

    What TFMA's ``config_util.update_eval_config_with_defaults(has_baseline=..., rubber_stamp=not
    has_baseline)`` does (run_model_analysis applies it again: on our result it changes nothing),
    written here so the fast path does not import TFMA; a test checks both agree.
    """
    config_pb2 = _config_pb2()
    updated = config_pb2.EvalConfig()
    updated.CopyFrom(config)
    options = updated.options
    if options.compute_confidence_intervals.value and options.confidence_intervals.method == \
            config_pb2.ConfidenceIntervalOptions.UNKNOWN_CONFIDENCE_INTERVAL_METHOD:
        options.confidence_intervals.method = config_pb2.ConfidenceIntervalOptions.JACKKNIFE
    if has_baseline:
        baselines = [s for s in updated.model_specs if s.is_baseline]
        candidates = [s for s in updated.model_specs if not s.is_baseline]
        if baselines:  # the user configured the baseline spec: just make the names unambiguous
            candidates[0].name = candidates[0].name or CANDIDATE_NAME
            baselines[0].name = baselines[0].name or BASELINE_NAME
        elif len(updated.model_specs) == 1:
            updated.model_specs[0].name = CANDIDATE_NAME
            copy = updated.model_specs.add()
            copy.CopyFrom(updated.model_specs[0])
            copy.name, copy.is_baseline = BASELINE_NAME, True
    else:
        kept = [s for s in updated.model_specs if not s.is_baseline]
        del updated.model_specs[:]
        updated.model_specs.extend(kept)
        _clear_change_thresholds(updated)
    if not updated.model_specs:
        updated.model_specs.add()
    names = [spec.name for spec in updated.model_specs]
    if len(names) == 1:
        updated.model_specs[0].name = ""  # TFMA names a single model ""
        names = [""]
    for spec in updated.metrics_specs:
        if not spec.model_names:
            spec.model_names.extend(names)
        elif len(names) == 1:
            del spec.model_names[:]
            spec.model_names.append("")
    return updated


def parse_slice_features(value) -> list[str] | None:
    """``slice_features`` as a list (a list, a JSON list or a comma-separated string); None if unset."""
    parsed = params.string_list(value, "slice_features",
                                lambda text: [part.strip() for part in text.split(",") if part.strip()],
                                "['island', 'sex']")
    return None if parsed is None else list(dict.fromkeys(parsed))
