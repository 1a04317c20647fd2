"""Transform executor: real tf.Transform/Beam runs on the penguin data, and bad input.

The penguin pipeline up to Transform runs once per session (``penguin_pipeline``,
tests/helpers/pipeline_cache.py); the Trainer's tests reuse it through the same cache.
"""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kubetfx.components.common import examples, tfmd
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.transform import default_preprocessing, executor
from helpers.pipeline_cache import TFX_MODULE, penguin_pipeline, tfx_penguin_pipeline

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
CATEGORICAL = ["island", "sex"]
TFX_FEATURES = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]


@pytest.fixture(scope="session")
def penguins(tmp_path_factory) -> dict:
    return penguin_pipeline(tmp_path_factory)


@pytest.fixture(scope="session")
def tfx_penguins(tmp_path_factory) -> dict:
    return tfx_penguin_pipeline(tmp_path_factory)


def _values(batch: pa.RecordBatch, name: str) -> np.ndarray:
    column = batch.column(batch.schema.get_field_index(name))
    return pc.list_flatten(column).to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- built-in preprocessing


def test_transform_graph_layout_and_metadata(penguins):
    import tensorflow_transform as tft

    graph = penguins["transform_graph"]
    assert sorted(os.listdir(graph)) == ["kubetfx_transform.json", "metadata", "transform_fn",
                                         "transformed_metadata"]
    output = tft.TFTransformOutput(graph)
    raw_spec = output.raw_feature_spec()  # needs the raw metadata/ that WriteTransformFn leaves out
    assert sorted(raw_spec) == sorted(NUMERIC + CATEGORICAL + ["species"])
    assert raw_spec["island"].dtype.name == "string" and raw_spec["body_mass_g"].dtype.name == "int64"
    transformed_spec = output.transformed_feature_spec()
    assert sorted(transformed_spec) == sorted(raw_spec)  # raw names kept
    for name in NUMERIC:
        assert transformed_spec[name].dtype.name == "float32", name
    for name in CATEGORICAL + ["species"]:
        assert transformed_spec[name].dtype.name == "int64", name

    metadata = penguins["metadata"]
    counts = {s: len(examples.read_split_records(penguins["examples"], s)) for s in ("train", "eval")}
    assert metadata["tfx_type"] == "TransformGraph"
    assert metadata["row_counts"] == counts and sum(counts.values()) == 333
    assert metadata["analyzed_splits"] == ["train"]
    assert metadata["feature_mapping"] == {name: name for name in raw_spec}
    assert metadata["transforms"]["species"] == "label_vocabulary"
    assert {metadata["transforms"][n] for n in NUMERIC} == {"z_score"}
    assert metadata["label_column"] == "species" and metadata["transformed_label"] == "species"
    assert metadata["label_vocabulary"] == default_preprocessing.LABEL_VOCABULARY
    assert metadata["vocabularies"] == {"label_vocabulary": 3, "vocab_island": 3, "vocab_sex": 2}
    assert metadata["package_versions"]["tensorflow-transform"] == "1.21.0"
    assert metadata["module_file"] == "" and metadata["preprocessing_fn"] == "default"
    assert metadata["transformed_examples"]["row_counts"] == counts
    assert json.loads(metadata["transformed_examples"]["split_names"]) == ["eval", "train"]
    with open(os.path.join(graph, "kubetfx_transform.json")) as handle:
        assert json.load(handle)["label_vocabulary"] == "label_vocabulary"
    for split in ("train", "eval"):
        files = examples.split_files(penguins["transformed"], split)
        assert all(os.path.basename(f).startswith("data_tfrecord-") and f.endswith(".gz") for f in files)
        assert len(examples.read_split_records(penguins["transformed"], split)) == counts[split]


def test_z_scores_equal_numpy_on_the_train_split(penguins):
    raw_train = examples.read_split(penguins["examples"], "train")
    z_scores = penguins["metadata"]["z_scores"]
    assert sorted(z_scores) == sorted(NUMERIC)
    for name in NUMERIC:
        values = _values(raw_train, name).astype(np.float64)
        mean, std = values.mean(), values.std()  # population std, as tft.scale_to_z_score
        assert z_scores[name]["mean"] == pytest.approx(mean, rel=1e-5), name
        assert z_scores[name]["variance"] == pytest.approx(values.var(), rel=1e-4), name
        for split in ("train", "eval"):
            raw = _values(examples.read_split(penguins["examples"], split), name).astype(np.float64)
            transformed = _values(examples.read_split(penguins["transformed"], split), name)
            # Monotonic map: compare sorted values (Beam does not promise row order).
            np.testing.assert_allclose(np.sort(transformed), np.sort((raw - mean) / std), atol=1e-4,
                                       err_msg=f"{name} ({split})")


def test_vocabularies_are_sorted_by_frequency_and_applied(penguins):
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(penguins["transform_graph"])
    raw_train = examples.read_split(penguins["examples"], "train")
    for name, vocabulary_name in [("island", "vocab_island"), ("sex", "vocab_sex"),
                                  ("species", "label_vocabulary")]:
        counts = collections.Counter(_values(raw_train, name).tolist())
        # TFT: decreasing frequency, ties in reverse lexicographic order.
        expected = [value for value, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
        vocabulary = output.vocabulary_by_name(vocabulary_name)
        assert vocabulary == expected, name
        for split in ("train", "eval"):
            raw = collections.Counter(_values(examples.read_split(penguins["examples"], split), name).tolist())
            indices = collections.Counter(_values(examples.read_split(penguins["transformed"], split),
                                                  name).tolist())
            assert indices == {vocabulary.index(value): n for value, n in raw.items()}, (name, split)


def test_report_shows_analyzer_results(penguins):
    with open(penguins["report"], encoding="utf-8") as handle:
        text = handle.read()
    metadata = penguins["metadata"]
    assert text.startswith("# Transform")
    assert "## Rows per split" in text and f"| train | {metadata['row_counts']['train']} |" in text
    assert "| `label_vocabulary` | 3 |" in text and "| `vocab_island` | 3 |" in text
    assert "`Biscoe`" in text and "`Adelie`" in text
    assert "## Z-scores" in text and "| `body_mass_g` | 4," in text  # mean ~4,2xx g
    for name in NUMERIC + CATEGORICAL:
        assert f"| `{name}` |" in text


def test_default_plan_is_derived_from_the_schema(penguins):
    schema = tfmd.read_schema(penguins["schema"])
    plan = default_preprocessing.plan(schema, "species")
    assert plan["species"]["transform"] == "label_vocabulary" and plan["species"]["vocabulary"] == "label_vocabulary"
    assert plan["island"]["vocabulary"] == "vocab_island" and plan["island"]["num_oov_buckets"] == 1
    assert plan["body_mass_g"]["transform"] == "z_score" and plan["body_mass_g"]["dtype"] == "float32"
    assert all(step["impute"] is None for step in plan.values())  # complete data: every feature has shape [1]
    numeric_label = default_preprocessing.plan(schema, "body_mass_g")
    assert numeric_label["body_mass_g"]["transform"] == "identity"
    assert numeric_label["body_mass_g"]["dtype"] == "int64"
    assert numeric_label["species"]["transform"] == "vocabulary"


# --------------------------------------------------------------------------- TFX module file


def test_tfx_penguin_module_preprocessing_fn(tfx_penguins):
    metadata = tfx_penguins["metadata"]
    assert sorted(metadata["transformed_features"]) == sorted(f"{n}_xf" for n in TFX_FEATURES + ["species"])
    assert metadata["module_file"] == TFX_MODULE and metadata["preprocessing_fn"] == "preprocessing_fn"
    assert metadata["transformed_label"] == "species_xf"
    assert metadata["feature_mapping"] == {} and metadata["z_scores"] == {} and metadata["vocabularies"] == {}
    for split in ("train", "eval"):
        raw = examples.read_split(tfx_penguins["examples"], split)
        transformed = examples.read_split(tfx_penguins["transformed"], split)
        for name in TFX_FEATURES + ["species"]:  # TFX's penguin preprocessing_fn copies the values
            np.testing.assert_array_equal(np.sort(_values(transformed, f"{name}_xf")), np.sort(_values(raw, name)))


# --------------------------------------------------------------------------- parameters and bad input


def test_beam_pipeline_args_parsing():
    local = ["--runner=FnApiRunner", "--direct_num_workers=1"]
    assert executor.parse_beam_args(None) == executor.parse_beam_args([]) == local
    # A runner named by the user: their flags, as given.
    assert executor.parse_beam_args(["--runner=FlinkRunner"]) == ["--runner=FlinkRunner"]
    assert executor.parse_beam_args('["--runner=DirectRunner", "--b=2"]') == ["--runner=DirectRunner", "--b=2"]
    # No runner: the local defaults fill in what the user did not set.
    assert executor.parse_beam_args("--a=1 --b='x y'") == local + ["--a=1", "--b=x y"]
    assert executor.parse_beam_args(["--direct_num_workers=4"]) == ["--runner=FnApiRunner", "--direct_num_workers=4"]
    with pytest.raises(ConfigError, match="beam_pipeline_args must be a list of strings"):
        executor.parse_beam_args([1, 2])


def test_local_run_never_tries_to_download_prism(penguins, tmp_path, monkeypatch):
    """Beam's DirectRunner first downloads and starts the Prism binary; the local default must not."""
    from apache_beam.runners.portability import prism_runner

    attempts = []

    def no_prism(runner, pipeline, options):
        attempts.append(options)
        raise RuntimeError("Unable to fetch remote prism binary (no network in this test)")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    metadata = executor.run(penguins["examples"], penguins["schema"], str(tmp_path / "g"), str(tmp_path / "t"),
                            label_column="species")
    assert attempts == [] and metadata["beam_pipeline_args"] == executor.DEFAULT_BEAM_ARGS
    assert metadata["row_counts"] == penguins["metadata"]["row_counts"]


def _write_module(tmp_path, source: str, name: str = "user_module.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


BAD_MODULES = {
    "missing": (None, "preprocessing_fn", ["module_file", "not found"]),
    "syntax error": ("def preprocessing_fn(inputs):\n    return {\n", "preprocessing_fn",
                     ["has a syntax error at", "user_module.py:2"]),
    "raises at import": ("import os\nraise RuntimeError('no GPU here')\n", "preprocessing_fn",
                         ["failed to import at", "user_module.py:2", "RuntimeError: no GPU here"]),
    "lacks the function": ("def other_fn(inputs):\n    return inputs\n", "preprocessing_fn",
                           ["has no function 'preprocessing_fn'", "(preprocessing_fn)", "other_fn"]),
    "function raises": ("def preprocessing_fn(inputs):\n    x = inputs['bill_length_mm']\n"
                        "    raise ValueError('scaling failed\\nfeature bill_length_mm is not ready')\n",
                        "preprocessing_fn",
                        ["preprocessing_fn 'preprocessing_fn' of module", "failed at", "user_module.py:3",
                         "ValueError: feature bill_length_mm is not ready"]),
    "returns no dict": ("def my_fn(inputs):\n    return [inputs]\n", "my_fn",
                        ["preprocessing_fn 'my_fn'", "must return a non-empty dict", "got list"]),
}


@pytest.mark.parametrize("case", list(BAD_MODULES))
def test_bad_module_file_fails_cleanly(case, penguins, tmp_path):
    source, function, expected = BAD_MODULES[case]
    module = _write_module(tmp_path, source) if source is not None else str(tmp_path / "absent.py")
    graph, transformed = str(tmp_path / "graph"), str(tmp_path / "transformed")
    with pytest.raises(ConfigError) as error:
        executor.run(penguins["examples"], penguins["schema"], graph, transformed, module_file=module,
                     preprocessing_fn=function, label_column="species")
    for text in expected:
        assert text in str(error.value), (case, str(error.value))
    assert not os.path.exists(graph) and not os.path.exists(transformed)  # nothing half-written
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_module_given_as_import_path(penguins, tmp_path, monkeypatch):
    _write_module(tmp_path, "def other(inputs):\n    return inputs\n", "kubetfx_test_prep_module.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="module 'kubetfx_test_prep_module' has no function 'preprocessing_fn'"):
        executor.run(penguins["examples"], penguins["schema"], str(tmp_path / "g"), str(tmp_path / "t"),
                     module_file="kubetfx_test_prep_module")
    with pytest.raises(ConfigError, match="module 'no_such_pkg.mod' not found on the Python path"):
        executor.run(penguins["examples"], penguins["schema"], str(tmp_path / "g"), str(tmp_path / "t"),
                     module_file="no_such_pkg.mod")


def test_label_not_in_schema(penguins, tmp_path):
    with pytest.raises(ConfigError, match="label_column 'weight' is not a feature of the schema"):
        executor.run(penguins["examples"], penguins["schema"], str(tmp_path / "g"), str(tmp_path / "t"),
                     label_column="weight")
    assert not os.listdir(tmp_path)


def test_missing_split_and_bad_splits_to_analyze(penguins, tmp_path):
    with pytest.raises(ConfigError, match=r"splits_to_analyze \['test'\] not in the Examples artifact"):
        executor.run(penguins["examples"], penguins["schema"], str(tmp_path / "g"), str(tmp_path / "t"),
                     splits_to_analyze=["test"])
    with pytest.raises(InputDataError, match="does not exist"):
        executor.run(str(tmp_path / "nothing"), penguins["schema"], str(tmp_path / "g"), str(tmp_path / "t"))


def test_a_feature_without_any_training_value_is_an_error(make_examples_artifact, tmp_path):
    """No mean to impute from: TFT's analyzers would silently give 0."""
    from kubetfx.components.schema_gen import executor as schema_gen
    from kubetfx.components.statistics_gen import executor as statistics_gen

    train = pa.table({"score": pa.array([None] * 6, pa.float64()), "size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    evaluation = pa.table({"score": [0.5, 1.5], "size": [2.0, 3.0]})
    examples_dir = make_examples_artifact({"train": train, "eval": evaluation})
    statistics_gen.run(examples_dir, str(tmp_path / "statistics"))
    schema_gen.run(str(tmp_path / "statistics"), str(tmp_path / "schema"))
    with pytest.raises(InputDataError, match=r"feature\(s\) 'score' have no value in any of the 6 examples of "
                                             r"split 'train' analyzed.*Drop the column"):
        executor.run(examples_dir, str(tmp_path / "schema"), str(tmp_path / "g"), str(tmp_path / "t"))
    assert not os.path.exists(tmp_path / "g") and not os.path.exists(tmp_path / "t")


def test_import_costs_nothing_heavy():
    """The executor module (imported by every KFP task body) must not import TF/TFT/Beam."""
    code = ("import sys; import kubetfx.components.transform.executor, kubetfx.components.trainer.executor; "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_transform', 'apache_beam') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
