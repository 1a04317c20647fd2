"""The penguin pipeline: the same code runs on kfp.local and compiles for a cluster."""

from kfp import dsl

from kubetfx.components.example_gen.component import example_gen
from kubetfx.components.example_validator.component import example_validator
from kubetfx.components.schema_gen.component import schema_gen
from kubetfx.components.statistics_gen.component import statistics_gen

PIPELINE_NAME = "kubetfx-penguin"
LABEL = "species"


@dsl.pipeline(name=PIPELINE_NAME,
              description="Palmer Penguins species classification, TFX-style, on Kubeflow Pipelines v2.")
def penguin_pipeline(
    input_uri: str,
    label_column: str = LABEL,
    splits: str = "train:2,eval:1",
    schema_file: str = "",
    fail_on_anomalies: bool = True,
):
    """``input_uri``: CSV/Parquet/TFRecord file, directory, glob or ``{SPAN}`` pattern (local path, gs://, s3://)."""
    examples = example_gen(input_uri=input_uri, label_column=label_column, splits=splits)
    examples.set_display_name("ExampleGen")
    statistics = statistics_gen(examples=examples.outputs["examples"])
    statistics.set_display_name("StatisticsGen")
    schema = schema_gen(statistics=statistics.outputs["statistics"], label_column=label_column,
                        schema_file=schema_file)
    schema.set_display_name("SchemaGen")
    validation = example_validator(statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"],
                                   fail_on_anomalies=fail_on_anomalies)
    validation.set_display_name("ExampleValidator")
