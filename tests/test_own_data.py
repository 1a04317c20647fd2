"""A user's own data and module files, end to end on the embedded default, as a new user runs them."""

import json
import textwrap

import pytest

from kubetfx.pipelines.cli import main as cli
from kubetfx.pipelines.local import runner as local_runner


def run_cli(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def processed_penguins(tmp_path_factory) -> str:
    """TFX's penguins_processed.csv (culmen_* columns, species 0/1/2), as TFX's penguin example reads it."""
    import pyarrow.csv as pacsv
    from helpers.pipeline_cache import tfx_penguin_table

    from kubetfx.pipelines.penguin import data

    path = tmp_path_factory.mktemp("tfx-data") / "penguins_processed.csv"
    pacsv.write_csv(tfx_penguin_table(data.load_table(drop_missing=True)), str(path))
    return str(path)


def test_a_failing_tasks_own_error_ends_the_console_output(capsys, tmp_path, processed_penguins):
    """Not "see the messages above" with nothing above: the task and its reason on stderr, a short line first."""
    module = tmp_path / "broken_module.py"
    module.write_text(textwrap.dedent("""
        def preprocessing_fn(inputs):
            return dict(inputs)

        def run_fn(fn_args):
            raise ValueError("the learning rate schedule is empty")
    """))
    code, out, err = run_cli(capsys, "run", "--data", processed_penguins, "--label", "species", "--root",
                             str(tmp_path / "root"), "--set", f"module_file={module}")
    assert code == local_runner.EXIT_FAILED, out
    assert out.strip().splitlines()[-1].startswith("FAILED after")
    lines = err.strip().splitlines()
    assert lines[0].startswith("kubetfx: trainer failed: run_fn 'run_fn' of module"), err
    assert "ValueError: the learning rate schedule is empty" in err and "ConfigError" not in err
    assert lines[-1].startswith("  full log: ")


def test_example_gen_records_tensorflow_names_and_refuses_colliding_columns(tmp_path):
    from kubetfx.components.common.errors import InputDataError
    from kubetfx.components.example_gen import executor as example_gen

    data = tmp_path / "iris.csv"
    data.write_text("sepal length (cm),Total.Phenols,target\n" + "".join(f"{i}.5,{i},{i % 3}\n" for i in range(30)))
    metadata = example_gen.run(str(data), str(tmp_path / "examples"), label_column="target")
    assert metadata["tensorflow_names"] == {"sepal length (cm)": "sepal_length_cm", "Total.Phenols": "Total_Phenols"}
    assert metadata["columns"] == ["sepal length (cm)", "Total.Phenols", "target"]  # the data keeps its names
    clash = tmp_path / "clash.csv"
    clash.write_text("a b,a_b,y\n1,2,3\n4,5,6\n")
    with pytest.raises(InputDataError, match="columns 'a b' and 'a_b' of .*clash.csv both become 'a_b'"):
        example_gen.run(str(clash), str(tmp_path / "clash-examples"), label_column="y")
    assert not (tmp_path / "clash-examples").exists()


def serve(tmp_path, repository: str, model: str):
    from helpers.predictor import Server

    server = Server(["--model_repository", repository, "--model_name", model], str(tmp_path / f"{model}.log"),
                    model=model)
    server.wait_ready()
    return server


def test_scikit_learns_iris_with_its_own_headers_trains_pushes_and_answers_by_those_names(capsys, tmp_path):
    """The issue's done-when: `kubetfx run --data <sklearn iris CSV> --label target`, then a request in its names."""
    from sklearn.datasets import load_iris

    data = tmp_path / "iris.csv"
    load_iris(as_frame=True).frame.to_csv(data, index=False)
    assert data.read_text().startswith("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)")
    root = tmp_path / "root"
    code, out, _ = run_cli(capsys, "run", "--data", str(data), "--label", "target", "--root", str(root))
    assert code == local_runner.EXIT_PUSHED, out
    assert "infra-validator: BLESSED" in out and f"Pushed model version 1: {root / 'model-repository' / 'iris' / '1'}" \
        in out
    server = serve(tmp_path, str(root / "model-repository"), "iris")
    try:
        virginica = {"sepal length (cm)": 6.3, "sepal width (cm)": 3.3, "petal length (cm)": 6.0,
                     "petal width (cm)": 2.5}
        setosa = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
                  "petal width (cm)": 0.2}
        status, body = server.predict([virginica, setosa])
        assert status == 200, body
        assert [p["class"] for p in body["predictions"]] == ["2", "0"]
        status, raw = server.request("GET", "/v2/models/iris")
        assert status == 200
        assert {i["name"] for i in json.loads(raw)["inputs"]} == set(virginica)  # the data's names, not safe ones
    finally:
        server.stop()


def test_tfx_penguin_module_with_only_its_import_changed_runs_to_a_served_version(capsys, tmp_path,
                                                                                processed_penguins):
    """TFX's module (serving_default only) through the whole pipeline: blessed, pushed, answered."""
    from helpers.pipeline_cache import TFX_MODULE

    root = tmp_path / "root"
    code, out, _ = run_cli(capsys, "run", "--data", processed_penguins, "--label", "species", "--name", "penguin",
                           "--root", str(root), "--set", f"module_file={TFX_MODULE}", "--set", "train_steps=100",
                           "--set", "eval_steps=5")
    assert code == local_runner.EXIT_PUSHED, out
    assert "evaluator: BLESSED" in out and "infra-validator: BLESSED" in out
    server = serve(tmp_path, str(root / "model-repository"), "penguin")
    try:
        adelie = {"culmen_length_mm": 0.25, "culmen_depth_mm": 0.67, "flipper_length_mm": 0.15, "body_mass_g": 0.29}
        status, body = server.predict([adelie])
        assert status == 200, body
        (prediction,) = body["predictions"]
        (probabilities,) = prediction.values()  # the module's own output, as its serving_default names it
        assert len(probabilities) == 3 and max(range(3), key=probabilities.__getitem__) == 0
        status, body = server.predict([{"culmen_length_mm": 0.25}])
        assert status == 400 and "missing features" in body["error"]
    finally:
        server.stop()
