"""Evaluator executor: TFMA's metrics on the eval split, candidate vs the latest pushed model, a blessing.

Inputs: the RAW Examples from ExampleGen (``Split-<split>/``), the Trainer's Model
(``Format-Serving/`` + ``kubetfx_model.json``) and, optionally, a model repository
(``<baseline_repository>/<model_name>/<version>/``, what the Pusher writes) whose
newest version is the baseline.

Outputs (TFX layout): ``evaluation_dir`` holds TFMA's output as TFX's
``ModelEvaluation`` (``tfma.load_eval_result`` reads it); ``blessing_dir`` a
``ModelBlessing``: ``BLESSED``/``NOT_BLESSED`` + ``blessing.json`` naming each
failed threshold and slice. Both are written atomically, after everything
succeeded. Optional JSON files: overall metrics (``metrics_path``) and the
confusion matrix (``classification_metrics_path``); a Markdown report.

Semantics follow TFX's Evaluator: the verdict is TFMA's validation result
(``validation_ok``); without a baseline the candidate is rubber-stamped (change
thresholds dropped, value thresholds still apply). Slices are computed on the raw
feature values (``island:Biscoe``), not on the transformed ones (``island:0``):
TFMA prefers transformed features, so transformed features that shadow a raw
feature of the same name are dropped after the label has been read.

Two engines compute the same thing. The fast path (fast_path.py) runs each model
once over the eval examples and computes TFMA's standard metrics with numpy,
writing TFMA's output files; it is used whenever it covers the EvalConfig. TFMA on
Beam runs otherwise, and the report says why ("TFMA path: <reasons>").
``engine="tfma"`` forces TFMA, ``engine="fast"`` refuses to fall back.

Everything checkable is checked before either engine runs (see config_checks.py).
"""

from __future__ import annotations

import json
import os
import time

from kubetfx.components.common import blessing as blessing_lib
from kubetfx.components.common import examples, fileio, layout, model_repository, provenance
from kubetfx.components.common.errors import ConfigError, InputDataError, KubetfxError

ARTIFACT_TYPE = "ModelEvaluation"
BLESSING_TYPE = "ModelBlessing"
VERSION_PACKAGES = ("kubetfx", "tensorflow", "tensorflow-model-analysis", "apache-beam", "tfx-bsl")
_UNBATCH_STAGE = "ExtractUnbatchedInputs"
AUTO, FAST, TFMA = "auto", "fast", "tfma"
ENGINES = (AUTO, FAST, TFMA)


# --------------------------------------------------------------------------- helpers


def _check_output_free(path: str, what: str) -> None:
    if not path:
        raise ConfigError(f"no {what} directory given")
    if os.path.isdir(path) and os.listdir(path):
        raise ConfigError(f"{what} directory {path} already exists and is not empty; refusing to overwrite it")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{what} path {path} exists and is not a directory")


def _no_skill(batch, label: str, problem: str, split: str) -> dict:
    """The best constant predictor on the eval data: majority class accuracy / mean-label MSE."""
    import numpy as np
    import pyarrow.compute as pc

    if not label or label not in batch.schema.names:
        return {}
    values = pc.list_flatten(batch.column(label))
    if len(values) == 0:
        return {}
    if problem == "classification":
        counts = pc.value_counts(values).to_pylist()
        top = max(counts, key=lambda item: item["counts"])
        name = top["values"].decode("utf-8", "replace") if isinstance(top["values"], bytes) else str(top["values"])
        accuracy = top["counts"] / len(values)
        return {"accuracy": accuracy, "majority_class": name,
                "description": f"always predicting the most frequent class '{name}' of the {split} split "
                               f"gives accuracy {accuracy:.4g}."}
    if problem == "regression":
        y = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        mse = float(np.mean((y - y.mean()) ** 2))
        mae = float(np.mean(np.abs(y - np.median(y))))
        return {"mean_squared_error": mse, "mean_absolute_error": mae, "mean_label": float(y.mean()),
                "description": f"predicting the mean label {y.mean():.4g} of the {split} split gives MSE {mse:.4g}; "
                               f"the median gives MAE {mae:.4g}."}
    return {}


def _prefer_raw_features(extracts, model_names: tuple, raw_keys: frozenset):
    """Drop transformed features that shadow a raw feature (slices then use raw values)."""
    from tensorflow_model_analysis import constants

    transformed = extracts.get(constants.TRANSFORMED_FEATURES_KEY)
    if not transformed:
        return extracts

    def strip(features):
        return {k: v for k, v in features.items() if k not in raw_keys}

    if len(model_names) > 1 and all(isinstance(transformed.get(name), dict) for name in model_names
                                    if name in transformed):
        stripped = {name: strip(value) if isinstance(value, dict) else value for name, value in transformed.items()}
    else:
        stripped = strip(transformed)
    copy = dict(extracts)
    copy[constants.TRANSFORMED_FEATURES_KEY] = stripped or None
    return copy


def _run_tfma(config, candidate, baseline, data_location: str, output_path: str, raw_keys: set,
              beam_args: list[str]) -> None:
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_model_analysis.extractors import extractor

    from kubetfx.components.evaluator import models, results

    candidate_name, baseline_name = results.model_names(config)
    try:
        shared = [tfma.default_eval_shared_model(candidate.saved_model_dir, eval_config=config,
                                                 model_name=candidate_name, rubber_stamp=baseline is None)]
        if baseline is not None:
            shared.append(tfma.default_eval_shared_model(baseline.saved_model_dir, eval_config=config,
                                                         model_name=baseline_name))
        extractors = tfma.default_extractors(eval_shared_model=shared, eval_config=config)
        stages = [e.stage_name for e in extractors]
        position = stages.index(_UNBATCH_STAGE) if _UNBATCH_STAGE in stages else len(extractors)
        names = tuple(spec.name for spec in config.model_specs)
        extractors.insert(position, extractor.Extractor(
            stage_name="KubetfxPreferRawSliceFeatures",
            ptransform=beam.Map(_prefer_raw_features, model_names=names, raw_keys=frozenset(raw_keys))))
        tfma.run_model_analysis(eval_shared_model=shared if len(shared) > 1 else shared[0], eval_config=config,
                                data_location=data_location, output_path=output_path, extractors=extractors,
                                pipeline_options=PipelineOptions(beam_args))
    except KubetfxError:
        raise
    except Exception as err:  # TFMA/Beam/TF raise anything; name the model and the cause
        message = str(err)
        line = models.error_line(err)
        # Which model is it? The message often names the path; otherwise try loading each (error path only).
        for model in [m for m in (baseline, candidate) if m is not None]:
            problem = line if model.saved_model_dir in message else models.load_error(model.saved_model_dir)
            if problem:
                raise models.cannot_load(model, problem) from err
        which = candidate.describe() + (f" and {baseline.describe()}" if baseline is not None else "")
        raise ConfigError(f"TFMA failed evaluating {which} on {data_location}: {line}") from err


# --------------------------------------------------------------------------- entry point


def _engine_choice(engine: str, not_covered: list[str]) -> str:
    """FAST or TFMA for ``engine`` (auto | fast | tfma) given what the fast path does not cover."""
    if engine not in ENGINES:
        raise ConfigError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == FAST and not_covered:
        raise ConfigError("engine 'fast' was asked for, but the fast path does not cover: " + "; ".join(not_covered))
    if engine == AUTO:
        return TFMA if not_covered else FAST
    return engine


def _tfma_evaluation(config, evaluation_dir: str):
    """TFMA's output read back (metrics, validation, plots) as the executor needs it."""
    import tensorflow_model_analysis as tfma

    from kubetfx.components.evaluator import fast_path, results

    slices = results.load_metrics(evaluation_dir, config)
    return fast_path.Evaluation(slices, tfma.load_validation_result(evaluation_dir), results.checks(slices, config),
                                list(tfma.load_plots(evaluation_dir)))


def run(examples_dir: str, model_dir: str, evaluation_dir: str, blessing_dir: str, report_path: str | None = None,
        metrics_path: str | None = None, classification_metrics_path: str | None = None, eval_config: str = "",
        baseline_repository: str = "", model_name: str = "", split: str = "eval",
        slice_features: list | str | None = None, beam_pipeline_args: list[str] | str | None = None,
        engine: str = AUTO) -> dict:
    """Evaluate, validate against thresholds (and the baseline), bless or not; returns the artifact metadata.

    The result holds ``blessed`` (1/0), ``baseline_version``, ``metrics`` (candidate, Overall), ``reasons``,
    ``eval_config`` (text proto actually used), ``confusion_matrix``, ``engine`` (fast / tfma) with
    ``engine_reasons`` (why TFMA ran) and ``blessing`` (ModelBlessing metadata). ``engine``: ``auto`` uses
    the fast path whenever it covers the EvalConfig; ``fast`` fails when it does not; ``tfma`` always runs TFMA.
    """
    from kubetfx.components.evaluator import config_checks, eval_config as config_lib

    if not isinstance(split, str) or not split.strip():
        raise ConfigError(f"split: expected a split name such as 'eval', got {split!r}")
    split = split.strip()
    _engine_choice(engine, [])  # an unknown engine fails before any work
    slice_list = config_lib.parse_slice_features(slice_features)
    repository = (baseline_repository or "").strip()
    name = (model_name or "").strip()
    if repository and not name:
        raise ConfigError("baseline_repository is set but model_name is empty: give the model name the Pusher "
                          "pushes under (<baseline_repository>/<model_name>/<version>)")
    if name:
        model_repository.check_model_name(name)
    from kubetfx.components.common.beam_args import parse_beam_args

    beam_args = parse_beam_args(beam_pipeline_args)
    _check_output_free(evaluation_dir, "evaluation")
    _check_output_free(blessing_dir, "blessing")
    examples.split_files(examples_dir, split)  # InputDataError naming the splits present
    data_location = os.path.join(layout.split_dir(examples_dir, split), "*")
    records = examples.read_split_records(examples_dir, split)  # read once: the fast path feeds them to the models
    batch = examples.decode_examples(records, source=layout.split_dir(examples_dir, split))
    if batch.num_rows == 0:
        raise InputDataError(f"split '{split}' of {examples_dir} has no examples to evaluate on")

    from kubetfx.components.evaluator import fast_path, models, report, results

    candidate = models.resolve_candidate(model_dir)
    baseline = models.resolve_baseline(repository, name) if repository else None
    if baseline is not None:
        for field in ("label", "problem_type"):
            mine, theirs = candidate.info.get(field), baseline.info.get(field)
            if mine and theirs and mine != theirs:
                raise ConfigError(f"the candidate's {field} '{mine}' differs from the {baseline.describe()}'s "
                                  f"'{theirs}': they cannot be compared; push under another model_name")
    raw_features = set(batch.schema.names)
    config = config_lib.load(eval_config)
    problem = candidate.problem_type if config is not None else config_lib.problem_type(candidate, batch)
    no_skill = _no_skill(batch, candidate.label, problem, split)
    if slice_list:
        unknown = [f for f in slice_list if f not in raw_features]
        if unknown:
            raise ConfigError(f"slice_features: {', '.join(unknown)} not in the {split} examples "
                              f"(features: {', '.join(sorted(raw_features))})")

    notes = []
    if config is None:
        slices = slice_list if slice_list is not None else config_lib.default_slice_features(batch, candidate.label)
        config = config_lib.default_config(candidate, slices, no_skill, problem)
        derived_from = "kubetfx_model.json" if problem == candidate.problem_type else \
            f"the label '{candidate.label}' ({problem}) of a module file's model"
        if candidate.info.get("label_mapping"):
            derived_from = (f"the module's transform graph ({candidate.info['label_mapping']}): label_key "
                            f"'{candidate.info.get('transformed_label')}' read through preprocessing_function_names "
                            "'transform_features'")
        notes.append(f"default EvalConfig derived from {derived_from}"
                     + (f"; slices on {', '.join(slices)}" if slices else ""))
    else:
        notes += config_lib.complete(config, candidate)
        present = {tuple(spec.feature_keys) for spec in config.slicing_specs}
        for feature in slice_list or []:
            if (feature,) not in present:
                config.slicing_specs.add().feature_keys.append(feature)
    if problem == "classification" and config_lib.ensure_confusion_matrix(config):
        notes.append("MultiClassConfusionMatrixPlot added for the confusion matrix")
    config_checks.validate_thresholds(config)
    change_thresholds = config_lib.count_change_thresholds(config)
    config = config_lib.apply_baseline(config, baseline is not None)
    if baseline is not None:
        for spec in config.model_specs:
            if spec.is_baseline:
                config_lib.fill_model_spec(spec, baseline)
    config_checks.validate(config, candidate, baseline, raw_features, config_lib.string_features(batch))
    engine_reasons = fast_path.unsupported(config, candidate, baseline, batch, beam_args) if engine != TFMA else \
        ["engine 'tfma' was asked for"]
    used = _engine_choice(engine, engine_reasons if engine != TFMA else [])
    if used == TFMA:
        config_checks.validate_for_tfma(config)
    config_text = config_lib.to_text(config)

    rubber_stamp = baseline is None
    baseline_label = f"baseline version {baseline.version}" if baseline is not None else "the baseline"
    with fileio.atomic_directory(evaluation_dir) as evaluation_tmp:
        started = time.perf_counter()
        outcome = None
        if used == FAST:
            try:
                outcome = fast_path.evaluate(config, candidate, baseline, records, batch, evaluation_tmp,
                                             data_location, rubber_stamp)
            except fast_path.Unsupported as err:  # found in the data (e.g. the predictions' shape)
                if engine == FAST:
                    raise ConfigError("engine 'fast' was asked for, but the fast path does not cover: "
                                      + "; ".join(err.reasons)) from None
                used, engine_reasons = TFMA, err.reasons
                config_checks.validate_for_tfma(config)
        if outcome is None:
            del records  # TFMA reads the files itself
            _run_tfma(config, candidate, baseline, data_location, evaluation_tmp, raw_features, beam_args)
            outcome = _tfma_evaluation(config, evaluation_tmp)
        else:
            engine_reasons = []
        analysis_seconds = time.perf_counter() - started
        slices, validation, checks = outcome.slices, outcome.validation, outcome.checks
        matrix = None
        if any(m.class_name == "MultiClassConfusionMatrixPlot" for s in config.metrics_specs for m in s.metrics):
            rows = results.confusion_matrix_from_protos(outcome.plots, config, len(candidate.class_names))
            if rows is not None:
                categories = candidate.class_names if len(candidate.class_names) == len(rows) \
                    else [str(i) for i in range(len(rows))]
                matrix = {"categories": categories, "matrix": rows}
        blessed = bool(validation.validation_ok)
        if blessed:
            reasons = []
            if rubber_stamp:
                where = f"{repository} has no version of '{name}'" if repository else "no baseline_repository given"
                reasons.append(f"no baseline model ({where}): rubber stamp — {change_thresholds} change "
                               "threshold(s) skipped, value thresholds applied")
            passed = [c for c in checks if c.passed]
            if passed:
                reasons.append(f"all {len(passed)} threshold check(s) passed: "
                               + "; ".join(c.describe(baseline_label) for c in passed))
            elif not rubber_stamp:
                reasons.append("validation passed")
            else:
                reasons.append("no value thresholds to check")
        else:
            reasons = results.failures(validation, config, slices, baseline_label)
        overall = next((s for s in slices if s.name == results.OVERALL), None)
        metrics = {k: v["candidate"] for k, v in (overall.metrics if overall else {}).items() if "candidate" in v}
        baseline_metrics = {k: v["baseline"] for k, v in (overall.metrics if overall else {}).items()
                            if "baseline" in v}
        details = {"candidate_path": candidate.saved_model_dir,
                   "baseline_version": baseline.version if baseline else None,
                   "baseline_path": baseline.saved_model_dir if baseline else None,
                   "rubber_stamp": rubber_stamp, "metrics": metrics, "baseline_metrics": baseline_metrics,
                   "checks": [c.__dict__ for c in checks], "split": split}
        with fileio.atomic_directory(blessing_dir) as blessing_tmp:
            blessing_lib.write_blessing(blessing_tmp, blessed, reasons, details=details)

    info = {
        "blessed": blessed, "reasons": reasons, "split": split, "eval_examples": batch.num_rows,
        "model_name": name, "baseline_repository": repository,
        "baseline_version": baseline.version if baseline else None,
        "baseline_path": baseline.saved_model_dir if baseline else None,
        "candidate_path": candidate.saved_model_dir, "data_location": data_location,
        "skipped_change_thresholds": change_thresholds if rubber_stamp else 0,
        "slices": [{"slice": s.name, "metrics": s.metrics} for s in slices],
        "checks": [c.__dict__ for c in checks], "no_skill": no_skill, "confusion_matrix": matrix,
        "eval_config": config_text, "config_notes": notes, "engine": used, "engine_reasons": engine_reasons,
        "analysis_seconds": analysis_seconds,
    }
    if metrics_path:
        fileio.atomic_write(metrics_path, json.dumps(metrics, indent=2, sort_keys=True))
    if classification_metrics_path and matrix is not None:
        fileio.atomic_write(classification_metrics_path, json.dumps(matrix, indent=2))
    if report_path:
        fileio.atomic_write(report_path, report.render(info))
    return {
        layout.TFX_TYPE: ARTIFACT_TYPE, "blessed": int(blessed), "validation_ok": int(blessed),
        "rubber_stamp": int(rubber_stamp), "baseline_version": info["baseline_version"],
        "baseline_path": info["baseline_path"], "model_name": name, "split": split,
        "eval_examples": batch.num_rows, "metrics": metrics, "baseline_metrics": baseline_metrics,
        "no_skill": {k: v for k, v in no_skill.items() if k != "description"}, "reasons": reasons,
        "failed_checks": [c.describe(baseline_label) for c in checks if not c.passed],
        "slices": [s.name for s in slices], "eval_config": config_text, "confusion_matrix": matrix,
        "engine": used, "engine_reasons": engine_reasons, "analysis_seconds": round(analysis_seconds, 3),
        "package_versions": provenance.package_versions(VERSION_PACKAGES),
        "blessing": {layout.TFX_TYPE: BLESSING_TYPE, "blessed": int(blessed), "reasons": reasons,
                     "current_model": candidate.saved_model_dir,
                     "baseline_model": info["baseline_path"], "baseline_version": info["baseline_version"],
                     "rubber_stamp": int(rubber_stamp)},
    }
