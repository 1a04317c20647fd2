"""TFX's penguin module with its tuner_fn and a string label mapped by a TFT vocabulary: tuned, trained,
evaluated with a derived EvalConfig and pushed, on the embedded default; and what preflight refuses."""

import json
import os
import textwrap

import pytest

from kubetfx.pipelines.cli import main as cli
from kubetfx.pipelines.local import runner as local_runner


@pytest.fixture(scope="module")
def named_penguins(tmp_path_factory) -> str:
    """TFX's penguin columns (culmen_*) with the species as names, as TFX's Transform tutorial reads them."""
    import pyarrow.csv as pacsv
    from helpers.pipeline_cache import tfx_penguin_table

    from kubetfx.pipelines.penguin import data

    path = tmp_path_factory.mktemp("tft-data") / "penguins.csv"
    pacsv.write_csv(tfx_penguin_table(data.load_table(drop_missing=True), string_label=True), str(path))
    return str(path)


def _outputs(root, task: str, name: str) -> str:
    runs = os.path.join(root, "pipeline-root")
    run = sorted(os.listdir(runs))[-1]
    return os.path.join(runs, run, task, name)


def test_tuner_fn_and_a_vocabulary_mapped_label_run_to_a_push_without_an_eval_config(capsys, tmp_path,
                                                                                   named_penguins):
    from helpers.pipeline_cache import TFT_LABEL_MODULE

    root = tmp_path / "root"
    code = cli.main(["run", "--data", named_penguins, "--label", "species", "--name", "penguin-tft", "--root",
                     str(root), "--set", f"module_file={TFT_LABEL_MODULE}", "--set", "train_steps=60",
                     "--set", "eval_steps=5"])
    out, _ = capsys.readouterr()
    assert code == local_runner.EXIT_PUSHED, out
    # The Tuner ran the module's tuner_fn (TFX's RandomSearch, 6 trials) and wrote TFX's file.
    best_dir = _outputs(root, "tuner", "best_hyperparameters")
    with open(os.path.join(best_dir, "best_hyperparameters.txt"), encoding="utf-8") as handle:
        best = json.load(handle)
    assert set(best["values"]) == {"learning_rate", "num_layers"}
    with open(os.path.join(best_dir, "kubetfx_tuning.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["trials_run"] == 6 and record["library"].startswith("keras-tuner")
    # The Trainer gave run_fn that config (fn_args.hyperparameters), and recorded the label's mapping.
    version = root / "model-repository" / "penguin-tft" / "1"
    with open(version / "kubetfx_model.json", encoding="utf-8") as handle:
        info = json.load(handle)
    assert info["hyperparameters"]["values"] == best["values"] and info["tuning"]["values"] == best["values"]
    assert info["transformed_label"] == "species_xf" and sorted(info["class_names"]) == [
        "Adelie", "Chinstrap", "Gentoo"]
    # The Evaluator derived its EvalConfig from the transform graph and printed it.
    with open(_outputs(root, "evaluator", "report"), encoding="utf-8") as handle:
        report = handle.read()
    assert "derived from the module's transform graph" in report
    assert 'label_key: "species_xf"' in report and 'preprocessing_function_names: "transform_features"' in report


def test_a_text_label_passed_through_unchanged_is_stopped_before_any_task(capsys, tmp_path, named_penguins):
    from helpers.pipeline_cache import TFX_MODULE

    code = cli.main(["run", "--data", named_penguins, "--label", "species", "--root", str(tmp_path / "root"),
                     "--set", f"module_file={TFX_MODULE}", "--set", "train_steps=10", "--set", "eval_steps=5"])
    out, err = capsys.readouterr()
    assert code == 2 and not os.path.exists(tmp_path / "root" / "pipeline-root" / "kubetfx-penguins"), out
    first, *details = err.strip().splitlines()  # one short first line, the details indented after it
    assert first.startswith("kubetfx: eval_config: module_file") and all(d.startswith("  ") for d in details)
    message = " ".join(line.strip() for line in [first, *details])
    assert "passes the text label 'species' through preprocessing_fn unchanged" in message
    assert "--set eval_config='model_specs { label_key:" in message


def test_tune_true_needs_a_tuner_fn_in_the_module(capsys, tmp_path, named_penguins):
    module = tmp_path / "module.py"
    module.write_text(textwrap.dedent("""
        def preprocessing_fn(inputs):
            return dict(inputs)

        def run_fn(fn_args):
            pass
    """))
    code = cli.main(["run", "--data", named_penguins, "--label", "species", "--root", str(tmp_path / "root"),
                     "--set", f"module_file={module}", "--set", "tune=true",
                     "--set", "eval_config=model_specs { label_key: \"species\" } metrics_specs { metrics { "
                              "class_name: \"ExampleCount\" } }"])
    _, err = capsys.readouterr()
    assert code == 2 and "tune=true, but module_file" in err and "defines no tuner_fn" in err
