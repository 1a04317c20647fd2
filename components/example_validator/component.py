"""KFP interface of ExampleValidator (logic lives in executor.py)."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def example_validator(
    statistics: Input[Artifact],
    schema: Input[Artifact],
    anomalies: Output[Artifact],
    report: Output[Markdown],
    comparison_statistics: Input[Artifact] = None,
    comparison_mode: str = "drift",
    linf_threshold: Optional[float] = None,
    jsd_threshold: Optional[float] = None,
    fail_on_anomalies: bool = True,
):
    """Checks statistics against the schema (+ drift/skew vs comparison_statistics); writes TFMD Anomalies.

    Thresholds left unset use the schema's drift/skew comparators only.
    """
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.example_validator import executor

    anomalies.metadata.update(call(
        executor.run, statistics_dir=statistics.path, schema_path=schema.path, output_dir=anomalies.path,
        report_path=report.path,
        comparison_statistics_dir=comparison_statistics.path if comparison_statistics else None,
        comparison_mode=comparison_mode,
        linf_threshold=linf_threshold, jsd_threshold=jsd_threshold,
        fail_on_anomalies=fail_on_anomalies))
