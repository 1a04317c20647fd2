"""The penguin pipeline up to a trained model, run once per test session and shared.

ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer on the real
penguin data, through the executors. Tests of later components (Evaluator,
InfraValidator, serving) start from these real artifacts.
"""

from kubetfx.components.example_gen import executor as example_gen
from kubetfx.components.schema_gen import executor as schema_gen
from kubetfx.components.statistics_gen import executor as statistics_gen
from kubetfx.components.trainer import executor as trainer
from kubetfx.components.transform import executor
from kubetfx.pipelines.penguin import data as penguin_data

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



_RUNS: dict = {}


def train(tmp_path_factory, name: str, pipeline: dict, **kwargs) -> dict:
    if name not in _RUNS:
        root = tmp_path_factory.mktemp(f"trainer-{name}")
        paths = {"model": str(root / "model"), "model_run": str(root / "model_run"),
                 "report": str(root / "trainer.md"), "metrics": str(root / "metrics.json")}
        result = trainer.run(pipeline["transformed"], pipeline["transform_graph"], pipeline["schema"],
                              paths["model"], paths["model_run"], report_path=paths["report"],
                              metrics_path=paths["metrics"], **kwargs)
        _RUNS[name] = {**paths, "result": result, "pipeline": pipeline}
    return _RUNS[name]
