"""KFP interface of ExampleGen (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def example_gen(
    input_uri: str,
    examples: Output[Dataset],
    report: Output[Markdown],
    splits: str = "train:2,eval:1",
    partition_column: str = "",
    label_column: str = "",
    input_format: str = "auto",
    encoding: str = "utf-8",
    num_shards: int = 0,
    null_values: str = "",
    string_null_values: str = "",
):
    """Reads CSV/Parquet/TFRecord input (file, dir, glob or {SPAN} pattern) into split tf.Examples.

    ``null_values`` / ``string_null_values``: CSV fields meaning "missing" in numeric / text
    columns, comma-separated (an empty item is the empty field) or a JSON list; "" = the defaults
    (numeric: the empty field and NA/NaN/null spellings; text: only the empty field)."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.example_gen import executor

    examples.metadata.update(call(
        executor.run, input_uri=input_uri, output_dir=examples.path, splits=splits,
        partition_column=partition_column, label_column=label_column, input_format=input_format,
        encoding=encoding, num_shards=num_shards, null_values=null_values,
        string_null_values=string_null_values, report_path=report.path))
