"""A user's own data and module files, end to end on the embedded default, as a new user runs them."""

import textwrap

import pytest

from kubetfx.pipelines import cli, local_runner


def run_cli(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def processed_penguins(tmp_path_factory) -> str:
    """TFX's penguins_processed.csv (culmen_* columns, species 0/1/2), as TFX's penguin example reads it."""
    import pyarrow.csv as pacsv
    from test_transform import tfx_penguin_table

    from kubetfx.pipelines.penguin import data

    path = tmp_path_factory.mktemp("tfx-data") / "penguins_processed.csv"
    pacsv.write_csv(tfx_penguin_table(data.load_table(drop_missing=True)), str(path))
    return str(path)


def test_a_failing_tasks_own_error_ends_the_console_output(capsys, tmp_path, processed_penguins):
    """Not "see the messages above" with nothing above: the task and its one-line reason, last."""
    module = tmp_path / "broken_module.py"
    module.write_text(textwrap.dedent("""
        def preprocessing_fn(inputs):
            return dict(inputs)

        def run_fn(fn_args):
            raise ValueError("the learning rate schedule is empty")
    """))
    code, out, _ = run_cli(capsys, "run", "--data", processed_penguins, "--label", "species", "--root",
                           str(tmp_path / "root"), "--set", f"module_file={module}")
    assert code == local_runner.EXIT_FAILED, out
    tail = out.strip().splitlines()[-3:]
    assert tail[0].startswith("FAILED after") and "Inner task failed: 'trainer'" in tail[0]
    assert tail[1].startswith("  trainer: kubetfx: ConfigError: run_fn 'run_fn' of module")
    assert "ValueError: the learning rate schedule is empty" in tail[1]
    assert tail[2].startswith("Full log: ")


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
