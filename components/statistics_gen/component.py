"""KFP interface of StatisticsGen (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def statistics_gen(
    examples: Input[Dataset],
    statistics: Output[Artifact],
    report: Output[Markdown],
):
    """Computes TFMD DatasetFeatureStatistics for every split (Split-*/FeatureStats.pb)."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.statistics_gen import executor

    statistics.metadata.update(call(
        executor.run, examples_dir=examples.path, output_dir=statistics.path, report_path=report.path))
