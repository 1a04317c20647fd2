"""Evaluator fast path vs TFMA: the same metrics, plots, validation and blessing on real models and data.

Each parity case runs the executor twice on the same examples, models and EvalConfig —
``engine="fast"`` and ``engine="tfma"`` — and compares what TFMA's own readers
(``tfma.load_metrics`` / ``load_plots`` / ``load_validation_result``) get from both
evaluation directories. Values must agree to float tolerance: the fast path follows
TFMA's arithmetic; what remains is TFMA's float32 accumulation of Keras metrics.
"""

import json
import os
import subprocess
import sys

import pytest

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.evaluator import eval_config as config_lib
from kubetfx.components.evaluator import executor, fast_path, results
from kubetfx.components.evaluator.models import ModelRef

from helpers.evaluation_outputs import MODEL_NAME, assert_same_evaluation, output_paths
from helpers.pipeline_cache import TFX_MODULE, penguin_pipeline, tfx_penguin_pipeline, train
from helpers.predictor import push_model

TFX_STYLE_CONFIG = """
model_specs { label_key: "species" prediction_key: "probabilities"
              preprocessing_function_names: "transform_features" }
slicing_specs {}
slicing_specs { feature_keys: "island" }
slicing_specs { feature_keys: ["island", "sex"] }
slicing_specs { feature_values { key: "sex" value: "female" } }
slicing_specs { feature_keys: "year" }
metrics_specs {
  metrics { class_name: "ExampleCount" }
  metrics { class_name: "WeightedExampleCount" threshold { value_threshold { lower_bound { value: 20 } } } }
  metrics { class_name: "SparseCategoricalAccuracy"
    threshold { value_threshold { lower_bound { value: 0.6 } }
                change_threshold { direction: HIGHER_IS_BETTER absolute { value: -1e-10 } } } }
  metrics { class_name: "SparseCategoricalCrossentropy"
    per_slice_thresholds {
      slicing_specs { feature_values { key: "island" value: "Dream" } }
      slicing_specs { feature_values { key: "island" value: "Atlantis" } }
      threshold { change_threshold { direction: LOWER_IS_BETTER relative { value: 0.5 } } } } }
  metrics { class_name: "MeanSquaredError" }
  metrics { class_name: "MeanPrediction" }
}
metrics_specs {
  binarize { class_ids { values: [0, 1, 2] } }
  metrics { class_name: "AUC" }
  metrics { class_name: "Precision" threshold { value_threshold { lower_bound { value: 0.9 } } } }
  metrics { class_name: "Recall" }
}
"""

REGRESSION_CONFIG = """
model_specs { label_key: "body_mass_g" prediction_key: "predictions" }
slicing_specs {}
slicing_specs { feature_keys: ["species", "island"] }
metrics_specs {
  metrics { class_name: "ExampleCount" }
  metrics { class_name: "MeanSquaredError"
    threshold { value_threshold { upper_bound { value: 150000 } }
                change_threshold { direction: LOWER_IS_BETTER relative { value: 0.0 } } } }
  metrics { class_name: "MeanAbsoluteError"
    per_slice_thresholds { slicing_specs { feature_keys: ["island", "species"] }
                           threshold { value_threshold { upper_bound { value: 280 } } } } }
  metrics { class_name: "MeanLabel" }
  metrics { class_name: "MeanPrediction" }
  metrics { class_name: "Calibration" }
}
"""

BINARY_CONFIG = """
slicing_specs {}
slicing_specs { feature_keys: "island" }
metrics_specs {
  metrics { class_name: "ExampleCount" }
  metrics { class_name: "AUC"
    threshold { value_threshold { lower_bound { value: 0.7 } }
                change_threshold { direction: HIGHER_IS_BETTER absolute { value: -0.001 } } } }
  metrics { class_name: "AUCPrecisionRecall" }
  metrics { class_name: "Precision" }
  metrics { class_name: "Recall" }
  metrics { class_name: "BinaryAccuracy" }
  metrics { class_name: "Calibration" }
}
metrics_specs {
  binarize { class_ids { values: [1] } }
  metrics { class_name: "AUC" per_slice_thresholds { slicing_specs { feature_keys: "island" }
                                                     threshold { value_threshold { lower_bound { value: 0.9 } } } } }
  metrics { class_name: "Precision" }
}
"""

UNSUPPORTED_CONFIG = """
slicing_specs {}
metrics_specs {
  metrics { class_name: "SparseCategoricalAccuracy" threshold { value_threshold { lower_bound { value: 0.6 } } } }
  metrics { class_name: "MeanAbsolutePercentageError" }
}
options { min_slice_size { value: 5 } }
"""


# --------------------------------------------------------------------------- fixtures: real models


@pytest.fixture(scope="module")
def regression(tmp_path_factory) -> dict:
    """Penguin body mass regression (the same run as test_trainer's)."""
    pipeline = penguin_pipeline(tmp_path_factory, label="body_mass_g")
    return {"examples": pipeline["examples"],
            "model": train(tmp_path_factory, "regression", pipeline, hyperparameters={"epochs": 30})["model"]}


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> dict:
    """A binary classifier: the penguin's sex from its measurements."""
    pipeline = penguin_pipeline(tmp_path_factory, label="sex")
    return {"examples": pipeline["examples"],
            "model": train(tmp_path_factory, "evaluator-sex", pipeline, hyperparameters={"epochs": 20},
                           seed=7)["model"],
            "weak": train(tmp_path_factory, "evaluator-sex-weak", pipeline, hyperparameters={"epochs": 1},
                          seed=7)["model"]}


@pytest.fixture(scope="module")
def module_model(tmp_path_factory) -> dict:
    """TFX's penguin module file (tf_keras SavedModel, raw integer label; the same run as test_trainer's)."""
    pipeline = tfx_penguin_pipeline(tmp_path_factory)
    run = train(tmp_path_factory, "tfx", pipeline, module_file=TFX_MODULE, train_steps=100, eval_steps=5)
    return {"examples": pipeline["examples"], "model": run["model"]}


def _repository(tmp_path, model_dir: str) -> str:
    base = str(tmp_path / "repository")
    push_model(model_dir, base, MODEL_NAME)
    return base


# --------------------------------------------------------------------------- parity helpers


def _run(root, examples_dir: str, model_dir: str, engine: str, repository: str, eval_config: str) -> dict:
    paths = output_paths(root)
    result = executor.run(examples_dir, model_dir, **paths, eval_config=eval_config, baseline_repository=repository,
                          model_name=MODEL_NAME if repository else "", engine=engine)
    return {"result": result, **paths}


def _assert_same_evaluation(fast: dict, tfma: dict) -> None:
    assert (fast["result"]["engine"], tfma["result"]["engine"]) == ("fast", "tfma")
    assert_same_evaluation(fast, tfma)


def _run_in_fresh_process(root, examples_dir: str, model_dir: str, engine: str) -> dict:
    paths = output_paths(root)
    script = "import json, sys\nfrom kubetfx.components.evaluator import executor\n" \
             "print(json.dumps(executor.run(**json.loads(sys.argv[1])), default=str))"
    arguments = {"examples_dir": examples_dir, "model_dir": model_dir, "engine": engine, **paths}
    environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(arguments)], capture_output=True, text=True,
                          env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"result": json.loads(done.stdout.strip().splitlines()[-1]), **paths}


def _evaluate_both(tmp_path, examples_dir: str, model_dir: str, repository: str = "", eval_config: str = ""):
    fast = _run(tmp_path / "fast", examples_dir, model_dir, "fast", repository, eval_config)
    tfma = _run(tmp_path / "tfma", examples_dir, model_dir, "tfma", repository, eval_config)
    _assert_same_evaluation(fast, tfma)
    return fast, tfma


# --------------------------------------------------------------------------- parity on real models


def test_default_config_rubber_stamp(tmp_path, raw_examples, good_model):
    fast, tfma = _evaluate_both(tmp_path, raw_examples, good_model)
    assert fast["result"]["blessed"] == 1 and fast["result"]["rubber_stamp"] == 1
    assert "sparse_categorical_crossentropy" in fast["result"]["metrics"]
    assert sum(map(sum, fast["result"]["confusion_matrix"]["matrix"])) == fast["result"]["eval_examples"]
    report = open(fast["report_path"], encoding="utf-8").read()
    assert "| engine | fast path" in report and "TFMA path" not in report
    assert "| engine | TFMA path: engine 'tfma' was asked for" in open(tfma["report_path"], encoding="utf-8").read()


def test_default_config_against_a_baseline(tmp_path, raw_examples, good_model, untrained_model):
    """Better than the baseline: blessed; worse than it: not blessed — on both engines."""
    fast, _ = _evaluate_both(tmp_path / "better", raw_examples, good_model, _repository(tmp_path, untrained_model))
    assert fast["result"]["blessed"] == 1 and fast["result"]["baseline_version"] == 1
    fast, _ = _evaluate_both(tmp_path / "worse", raw_examples, untrained_model,
                             _repository(tmp_path / "good", good_model))
    assert fast["result"]["blessed"] == 0
    assert any("no worse than the baseline" in reason for reason in fast["result"]["reasons"])


@pytest.mark.parametrize("candidate, baseline", [("good", "untrained"), ("untrained", None)])
def test_tfx_style_config(tmp_path, raw_examples, good_model, untrained_model, candidate, baseline):
    """Thresholds on every slice, per-slice change thresholds, a slice with no examples, per-class metrics."""
    models = {"good": good_model, "untrained": untrained_model}
    repository = _repository(tmp_path, models[baseline]) if baseline else ""
    fast, _ = _evaluate_both(tmp_path, raw_examples, models[candidate], repository, TFX_STYLE_CONFIG)
    assert fast["result"]["blessed"] == 0
    reasons = " ".join(fast["result"]["reasons"])
    # Atlantis has only a change threshold: checked (and missing) with a baseline, dropped by the rubber stamp.
    assert ("no examples in slice" in reasons and "Atlantis" in reasons) == bool(baseline)
    assert {"island_X_sex:Dream_X_male", "year:2007", "sex:female"} <= set(fast["result"]["slices"])
    overall = fast["result"]["metrics"]
    assert {"auc/class_0", "precision/class_2", "recall/class_1"} <= set(overall)


def test_regression(tmp_path, regression):
    _evaluate_both(tmp_path / "default", regression["examples"], regression["model"],
                   _repository(tmp_path / "repo", regression["model"]))
    fast, _ = _evaluate_both(tmp_path / "user", regression["examples"], regression["model"], "", REGRESSION_CONFIG)
    assert {"mean_absolute_error", "mean_label", "calibration"} <= set(fast["result"]["metrics"])


def test_binary_classifier(tmp_path, binary):
    info = json.load(open(os.path.join(binary["model"], "kubetfx_model.json")))
    assert len(info["class_names"]) == 2
    _evaluate_both(tmp_path / "default", binary["examples"], binary["model"])
    config = BINARY_CONFIG + """model_specs { label_key: "sex" prediction_key: "probabilities"
                                             preprocessing_function_names: "transform_features" }"""
    fast, _ = _evaluate_both(tmp_path / "user", binary["examples"], binary["model"],
                             _repository(tmp_path / "repo", binary["weak"]), config)
    assert 0.5 < fast["result"]["metrics"]["auc"] <= 1.0


def test_module_file_model(tmp_path, module_model):
    """A TFX run_fn model (raw integer label, one logits output, a tf_keras SavedModel), each engine in a fresh
    process as in a KFP task: training a module file here made this process's tf.keras tf_keras, with which
    TFMA would add the model's compiled loss."""
    runs = [_run_in_fresh_process(tmp_path / engine, module_model["examples"], module_model["model"], engine)
            for engine in ("fast", "tfma")]
    _assert_same_evaluation(*runs)
    assert runs[0]["result"]["metrics"]["sparse_categorical_accuracy"] > 0.8


# --------------------------------------------------------------------------- what falls back to TFMA


def test_unsupported_config_falls_back_to_tfma_and_says_why(tmp_path, raw_examples, good_model):
    run = _run(tmp_path / "auto", raw_examples, good_model, "auto", "", UNSUPPORTED_CONFIG)
    result = run["result"]
    assert result["engine"] == "tfma"
    assert result["engine_reasons"] == ["options.min_slice_size", "metric MeanAbsolutePercentageError"]
    assert "mean_absolute_percentage_error" in result["metrics"]
    report = open(run["report_path"], encoding="utf-8").read()
    assert "TFMA path: options.min_slice_size; metric MeanAbsolutePercentageError" in report
    paths = output_paths(tmp_path / "fast")
    with pytest.raises(ConfigError, match="fast path does not cover: options.min_slice_size"):
        executor.run(raw_examples, good_model, **paths, eval_config=UNSUPPORTED_CONFIG, engine="fast")
    assert not os.path.exists(paths["evaluation_dir"]) and not os.path.exists(paths["blessing_dir"])


def test_what_only_the_data_shows_falls_back(tmp_path, regression):
    """Class metrics on a regression model's predictions: found after inference, TFMA decides what they mean."""
    config = ('model_specs { label_key: "body_mass_g" } '
              'metrics_specs { metrics { class_name: "SparseCategoricalAccuracy" } }')
    paths = output_paths(tmp_path)
    with pytest.raises(ConfigError, match=r"SparseCategoricalAccuracy on the candidate .* shape \[\d+\]"):
        executor.run(regression["examples"], regression["model"], **paths, eval_config=config, engine="fast")
    assert not os.path.exists(paths["evaluation_dir"])


def _fake_model(tmp_path, files=()) -> ModelRef:
    directory = tmp_path / "model"
    directory.mkdir(exist_ok=True)
    for name in files:
        (directory / name).write_bytes(b"")
    signatures = {"serving_default": {"inputs": ["examples"], "outputs": ["probabilities", "classes"]},
                  "serving_raw": {"inputs": ["island", "bill_length_mm"], "outputs": ["probabilities"]},
                  "transform_features": {"inputs": ["examples"], "outputs": ["species"]}}
    return ModelRef("candidate", str(directory), {"label": "species"}, signatures)


def test_unsupported_names_each_reason(tmp_path, penguins_table):
    import pyarrow as pa

    batch = pa.RecordBatch.from_arrays(
        [pa.array([[v] for v in penguins_table.column("island").to_pylist()]),
         pa.array([[v] for v in penguins_table.column("bill_length_mm").to_pylist()]),
         pa.array([["a", "b"]] * penguins_table.num_rows)], names=["island", "bill_length_mm", "tags"])
    config = config_lib.load("""
        model_specs { signature_name: "serving_raw" label_key: "species" example_weight_key: "w"
                      preprocessing_function_names: "transform_features" }
        slicing_specs { feature_keys: "bill_length_mm" }
        slicing_specs { feature_keys: "tags" }
        slicing_specs { feature_keys: "island_xf" }
        cross_slicing_specs { baseline_spec {} }
        metrics_specs { aggregate { macro_average: true } metrics { class_name: "Precision" } }
        metrics_specs { thresholds { key: "auc" value { value_threshold { lower_bound { value: 0.5 } } } }
                        metrics { class_name: "ExampleCount" config: '"name": "rows"' } }
        options { compute_confidence_intervals { value: true } }""")
    reasons = fast_path.unsupported(config, _fake_model(tmp_path), None, batch, ["--runner=DataflowRunner"])
    expected = ["options.compute_confidence_intervals", "cross_slicing_specs", "example_weight_key",
                "signature 'serving_raw'", "takes 2 inputs", "metrics_specs aggregate",
                "metrics_specs thresholds (thresholds keyed by metric name)", "metric ExampleCount with a config",
                "slicing on 'bill_length_mm' of type double", "'tags', which has several values",
                "'island_xf', which is not a raw feature", "Beam runner DataflowRunner"]
    for words in expected:
        assert any(words in reason for reason in reasons), (words, reasons)
    plain = config_lib.load('model_specs { label_key: "species" preprocessing_function_names: "transform_features" } '
                            'slicing_specs { feature_keys: "island" } metrics_specs { metrics { class_name: "AUC" } }')
    assert fast_path.unsupported(plain, _fake_model(tmp_path), None, batch, ["--runner=DirectRunner"]) == \
        ["model_specs has no prediction_key and signature 'serving_default' has 2 outputs"]


def test_legacy_keras_models_go_to_tfma(tmp_path, monkeypatch):
    """With TF_USE_LEGACY_KERAS, TFMA loads a tf_keras SavedModel as Keras and adds its compiled loss."""
    import pyarrow as pa

    batch = pa.RecordBatch.from_arrays([pa.array([[1]] * 3)], names=["species"])
    config = config_lib.load('model_specs { label_key: "species" prediction_key: "probabilities" } '
                             'metrics_specs { metrics { class_name: "ExampleCount" } }')
    model = _fake_model(tmp_path, files=["keras_metadata.pb"])
    # tf.keras is fixed at its first use in a process (training a module file here makes it tf_keras)
    monkeypatch.setattr(fast_path, "keras_is_tf_keras", lambda: False)
    assert fast_path.unsupported(config, model, None, batch, []) == []
    monkeypatch.setattr(fast_path, "keras_is_tf_keras", lambda: True)
    (reason,) = fast_path.unsupported(config, model, None, batch, [])
    assert "Keras SavedModel and TF_USE_LEGACY_KERAS" in reason
    config.options.include_default_metrics.value = False
    assert fast_path.unsupported(config, model, None, batch, []) == []


# --------------------------------------------------------------------------- config handling without TFMA


@pytest.mark.parametrize("text", [
    'metrics_specs { metrics { class_name: "ExampleCount" } }',
    'model_specs { name: "mine" label_key: "y" } metrics_specs { model_names: "mine" metrics { class_name: "AUC" '
    'threshold { change_threshold { direction: HIGHER_IS_BETTER absolute { value: 0 } } } } }',
    'model_specs { label_key: "y" } metrics_specs { metrics { class_name: "AUC" per_slice_thresholds { '
    'slicing_specs {} threshold { value_threshold { lower_bound { value: 0.5 } } change_threshold { '
    'direction: HIGHER_IS_BETTER relative { value: 0 } } } } } } options { compute_confidence_intervals { '
    'value: true } }',
])
@pytest.mark.parametrize("has_baseline", [True, False])
def test_apply_baseline_matches_tfma(text, has_baseline):
    from tensorflow_model_analysis.utils import config_util

    config = config_lib.load(text)
    if not config.model_specs:
        config.model_specs.add(label_key="y")
    ours = config_lib.apply_baseline(config, has_baseline)
    if has_baseline:
        config.model_specs[0].name = ""  # TFMA copies an unnamed single spec
    theirs = config_util.update_eval_config_with_defaults(config, has_baseline=has_baseline,
                                                          rubber_stamp=not has_baseline)
    assert ours == theirs


def test_fast_path_imports_neither_tfma_nor_beam(tmp_path, raw_examples, good_model):
    """Every KFP task is a fresh process: importing TFMA and Beam would cost seconds the fast path avoids."""
    script = """
import json, sys
from kubetfx.components.evaluator import executor
result = executor.run(sys.argv[1], sys.argv[2], sys.argv[3] + "/evaluation", sys.argv[3] + "/blessing")
heavy = ("tensorflow_model_analysis", "apache_beam")
print(json.dumps({"engine": result["engine"], "imported": [m for m in heavy if m in sys.modules]}))
"""
    done = subprocess.run([sys.executable, "-c", script, raw_examples, good_model, str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"engine": "fast", "imported": []}
    import tensorflow_model_analysis as tfma

    evaluation = tfma.load_eval_result(str(tmp_path / "evaluation"))  # eval_config.json + metrics + plots
    assert evaluation.model_location == os.path.join(good_model, "Format-Serving")
    assert {results.slice_name(key) for key, _ in evaluation.slicing_metrics} == \
        {"Overall", "island:Biscoe", "island:Dream", "island:Torgersen", "sex:female", "sex:male"}
    assert tfma.load_validation_result(str(tmp_path / "evaluation")).validation_ok
