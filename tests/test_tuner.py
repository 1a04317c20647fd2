"""The Tuner: the built-in search (Optuna) against the defaults, its reproducibility, TFX's artifact format,
a module file's tuner_fn (KerasTuner) end to end, and what it refuses."""

import json
import os
import subprocess
import sys

import pytest

from kubetfx.components.common import layout
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.trainer import executor as trainer
from kubetfx.components.tuner import executor as tuner
from kubetfx.components.tuning import artifact, space


@pytest.fixture(scope="module")
def checkerboard(tmp_path_factory) -> dict:
    """A 6 x 6 checkerboard through StatisticsGen, SchemaGen and Transform: the defaults under-fit it."""
    from helpers.tuning_data import checkerboard as board, write_examples

    from kubetfx.components.schema_gen import executor as schema_gen
    from kubetfx.components.statistics_gen import executor as statistics_gen
    from kubetfx.components.transform import executor as transform

    root = tmp_path_factory.mktemp("checkerboard")
    examples = write_examples(str(root / "examples"), board(4000, cells=6))
    statistics_gen.run(examples, str(root / "statistics"))
    schema_gen.run(str(root / "statistics"), str(root / "schema"), label_column="label")
    transform.run(examples, str(root / "schema"), str(root / "graph"), str(root / "transformed"),
                  label_column="label")
    return {"examples": examples, "schema": str(root / "schema"), "graph": str(root / "graph"),
            "transformed": str(root / "transformed"), "root": root}


def _search(data: dict, name: str, **kwargs) -> dict:
    root = data["root"]
    result = tuner.run(data["transformed"], data["graph"], data["schema"], str(root / f"{name}-best"),
                       str(root / f"{name}-results"), report_path=str(root / f"{name}.html"),
                       label_column=kwargs.pop("label_column", "label"), tune=True, **kwargs)
    return {**result, "best": str(root / f"{name}-best"), "report": str(root / f"{name}.html")}


def _train(data: dict, name: str, **kwargs) -> dict:
    root = data["root"]
    return trainer.run(data["transformed"], data["graph"], data["schema"], str(root / f"{name}-model"),
                       str(root / f"{name}-run"), label_column="label", **kwargs)


def test_the_builtin_search_beats_the_defaults_where_they_are_poor(checkerboard, capsys):
    defaults = _train(checkerboard, "defaults")
    searched = _search(checkerboard, "search", max_trials=14)
    tuned = _train(checkerboard, "tuned", best_hyperparameters_dir=searched["best"])
    before, after = defaults["metrics"]["eval_accuracy"], tuned["metrics"]["eval_accuracy"]
    with capsys.disabled():
        print(f"\n  checkerboard 6x6, 4000 rows: default hyperparameters eval accuracy {before:.3f}; after "
              f"{searched['trials_run']} trials ({int(searched['metrics']['pruned_trials'])} pruned, "
              f"{searched['search_seconds']:.0f} s) {after:.3f} with {searched['best_values']} (the best trial's "
              f"validation accuracy: {searched['best_trial']['objective']:.3f})")
    assert before < 0.75 and after > before + 0.1
    # Every trial trains with the run's seed, as the Trainer does: the best trial is the Trainer's model.
    with open(os.path.join(str(checkerboard["root"]), "tuned-model", layout.MODEL_INFO_FILE), encoding="utf-8") as f:
        history = json.load(f)["history"]
    assert max(history["val_accuracy"]) == pytest.approx(searched["best_trial"]["objective"], abs=1e-6)
    # The Trainer trained with the best trial's values, and says where they came from.
    assert tuned["hyperparameters"]["hidden_units"] == space.to_builtin(searched["best_values"])["hidden_units"]
    assert tuned["tuning"]["values"] == searched["best_values"]
    assert {tuned["schedule"]["sources"][name] for name in space.to_builtin(searched["best_values"])} == {"tuner"}
    assert tuned["tuning"]["seed"] == 42 and tuned["tuning"]["search_space"] == space.describe()
    # TFX's format: best_hyperparameters.txt is a KerasTuner HyperParameters config.
    import keras_tuner

    with open(os.path.join(searched["best"], layout.BEST_HYPERPARAMETERS_FILE), encoding="utf-8") as handle:
        restored = keras_tuner.HyperParameters.from_config(json.load(handle))
    assert restored.values == searched["best_values"]
    assert {entry["class_name"] for entry in restored.get_config()["space"]} == {"Int", "Float"}
    # The report: every trial in the table, the objective per trial as SVG.
    with open(searched["report"], encoding="utf-8") as handle:
        page = handle.read()
    assert "<svg" in page and page.count("<circle") >= searched["trials_run"]
    assert f"Best trial {searched['best_trial']['number']}" in page
    results = os.path.join(os.path.dirname(searched["best"]), "search-results", layout.TUNER_RESULTS_FILE)
    with open(results, encoding="utf-8") as handle:
        assert len(json.load(handle)) == searched["trials_run"]


def test_the_same_seed_gives_the_same_trials_and_best_trial(checkerboard):
    runs = [_search(checkerboard, f"seeded-{i}", max_trials=4, seed=7, hyperparameters={"epochs": 4})
            for i in range(2)]
    other = _search(checkerboard, "seeded-other", max_trials=4, seed=8, hyperparameters={"epochs": 4})
    first, second = ([(t["values"], t["objective"], t["state"]) for t in json.load(open(
        os.path.join(str(checkerboard["root"]), f"seeded-{i}-results", layout.TUNER_RESULTS_FILE)))]
        for i in range(2))
    assert first == second
    assert runs[0]["best_trial"] == {**runs[1]["best_trial"], "seconds": runs[0]["best_trial"]["seconds"]}
    assert runs[0]["best_values"] != other["best_values"]


def test_no_search_when_not_asked_and_without_tensorflow(tmp_path):
    script = ("import json, sys\nfrom kubetfx.components.tuner import executor\n"
              f"r = executor.run('x', 'x', 'x', {str(tmp_path / 'best')!r}, {str(tmp_path / 'results')!r})\n"
              "print(json.dumps([r['tuned'], 'tensorflow' in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, False]
    config, record = artifact.read(str(tmp_path / "best"))
    assert config is None and record["tuned"] is False and "tune=false" in record["reason"]


def test_tune_with_a_module_without_tuner_fn_is_refused(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("def preprocessing_fn(inputs):\n    return inputs\n\ndef run_fn(fn_args):\n    pass\n")
    with pytest.raises(ConfigError, match="defines no tuner_fn"):
        tuner.run("x", "x", "x", str(tmp_path / "b"), str(tmp_path / "r"), module_file=str(module), tune=True)
    with pytest.raises(ConfigError, match="max_trials: must be 1 or more"):
        tuner.run("x", "x", "x", str(tmp_path / "b"), str(tmp_path / "r"), tune=True, max_trials=0)
    assert not os.path.exists(tmp_path / "b")


def test_parallel_trials_never_exceed_the_cores():
    from kubetfx.components.tuning import cores

    assert 1 <= cores.available() <= (os.cpu_count() or 1)
