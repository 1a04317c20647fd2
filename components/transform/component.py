"""KFP interface of Transform (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def transform(
    examples: Input[Dataset],
    schema: Input[Artifact],
    transform_graph: Output[Artifact],
    transformed_examples: Output[Dataset],
    report: Output[Markdown],
    module_file: str = "",
    label_column: str = "",
    beam_pipeline_args: list = [],
    numeric_imputation: str = "mean",
    materialize: bool = True,
):
    """tf.Transform on Beam: analyzes the train split, transforms every split (TFX Transform).

    ``numeric_imputation`` ("mean"/"median"): what the built-in preprocessing_fn fills in for a
    missing number. ``materialize=False`` (TFX's option): only the transform graph; the
    ``transformed_examples`` output then holds a marker, and the Trainer, given the raw examples
    (its ``raw_examples`` input), applies the graph in its input pipeline."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.transform import executor

    result = call(
        executor.run, examples_dir=examples.path, schema_path=schema.path,
        transform_graph_dir=transform_graph.path, transformed_examples_dir=transformed_examples.path,
        report_path=report.path, module_file=module_file, label_column=label_column,
        beam_pipeline_args=beam_pipeline_args, numeric_imputation=numeric_imputation, materialize=materialize)
    transformed_examples.metadata.update(result.pop("transformed_examples"))
    transform_graph.metadata.update(result)
