"""Trainer on raw examples + the transform graph (Transform's materialize=False).

No skew: the model trained this way predicts what the one trained on materialized
examples predicts (same seed), and its in-pipeline metrics (transform applied in
tf.data) equal the exported SavedModel's on raw tf.Examples (transform inside the model).
"""

import json
import os

import numpy as np
import pytest

from kubetfx.components.common import examples, layout
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.trainer import executor
from kubetfx.components.trainer.fn_args import make_data_accessor
from kubetfx.components.transform import executor as transform
from kubetfx.components.transform_output import reader as transform_output

from helpers.pipeline_cache import TFX_MODULE, analyzed_penguin_pipeline, penguin_pipeline, tfx_penguin_pipeline, train

FAST = {"epochs": 3, "early_stopping_patience": 0}
ONE_EPOCH = {"epochs": 1, "early_stopping_patience": 0}


@pytest.fixture(scope="session")
def penguins(tmp_path_factory):
    return penguin_pipeline(tmp_path_factory)


@pytest.fixture(scope="session")
def analyzed(tmp_path_factory):
    return analyzed_penguin_pipeline(tmp_path_factory)


def _serve(model_dir: str, records: list[bytes]) -> np.ndarray:
    import tensorflow as tf

    model = tf.saved_model.load(os.path.join(model_dir, "Format-Serving"))
    return model.signatures["serving_default"](examples=tf.constant(records))["probabilities"].numpy()


def test_raw_examples_train_the_same_model_as_materialized_ones(tmp_path_factory, penguins, analyzed):
    materialized = train(tmp_path_factory, "seed7-a", penguins, hyperparameters=FAST, seed=7)
    raw = train(tmp_path_factory, "raw-seed7", analyzed, hyperparameters=FAST, seed=7)
    assert materialized["result"]["training_input"] == executor.TRANSFORMED_INPUT
    assert raw["result"]["training_input"] == executor.RAW_INPUT
    records = examples.read_split_records(penguins["examples"], "eval")
    np.testing.assert_allclose(_serve(raw["model"], records), _serve(materialized["model"], records), atol=1e-6)
    for name, value in materialized["result"]["metrics"].items():
        assert raw["result"]["metrics"][name] == pytest.approx(value, abs=1e-6), name
    assert raw["result"]["train_examples"] == penguins["metadata"]["row_counts"]["train"]
    with open(raw["report"], encoding="utf-8") as handle:
        assert f"| trained from | {executor.RAW_INPUT} |" in handle.read()


def test_in_pipeline_metrics_equal_the_exported_model_on_raw_examples(tmp_path_factory, penguins, analyzed):
    """Training-time transform (tf.data) == serving-time transform (inside the SavedModel)."""
    raw = train(tmp_path_factory, "raw-seed7", analyzed, hyperparameters=FAST, seed=7)
    records = examples.read_split_records(penguins["examples"], "eval")
    probabilities = _serve(raw["model"], records)
    labels = [v[0].decode() for v in examples.decode_examples(records).column("species").to_pylist()]
    index = np.array([raw["result"]["class_names"].index(label) for label in labels])
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(index)), index], 1e-7, 1.0))))
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == index))
    assert raw["result"]["metrics"]["eval_accuracy"] == accuracy
    assert raw["result"]["metrics"]["eval_loss"] == pytest.approx(loss, rel=1e-5)


def _copy_marker(analyzed, tmp_path, raw_examples: str) -> str:
    marker_dir = tmp_path / "marker"
    marker_dir.mkdir()
    marker = transform_output.read_not_materialized_marker(analyzed["transformed"])
    (marker_dir / layout.NOT_MATERIALIZED_FILE).write_text(json.dumps({**marker, "raw_examples": raw_examples}))
    return str(marker_dir)


def test_raw_examples_input_when_the_marker_path_is_not_here(analyzed, tmp_path):
    """On a cluster the marker's path belongs to another pod: the raw examples come as raw_examples."""
    marker = _copy_marker(analyzed, tmp_path, str(tmp_path / "gone"))
    arguments = (analyzed["transform_graph"], analyzed["schema"], str(tmp_path / "model"), str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"examples: .* holds no transformed examples \(Transform ran with "
                                          r"materialize=False\).*give the Trainer the raw examples .* as raw_examples"):
        executor.run(marker, *arguments, label_column="species")
    assert sorted(os.listdir(tmp_path)) == ["marker"]
    result = executor.run(marker, *arguments, label_column="species", hyperparameters=ONE_EPOCH,
                          raw_examples_dir=analyzed["examples"])
    assert result["training_input"] == executor.RAW_INPUT and result["metrics"]["eval_accuracy"] > 0.5


@pytest.mark.parametrize("graph", ["analyzed", "materialized"])
def test_tfx_wiring_examplegen_examples_straight_to_the_trainer(penguins, analyzed, tmp_path, graph):
    """TFX passes ExampleGen's examples as `examples`: the graph's summary says it did not materialize, or
    names these examples as the ones it analyzed."""
    transform_graph = (analyzed if graph == "analyzed" else penguins)["transform_graph"]
    result = executor.run(analyzed["examples"], transform_graph, analyzed["schema"], str(tmp_path / "model"),
                          str(tmp_path / "run"), label_column="species", hyperparameters=ONE_EPOCH)
    assert result["training_input"] == executor.RAW_INPUT and result["metrics"]["eval_accuracy"] > 0.5


def test_data_accessor_gives_what_the_schema_asks_for(analyzed):
    import tensorflow_transform as tft
    from tfx_bsl.public import tfxio

    output = tft.TFTransformOutput(analyzed["transform_graph"])
    accessor = make_data_accessor(analyzed["transform_graph"])
    files = [os.path.join(analyzed["examples"], "Split-eval", "*")]
    options = tfxio.TensorFlowDatasetOptions(batch_size=500, num_epochs=1, shuffle=False, label_key="species")
    features, label = next(iter(accessor.tf_dataset_factory(files, options, output.transformed_metadata.schema)))
    assert label.dtype.name == "int64" and features["island"].dtype.name == "int64"  # vocabulary indices
    assert sorted(features) == sorted(set(output.transformed_feature_spec()) - {"species"})
    assert abs(float(np.mean(features["bill_length_mm"].numpy()))) < 0.5  # z-scored
    raw_features, raw_label = next(iter(accessor.tf_dataset_factory(files, options, output.raw_metadata.schema)))
    assert raw_label.dtype.name == "string" and raw_features["island"].dtype.name == "string"
    assert float(np.mean(raw_features["bill_length_mm"].numpy())) > 30  # millimetres
    batches = list(accessor.record_batch_factory(files, tfxio.RecordBatchesOptions(batch_size=500, num_epochs=1),
                                                 output.raw_metadata.schema))
    assert sum(b.num_rows for b in batches) == analyzed["metadata"]["row_counts"]["eval"]
    with pytest.raises(ConfigError, match="record_batch_factory cannot give transformed record batches"):
        accessor.record_batch_factory(files, tfxio.RecordBatchesOptions(batch_size=500),
                                      output.transformed_metadata.schema)
    with pytest.raises(ConfigError, match="label_key 'species_xf' is not a transformed feature"):
        accessor.tf_dataset_factory(files, options._replace(label_key="species_xf"),
                                    output.transformed_metadata.schema)


def test_tfx_penguin_module_trains_from_raw_examples(tmp_path_factory, tmp_path):
    """TFX's penguin module asks tf_dataset_factory for the transformed schema: it gets transformed batches."""
    import tensorflow as tf

    pipeline = tfx_penguin_pipeline(tmp_path_factory)
    graph, marker = str(tmp_path / "graph"), str(tmp_path / "marker")
    transform.run(pipeline["examples"], pipeline["schema"], graph, marker, module_file=TFX_MODULE,
                  label_column="species", materialize=False)
    result = executor.run(marker, graph, pipeline["schema"], str(tmp_path / "model"), str(tmp_path / "run"),
                          module_file=TFX_MODULE, train_steps=100, eval_steps=5)
    assert result["training_input"] == executor.RAW_INPUT and result["keras"] == "tf_keras"
    model = tf.saved_model.load(str(tmp_path / "model" / "Format-Serving"))
    records = examples.read_split_records(pipeline["examples"], "eval")
    (output,) = model.signatures["serving_default"](examples=tf.constant(records)).values()
    labels = np.array([v[0] for v in examples.decode_examples(records).column("species").to_pylist()])
    assert np.mean(np.argmax(output.numpy(), axis=1) == labels) > 0.8


FILE_READING_MODULE = """
import tensorflow as tf
import tensorflow_transform as tft


def run_fn(fn_args):
    spec = tft.TFTransformOutput(fn_args.transform_output).transformed_feature_spec()
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(fn_args.train_files[0]), compression_type="GZIP")
    for batch in records.batch(10).map(lambda serialized: tf.io.parse_example(serialized, spec)):
        pass
"""


def test_module_reading_raw_files_itself_is_told_why(analyzed, tmp_path):
    module = tmp_path / "file_reading_module.py"
    module.write_text(FILE_READING_MODULE)
    with pytest.raises(ConfigError) as error:
        executor.run(analyzed["transformed"], analyzed["transform_graph"], analyzed["schema"],
                     str(tmp_path / "model"), str(tmp_path / "run"), module_file=str(module), keras="keras3")
    message = str(error.value)
    assert "file_reading_module.py:9" in message
    assert "Transform ran with materialize=False: fn_args.train_files/eval_files are RAW tf.Examples" in message
    assert "needs Transform's materialize=True" in message
    assert not os.path.exists(tmp_path / "model")


@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")  # our image is not a Python image
def test_materialize_false_wiring_under_kfp_local(penguins, tmp_path):
    """Transform(materialize=False) -> Trainer(examples=the marker, raw_examples=ExampleGen's), each task a process."""
    from kfp import dsl, local

    from kubetfx.components.trainer.component import trainer
    from kubetfx.components.transform.component import transform as transform_component

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))

    @dsl.pipeline
    def analyze_then_train(examples_uri: str, schema_uri: str):
        raw = dsl.importer(artifact_uri=examples_uri, artifact_class=dsl.Dataset, reimport=False)
        schema = dsl.importer(artifact_uri=schema_uri, artifact_class=dsl.Artifact, reimport=False)
        transformed = transform_component(examples=raw.output, schema=schema.output, label_column="species",
                                          materialize=False)
        trainer(examples=transformed.outputs["transformed_examples"],
                transform_graph=transformed.outputs["transform_graph"], schema=schema.output,
                raw_examples=raw.output, label_column="species", hyperparameters=ONE_EPOCH)

    analyze_then_train(examples_uri=penguins["examples"], schema_uri=penguins["schema"])  # raises if a task fails
    infos = [os.path.join(d, "kubetfx_model.json") for d, _, names in os.walk(tmp_path / "root")
             if "kubetfx_model.json" in names]
    assert len(infos) == 1
    with open(infos[0], encoding="utf-8") as handle:
        assert json.load(handle)["training_input"] == executor.RAW_INPUT
    markers = [d for d, _, names in os.walk(tmp_path / "root") if layout.NOT_MATERIALIZED_FILE in names]
    assert len(markers) == 1 and os.listdir(markers[0]) == [layout.NOT_MATERIALIZED_FILE]


def test_components_compile_with_materialize_and_raw_examples(tmp_path):
    import yaml
    from kfp import compiler, dsl

    from kubetfx.components.trainer.component import trainer
    from kubetfx.components.transform.component import transform as transform_component

    @dsl.pipeline(name="analyze-then-train")
    def pipeline(examples_uri: str, schema_uri: str):
        raw = dsl.importer(artifact_uri=examples_uri, artifact_class=dsl.Dataset)
        schema = dsl.importer(artifact_uri=schema_uri, artifact_class=dsl.Artifact)
        transformed = transform_component(examples=raw.output, schema=schema.output, materialize=False)
        trainer(examples=transformed.outputs["transformed_examples"],
                transform_graph=transformed.outputs["transform_graph"], schema=schema.output, raw_examples=raw.output)

    path = str(tmp_path / "pipeline.yaml")
    compiler.Compiler().compile(pipeline, path)
    with open(path, encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)
    components = spec["components"]
    transform_inputs = components["comp-transform"]["inputDefinitions"]["parameters"]
    assert transform_inputs["materialize"] == {"defaultValue": True, "isOptional": True, "parameterType": "BOOLEAN"}
    trainer_artifacts = components["comp-trainer"]["inputDefinitions"]["artifacts"]
    assert trainer_artifacts["raw_examples"]["isOptional"] is True
    assert "isOptional" not in trainer_artifacts["examples"]
