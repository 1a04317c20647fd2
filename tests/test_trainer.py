"""Trainer executor: the built-in Keras 3 DNN and TFX's penguin module file on real Transform output.

The SavedModel contract (signatures, names, dtypes), training/serving skew (a
fresh process), determinism, atomic export and bad input.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kubetfx.components.common import examples
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.trainer import executor, hyperparameters

from helpers.pipeline_cache import TFX_MODULE, penguin_pipeline, tfx_penguin_pipeline, train

SPECIES = {"Adelie", "Chinstrap", "Gentoo"}
RAW_INPUTS = {"bill_depth_mm": "float32", "bill_length_mm": "float32", "body_mass_g": "int64",
              "flipper_length_mm": "int64", "island": "string", "sex": "string", "year": "int64"}
CLASSIFICATION_OUTPUTS = {"probabilities": ("float32", [-1, 3]), "class_ids": ("int64", [-1]),
                          "classes": ("string", [-1]), "class_names": ("string", [-1, 3])}
FAST = {"epochs": 3, "early_stopping_patience": 0}

@pytest.fixture(scope="session")
def penguins(tmp_path_factory):
    return penguin_pipeline(tmp_path_factory)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, penguins):
    """The built-in trainer on penguins (species), default hyperparameters but fewer epochs."""
    return train(tmp_path_factory, "default", penguins, hyperparameters={"epochs": 30}, seed=42)


def _model_info(run: dict) -> dict:
    with open(os.path.join(run["model"], "kubetfx_model.json"), encoding="utf-8") as handle:
        return json.load(handle)


# --------------------------------------------------------------------------- built-in trainer


def test_default_trainer_learns_penguins(trained):
    result = trained["result"]
    assert result["tfx_type"] == "Model" and result["problem_type"] == "classification"
    assert result["metrics"]["eval_accuracy"] > 0.9
    assert set(result["metrics"]) == {"train_loss", "train_accuracy", "eval_loss", "eval_accuracy"}
    assert sorted(os.listdir(trained["model"])) == ["Format-Serving", "kubetfx_model.json", "schema.pbtxt"]
    assert os.path.isfile(os.path.join(trained["model"], "Format-Serving", "saved_model.pb"))
    with open(trained["metrics"], encoding="utf-8") as handle:
        assert json.load(handle) == result["metrics"]
    assert result["model_run"]["tfx_type"] == "ModelRun"
    events = [f for _, _, files in os.walk(trained["model_run"]) for f in files if "tfevents" in f]
    assert events, "TensorBoard event files in model_run_dir"


def test_model_info_records_the_contract(trained, penguins):
    info = _model_info(trained)
    counts = penguins["metadata"]["row_counts"]
    assert info["problem_type"] == "classification" and info["label"] == "species"
    assert sorted(info["class_names"]) == sorted(SPECIES)
    assert info["raw_features"] == [{"name": n, "dtype": d, "input": n} for n, d in sorted(RAW_INPUTS.items())]
    assert info["transformed_features"] == sorted(RAW_INPUTS)
    assert info["hyperparameters"] == {**hyperparameters.DEFAULTS, "epochs": 30}
    assert info["schedule"]["sources"]["epochs"] == "given" and info["schedule"]["sources"]["batch_size"] == "default"
    assert info["schedule"]["steps_per_epoch"] == -(-counts["train"] // 32)
    with open(trained["report"], encoding="utf-8") as handle:
        page = handle.read()
    assert "| epochs | 30 | given |" in page and "| batch_size | 32 | default |" in page
    assert info["seed"] == 42
    assert info["train_examples"] == counts["train"] and info["eval_examples"] == counts["eval"]
    assert 1 <= info["epochs_run"] <= 30 and info["examples_per_second"] > 0
    assert info["devices"] and info["keras"] == "keras3"
    assert set(info["package_versions"]) >= {"tensorflow", "keras", "tensorflow-transform", "kubetfx"}
    assert info["metrics"] == trained["result"]["metrics"]
    for key in ("class_names", "raw_features", "epochs_run", "devices", "examples_per_second", "signatures"):
        assert trained["result"][key] == info[key], key
    # The class order is the label vocabulary's.
    import tensorflow_transform as tft

    vocabulary = tft.TFTransformOutput(penguins["transform_graph"]).vocabulary_by_name("label_vocabulary")
    assert info["class_names"] == [v.decode() for v in vocabulary]


def test_signatures(trained):
    signatures = _model_info(trained)["signatures"]
    assert sorted(signatures) == ["serving_default", "serving_raw", "transform_features"]
    outputs = {name: (spec["dtype"], spec["shape"]) for name, spec in signatures["serving_default"]["outputs"].items()}
    assert outputs == CLASSIFICATION_OUTPUTS
    assert signatures["serving_default"]["inputs"] == {"examples": {"dtype": "string", "shape": [-1]}}
    assert signatures["serving_raw"]["inputs"] == {n: {"dtype": d, "shape": [-1]} for n, d in RAW_INPUTS.items()}
    assert signatures["serving_raw"]["outputs"] == signatures["serving_default"]["outputs"]
    assert signatures["transform_features"]["inputs"] == {"examples": {"dtype": "string", "shape": [-1]}}
    assert sorted(signatures["transform_features"]["outputs"]) == sorted(list(RAW_INPUTS) + ["species"])


_SKEW_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from kubetfx.components.common import examples

    model_dir, raw_dir, transformed_dir = sys.argv[1:4]
    info = json.load(open(model_dir + "/kubetfx_model.json"))
    model = tf.saved_model.load(model_dir + "/Format-Serving")
    records = examples.read_split_records(raw_dir, "eval")
    raw = examples.decode_examples(records)
    column = lambda batch, name: [v[0] for v in batch.column(batch.schema.get_field_index(name)).to_pylist()]
    raw_inputs = {f["name"]: tf.constant(column(raw, f["name"]), dtype=f["dtype"]) for f in info["raw_features"]}
    by_raw = model.signatures["serving_raw"](**raw_inputs)
    by_examples = model.signatures["serving_default"](examples=tf.constant(records))
    # The model on the TRANSFORMED eval split, as Beam wrote it (rows are matched by sorting on the raw
    # measurements, which Beam may reorder).
    transformed = examples.decode_examples(examples.read_split_records(transformed_dir, "eval"))
    dtypes = {n: s.dtype for n, s in model.call_transformed.concrete_functions[0]
              .structured_input_signature[0][0].items()}
    by_transformed = model.call_transformed({n: tf.constant([[v] for v in column(transformed, n)], dtype=d)
                                             for n, d in dtypes.items()})
    key = lambda batch, names: np.lexsort([np.asarray(column(batch, n), dtype=np.float64) for n in names])
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    raw_order, transformed_order = key(raw, numeric), key(transformed, numeric)
    print(json.dumps({
        "raw_vs_examples": float(np.abs(by_raw["probabilities"].numpy() - by_examples["probabilities"].numpy()).max()),
        "raw_vs_transformed": float(np.abs(by_raw["probabilities"].numpy()[raw_order]
                                           - by_transformed["probabilities"].numpy()[transformed_order]).max()),
        "classes": [c.decode() for c in by_raw["classes"].numpy()],
        "labels": [v.decode() for v in column(raw, "species")],
        "class_names_row": [c.decode() for c in by_raw["class_names"].numpy()[0]],
        "class_ids": by_raw["class_ids"].numpy().tolist(),
        "dtypes": {k: v.dtype.name for k, v in by_raw.items()},
    }))
""")


def test_no_training_serving_skew_in_a_fresh_process(trained, penguins):
    result = subprocess.run([sys.executable, "-c", _SKEW_CHECK, trained["model"], penguins["examples"],
                             penguins["transformed"]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads(result.stdout.strip().splitlines()[-1])
    assert check["raw_vs_examples"] <= 1e-6
    assert check["raw_vs_transformed"] <= 1e-6  # Beam's transform == the serving graph's transform
    assert set(check["classes"]) <= SPECIES and len(set(check["classes"])) == 3
    accuracy = np.mean(np.array(check["classes"]) == np.array(check["labels"]))
    assert accuracy > 0.9
    info = _model_info(trained)
    assert check["class_names_row"] == info["class_names"]
    assert [info["class_names"][i] for i in check["class_ids"]] == check["classes"]
    assert check["dtypes"] == {"probabilities": "float32", "class_ids": "int64", "classes": "string",
                               "class_names": "string"}


def test_same_seed_gives_identical_predictions(tmp_path_factory, penguins):
    import tensorflow as tf

    runs = [train(tmp_path_factory, name, penguins, hyperparameters=FAST, seed=seed)
            for name, seed in (("seed7-a", 7), ("seed7-b", 7), ("seed8", 8))]
    records = tf.constant(examples.read_split_records(penguins["examples"], "eval"))
    probabilities = [tf.saved_model.load(os.path.join(run["model"], "Format-Serving"))
                     .signatures["serving_default"](examples=records)["probabilities"].numpy() for run in runs]
    np.testing.assert_array_equal(probabilities[0], probabilities[1])
    assert not np.array_equal(probabilities[0], probabilities[2])  # the seed does matter
    assert runs[0]["result"]["epochs_run"] == 3


def test_report(trained):
    with open(trained["report"], encoding="utf-8") as handle:
        text = handle.read()
    assert text.startswith("# Trainer") and "built-in Keras 3 DNN" in text
    assert "eval_accuracy" in text and "hidden_units" in text and "`serving_raw`" in text
    assert "training examples/second" in text


def test_regression_on_a_numeric_label(tmp_path_factory):
    pipeline = penguin_pipeline(tmp_path_factory, label="body_mass_g")
    assert pipeline["metadata"]["transforms"]["body_mass_g"] == "identity"
    run = train(tmp_path_factory, "regression", pipeline, hyperparameters={"epochs": 30})
    info = _model_info(run)
    assert info["problem_type"] == "regression" and info["class_names"] == []
    assert info["label_normalization"]["mean"] > 3000
    assert set(run["result"]["metrics"]) == {"train_loss", "train_mae", "train_rmse", "eval_loss", "eval_mae",
                                             "eval_rmse"}
    assert run["result"]["metrics"]["eval_mae"] < 400  # grams; the label's std is ~800
    signatures = info["signatures"]
    assert "body_mass_g" not in signatures["serving_raw"]["inputs"]
    assert signatures["serving_raw"]["outputs"] == {"predictions": {"dtype": "float32", "shape": [-1]}}


class _FakeTransformOutput:
    """Just what problem.decide reads from a TFTransformOutput."""

    def __init__(self, raw_dtype, transformed_dtype):
        import tensorflow as tf

        self._raw = {"y": tf.io.FixedLenFeature([1], raw_dtype)}
        self._transformed = {"y": tf.io.FixedLenFeature([1], transformed_dtype)}
        self.transform_savedmodel_dir = "/nonexistent"

    def raw_feature_spec(self):
        return dict(self._raw)

    def transformed_feature_spec(self):
        return dict(self._transformed)


def test_problem_type_from_the_label():
    import tensorflow as tf

    from kubetfx.components.trainer import problem

    contiguous = problem.decide(_FakeTransformOutput(tf.int64, tf.int64), "y", np.array([0, 1, 2, 1]), None)
    assert (contiguous.kind, contiguous.class_names, contiguous.label_values) == ("classification", ["0", "1", "2"],
                                                                                  None)
    years = problem.decide(_FakeTransformOutput(tf.int64, tf.int64), "y", np.array([2009, 2007, 2008]), None)
    assert years.class_names == ["2007", "2008", "2009"] and years.label_values == [2007, 2008, 2009]
    strings = problem.decide(_FakeTransformOutput(tf.string, tf.string), "y",
                             np.array([b"b", b"a", b"b", b"c", b"a", b"b"], dtype=object), None)
    assert strings.class_names == ["b", "a", "c"] and strings.label_values == [b"b", b"a", b"c"]
    many = problem.decide(_FakeTransformOutput(tf.int64, tf.int64), "y", np.arange(100), None)
    assert many.kind == "regression" and many.label_mean == pytest.approx(49.5)
    floats = problem.decide(_FakeTransformOutput(tf.float32, tf.float32), "y", np.array([1.0, 3.0]), None)
    assert (floats.kind, floats.label_mean, floats.label_std) == ("regression", 2.0, 1.0)
    with pytest.raises(ConfigError, match="no vocabulary file 'label_vocabulary'"):
        problem.decide(_FakeTransformOutput(tf.string, tf.int64), "y", np.array([0, 1]), None)


def test_schedule_from_train_steps():
    from kubetfx.components.trainer import scaling

    hp = {**hyperparameters.DEFAULTS, "batch_size": 20}
    steps = lambda train_steps: (scaling.plan(hp, 220, 110, train_steps).hyperparameters["epochs"],  # noqa: E731
                                 scaling.plan(hp, 220, 110, train_steps).steps_per_epoch)
    assert steps(0) == (hp["epochs"], 11)
    assert steps(100) == (10, 11)  # whole epochs covering the steps
    assert steps(5) == (1, 5)  # fewer than a pass: one epoch of exactly those steps


def test_final_metrics_use_the_traced_forward_with_the_eager_results():
    import tensorflow as tf

    from kubetfx.components.trainer import default_model, problem

    inputs = [problem.ModelInput("x", "numeric", "float32", 3), problem.ModelInput("c", "categorical", "int64", 1, 4)]
    kind = problem.Problem(problem.CLASSIFICATION, "y", "y", ["a", "b", "c"], None)
    model = default_model.build(inputs, kind, hyperparameters.DEFAULTS, seed=1)
    rng = np.random.default_rng(0)
    x, c, y = rng.normal(size=(300, 3)).astype("float32"), rng.integers(-1, 5, (300, 1)), rng.integers(0, 3, 300)
    dataset = tf.data.Dataset.from_tensor_slices(({"x": x, "c": c}, y)).batch(128)  # a short last batch
    eager = np.concatenate([model(f, training=False).numpy() for f, _ in dataset])
    traced = np.concatenate([default_model.forward(model)(f).numpy() for f, _ in dataset])
    np.testing.assert_array_equal(np.argmax(traced, axis=1), np.argmax(eager, axis=1))
    np.testing.assert_allclose(traced, eager, rtol=1e-6, atol=1e-7)
    metrics = default_model.evaluate(model, dataset, kind, "eval")
    assert metrics["eval_accuracy"] == pytest.approx(float(np.mean(np.argmax(eager, axis=1) == y)))
    assert metrics["eval_loss"] == pytest.approx(float(-np.mean(np.log(eager[np.arange(300), y]))), rel=1e-6)


def test_small_data_keeps_the_defaults():
    from kubetfx.components.trainer import scaling

    for rows in (1, 222, 32 * (scaling.STEP_BUDGET // 40)):  # 40 epochs fit the step budget
        plan = scaling.plan({}, rows, rows // 2)
        assert plan.hyperparameters == hyperparameters.DEFAULTS, rows
        assert set(plan.sources.values()) == {"default"}
        assert plan.steps_per_epoch == -(-rows // 32)
    assert scaling.plan({}, 222, 111).eval_steps == 4  # the whole eval split


def test_defaults_scale_with_the_rows():
    from kubetfx.components.trainer import scaling

    sizes = [10_000, 16_001, 100_000, 666_667, 10_000_000]
    plans = [scaling.plan({}, rows, rows // 2) for rows in sizes]
    batches = [p.hyperparameters["batch_size"] for p in plans]
    assert batches == sorted(batches) and batches[0] == 32 and batches[1] == 64 and batches[-1] == scaling.MAX_BATCH
    for rows, plan in zip(sizes, plans):
        hp = plan.hyperparameters
        pass_steps = -(-rows // hp["batch_size"])
        assert pass_steps <= scaling.PASS_STEPS or hp["batch_size"] == scaling.MAX_BATCH, rows
        assert plan.steps_per_epoch == min(pass_steps, scaling.PASS_STEPS)
        assert 1 <= hp["epochs"] <= 40 and plan.steps_per_epoch * hp["epochs"] <= scaling.STEP_BUDGET, rows
        assert scaling.MIN_PATIENCE <= hp["early_stopping_patience"] <= max(scaling.MIN_PATIENCE, hp["epochs"] // 4)
        assert plan.eval_steps == min(-(-(rows // 2) // hp["batch_size"]), scaling.VALIDATION_STEPS)
        assert plan.sources["batch_size"] == ("default" if hp["batch_size"] == 32 else "scaled")
        assert plan.sources["epochs"] == "scaled" and plan.sources["hidden_units"] == "default"
    big = plans[sizes.index(666_667)]
    assert (big.hyperparameters["batch_size"], big.steps_per_epoch, big.hyperparameters["epochs"]) == (1024, 500, 6)


def test_given_values_win_over_scaling():
    from kubetfx.components.trainer import scaling

    plan = scaling.plan({"batch_size": 32, "epochs": 2, "early_stopping_patience": 0}, 1_000_000, 500_000)
    assert {k: plan.hyperparameters[k] for k in scaling.SCALED} == {"batch_size": 32, "epochs": 2,
                                                                     "early_stopping_patience": 0}
    assert plan.steps_per_epoch == 31_250  # a given epochs count means whole passes
    assert {plan.sources[k] for k in scaling.SCALED} == {"given"}
    tuned = scaling.plan({"epochs": 2, "learning_rate": 0.01}, 222, 111, tuned=frozenset({"learning_rate"}))
    assert (tuned.sources["epochs"], tuned.sources["learning_rate"], tuned.sources["dropout"]) == \
        ("given", "tuner", "default")
    assert scaling.plan({"epochs": 30}, 222, 111).hyperparameters["early_stopping_patience"] == 8
    only_batch = scaling.plan({"batch_size": 4096}, 1_000_000, 500_000)
    assert only_batch.steps_per_epoch == 245 and only_batch.hyperparameters["epochs"] == 12
    assert scaling.plan({}, 1_000_000, 500_000, eval_steps=7).eval_steps == 7
    steps = scaling.plan({}, 1_000_000, 500_000, train_steps=200)
    assert (steps.steps_per_epoch, steps.hyperparameters["epochs"], steps.sources["epochs"]) == (200, 1, "train_steps")


def test_params_shows_the_scaled_defaults(capsys):
    from kubetfx.pipelines.cli import main

    assert main.main(["params"]) == 0
    out = capsys.readouterr().out
    assert "scaled: batch_size 32, doubled while" in out
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("1,000,000"))
    assert row == ["1,000,000", "1024", "6", "500", "3000", "2"]


# --------------------------------------------------------------------------- TFX module files


def test_tfx_penguin_module_trains_and_serves(tmp_path_factory):
    import tensorflow as tf

    pipeline = tfx_penguin_pipeline(tmp_path_factory)
    run = train(tmp_path_factory, "tfx", pipeline, module_file=TFX_MODULE, train_steps=100, eval_steps=5)
    info = _model_info(run)
    assert info["problem_type"] == "custom" and info["keras"] == "tf_keras" and info["run_fn"] == "run_fn"
    assert info["train_steps"] == 100 and info["label"] == "species"
    assert list(info["signatures"]) == ["serving_default"]
    assert info["signatures"]["serving_default"]["inputs"] == {"examples": {"dtype": "string", "shape": [-1]}}
    assert os.listdir(run["model_run"]), "the module's TensorBoard callback wrote logs"
    model = tf.saved_model.load(os.path.join(run["model"], "Format-Serving"))
    records = examples.read_split_records(pipeline["examples"], "eval")
    (output,) = model.signatures["serving_default"](examples=tf.constant(records)).values()
    labels = np.array([v[0] for v in examples.decode_examples(records).column("species").to_pylist()])
    assert np.mean(np.argmax(output.numpy(), axis=1) == labels) > 0.8


def test_tfx_compat_exposes_tfx_attribute_paths():
    from kubetfx.components.trainer import fn_args
    from kubetfx.components.trainer import tfx_compat as tfx
    from kubetfx.components.trainer.tfx_compat import kerastuner

    assert tfx.components.FnArgs is fn_args.FnArgs and tfx.components.DataAccessor is fn_args.DataAccessor
    assert tfx.components.TunerFnResult(tuner=None, fit_kwargs={}).fit_kwargs == {}
    hp = kerastuner.HyperParameters()
    assert hp.Choice("learning_rate", [1e-2, 1e-3], default=1e-2) == 1e-2 and hp.Int("num_layers", 1, 3) == 1
    restored = kerastuner.HyperParameters.from_config(hp.get_config())
    assert restored.get("learning_rate") == 1e-2 and restored.get("num_layers") == 1
    assert kerastuner.HyperParameters.from_config({"num_layers": 3}).get("num_layers") == 3


KERAS3_MODULE = """
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio


def run_fn(fn_args):
    assert tf.keras.__version__.startswith("3."), tf.keras.__version__
    schema = tft.TFTransformOutput(fn_args.transform_output).transformed_metadata.schema
    options = tfxio.TensorFlowDatasetOptions(batch_size=64, label_key="species", num_epochs=1)
    seen = sum(int(label.shape[0]) for _, label in
               fn_args.data_accessor.tf_dataset_factory(fn_args.train_files, options, schema))

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def double(self, x):
            return {"y": 2.0 * x}

    module = Doubler()
    tf.saved_model.save(module, fn_args.serving_model_dir, signatures={"serving_default": module.double})
    return {"train_examples_seen": seen}


def run_fn_fails(fn_args):
    raise RuntimeError("allocation failed\\nout of memory in layer dense_1")
"""


def test_keras3_module_runs_in_a_fresh_process(penguins, tmp_path):
    module = tmp_path / "keras3_module.py"
    module.write_text(KERAS3_MODULE)
    result = executor.run(penguins["transformed"], penguins["transform_graph"], penguins["schema"],
                          str(tmp_path / "model"), str(tmp_path / "run"), module_file=str(module), keras="keras3")
    assert result["keras"] == "keras3"
    # the built-in Transform mapped the label to class ids: the Evaluator is told so (no EvalConfig needed)
    assert result["problem_type"] == "classification"
    assert result["label_mapping"] == "transform graph: species -> species"
    assert result["metrics"] == {"train_examples_seen": float(penguins["metadata"]["row_counts"]["train"])}
    line = next(i for i, text in enumerate(KERAS3_MODULE.splitlines(), 1) if "raise RuntimeError" in text)
    with pytest.raises(ConfigError, match=f"run_fn 'run_fn_fails' .* failed at .*keras3_module.py:{line}: "
                                          "RuntimeError: out of memory in layer dense_1"):
        executor.run(penguins["transformed"], penguins["transform_graph"], penguins["schema"],
                     str(tmp_path / "model2"), str(tmp_path / "run2"), module_file=str(module),
                     run_fn="run_fn_fails", keras="keras3")
    assert not os.path.exists(tmp_path / "model2") and not os.path.exists(tmp_path / "run2")


# --------------------------------------------------------------------------- bad input


def _run(penguins, tmp_path, **kwargs):
    return executor.run(penguins["transformed"], penguins["transform_graph"], penguins["schema"],
                        str(tmp_path / "model"), str(tmp_path / "model_run"), **kwargs)


def _assert_nothing_written(tmp_path):
    assert not [n for n in os.listdir(tmp_path) if n.startswith((".model", "model"))], os.listdir(tmp_path)


@pytest.mark.parametrize("given, message", [
    ({"hidden_units": "abc"}, "hyperparameters.hidden_units: expected list[int] (units per hidden layer, each > 0), "
                              "got str 'abc'"),
    ({"hidden_units": [16, 0]}, "hyperparameters.hidden_units: expected list[int]"),
    ({"learning_rate": "fast"}, "hyperparameters.learning_rate: expected a number (float), got str 'fast'"),
    ({"learning_rate": -0.1}, "hyperparameters.learning_rate: expected float > 0, got float -0.1"),
    ({"batch_size": 2.5}, "hyperparameters.batch_size: expected int > 0, got float 2.5"),
    ({"epochs": True}, "hyperparameters.epochs: expected int > 0, got bool True"),
    ({"dropout": 1.5}, "hyperparameters.dropout: expected float in [0, 1), got float 1.5"),
    ({"early_stopping_patience": "5"}, "hyperparameters.early_stopping_patience: expected int >= 0"),
    ({"layers": 3}, "hyperparameters: unknown parameter(s) layers; the built-in trainer takes: hidden_units"),
    ("{not json", "hyperparameters: not a valid JSON object"),
    ([16, 8], "hyperparameters: expected a dict (JSON object), got list"),
])
def test_bad_hyperparameters(penguins, tmp_path, given, message):
    with pytest.raises(ConfigError) as error:
        _run(penguins, tmp_path, hyperparameters=given)
    assert message in str(error.value)
    _assert_nothing_written(tmp_path)


def test_hyperparameters_from_json_and_kfp_structs():
    # KFP passes dict parameters through protobuf Struct: integers arrive as floats.
    parsed = hyperparameters.parse('{"hidden_units": [32.0, 16.0], "epochs": 5.0, "learning_rate": 1}')
    assert parsed["hidden_units"] == [32, 16] and parsed["epochs"] == 5 and parsed["learning_rate"] == 1.0
    assert hyperparameters.parse(None) == hyperparameters.DEFAULTS


@pytest.mark.parametrize("kwargs, message", [
    ({"label_column": "weight"}, "label_column 'weight' is not a feature of the schema"),
    ({"label_column": "island"}, "differs from the label the transform graph was built for ('species')"),
    ({"train_steps": -1}, "train_steps: expected an int >= 0, got int -1"),
    ({"seed": "42"}, "seed: expected an int, got str '42'"),
    ({"keras": "2"}, "keras must be one of auto, legacy, keras3"),
    ({"custom_config": "[1]"}, "custom_config: expected a dict"),
])
def test_bad_parameters(penguins, tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as error:
        _run(penguins, tmp_path, **kwargs)
    assert message in str(error.value)
    _assert_nothing_written(tmp_path)


def test_transform_graph_built_without_the_label(penguins, tmp_path):
    graph = tmp_path / "graph"
    (graph / "transform_fn").mkdir(parents=True)
    summary = {"label_column": "", "transforms": {"species": "vocabulary"}}
    (graph / "kubetfx_transform.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="built without a label_column.*rerun Transform with label_column='species'"):
        executor.run(penguins["transformed"], str(graph), penguins["schema"], str(tmp_path / "model"),
                     str(tmp_path / "model_run"), label_column="species")
    with pytest.raises(InputDataError, match="is not a transform graph"):
        executor.run(penguins["transformed"], str(tmp_path / "nothing"), penguins["schema"], str(tmp_path / "model"),
                     str(tmp_path / "model_run"), label_column="species")
    _assert_nothing_written(tmp_path)


BAD_RUN_FN_MODULES = {
    "missing": (None, "run_fn", ["module_file: module file", "not found"]),
    "syntax error": ("def run_fn(fn_args)\n    pass\n", "run_fn", ["has a syntax error at", "bad_module.py:1"]),
    "raises at import": ("import tensorflow\nimport not_a_real_dependency\n", "run_fn",
                         ["failed to import at", "bad_module.py:2",
                          "ModuleNotFoundError: No module named 'not_a_real_dependency'"]),
    "lacks run_fn": ("def trainer_fn(fn_args):\n    pass\n", "run_fn",
                     ["has no function 'run_fn' (run_fn)", "trainer_fn"]),
    "run_fn raises after writing": (
        "import os\n\ndef run_fn(fn_args):\n    os.makedirs(fn_args.serving_model_dir)\n"
        "    open(os.path.join(fn_args.serving_model_dir, 'saved_model.pb'), 'wb').close()\n"
        "    raise ValueError('NaN loss during training')\n", "run_fn",
        ["run_fn 'run_fn' of module", "failed at", "bad_module.py:6", "ValueError: NaN loss during training"]),
    "run_fn writes no model": ("def run_fn(fn_args):\n    return None\n", "run_fn",
                               ["returned without writing a SavedModel to fn_args.serving_model_dir"]),
}


@pytest.mark.parametrize("case", list(BAD_RUN_FN_MODULES))
def test_bad_module_leaves_no_model(case, penguins, tmp_path):
    source, run_fn, expected = BAD_RUN_FN_MODULES[case]
    module = tmp_path / "bad_module.py"
    if source is not None:
        module.write_text(source)
    with pytest.raises(ConfigError) as error:
        _run(penguins, tmp_path, module_file=str(module), run_fn=run_fn)
    for text in expected:
        assert text in str(error.value), (case, str(error.value))
    _assert_nothing_written(tmp_path)  # no model (and no model_run) a Pusher could pick up


def test_components_compile(tmp_path):
    from kfp import compiler, dsl

    from kubetfx.components.trainer.component import trainer
    from kubetfx.components.transform.component import transform

    @dsl.pipeline(name="transform-trainer")
    def pipeline(examples_uri: str, schema_uri: str):
        examples_in = dsl.importer(artifact_uri=examples_uri, artifact_class=dsl.Dataset)
        schema_in = dsl.importer(artifact_uri=schema_uri, artifact_class=dsl.Artifact)
        transformed = transform(examples=examples_in.output, schema=schema_in.output, label_column="species",
                                beam_pipeline_args=["--runner=DirectRunner", "--direct_num_workers=1"])
        trainer(examples=transformed.outputs["transformed_examples"],
                transform_graph=transformed.outputs["transform_graph"], schema=schema_in.output,
                label_column="species", hyperparameters={"epochs": 5, "hidden_units": [8]})

    path = str(tmp_path / "pipeline.yaml")
    compiler.Compiler().compile(pipeline, path)
    text = open(path, encoding="utf-8").read()
    assert "parameterType: LIST" in text and "parameterType: STRUCT" in text
    assert "system.Metrics" in text and "system.Model" in text
