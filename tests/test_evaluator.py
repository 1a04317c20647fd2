"""Evaluator: the real penguin model, rubber stamp, baseline comparison, blessing, errors.

These configs are covered by the fast path (the default engine); test_evaluator_fast_path.py
checks that TFMA gives the same results. Evaluations share a few runs through module-scoped
fixtures; the error tests fail before any engine starts.
"""

import json
import os
import shutil

import numpy as np
import pytest
import yaml

from helpers.evaluation_outputs import MODEL_NAME, TFX_PENGUIN_CONFIG, output_paths
from helpers.predictor import push_model
from kubetfx.components.common import blessing, examples, model_repository
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.evaluator import eval_config as config_lib
from kubetfx.components.evaluator import executor
from kubetfx.components.evaluator.models import ModelRef


BAD_MODEL_CONFIG = TFX_PENGUIN_CONFIG  # an untrained model fails its thresholds


def _evaluate(root, examples_dir: str, model_dir: str, **kwargs) -> dict:
    paths = output_paths(root)
    result = executor.run(examples_dir, model_dir, **paths, **kwargs)
    return {"result": result, **paths}


def _assert_nothing_written(paths: dict) -> None:
    for key in ("evaluation_dir", "blessing_dir", "report_path", "metrics_path"):
        assert not os.path.exists(paths[key]), paths[key]
    parent = os.path.dirname(paths["evaluation_dir"])
    if os.path.isdir(parent):
        assert not [name for name in os.listdir(parent) if name.startswith(".")], os.listdir(parent)


@pytest.fixture(scope="module")
def repository(tmp_path_factory, good_model) -> str:
    """A model repository whose latest version is the good penguin model."""
    base = str(tmp_path_factory.mktemp("evaluator-repo"))
    assert push_model(good_model, base, MODEL_NAME)[0] == 1
    return base


@pytest.fixture(scope="module")
def rubber_stamped(tmp_path_factory, raw_examples, good_model) -> dict:
    """Default config, empty repository: no baseline."""
    root = tmp_path_factory.mktemp("evaluator-rubber")
    empty = str(root / "empty-repository")
    os.makedirs(empty)
    return _evaluate(root / "out", raw_examples, good_model, baseline_repository=empty, model_name=MODEL_NAME)


def _serving_predictions(model_dir: str, examples_dir: str, class_names: list[str]):
    """(true class ids, predicted class ids) by calling serving_default on the raw eval examples."""
    import tensorflow as tf

    records = examples.read_split_records(examples_dir, "eval")
    signature = tf.saved_model.load(os.path.join(model_dir, "Format-Serving")).signatures["serving_default"]
    probabilities = signature(examples=tf.constant(records))["probabilities"].numpy()
    species = examples.decode_examples(records).column("species").to_pylist()
    truth = np.array([class_names.index(value[0].decode()) for value in species])
    return truth, probabilities.argmax(axis=1)


# --------------------------------------------------------------------------- TFMA on real models


def test_default_config_rubber_stamps_the_first_model(rubber_stamped, good_model, raw_examples):
    result = rubber_stamped["result"]
    assert result["blessed"] == 1 and result["rubber_stamp"] == 1 and result["baseline_version"] is None
    assert result["engine"] == "fast" and result["engine_reasons"] == []
    assert blessing.is_blessed(rubber_stamped["blessing_dir"])
    verdict = blessing.read_blessing(rubber_stamped["blessing_dir"])
    assert "rubber stamp" in verdict.reasons[0] and "1 change threshold(s) skipped" in verdict.reasons[0]
    assert any("sparse_categorical_accuracy on slice Overall" in r and "≥ 0.6" in r for r in verdict.reasons)
    # The change threshold was dropped, the value threshold kept.
    assert "change_threshold" not in result["eval_config"] and "lower_bound" in result["eval_config"]
    # Default slices: string features with a small domain, on their raw values.
    assert {"Overall", "island:Biscoe", "island:Dream", "island:Torgersen", "sex:female", "sex:male"} <= \
        set(result["slices"])
    text = open(rubber_stamped["report_path"], encoding="utf-8").read()
    assert "**Decision: BLESSED**" in text and "Rubber stamp" in text and "island:Torgersen" in text
    assert "no-skill" in text and "most frequent class" in text
    # TFMA's output is a loadable ModelEvaluation.
    import tensorflow_model_analysis as tfma

    assert tfma.load_validation_result(rubber_stamped["evaluation_dir"]).validation_ok


def test_metrics_match_an_independent_computation(rubber_stamped, good_model, raw_examples):
    info = json.load(open(os.path.join(good_model, "kubetfx_model.json")))
    class_names = info["class_names"]
    truth, predicted = _serving_predictions(good_model, raw_examples, class_names)
    metrics = json.load(open(rubber_stamped["metrics_path"]))
    assert metrics["example_count"] == len(truth)
    assert metrics["sparse_categorical_accuracy"] == pytest.approx(float(np.mean(truth == predicted)), abs=1e-6)
    assert rubber_stamped["result"]["metrics"] == metrics
    # Confusion matrix: K x K, species names in probability-column order, counts from the same predictions.
    matrix = json.load(open(rubber_stamped["classification_metrics_path"]))
    assert matrix["categories"] == class_names == ["Adelie", "Gentoo", "Chinstrap"]
    expected = np.zeros((3, 3), dtype=int)
    np.add.at(expected, (truth, predicted), 1)
    assert matrix["matrix"] == expected.tolist()
    # The no-skill baseline: the majority class share of the eval split.
    majority = np.bincount(truth).max() / len(truth)
    assert rubber_stamped["result"]["no_skill"]["accuracy"] == pytest.approx(majority)


def test_same_model_as_baseline_passes_change_thresholds(tmp_path, raw_examples, good_model, repository):
    run = _evaluate(tmp_path, raw_examples, good_model, baseline_repository=repository, model_name=MODEL_NAME)
    result = run["result"]
    assert result["blessed"] == 1 and result["rubber_stamp"] == 0 and result["baseline_version"] == 1
    assert result["baseline_path"] == os.path.join(repository, MODEL_NAME, "1")
    assert result["baseline_metrics"]["sparse_categorical_accuracy"] == result["metrics"]["sparse_categorical_accuracy"]
    checks = blessing.read_blessing(run["blessing_dir"]).details["checks"]
    change = [c for c in checks if c["kind"] == "change"]
    assert change and all(c["passed"] and c["diff"] == pytest.approx(0.0, abs=1e-9) for c in change)
    text = open(run["report_path"], encoding="utf-8").read()
    assert "Version **1**" in text and "no worse than the baseline" in text


def test_untrained_model_is_not_blessed(tmp_path, raw_examples, untrained_model, repository):
    config_file = tmp_path / "eval_config.pbtxt"
    config_file.write_text(BAD_MODEL_CONFIG)
    run = _evaluate(tmp_path / "out", raw_examples, untrained_model, eval_config=str(config_file),
                    baseline_repository=repository, model_name=MODEL_NAME)
    result = run["result"]
    assert result["blessed"] == 0 and result["baseline_version"] == 1
    assert result["metrics"]["sparse_categorical_accuracy"] < 0.6
    assert os.path.isfile(os.path.join(run["blessing_dir"], blessing.NOT_BLESSED))
    verdict = blessing.read_blessing(run["blessing_dir"])
    assert not verdict.blessed
    overall = [r for r in verdict.reasons if "on slice Overall" in r]
    assert any("must be ≥ 0.6" in r for r in overall), verdict.reasons  # value threshold
    assert any("baseline version 1" in r and "no worse than the baseline" in r for r in overall)  # change
    assert any("on slice island:" in r for r in verdict.reasons)  # thresholds apply to every slice here
    text = open(run["report_path"], encoding="utf-8").read()
    assert "**Decision: NOT BLESSED**" in text and "**FAIL**" in text
    # The Pusher refuses it.
    from kubetfx.components.pusher import executor as pusher

    pushed = pusher.run(untrained_model, run["blessing_dir"], None, repository, MODEL_NAME,
                        str(tmp_path / "pushed"))
    assert pushed["pushed"] == 0 and model_repository.list_versions(repository, MODEL_NAME) == [1]


def test_baseline_whose_variables_are_broken_is_a_config_error(tmp_path, raw_examples, good_model):
    """saved_model.pb parses but TFMA fails loading the variables: the error names the baseline version."""
    base = str(tmp_path / "repo")
    _, path = push_model(good_model, base, MODEL_NAME)
    index = os.path.join(path, "variables", "variables.index")
    with open(index, "r+b") as handle:
        handle.truncate(64)
    paths = output_paths(tmp_path / "out")
    with pytest.raises(ConfigError) as error:
        executor.run(raw_examples, good_model, **paths, baseline_repository=base, model_name=MODEL_NAME)
    assert "baseline version 1" in str(error.value) and path in str(error.value)
    _assert_nothing_written(paths)


# --------------------------------------------------------------------------- errors before TFMA


@pytest.mark.parametrize("config, expected", [
    ('metrics_specs { metrics { class_name: "NoSuchMetric" } }', "NoSuchMetric"),
    ('slicing_specs { feature_keys: "continent" } metrics_specs { metrics { class_name: "ExampleCount" } }',
     "'continent'"),
    ('metrics_specs { metrics { class_name: "ExampleCount" per_slice_thresholds { slicing_specs { '
     'feature_values { key: "ocean" value: "x" } } threshold { value_threshold { lower_bound { value: 1 } } } } } }',
     "'ocean'"),
    ('{"metricsSpecs": [{"metrics": [{"className": "NoSuchMetric"}]}]}', "NoSuchMetric"),
    ('metrics_specs { metricz {} }', "metricz"),
    ('model_specs { prediction_key: "logits" } metrics_specs { metrics { class_name: "ExampleCount" } }', "logits"),
    ('metrics_specs { metrics { class_name: "ExampleCount" '
     'threshold { change_threshold { absolute { value: 0 } } } } }', "direction"),
    ("/nonexistent/eval_config.pbtxt", "not found"),
    ('model_specs { label_key: "species" } metrics_specs { metrics { class_name: "ExampleCount" } }',
     'preprocessing_function_names: "transform_features"'),
])
def test_bad_eval_config_fails_before_tfma(tmp_path, raw_examples, good_model, config, expected):
    paths = output_paths(tmp_path)
    with pytest.raises(ConfigError) as error:
        executor.run(raw_examples, good_model, **paths, eval_config=config)
    assert expected in str(error.value)
    _assert_nothing_written(paths)


def test_unloadable_candidate(tmp_path, raw_examples, good_model):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    paths = output_paths(tmp_path / "a")
    with pytest.raises(InputDataError) as error:
        executor.run(raw_examples, str(empty), **paths)
    assert str(empty) in str(error.value) and "Format-Serving" in str(error.value)
    _assert_nothing_written(paths)

    corrupt = tmp_path / "corrupt-model"
    shutil.copytree(good_model, corrupt)
    (corrupt / "Format-Serving" / "saved_model.pb").write_bytes(b"not a protobuf")
    paths = output_paths(tmp_path / "b")
    with pytest.raises(ConfigError) as error:
        executor.run(raw_examples, str(corrupt), **paths)
    assert str(corrupt / "Format-Serving" / "saved_model.pb") in str(error.value)
    _assert_nothing_written(paths)


def test_corrupt_baseline_is_never_skipped(tmp_path, raw_examples, good_model):
    base = str(tmp_path / "repo")
    _, path = push_model(good_model, base, MODEL_NAME)
    with open(os.path.join(path, "saved_model.pb"), "r+b") as handle:
        handle.truncate(100)
    paths = output_paths(tmp_path / "a")
    with pytest.raises(ConfigError) as error:
        executor.run(raw_examples, good_model, **paths, baseline_repository=base, model_name=MODEL_NAME)
    assert path in str(error.value) and "version 1" in str(error.value)
    _assert_nothing_written(paths)
    # A newest version without saved_model.pb is not replaced by an older one silently.
    os.makedirs(os.path.join(base, MODEL_NAME, "2", "variables"))
    paths = output_paths(tmp_path / "b")
    with pytest.raises(ConfigError) as error:
        executor.run(raw_examples, good_model, **paths, baseline_repository=base, model_name=MODEL_NAME)
    assert os.path.join(base, MODEL_NAME, "2") in str(error.value)
    _assert_nothing_written(paths)


def test_bad_parameters(tmp_path, raw_examples, good_model, rubber_stamped):
    cases = [({"split": "test"}, InputDataError, "split 'test'"),
             ({"slice_features": ["continent"]}, ConfigError, "continent"),
             ({"baseline_repository": str(tmp_path)}, ConfigError, "model_name"),
             ({"baseline_repository": str(tmp_path), "model_name": "../up"}, ConfigError, "../up"),
             ({"engine": "beam"}, ConfigError, "engine: expected one of auto, fast, tfma")]
    for kwargs, error_type, expected in cases:
        paths = output_paths(tmp_path / "out")
        with pytest.raises(error_type) as error:
            executor.run(raw_examples, good_model, **paths, **kwargs)
        assert expected in str(error.value), (kwargs, str(error.value))
        _assert_nothing_written(paths)
    # An existing output is never overwritten.
    with pytest.raises(ConfigError, match="not empty"):
        executor.run(raw_examples, good_model, evaluation_dir=rubber_stamped["evaluation_dir"],
                     blessing_dir=str(tmp_path / "new-blessing"))


# --------------------------------------------------------------------------- config unit tests (no TFMA)


def test_eval_config_forms(tmp_path):
    text = 'metrics_specs { metrics { class_name: "ExampleCount" } }'
    as_json = '{"metrics_specs": [{"metrics": [{"class_name": "ExampleCount"}]}]}'
    path = tmp_path / "config.json"
    path.write_text(as_json)
    parsed = [config_lib.load(value) for value in (text, as_json, str(path))]
    assert parsed[0] == parsed[1] == parsed[2]
    assert parsed[0].metrics_specs[0].metrics[0].class_name == "ExampleCount"
    assert config_lib.load("") is None and config_lib.load("   ") is None
    assert config_lib.parse_slice_features("island, sex") == ["island", "sex"]
    assert config_lib.parse_slice_features('["island"]') == ["island"]
    assert config_lib.parse_slice_features([]) is None


def test_default_config_for_regression():
    info = {"problem_type": "regression", "label": "body_mass_g", "transformed_label": "body_mass_g"}
    signatures = {"serving_default": {"inputs": ["examples"], "outputs": ["predictions"]},
                  "transform_features": {"inputs": ["examples"], "outputs": ["body_mass_g", "island"]}}
    candidate = ModelRef("candidate", "/m", info, signatures)
    config = config_lib.default_config(candidate, ["island"], {"mean_squared_error": 1234.5}, "regression")
    spec = config.model_specs[0]
    assert (spec.label_key, spec.prediction_key, list(spec.preprocessing_function_names)) == \
        ("body_mass_g", "predictions", ["transform_features"])
    names = [m.class_name for m in config.metrics_specs[0].metrics]
    assert names[:3] == ["ExampleCount", "MeanSquaredError", "MeanAbsoluteError"]
    threshold = config.metrics_specs[0].metrics[1].per_slice_thresholds[0].threshold
    assert threshold.value_threshold.upper_bound.value == 1234.5
    assert threshold.change_threshold.absolute.value == pytest.approx(1e-10)
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[], ["island"]]
    assert config_lib.count_change_thresholds(config) == 1
    stamped = config_lib.apply_baseline(config, has_baseline=False)
    assert config_lib.count_change_thresholds(stamped) == 0 and len(stamped.model_specs) == 1
    compared = config_lib.apply_baseline(config, has_baseline=True)
    assert [(s.name, s.is_baseline) for s in compared.model_specs] == [("candidate", False), ("baseline", True)]



def test_a_module_models_problem_is_read_off_its_label():
    """TFX's penguin module predicts species 0/1/2 from serving_default: no kubetfx_model.json problem type."""
    import pyarrow as pa

    signatures = {"serving_default": {"inputs": ["examples"], "outputs": ["output_0"]}}

    def custom(label):
        return ModelRef("candidate", "/m", {"problem_type": "custom", "module_file": "m.py", "label": label},
                        signatures)

    batch = pa.table({"species": pa.array([[0], [1], [2], [1]]), "mass": pa.array([[3.5], [4.25], [5.0], [3.0]]),
                      "island": pa.array([["a"], ["b"], ["a"], ["b"]])})
    assert config_lib.problem_type(custom("species"), batch) == "classification"
    assert config_lib.problem_type(custom("mass"), batch) == "regression"
    with pytest.raises(ConfigError, match="label 'island' holds strings.*give one, e.g. --set eval_config='model_specs"):
        config_lib.problem_type(custom("island"), batch)
    with pytest.raises(ConfigError, match="names no label"):
        config_lib.problem_type(custom(""), batch)
    config = config_lib.default_config(custom("species"), [], {"accuracy": 0.5}, "classification")
    spec = config.model_specs[0]
    assert (spec.signature_name, spec.label_key, spec.prediction_key) == ("serving_default", "species", "")
    assert list(spec.preprocessing_function_names) == []  # the raw label: the module has no transform signature


# --------------------------------------------------------------------------- KFP


def test_component_compiles_with_a_boolean_output(tmp_path):
    from kfp import compiler

    from kubetfx.components.evaluator.component import evaluator

    path = tmp_path / "evaluator.yaml"
    compiler.Compiler().compile(evaluator, str(path))
    spec = yaml.safe_load(path.read_text())["components"]["comp-evaluator"]
    assert set(spec["inputDefinitions"]["artifacts"]) == {"examples", "model"}
    outputs = spec["outputDefinitions"]
    assert set(outputs["artifacts"]) == {"evaluation", "blessing", "metrics", "classification_metrics", "report"}
    assert outputs["artifacts"]["classification_metrics"]["artifactType"]["schemaTitle"] == \
        "system.ClassificationMetrics"
    assert outputs["parameters"]["Output"]["parameterType"] == "BOOLEAN"


@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")  # our image is not a Python image
def test_component_gates_the_pusher_under_kfp_local(tmp_path, raw_examples, good_model):
    """Evaluator -> dsl.If(blessed) -> Pusher on the embedded runner, the body in a fresh process."""
    from kfp import dsl, local
    from kfp.dsl import Dataset, Model

    from kubetfx.components.evaluator.component import evaluator
    from kubetfx.components.pusher.component import pusher

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    base = str(tmp_path / "serving")

    @dsl.pipeline
    def evaluate_and_push(destination: str):
        data = dsl.importer(artifact_uri=raw_examples, artifact_class=Dataset, reimport=False)
        model = dsl.importer(artifact_uri=good_model, artifact_class=Model, reimport=False)
        verdict = evaluator(examples=data.output, model=model.output, baseline_repository=destination,
                            model_name=MODEL_NAME, slice_features=["island"])
        with dsl.If(verdict.outputs["Output"] == True):  # noqa: E712 - a KFP condition, not a Python test
            pusher(model=model.output, model_blessing=verdict.outputs["blessing"], push_destination=destination,
                   model_name=MODEL_NAME)

    evaluate_and_push(destination=base)
    assert model_repository.list_versions(base, MODEL_NAME) == [1]
    files = [os.path.join(d, name) for d, _, names in os.walk(tmp_path / "root") for name in names]
    assert [f for f in files if os.path.basename(f) == blessing.BLESSED]
    reports = [open(f, encoding="utf-8").read() for f in files if os.path.basename(f) == "report"]
    evaluator_report = next(text for text in reports if text.startswith("# Evaluator"))
    assert "**Decision: BLESSED**" in evaluator_report
    assert "island:Biscoe" in evaluator_report and "sex:male" not in evaluator_report
