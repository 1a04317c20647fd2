"""What a user sees when something is wrong: `--data` compiled as given, the right exit code, one short line first
on stderr, no internal class names, and nothing half-done."""

import os
import subprocess

import pytest
import yaml

from kubetfx.components.common import errors
from kubetfx.pipelines.cli import main as cli

from helpers.messages import user_error

SHORT = errors.SHORT_LINE
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _input_default(path) -> str | None:
    spec = next(yaml.safe_load_all(open(path, encoding="utf-8")))  # the pipeline spec (the platform spec follows)
    return spec["root"]["inputDefinitions"]["parameters"]["input_uri"].get("defaultValue")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_compile_bakes_in_the_data_given_over_the_environments_default(tmp_path, capsys, env):
    """prod's config names the penguin data; dev names none: `--data` wins over both and shows in the YAML."""
    output = tmp_path / f"wine-{env}.yaml"
    code = cli.main(["compile", "--data", "gs://bucket/wine.csv", "--label", "quality", "--env", env,
                     "-o", str(output)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _input_default(output) == "gs://bucket/wine.csv"
    assert "input_uri" in out.split("defaults baked in:")[1].splitlines()[0]
    assert "to give at run time" not in out


def test_a_header_only_csv_is_a_data_error_before_anything_runs(tmp_path, capsys):
    data = tmp_path / "empty.csv"
    data.write_text("species,island,bill_length_mm\n")
    code = cli.main(["run", "--data", str(data), "--label", "species", "--root", str(tmp_path / "root")])
    captured = capsys.readouterr()
    assert code == 2, captured
    first = captured.err.splitlines()[0]
    assert first.startswith("kubetfx: ") and str(data) in first and "no data rows" in first, first
    assert "Running" not in captured.out and not (tmp_path / "root" / "pipeline-root").exists()


def test_a_failed_task_says_so_on_stderr_in_one_short_line_without_class_names(tmp_path, capsys):
    data = tmp_path / "ragged.csv"
    data.write_text("a,b,species\n1,2,x\n3,4\n5,6,y\n")
    code = cli.main(["run", "--data", str(data), "--label", "species", "--root", str(tmp_path / "root")])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.splitlines()
    assert lines and lines[0].startswith("kubetfx: example-gen failed") and "line 3" in lines[0], captured.err
    assert len(lines[0]) <= SHORT, lines[0]
    assert "Error" not in captured.err.replace("ExampleGen", ""), captured.err  # no InputDataError etc.
    assert "line 3" not in captured.out  # the message is on stderr, progress on stdout
    assert "full log" in captured.err.lower()


@pytest.mark.parametrize("argv", [
    ["run", "penguin", "--set", "fail_on_anomalie=false"],  # the did-you-mean, then the list of parameters
    ["run", "--data", "{data}", "--label", "specie"],  # the did-you-mean, then the columns
])
def test_long_messages_put_a_short_line_first_and_the_details_after(tmp_path, capsys, penguins_table, argv):
    import pyarrow.csv as pacsv

    data = tmp_path / "penguins.csv"
    wide = penguins_table
    for i in range(30):  # a wide table: the column list alone runs past any terminal
        wide = wide.append_column(f"measurement_number_{i}", penguins_table.column("body_mass_g"))
    pacsv.write_csv(wide, str(data))
    code = cli.main([a.replace("{data}", str(data)) for a in argv] + ["--root", str(tmp_path / "root")])
    err = capsys.readouterr().err
    user_error(code, err)
    first, *details = err.splitlines()
    assert "did you mean" in first and details, err


def test_the_formatter_keeps_short_messages_and_splits_long_ones_at_a_boundary():
    assert errors.user_message("input not found: x.csv") == "kubetfx: input not found: x.csv"
    text = "label_column 'x' is not a column of data.csv; did you mean 'y'? (columns: " + ", ".join(
        f"column_{i}" for i in range(60)) + ")"
    first, details = errors.user_message(text).split("\n", 1)
    assert first == "kubetfx: label_column 'x' is not a column of data.csv; did you mean 'y'?"
    assert details.startswith("  (columns: column_0, ") and details.endswith("column_59)")
    words = "word " * 100
    assert all(len(line) <= SHORT for line in errors.user_message(words).splitlines()[:1])


def test_make_help_lists_every_target_with_a_description():
    """Verify only (fixed in main): targets with digits (e.g. a future `bench-1m`) are listed too."""
    result = subprocess.run(["make", "-s", "-C", ROOT, "help"], capture_output=True, text=True, check=True)
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.strip().startswith("make ")}
    documented = set()
    for line in open(os.path.join(ROOT, "Makefile"), encoding="utf-8"):
        if "## " in line and ":" in line and not line.startswith((" ", "\t", "#")):
            documented.add(line.split(":", 1)[0])
    assert documented and documented == listed
