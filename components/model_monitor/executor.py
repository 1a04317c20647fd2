"""Model monitor: what the served model sees vs what it was trained on, and whether to retrain.

Reads a window of the prediction log (``common/prediction_log.py``: a time range or the last N
records), computes statistics of the logged features **with the code StatisticsGen uses**, and checks
them against the model's schema and training statistics **with the code ExampleValidator uses**
(both in ``data_validation/``):

* schema anomalies in the SERVING environment (new categories, missing features, type changes,
  out-of-range values), exactly the anomaly types ExampleValidator reports;
* training/serving skew per feature: L-infinity distance for categorical features,
  Jensen-Shannon divergence for numeric ones, with each feature's threshold from the schema's
  ``skew_comparator`` (like TFDV) or the monitor's defaults;
* drift over time: the same distances per time slice of the window (for the plots);
* with ground truth (a CSV/JSONL file of request_id[, instance], label), live quality —
  accuracy or MAE/RMSE — against the metrics recorded for the serving version.

Decision: retrain on what a retrain can fix -- skew/drift and a live quality drop -- with one reason per
finding; schema anomalies (a type change, a new category, a missing feature) are alerts, never a
retrain: the next version would meet the same clients. The window starts no earlier than the push
of the version compared against, so the log a retrain was decided on cannot ask for it again; too
few records (or none) decide nothing, and say so. Outputs: TFMD
``Anomalies`` (``Split-serving/SchemaDiff.pb``) and the serving statistics beside them, an HTML
report with plots (training vs serving distribution per feature, distance per time slice), KFP
metrics, a Prometheus text file (``kubetfx_feature_skew{...}``), and ``decision.json``.
"""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from kubetfx.components.common import feature_values, fileio, prediction_log, provenance, tfmd
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.data_validation import comparison, statistics, validation
from kubetfx.components.model_monitor import canary as canary_lib, plots

SERVING_SPLIT = validation.SKEW_SERVING_SPLIT  # the split name validated in the SERVING environment
DEFAULT_LINF = 0.2
DEFAULT_JSD = 0.1
DEFAULT_QUALITY_DROP = 0.05
DEFAULT_MIN_RECORDS = 100
TIME_SLICES = 8
# What a retrain can fix: the data moved (skew/drift). A schema anomaly (a type change, a new category, a missing
# feature) is the clients' or the schema's to fix: the next version would meet the same requests.
RETRAINABLE = frozenset({anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
                         anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH})
DECISION_FILE = "decision.json"
PROMETHEUS_FILE = "drift.prom"


# ----------------------------------------------------------------------------- records -> statistics


def _value_type(values: list, expected: int | None = None) -> pa.DataType:
    """What tf.Example type the logged values are. With the schema's type: a value the predictor accepts for it
    (``181.0`` for an INT, ``39`` for a FLOAT: ``feature_values``) is of that type; otherwise, or without one,
    int64 (ints, bools), float32 (any float), else string -- a type of its own when the requests disagree with
    the schema, which ExampleValidator's checks then report as a type change."""
    if values and expected == schema_pb2.INT and all(feature_values.integral(v) is not None for v in values):
        return pa.int64()
    if values and expected == schema_pb2.FLOAT and all(feature_values.is_number(v) for v in values):
        return pa.float32()
    if values and all(isinstance(v, (bool, int)) for v in values):
        return pa.int64()
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return pa.float32()
    return pa.string()


def _column(values: list, expected: int | None = None) -> pa.Array:
    """A list column (as decoded from tf.Examples): None or an absent key is a missing value."""
    rows = [None if value is None else [v for v in (value if isinstance(value, list) else [value]) if v is not None]
            for value in values]
    kind = _value_type([v for row in rows if row for v in row], expected)
    if kind == pa.string():
        rows = [None if row is None else [v if isinstance(v, str) else json.dumps(v) for v in row] for row in rows]
    elif kind == pa.int64():
        rows = [None if row is None else [int(v) for v in row] for row in rows]
    return pa.array(rows, type=pa.list_(kind))


def features_table(records: list[dict], schema: schema_pb2.Schema | None = None) -> pa.Table:
    """One list column per feature name seen in the records (a missing key is a missing value), typed as the
    predictor typed the values it accepted (the schema's INT/FLOAT)."""
    types = {feature.name: feature.type for feature in schema.feature} if schema is not None else {}
    names = sorted({name for record in records for name in (record.get("features") or {})})
    return pa.table({name: _column([(record.get("features") or {}).get(name) for record in records], types.get(name))
                     for name in names}) if names else pa.table({})


def serving_statistics(table: pa.Table) -> statistics_pb2.DatasetFeatureStatistics:
    return statistics.generate_statistics(table, SERVING_SPLIT).datasets[0]


# ----------------------------------------------------------------------------- quality


def read_labels(path: str) -> dict[tuple[str, int], object]:
    """(request_id, instance) -> label, from CSV (header: request_id[,instance],label) or JSONL."""
    if not os.path.isfile(path):
        raise ConfigError(f"labels: file {path} not found")
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        if path.endswith((".jsonl", ".json")):
            rows = [json.loads(line) for line in handle if line.strip()]
        else:
            rows = list(csv.DictReader(handle))
    labels = {}
    for number, row in enumerate(rows, start=1):
        if "request_id" not in row or "label" not in row:
            raise ConfigError(f"labels {path}: row {number} needs request_id and label (and optionally instance)")
        labels[(str(row["request_id"]), int(row.get("instance") or 0))] = row["label"]
    return labels


def live_quality(records: list[dict], labels: dict, problem_type: str) -> dict | None:
    """Accuracy (classification) or MAE/RMSE (regression) on the records that have a label."""
    pairs = [(record["prediction"], labels[key]) for record in records
             if (key := (str(record["request_id"]), int(record.get("instance", 0)))) in labels]
    if not pairs:
        return None
    if problem_type == "classification":
        hits = [str(prediction.get("class")) == str(label) for prediction, label in pairs]
        return {"labelled": len(pairs), "accuracy": float(np.mean(hits))}
    errors = np.array([float(prediction.get("prediction")) - float(label) for prediction, label in pairs])
    return {"labelled": len(pairs), "mae": float(np.mean(np.abs(errors))), "rmse": float(np.sqrt(np.mean(errors ** 2)))}


def quality_findings(live: dict | None, reference: dict, tolerance: float) -> list[str]:
    """Reasons to retrain: live accuracy below, or live error above, the reference by more than ``tolerance``."""
    if not live:
        return []
    reasons = []
    if "accuracy" in live and reference.get("eval_accuracy") is not None:
        expected = float(reference["eval_accuracy"])
        if live["accuracy"] < expected - tolerance:
            reasons.append(f"live accuracy {live['accuracy']:.4f} on {live['labelled']} labelled requests is below "
                           f"the serving version's evaluation accuracy {expected:.4f} by more than {tolerance}")
    for metric in ("mae", "rmse"):
        expected = reference.get(f"eval_{metric}")
        if metric in live and expected is not None and live[metric] > float(expected) * (1 + tolerance):
            reasons.append(f"live {metric.upper()} {live[metric]:.4g} on {live['labelled']} labelled requests is "
                           f"above the serving version's evaluation {metric.upper()} {float(expected):.4g} "
                           f"by more than {tolerance:.0%}")
    return reasons


# ----------------------------------------------------------------------------- the run


def _time_slices(total: int, count: int) -> list[tuple[int, int]]:
    """``count`` consecutive [lo, hi) row ranges of about equal size (records are in time order)."""
    count = max(1, min(count, total // 50 or 1))
    bounds = np.linspace(0, total, count + 1).astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def run(prediction_log_dir: str, model_name: str, training_statistics: str, schema_path: str, output_dir: str, *,
        start: str = "", end: str = "", last_n: int = 0, labels: str = "", model_info: dict | None = None,
        since: float | None = None, since_reason: str = "", canary: dict | None = None,
        linf_threshold: float = DEFAULT_LINF, jsd_threshold: float = DEFAULT_JSD,
        quality_tolerance: float = DEFAULT_QUALITY_DROP, min_records: int = DEFAULT_MIN_RECORDS,
        report_path: str | None = None, metrics_path: str | None = None) -> dict:
    """Monitor one window of ``model_name``'s prediction log; write the outputs; return the decision metadata.

    ``training_statistics``: a FeatureStats.pb file or a statistics artifact dir (its ``train`` split).
    ``model_info``: the serving version's kubetfx_model.json (problem type, evaluation metrics).
    ``since``: no record before this time (seconds since the epoch) counts, whatever ``start`` says -- the push of
    the version compared against (``since_reason`` says so in the outputs).
    ``canary``: a rollout in progress -- {"stable", "canary" (versions), "settings" (CanarySettings), "training"
    ({version: training statistics})}: the two versions are compared (``canary.py``), and a retrain waits.
    """
    if last_n and (start or end):
        raise ConfigError("give a time window (start/end) or last_n, not both")
    if last_n < 0 or min_records < 1:
        raise ConfigError("last_n must be >= 0 and min_records >= 1")
    schema = tfmd.read_schema(schema_path)
    training = _read_training_statistics(training_statistics)
    low, clipped = start, False
    if since is not None and (not start or prediction_log.parse_time(start, "start").timestamp() < since):
        low, clipped = prediction_log.utc_time(since), True
    # Files still being written count too: a predictor that is serving now keeps its current file open.
    records, skipped = prediction_log.read_records(prediction_log_dir, model_name, low, end, last_n,
                                                   include_open=True)
    window = {"start": records[0]["time"] if records else low, "end": records[-1]["time"] if records else end,
              "records": len(records), "unreadable_lines": skipped,
              "versions": sorted({str(r.get("model_version")) for r in records}),
              "since": {"time": prediction_log.utc_time(since), "reason": since_reason} if clipped else None}
    deleted = prediction_log.retention(prediction_log_dir, model_name)
    if deleted and deleted.get("deleted_through") and (not low or prediction_log.parse_time(low, "start") <=
                                                       prediction_log.parse_time(deleted["deleted_through"], "log")):
        window["retention"] = deleted  # the window reaches back past what the log kept
    metadata = {"tfx_type": "ModelMonitoring", "model_name": model_name, "window": window,
                "package_versions": provenance.package_versions()}
    info = model_info or {}
    label_map = read_labels(labels) if labels else None
    index = validation.SchemaIndex(schema, schema_path)
    if canary:
        metadata["canary"] = canary_lib.evaluate(
            records, str(canary["stable"]), str(canary["canary"]), label_map, info.get("problem_type", ""),
            canary["settings"], {version: _largest_skew(index, schema, _read_training_statistics(path),
                                                        [r for r in records if str(r.get("model_version")) == version],
                                                        linf_threshold, jsd_threshold)
                                 for version, path in (canary.get("training") or {}).items()})
    if len(records) < min_records:
        where = f"since {since_reason} ({window['since']['time']})" if clipped and since_reason else "in the window"
        decision = {"retrain": False, "reasons": [], "alerts": [],
                    "note": f"only {len(records)} logged predictions {where} (min_records {min_records}): "
                            "nothing decided"}
        return _finish(output_dir, metadata, decision, None, None, {}, [], report_path, metrics_path)

    table = features_table(records, schema)
    serving = serving_statistics(table)
    result = validation.validate_split(index, SERVING_SPLIT, serving)
    result.comparison_kind = "skew"
    result.comparison_note = "Skew: the training split vs the logged serving requests."
    training_env = validation.TRAINING if index.uses_environments else None
    serving_env = validation.SERVING if index.uses_environments else None
    result.measurements = comparison.compare_split(index, training, serving, "skew", linf_threshold, jsd_threshold,
                                                   (training_env, serving_env))
    result.findings += [comparison.comparison_finding(m, "skew") for m in result.measurements if m.anomalous]
    over_time = []
    for lo, hi in _time_slices(len(records), TIME_SLICES):
        measured = comparison.compare_split(index, training, serving_statistics(table.slice(lo, hi - lo)), "skew",
                                            linf_threshold, jsd_threshold, (training_env, serving_env))
        over_time.append({"start": records[lo]["time"], "end": records[hi - 1]["time"],
                          "distances": {m.feature: m.value for m in measured}})
    live = live_quality(records, label_map, info.get("problem_type", "")) if labels else None
    said = {True: [], False: []}  # retrainable -> reasons
    for finding in result.findings:
        said[finding.type in RETRAINABLE].append(f"{finding.feature}: {finding.type_name}: {finding.description}")
    reasons = said[True] + quality_findings(live, info.get("metrics") or {}, quality_tolerance)
    decision = {"retrain": bool(reasons), "reasons": reasons, "alerts": said[False]}
    if canary and reasons:  # the next version would start a second rollout before this one is decided
        decision.update(retrain=False, deferred=f"a canary rollout of version {canary['canary']} is in progress: "
                                                "retraining waits for its promotion or rollback")
    anomalies = validation.build_anomalies(schema, result)
    tfmd.write_anomalies(output_dir, SERVING_SPLIT, anomalies)
    stats_list = statistics_pb2.DatasetFeatureStatisticsList()
    stats_list.datasets.append(serving)
    tfmd.write_statistics(output_dir, SERVING_SPLIT, stats_list)
    metadata["live_quality"] = live
    plot_data = plots.PlotData(training, serving, result.measurements, over_time)
    return _finish(output_dir, metadata, decision, result, plot_data, live or {}, over_time, report_path,
                   metrics_path)


def _largest_skew(index, schema, training, records: list[dict], linf: float, jsd: float) -> str:
    """One version's traffic against its own training data: the feature furthest from it, for the canary report."""
    if not records:
        return "no records"
    serving_env = validation.SERVING if index.uses_environments else None
    training_env = validation.TRAINING if index.uses_environments else None
    measured = comparison.compare_split(index, training, serving_statistics(features_table(records, schema)), "skew",
                                        linf, jsd, (training_env, serving_env))
    worst = max(measured, key=lambda m: m.value, default=None)
    return f"{worst.feature} {worst.value:.4g}" if worst else "none measured"


def _read_training_statistics(path: str) -> statistics_pb2.DatasetFeatureStatistics:
    if os.path.isdir(path):
        return tfmd.read_statistics(path, validation.SKEW_TRAIN_SPLIT).datasets[0]
    if not os.path.isfile(path):
        raise InputDataError(f"training statistics {path} not found (a FeatureStats.pb file or a statistics "
                             "artifact dir)")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as handle:
        stats.ParseFromString(handle.read())
    if not stats.datasets:
        raise InputDataError(f"training statistics {path} hold no dataset")
    return stats.datasets[0]


def prometheus_text(model_name: str, measurements: list, decision: dict, records: int) -> str:
    """Gauges for Prometheus' node-exporter textfile collector (or any scraper of the file)."""
    lines = ["# HELP kubetfx_feature_skew Training/serving distance of a feature (L-infinity or Jensen-Shannon).",
             "# TYPE kubetfx_feature_skew gauge"]
    for m in measurements:
        measure = "linf" if m.measure == plots.L_INFTY else "jsd"
        lines.append(f'kubetfx_feature_skew{{model="{model_name}",feature="{m.feature}",measure="{measure}"}} '
                     f"{m.value:.6g}")
    lines += ["# HELP kubetfx_monitor_retrain 1 when the last monitor run decided to retrain.",
              "# TYPE kubetfx_monitor_retrain gauge", f'kubetfx_monitor_retrain{{model="{model_name}"}} '
              f"{int(decision['retrain'])}",
              "# HELP kubetfx_monitor_alerts Schema anomalies (not fixed by retraining) in the last monitor run.",
              "# TYPE kubetfx_monitor_alerts gauge",
              f'kubetfx_monitor_alerts{{model="{model_name}"}} {len(decision.get("alerts") or [])}',
              "# HELP kubetfx_monitor_records Logged predictions in the last monitor run's window.",
              "# TYPE kubetfx_monitor_records gauge", f'kubetfx_monitor_records{{model="{model_name}"}} {records}']
    return "\n".join(lines) + "\n"


def _finish(output_dir, metadata, decision, result, plot_data, live, over_time, report_path, metrics_path) -> dict:
    measurements = result.measurements if result else []
    if metadata.get("canary"):
        decision["canary"] = {key: metadata["canary"][key] for key in ("action", "reason", "stable", "canary")}
    metadata.update(decision=decision, retrain=int(decision["retrain"]),
                    skew={m.feature: round(m.value, 6) for m in measurements},
                    anomalies=sorted({f.feature for f in result.findings}) if result else [])
    os.makedirs(output_dir, exist_ok=True)
    fileio.atomic_write(os.path.join(output_dir, DECISION_FILE), json.dumps(decision, indent=2))
    fileio.atomic_write(os.path.join(output_dir, PROMETHEUS_FILE),
                        prometheus_text(metadata["model_name"], measurements, decision,
                                        metadata["window"]["records"]))
    metrics = {"records": metadata["window"]["records"], "retrain": int(decision["retrain"]),
               **{f"skew_{name}": value for name, value in metadata["skew"].items()},
               **{f"live_{k}": v for k, v in live.items() if isinstance(v, (int, float)) and not math.isnan(v)}}
    if metrics_path:
        fileio.atomic_write(metrics_path, json.dumps(metrics, indent=2, sort_keys=True))
    if report_path:
        fileio.atomic_write(report_path, plots.render_html(metadata, decision, result, plot_data, over_time))
    return metadata


def serving_version_files(model_repository_base: str, model_name: str, version: int = 0,
                          work_dir: str | None = None) -> tuple[int, dict]:
    """(version, {"schema", "statistics", "info"} paths) of a pushed version (0: the latest).

    The Pusher puts the training schema and statistics beside the model; an object-store
    repository's files are copied to ``work_dir`` first.
    """
    import tempfile

    from kubetfx.components.common import layout, model_repository, storage

    version = version or model_repository.latest_version(model_repository_base, model_name)
    if not version:
        raise InputDataError(f"no pushed version of '{model_name}' in {model_repository_base}: nothing to monitor")
    directory = model_repository.version_path(model_repository_base, model_name, version)
    names = {"schema": layout.SCHEMA_FILE, "statistics": model_repository.TRAINING_STATISTICS_FILE,
             "info": layout.MODEL_INFO_FILE}
    if "://" not in directory:
        paths = {key: os.path.join(directory, name) for key, name in names.items()}
    else:
        work_dir = work_dir or tempfile.mkdtemp(prefix="kubetfx-monitor-")
        paths = {}
        for key, name in names.items():
            try:
                data = storage.read_bytes(f"{directory}/{name}")
            except (OSError, InputDataError):
                continue
            paths[key] = os.path.join(work_dir, name)
            with open(paths[key], "wb") as handle:
                handle.write(data)
    for key in ("schema", "statistics"):
        if not os.path.isfile(paths.get(key, "")):
            raise InputDataError(f"version {version} of '{model_name}' ({directory}) has no {names[key]}: it was "
                                 "pushed without it (push with a kubetfx Pusher that is given the statistics)")
    return version, paths


def run_for_model(prediction_log_dir: str, model_repository_base: str, model_name: str, output_dir: str, *,
                  version: int = 0, **kwargs) -> dict:
    """:func:`run` against the schema, training statistics and metrics pushed with the serving version, on the
    records logged since that version was pushed."""
    version, paths = serving_version_files(model_repository_base, model_name, version)
    info = {}
    if os.path.isfile(paths.get("info", "")):
        with open(paths["info"], encoding="utf-8") as handle:
            info = json.load(handle)
    from kubetfx.components.common import model_repository

    pushed = model_repository.pushed_at(model_repository_base, model_name, version)
    result = run(prediction_log_dir, model_name, paths["statistics"], paths["schema"], output_dir,
                 model_info=info, since=pushed, since_reason=f"version {version} was pushed", **kwargs)
    result["compared_with_version"] = version
    return result
