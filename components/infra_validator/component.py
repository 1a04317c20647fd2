"""KFP interface of the InfraValidator (logic lives in executor.py).

The component's one output parameter is the verdict: ``task.outputs["Output"]`` is True when the
candidate was INFRA_BLESSED, for ``with dsl.If(infra.outputs["Output"] == True): pusher(...)``
(``task.output`` is not available: the task also has artifact outputs). It is a plain ``bool``
return, not a ``NamedTuple("...", [("blessed", bool)])``: kfp.local 2.17.3 cannot resolve a named
output in a ``dsl.If`` condition (it parses ``pipelinechannel--<task>-<output>`` only for the
output name ``Output``; the condition then evaluates False and the branch silently never runs),
while ``Output`` works on kfp.local and on a cluster alike.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def infra_validator(
    model: Input[Model],
    examples: Input[Dataset],
    blessing: Output[Artifact],
    report: Output[Markdown],
    timeout_s: int = 120,
) -> bool:
    """Serves the candidate model with the kubetfx predictor, sends real requests, writes the InfraBlessing.

    Returns True when the candidate is INFRA_BLESSED (``task.outputs["Output"]``, for ``dsl.If``).
    """
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.infra_validator import executor

    metadata = call(executor.run, model_dir=model.path, examples_dir=examples.path, blessing_dir=blessing.path,
                    report_path=report.path, timeout_s=timeout_s)
    blessing.metadata.update({k: v for k, v in metadata.items() if k != "server_log_tail"})
    return bool(metadata["blessed"])
