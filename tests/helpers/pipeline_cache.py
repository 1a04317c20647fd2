"""The penguin pipeline up to a trained model, run once per test session and shared.

ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer on the real
penguin data, through the executors. Tests of later components (Evaluator,
InfraValidator, serving) start from these real artifacts. Variants, each run once
per session too: Transform with ``materialize=False`` (:func:`analyzed_penguin_pipeline`)
and TFX's own penguin data and module file (:func:`tfx_penguin_pipeline`).
"""

import os

import numpy as np
import pyarrow as pa

from kubetfx.components.common import examples, layout, tfrecord
from kubetfx.components.example_gen import executor as example_gen
from kubetfx.components.schema_gen import executor as schema_gen
from kubetfx.components.statistics_gen import executor as statistics_gen
from kubetfx.components.trainer import executor as trainer
from kubetfx.components.transform import executor
from kubetfx.pipelines.penguin import data as penguin_data

# TFX's penguin module file (preprocessing_fn, run_fn), unchanged but for its imports.
TFX_MODULE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                          "penguin_tfx_module.py")
# The same module with TFX's Transform-tutorial preprocessing_fn: a string label mapped by a TFT vocabulary.
TFT_LABEL_MODULE = os.path.join(os.path.dirname(TFX_MODULE), "penguin_tft_module.py")
SPECIES_IDS = {"Adelie": 0, "Chinstrap": 1, "Gentoo": 2}

_CACHE: dict = {}


def _schema(examples_dir: str, root, label: str) -> str:
    statistics_dir, schema_dir = str(root / "statistics"), str(root / "schema")
    statistics_gen.run(examples_dir, statistics_dir)
    schema_gen.run(statistics_dir, schema_dir, label_column=label)
    return schema_dir


def penguin_pipeline(tmp_path_factory, label: str = "species") -> dict:
    """ExampleGen -> StatisticsGen -> SchemaGen -> Transform (built-in preprocessing_fn), once per label."""
    key = f"default-{label}"
    if key not in _CACHE:
        root = tmp_path_factory.mktemp(f"penguins-{label}")
        csv = penguin_data.write_span(str(root / "data"))
        examples_dir = str(root / "examples")
        example_gen.run(csv, examples_dir, label_column=label)
        schema_dir = _schema(examples_dir, root, label)
        graph, transformed = str(root / "transform_graph"), str(root / "transformed_examples")
        report = str(root / "transform.md")
        metadata = executor.run(examples_dir, schema_dir, graph, transformed, report_path=report, label_column=label)
        _CACHE[key] = {"examples": examples_dir, "schema": schema_dir, "transform_graph": graph,
                       "transformed": transformed, "report": report, "metadata": metadata, "root": root}
    return _CACHE[key]


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


def tfx_penguin_table(table: pa.Table, string_label: bool = False) -> pa.Table:
    """The penguins as TFX's example ships them (penguins_processed.csv): culmen_* names, integer
    species, measurements scaled to [0, 1]; ``string_label``: species as names (TFX's Transform tutorial)."""
    species = table.column("species").to_pylist()
    columns = {"species": pa.array(species, pa.string()) if string_label else
               pa.array([SPECIES_IDS[s] for s in species], pa.int64())}
    for raw, name in [("bill_length_mm", "culmen_length_mm"), ("bill_depth_mm", "culmen_depth_mm"),
                      ("flipper_length_mm", "flipper_length_mm"), ("body_mass_g", "body_mass_g")]:
        values = table.column(raw).to_numpy().astype(np.float64)
        columns[name] = pa.array(((values - values.min()) / (values.max() - values.min())).astype(np.float32))
    return pa.table(columns)


def tfx_penguin_pipeline(tmp_path_factory) -> dict:
    """TFX's penguin data and module file through our Transform, once per session."""
    if "tfx" not in _CACHE:
        root = tmp_path_factory.mktemp("penguins-tfx")
        table = tfx_penguin_table(penguin_data.load_table(drop_missing=True))
        rows = np.arange(table.num_rows)
        examples_dir = str(root / "examples")
        for split, mask in (("train", rows % 3 != 2), ("eval", rows % 3 == 2)):
            directory = layout.split_dir(examples_dir, split)
            os.makedirs(directory)
            tfrecord.write_file(os.path.join(directory, layout.examples_file_name(0, 1)),
                                examples.encode_examples(table.filter(pa.array(mask))))
        schema_dir = _schema(examples_dir, root, "species")
        graph, transformed = str(root / "transform_graph"), str(root / "transformed_examples")
        metadata = executor.run(examples_dir, schema_dir, graph, transformed, module_file=TFX_MODULE,
                                label_column="species")
        _CACHE["tfx"] = {"examples": examples_dir, "schema": schema_dir, "transform_graph": graph,
                         "transformed": transformed, "metadata": metadata, "root": root}
    return _CACHE["tfx"]


def transform_eval_split(graph: str, raw_examples: str) -> dict:
    """The transform graph applied in TensorFlow to the raw examples' eval split: feature -> values."""
    import tensorflow as tf
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(graph)
    records = tf.constant(examples.read_split_records(raw_examples, "eval"))
    transformed = output.transform_raw_features(tf.io.parse_example(records, output.raw_feature_spec()))
    return {name: value.numpy() for name, value in transformed.items()}


_RUNS: dict = {}


def train(tmp_path_factory, name: str, pipeline: dict, **kwargs) -> dict:
    """The Trainer on ``pipeline``'s artifacts, once per ``name`` and session."""
    if name not in _RUNS:
        root = tmp_path_factory.mktemp(f"trainer-{name}")
        paths = {"model": str(root / "model"), "model_run": str(root / "model_run"),
                 "report": str(root / "trainer.md"), "metrics": str(root / "metrics.json")}
        result = trainer.run(pipeline["transformed"], pipeline["transform_graph"], pipeline["schema"],
                              paths["model"], paths["model_run"], report_path=paths["report"],
                              metrics_path=paths["metrics"], **kwargs)
        _RUNS[name] = {**paths, "result": result, "pipeline": pipeline}
    return _RUNS[name]
