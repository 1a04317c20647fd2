"""Evaluator outputs compared across runs: what TFMA's own readers load, metrics to float tolerance, the verdict.

Two runs of the Evaluator executor on the same examples, models and EvalConfig (the fast path vs
TFMA, or TFMA locally vs TFMA on a Flink or Spark cluster) must give the same slices, metrics (to
float tolerance), plots, validation result, blessing and reasons.
"""

from __future__ import annotations

import json
import os

import pytest
from google.protobuf import text_format

from kubetfx.components.common import blessing
from kubetfx.components.evaluator import executor, results, tfma_protos

MODEL_NAME = "penguin"
TFX_PENGUIN_CONFIG = """
# TFX's penguin example config: thresholds in MetricConfig.threshold apply to every slice
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
"""
REL, ABS = 1e-5, 1e-7  # ABS: diffs of two nearly equal float32-accumulated values


def output_paths(root) -> dict:
    root = str(root)
    return {"evaluation_dir": os.path.join(root, "evaluation"), "blessing_dir": os.path.join(root, "blessing"),
            "report_path": os.path.join(root, "report.md"), "metrics_path": os.path.join(root, "metrics.json"),
            "classification_metrics_path": os.path.join(root, "classification_metrics.json")}


def evaluate(root, examples_dir: str, model_dir: str, **kwargs) -> dict:
    """The executor's result and its output paths."""
    paths = output_paths(root)
    result = executor.run(examples_dir, model_dir, **paths, **kwargs)
    return {"result": result, **paths}


def _config(run: dict):
    config = tfma_protos.config_pb2().EvalConfig()
    text_format.Parse(run["result"]["eval_config"], config)
    return config


def loaded(run: dict) -> dict:
    """What TFMA's readers load from an evaluation directory."""
    import tensorflow_model_analysis as tfma

    directory = run["evaluation_dir"]
    plots = {}
    for record in tfma.load_plots(directory):
        name = results.slice_name(results.slice_key_values(record.slice_key))
        plots[name] = sorted(text_format.MessageToString(item, as_one_line=True)
                             for item in record.plot_keys_and_values)
    return {"slices": {s.name: s.metrics for s in results.load_metrics(directory, _config(run))},
            "validation": tfma.load_validation_result(directory), "plots": plots,
            "eval_run": json.load(open(os.path.join(directory, "eval_config.json")))}


def failures(validation) -> dict:
    """(slice, metric key, threshold) -> failed value (None: "Metric not found.")."""
    found = {}
    for per_slice in validation.metric_validations_per_slice:
        name = results.slice_name(results.slice_key_values(per_slice.slice_key))
        for failure in per_slice.failures:
            key = (name, text_format.MessageToString(failure.metric_key, as_one_line=True),
                   text_format.MessageToString(failure.metric_threshold, as_one_line=True), failure.message)
            found[key] = failure.metric_value.double_value.value if failure.HasField("metric_value") else None
    return found


def approx(value):
    return pytest.approx(value, rel=REL, abs=ABS, nan_ok=True)


def assert_same_evaluation(mine_run: dict, their_run: dict) -> None:
    """Both runs' metrics (float tolerance), plots, validation, blessing, reasons and checks agree."""
    mine, theirs = loaded(mine_run), loaded(their_run)
    assert mine["slices"].keys() == theirs["slices"].keys()
    for name, metrics in theirs["slices"].items():
        assert mine["slices"][name].keys() == metrics.keys(), name
        for metric, values in metrics.items():
            assert mine["slices"][name][metric] == {role: approx(v) for role, v in values.items()}, (name, metric)
    assert mine["plots"] == theirs["plots"]
    a, b = mine["validation"], theirs["validation"]
    assert (a.validation_ok, a.rubber_stamp, a.missing_thresholds) == \
        (b.validation_ok, b.rubber_stamp, b.missing_thresholds)
    assert sorted(map(str, a.missing_slices)) == sorted(map(str, b.missing_slices))
    assert sorted(map(str, a.validation_details.slicing_details)) == \
        sorted(map(str, b.validation_details.slicing_details))
    assert failures(a) == {key: None if value is None else approx(value) for key, value in failures(b).items()}
    assert mine["eval_run"] == theirs["eval_run"]
    for field in ("blessed", "rubber_stamp", "baseline_version", "slices", "eval_config", "confusion_matrix"):
        assert mine_run["result"][field] == their_run["result"][field], field
    assert mine_run["result"]["reasons"] == their_run["result"]["reasons"]  # same verdict, same words
    checks = [(c["slice"], c["metric"], c["kind"], c["rule"], c["passed"])
              for c in blessing.read_blessing(mine_run["blessing_dir"]).details["checks"]]
    assert checks == [(c["slice"], c["metric"], c["kind"], c["rule"], c["passed"])
                      for c in blessing.read_blessing(their_run["blessing_dir"]).details["checks"]]
