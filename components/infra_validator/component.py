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
    launch: str = "in_process",
) -> bool:
    """Serves the candidate model with the kubetfx predictor, sends real requests, writes the InfraBlessing.

    ``launch``: "in_process" (the predictor's code path on a thread of this task, real HTTP on loopback)
    or "process" (the ServingRuntime's command in a subprocess).
    Returns True when the candidate is INFRA_BLESSED (``task.outputs["Output"]``, for ``dsl.If``).
    """
    import gc

    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.infra_validator import executor

    metadata = call(executor.run, model_dir=model.path, examples_dir=examples.path, blessing_dir=blessing.path,
                    report_path=report.path, timeout_s=timeout_s, launch=launch)
    blessing.metadata.update({k: v for k, v in metadata.items() if k != "server_log_tail"})
    # The task ends next. In-process, TensorFlow's objects now live here, and the interpreter's last
    # garbage collections over them cost ~0.9 s at exit; frozen objects are left to the OS instead.
    gc.freeze()
    return bool(metadata["blessed"])
