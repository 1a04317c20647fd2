"""Transform with ``materialize=False`` (analyze only), and the file-by-file Beam reading.

The analyze-only run on the penguins is shared (``analyzed_penguin_pipeline``) with
tests/test_trainer_raw_examples.py, which trains from it.
"""

import json
import os

import numpy as np
import pytest

from helpers.transform_outputs import transform_eval_split as _transform_eval_split
from kubetfx.components.common import examples, layout, tfrecord
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.transform import beam_pipeline, executor, summary
from pipeline_cache import _CACHE, penguin_pipeline


def analyzed_penguin_pipeline(tmp_path_factory) -> dict:
    """The penguin pipeline's examples and schema through Transform with materialize=False, once per session:
    like penguin_pipeline's dict, but "transformed" is the marker directory."""
    if "analyzed" not in _CACHE:
        penguins = penguin_pipeline(tmp_path_factory)
        root = tmp_path_factory.mktemp("penguins-analyzed")
        graph, marker, report = str(root / "transform_graph"), str(root / "transformed_examples"), str(root / "t.md")
        metadata = executor.run(penguins["examples"], penguins["schema"], graph, marker, report_path=report,
                                label_column="species", materialize=False)
        _CACHE["analyzed"] = {**penguins, "transform_graph": graph, "transformed": marker, "report": report,
                              "metadata": metadata, "root": root}
    return _CACHE["analyzed"]


@pytest.fixture(scope="session")
def penguins(tmp_path_factory) -> dict:
    return penguin_pipeline(tmp_path_factory)


@pytest.fixture(scope="session")
def analyzed(tmp_path_factory) -> dict:
    return analyzed_penguin_pipeline(tmp_path_factory)


def test_analyze_only_writes_the_same_graph_and_a_marker(penguins, analyzed):
    graph, marker_dir = analyzed["transform_graph"], analyzed["transformed"]
    assert sorted(os.listdir(graph)) == sorted(os.listdir(penguins["transform_graph"]))
    assert os.listdir(marker_dir) == [executor.NOT_MATERIALIZED_FILE]  # no Split-* directories

    metadata, materialized = analyzed["metadata"], penguins["metadata"]
    assert metadata["materialized"] is False and materialized["materialized"] is True
    assert metadata["row_counts"] == materialized["row_counts"]  # eval counted without being decoded
    for key in ("vocabularies", "imputation", "transformed_features", "transforms", "label_vocabulary"):
        assert metadata[key] == materialized[key], key
    for name, z in metadata["z_scores"].items():
        assert z["mean"] == pytest.approx(materialized["z_scores"][name]["mean"], rel=1e-6), name
    assert summary.vocabularies(graph) == summary.vocabularies(penguins["transform_graph"])
    with open(os.path.join(graph, executor.SUMMARY_FILE), encoding="utf-8") as handle:
        assert json.load(handle)["materialized"] is False

    # Both graphs transform raw examples identically.
    ours, theirs = _transform_eval_split(graph, penguins["examples"]), \
        _transform_eval_split(penguins["transform_graph"], penguins["examples"])
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, err_msg=name)

    marker = executor.read_not_materialized_marker(marker_dir)
    assert marker == metadata["transformed_examples"]
    assert marker["materialized"] is False and marker["transformed"] is False
    assert marker["raw_examples"] == os.path.abspath(penguins["examples"])
    assert marker["row_counts"] == materialized["row_counts"]
    assert marker["transformed_columns"] == sorted(materialized["transformed_features"])
    assert executor.read_not_materialized_marker(penguins["transformed"]) is None
    with open(analyzed["report"], encoding="utf-8") as handle:
        assert "not written (`materialize=False`)" in handle.read()
    with open(penguins["report"], encoding="utf-8") as handle:
        assert "written for every split (`materialize=True`)" in handle.read()


@pytest.mark.parametrize("kwargs, message", [
    ({"materialize": "false"}, "materialize: expected a bool (true: write transformed examples, false: only the "
                               "transform graph), got str 'false'"),
    ({"materialize": 1}, "materialize: expected a bool"),
    ({"materialize": True, "transformed_examples_dir": ""}, "transformed_examples_dir is required with "
                                                            "materialize=True"),
])
def test_bad_materialize(penguins, tmp_path, kwargs, message):
    arguments = {"transformed_examples_dir": str(tmp_path / "t"), **kwargs}
    with pytest.raises(ConfigError) as error:
        executor.run(penguins["examples"], penguins["schema"], str(tmp_path / "g"), label_column="species",
                     **arguments)
    assert message in str(error.value)
    assert not os.listdir(tmp_path)


def _values(batch, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_flatten(batch.column(batch.schema.get_field_index(name))).to_numpy(zero_copy_only=False)


def _sharded_copy(examples_dir: str, target: str, shards: dict[str, int]) -> str:
    """The same records in the same order, each split cut into several files."""
    for split, count in shards.items():
        records = examples.read_split_records(examples_dir, split)
        directory = layout.split_dir(target, split)
        os.makedirs(directory)
        bounds = np.linspace(0, len(records), count + 1).astype(int)
        for shard in range(count):
            tfrecord.write_file(os.path.join(directory, layout.examples_file_name(shard, count)),
                                records[bounds[shard]:bounds[shard + 1]])
    return target


def test_several_files_per_split_and_several_batches_per_file(penguins, tmp_path, monkeypatch):
    """Files are read in order and cut into RecordBatches: the results equal the one-file run's."""
    monkeypatch.setattr(beam_pipeline, "ROWS_PER_BATCH", 40)  # penguins: 220 train rows in 3 files
    sharded = _sharded_copy(penguins["examples"], str(tmp_path / "examples"), {"train": 3, "eval": 2})
    transformed = str(tmp_path / "transformed")
    metadata = executor.run(sharded, penguins["schema"], str(tmp_path / "graph"), transformed,
                            label_column="species")
    assert metadata["row_counts"] == penguins["metadata"]["row_counts"]
    for split in ("train", "eval"):  # same values, same order (the analyzers sum in other batches: float tolerance)
        ours, theirs = examples.read_split(transformed, split), examples.read_split(penguins["transformed"], split)
        assert sorted(ours.schema.names) == sorted(theirs.schema.names)
        for name in ours.schema.names:
            np.testing.assert_allclose(_values(ours, name), _values(theirs, name), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} ({split})")

    analyzed = executor.run(sharded, penguins["schema"], str(tmp_path / "graph-only"), None,
                            label_column="species", materialize=False)
    assert analyzed["row_counts"] == penguins["metadata"]["row_counts"]
    assert analyzed["vocabularies"] == penguins["metadata"]["vocabularies"]
    for name, z in analyzed["z_scores"].items():
        assert z["variance"] == pytest.approx(penguins["metadata"]["z_scores"][name]["variance"], rel=1e-4), name
    assert sorted(os.listdir(tmp_path)) == ["examples", "graph", "graph-only", "transformed"]


def test_files_on_other_file_systems_are_read_through_beam(penguins):
    """tf.data reads local and gs:// files; s3:// and the like go through Beam's FileSystems."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.localfilesystem import LocalFileSystem

    prefix = "kubetfxtest://"

    class PrefixedLocalFileSystem(LocalFileSystem):
        @classmethod
        def scheme(cls):
            return "kubetfxtest"

        def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
            return super().open(path[len(prefix):], mime_type, compression_type)

    path = examples.split_files(penguins["examples"], "train")[0]
    local = list(beam_pipeline._record_lists(path, 100))
    assert [len(records) for records in local] == [100, 100, 20]
    assert list(beam_pipeline._record_lists(prefix + path, 100)) == local
