"""Transform on a Flink session cluster and a Spark standalone cluster equals Transform on the local default.

The penguins (ExampleGen -> SchemaGen, shared with the other tests) through Transform with
``materialize`` true and false, on each engine (Beam's job server, two TaskManagers / workers, SDK
workers outside the JVMs): the same vocabulary files byte for byte, the same analyzer results, the
same graph outputs on the eval split, and with ``materialize`` the same transformed examples per
split as a multiset.
"""

import os

import pytest

from helpers.transform_outputs import assert_same_graph, example_multisets
from kubetfx.components.common import layout
from kubetfx.components.transform import executor
from helpers.pipeline_cache import penguin_pipeline


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The penguins through Transform on the default runner (FnApiRunner, in process)."""
    return penguin_pipeline(tmp_path_factory)


@pytest.mark.parametrize("materialize", [True, False], ids=["materialize", "analyze-only"])
def test_transform_on_the_engine_equals_the_local_run(reference, engine, materialize, tmp_path):
    name, beam_args = engine
    graph, transformed = str(tmp_path / "transform_graph"), str(tmp_path / "transformed_examples")
    metadata = executor.run(reference["examples"], reference["schema"], graph, transformed, label_column="species",
                            beam_pipeline_args=beam_args, materialize=materialize)
    assert metadata["beam_pipeline_args"] == beam_args
    assert_same_graph(graph, metadata, reference)
    if materialize:
        ours, theirs = example_multisets(transformed), example_multisets(reference["transformed"])
        assert sorted(ours) == ["Split-eval", "Split-train"]
        assert ours == theirs, f"{name}: the transformed examples differ from the local run's"
    else:
        assert os.listdir(transformed) == [layout.NOT_MATERIALIZED_FILE]
