"""Mistakes are caught before any task runs, each in one line naming the parameter (kubetfx run / compile)."""

import os
import textwrap

import pytest

from kubetfx.components.common.feature_names import safe_name, safe_names
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.pipelines import preflight, registry
from kubetfx.pipelines.cli import main as cli

from helpers.messages import user_error
from helpers.pipeline_cache import TFX_MODULE


@pytest.fixture(scope="module")
def inputs():
    return registry.PIPELINES["penguin"].make().component_spec.inputs


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text("sepal length (cm),petal width (cm),target\n5.1,0.2,0\n6.2,1.8,2\n")
    return str(path)


def run_cli(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("arguments, message", [
    ({"fail_on_anomalie": False}, "no parameter 'fail_on_anomalie'; did you mean 'fail_on_anomalies'?"),
    ({"fail_on_anomalies": "Fals"}, "fail_on_anomalies: expected true or false, got str 'Fals'"),
    ({"train_steps": "many"}, "train_steps: expected an integer"),
    ({"hyperparameters": "{epochs: 5"}, "hyperparameters: expected a JSON object"),
    ({"hyperparameters": {"epochs": "five"}}, "hyperparameters.epochs: expected int > 0"),
    ({"hyperparameters": {"epoch": 5}}, "epoch"),
    ({"splits": "train:2,eval"}, "splits: 'eval' is not name:weight"),
    ({"splits": "train:2,eval:-1"}, "weight of 'eval' must be positive"),
    ({"problem_type": "clustering"}, "problem_type must be one of auto, classification, regression"),
    ({"model_name": "my model"}, "model name 'my model' is not valid"),
    ({"eval_config": "model_specs { label_ky: 'x' }"}, "eval_config"),
    ({"deploy": {"replicas": 3}}, "deploy: unknown setting(s) replicas"),
    ({"schema_file": "/nowhere/schema.pbtxt"}, "schema_file: '/nowhere/schema.pbtxt' not found"),
    ({"eval_steps": -1}, "eval_steps: must be 0 or more"),
])
def test_a_bad_argument_is_one_clear_error(inputs, arguments, message):
    given = {"input_uri": "gs://b/x.csv", "push_destination": "/tmp/r", **arguments}
    with pytest.raises(ConfigError) as raised:
        preflight.check(inputs, given)
    assert message in str(raised.value)


def test_the_spelling_our_anomaly_message_suggests_works(inputs):
    """`--set fail_on_anomalies=False` (Python's spelling) is the boolean false, as is `false`."""
    for spelling in ("False", "false", "no", "0", False):
        checked = preflight.check(inputs, {"input_uri": "gs://b/x.csv", "push_destination": "/r",
                                           "fail_on_anomalies": spelling})
        assert checked["fail_on_anomalies"] is False
    assert preflight.check(inputs, {"input_uri": "gs://b", "push_destination": "/r", "train_steps": "7"})[
        "train_steps"] == 7


def test_a_label_not_in_a_local_csvs_header_is_caught_with_a_suggestion(inputs, csv_file):
    with pytest.raises(ConfigError, match=r"label_column 'targt' is not a column of .*iris.csv; did you mean "
                                          r"'target'\? \(columns: sepal length \(cm\), petal width \(cm\), target\)"):
        preflight.check(inputs, {"input_uri": csv_file, "push_destination": "/r", "label_column": "targt"})


def write_module(tmp_path, body: str) -> str:
    path = tmp_path / "module.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_a_tfx_users_unchanged_imports_pass_and_what_kubetfx_lacks_is_one_line(inputs, tmp_path):
    module = write_module(tmp_path, """
        from tfx import v1 as tfx
        from tfx.components.trainer.fn_args_utils import FnArgs
        def preprocessing_fn(inputs): return inputs
        def run_fn(fn_args: tfx.components.FnArgs): pass
    """)
    preflight.check_module_file(module, eval_steps=5, train_steps=100)
    module = write_module(tmp_path, """
        from tfx import v1 as tfx
        def preprocessing_fn(inputs): return inputs
        def run_fn(fn_args): return tfx.types.standard_artifacts.Model
    """)
    with pytest.raises(ConfigError, match=r"module.py:4: 'tfx.v1.types' is not provided: TFX is not installed here"):
        preflight.check_module_file(module, eval_steps=5, train_steps=100)


@pytest.mark.parametrize("body, message", [
    ("def preprocessing_fn(inputs):\n    return inputs\n", "defines no run_fn"),
    ("def run_fn(fn_args:\n    pass\n", "syntax error"),
    ("import no_such_package_here\ndef preprocessing_fn(i): pass\ndef run_fn(a): pass\n",
     "imports 'no_such_package_here', which is not installed"),
])
def test_module_file_mistakes(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        preflight.check_module_file(write_module(tmp_path, body), eval_steps=5, train_steps=100)


def test_tfxs_penguin_module_needs_train_and_eval_steps_as_in_tfx():
    preflight.check_module_file(TFX_MODULE, eval_steps=5, train_steps=100)
    with pytest.raises(ConfigError, match=r"repeat forever.*needs eval_steps \(TFX EvalArgs.num_steps\)"):
        preflight.check_module_file(TFX_MODULE, eval_steps=0, train_steps=100)
    with pytest.raises(ConfigError, match=r"needs train_steps \(TFX TrainArgs.num_steps\)"):
        preflight.check_module_file(TFX_MODULE, eval_steps=5, train_steps=0)


def test_run_fails_before_any_task_and_says_why_in_one_line(capsys, tmp_path, csv_file):
    root = tmp_path / "root"
    code, _, err = run_cli(capsys, "run", "--data", csv_file, "--label", "species", "--root", str(root))
    assert "label_column 'species' is not a column" in user_error(code, err)
    code, _, err = run_cli(capsys, "run", "--root", str(root), "--set", "fail_on_anomalie=false")
    assert "did you mean 'fail_on_anomalies'" in user_error(code, err)
    code, _, err = run_cli(capsys, "run", "--data", csv_file, "--root", str(root))
    assert "--data and --label go together" in user_error(code, err)
    assert not os.path.exists(root / "pipeline-root") or not os.listdir(root / "pipeline-root")  # nothing ran


def test_compile_checks_an_environments_values(capsys, tmp_path):
    config = tmp_path / "env.yaml"
    config.write_text("parameters: {splits: 'train:1,eval:zero'}\n")
    code, _, err = run_cli(capsys, "compile", "--config", str(config), "--output", str(tmp_path / "p.yaml"))
    assert "weight of 'eval' must be a number" in user_error(code, err)
    assert not (tmp_path / "p.yaml").exists()


def test_params_lists_every_parameter_with_its_meaning(capsys):
    from kubetfx.pipelines.tabular.pipeline import PARAMETER_HELP

    code, out, _ = run_cli(capsys, "params")
    inputs = registry.PIPELINES["penguin"].make().component_spec.inputs
    assert code == 0 and set(inputs) == set(PARAMETER_HELP)
    for name in inputs:
        assert f"  {name} " in out and PARAMETER_HELP[name] in out
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "pipelines.md")) as handle:
        reference = handle.read()
    missing = [name for name in inputs if f"| `{name}` |" not in reference]
    assert not missing, f"docs/pipelines.md's parameter table lacks {missing}"


def test_own_data_gets_a_pipeline_named_after_it():
    assert registry.model_name_for("data/iris.csv") == "iris"
    assert registry.model_name_for("gs://bucket/Breast Cancer.csv.gz") == "breast-cancer"
    assert registry.model_name_for("/d/wine/span-{SPAN}/*.csv") == "wine"
    entry = registry.for_data("data/iris.csv", "target", problem_type="classification")
    pipeline = entry.make()
    assert pipeline.name == "kubetfx-iris"
    assert pipeline.component_spec.inputs["label_column"].default == "target"
    assert pipeline.component_spec.inputs["problem_type"].default == "classification"
    assert entry.local_arguments("/tmp/root")["input_uri"] == os.path.abspath("data/iris.csv")


def test_safe_names_are_python_identifiers_and_collisions_are_named():
    for name in ("sepal length (cm)", "Total.Phenols", "malic-acid", "a/b", "größe", "年齢", "1st", "class",
                 "OD280/OD315 of diluted wines"):
        safe = safe_name(name)
        assert safe.isidentifier() and safe.isascii() and not __import__("keyword").iskeyword(safe), (name, safe)
    assert safe_name("sepal length (cm)") == "sepal_length_cm" and safe_name("bill_length_mm") == "bill_length_mm"
    with pytest.raises(InputDataError, match="columns 'a b' and 'a_b' of x.csv both become 'a_b'"):
        safe_names(["a b", "a_b"], "x.csv")
