"""KFP interface of SchemaGen (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def schema_gen(
    statistics: Input[Artifact],
    schema: Output[Artifact],
    report: Output[Markdown],
    schema_file: str = "",
    label_column: str = "",
    infer_feature_shape: bool = True,
    max_string_domain_size: int = 100,
    exclude_splits: str = "",
):
    """Infers a TFMD Schema (schema.pbtxt) from every split's statistics but ``exclude_splits``
    (comma-separated), or imports a curated schema_file."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.schema_gen import executor

    schema.metadata.update(call(
        executor.run, statistics_dir=statistics.path, output_dir=schema.path, report_path=report.path,
        schema_file=schema_file, label_column=label_column, infer_feature_shape=infer_feature_shape,
        max_string_domain_size=max_string_domain_size, exclude_splits=exclude_splits))
