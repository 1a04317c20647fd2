"""Shared fixtures: real penguin data and real TFX-layout artifacts built from it."""

import json
import os

import pyarrow as pa
import pytest

from kubetfx.components.common import examples, layout, tfrecord
from kubetfx.pipelines.penguin import data as penguin_data


@pytest.fixture(scope="session")
def penguins_table() -> pa.Table:
    """The 333 complete Palmer Penguins rows as an Arrow table."""
    return penguin_data.load_table(drop_missing=True)


@pytest.fixture(scope="session")
def penguins_raw_table() -> pa.Table:
    """All 344 rows, with missing values."""
    return penguin_data.load_table(drop_missing=False)


def write_examples_artifact(directory: str, split_tables: dict[str, pa.Table]) -> str:
    """Write a TFX-layout Examples artifact (gzipped tf.Example TFRecords per split)."""
    for split, table in split_tables.items():
        split_dir = layout.split_dir(directory, split)
        os.makedirs(split_dir, exist_ok=True)
        tfrecord.write_file(os.path.join(split_dir, layout.examples_file_name(0, 1)),
                            examples.encode_examples(table))
    return directory


@pytest.fixture
def make_examples_artifact(tmp_path):
    """Factory: ``make_examples_artifact({"train": table, "eval": table})`` -> artifact dir."""
    counter = iter(range(1000))

    def _make(split_tables: dict[str, pa.Table]) -> str:
        return write_examples_artifact(str(tmp_path / f"examples-{next(counter)}"), split_tables)

    return _make


@pytest.fixture
def penguin_examples(make_examples_artifact, penguins_table) -> str:
    """Penguins split 2:1 by row position (train/eval)."""
    cut = penguins_table.num_rows * 2 // 3
    return make_examples_artifact({"train": penguins_table.slice(0, cut), "eval": penguins_table.slice(cut)})


@pytest.fixture(scope="session")
def penguin_pipeline_artifacts(tmp_path_factory) -> dict:
    """Real artifacts up to Transform: examples, schema, transform_graph, transformed (dirs)."""
    from helpers.pipeline_cache import penguin_pipeline

    return penguin_pipeline(tmp_path_factory)


@pytest.fixture(scope="session")
def penguin_model(tmp_path_factory, penguin_pipeline_artifacts) -> dict:
    """A real model trained by the built-in trainer: {"model": dir with Format-Serving/, "pipeline": ...}."""
    from helpers.pipeline_cache import train

    return train(tmp_path_factory, "default", penguin_pipeline_artifacts, hyperparameters={"epochs": 30}, seed=42)


@pytest.fixture(scope="module")
def features(penguin_model) -> list[dict]:
    """The trained penguin model's request features (kubetfx_model.json's raw_features: name, dtype, ...)."""
    with open(os.path.join(penguin_model["model"], layout.MODEL_INFO_FILE), encoding="utf-8") as handle:
        return json.load(handle)["raw_features"]


@pytest.fixture(scope="module")
def eval_instances(penguin_pipeline_artifacts, features) -> list[dict]:
    """24 complete eval rows of the penguins as V1 instances over the model's features (no label)."""
    from kubetfx.components.infra_validator.executor import instances_from_examples

    return instances_from_examples(penguin_pipeline_artifacts["examples"], "eval", [f["name"] for f in features], 24)


@pytest.fixture(scope="module")
def raw_examples(penguin_pipeline_artifacts) -> str:
    """The penguin Examples artifact (raw tf.Examples, train/eval) the Evaluator tests read."""
    return penguin_pipeline_artifacts["examples"]


@pytest.fixture(scope="module")
def good_model(penguin_model) -> str:
    return penguin_model["model"]


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory, penguin_pipeline_artifacts) -> str:
    """One epoch at a learning rate of 1e-9: the random initial network (shared through the session cache)."""
    from helpers.pipeline_cache import train

    run = train(tmp_path_factory, "evaluator-untrained", penguin_pipeline_artifacts,
                hyperparameters={"epochs": 1, "learning_rate": 1e-9}, seed=42)
    return run["model"]
