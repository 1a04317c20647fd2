"""ExampleValidator executor: TFDV-style validation of statistics against a schema, without TFDV.

For every split of a StatisticsGen artifact it checks the split's
``DatasetFeatureStatistics`` against a TFMD ``Schema`` (``data_validation/validation.py``:
the checks and the anomaly types, as TFDV reports them) and writes a TFMD
``Anomalies`` proto to ``Split-<split>/SchemaDiff.pb`` (TFX layout), plus an
optional Markdown report.

With ``comparison_statistics_dir``, drift (each split vs the same split of the
comparison) or skew (split ``train`` vs the comparison's ``serving`` split):
L-infinity distance for categorical features, Jensen–Shannon divergence for
numeric ones (``data_validation/comparison.py``; ``COMPARATOR_L_INFTY_HIGH`` /
``COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH`` above the threshold). Every measured
distance is recorded in ``drift_skew_info``, with or without a threshold.

Anomaly counts count reasons: a feature with two problems counts twice.
"""

from __future__ import annotations

import json
import math
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2

from kubetfx.components.common import fileio, layout, report, tfmd
from kubetfx.components.common.errors import AnomaliesFoundError, ConfigError, InputDataError
from kubetfx.components.data_validation import validation
from kubetfx.components.data_validation.comparison import compare_split, comparison_finding
from kubetfx.components.data_validation.validation import (SERVING, SKEW_SERVING_SPLIT, SKEW_TRAIN_SPLIT, TRAINING,
                                                           SplitResult)

ARTIFACT_TYPE = "ExampleAnomalies"
COMPARISON_MODES = ("drift", "skew")
_Measure = anomalies_pb2.DriftSkewInfo.Measurement
_MEASURE_NAMES = {_Measure.L_INFTY: "L-infinity", _Measure.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence"}


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
    """First line: how many, and the first two as split/feature TYPE; then one line per anomaly, then what to do."""
    found = [(split, f) for split, result in results.items() for f in result.findings]
    named = ", ".join(f"{split}/{f.feature} {f.type_name}" for split, f in found[:2])
    lines = [f"ExampleValidator found {total} anomal{'y' if total == 1 else 'ies'}: {named}"
             + (f" and {len(found) - 2} more" if len(found) > 2 else "")]
    lines += [f"{split}/{f.feature}: {f.type_name}: {f.description}" for split, f in found]
    lines.append(f"Anomalies written to {output_dir}. To proceed: fix the data; or, if the change is expected, "
                 "update/curate the schema (extend the domain, relax presence/value counts, set drift/skew comparator "
                 "thresholds, mark features not_in_environment); or set fail_on_anomalies=False to record anomalies "
                 "without failing.")
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
    index = validation.SchemaIndex(schema, schema_file)
    current = tfmd.read_all_statistics(statistics_dir)
    results = {split: validation.validate_split(index, split, dataset) for split, dataset in current.items()}
    if comparison_statistics_dir:
        comparison = tfmd.read_all_statistics(comparison_statistics_dir)
        _add_comparisons(index, results, current, comparison, mode, linf_threshold, jsd_threshold,
                         comparison_statistics_dir)

    with fileio.atomic_directory(output_dir) as temp:
        for split, result in results.items():
            tfmd.write_anomalies(temp, split, validation.build_anomalies(schema, result))
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
