"""KFP interface of the Evaluator (logic lives in executor.py).

The verdict is also the component's return value, a boolean output parameter
named ``Output`` (a plain ``-> bool``, not a NamedTuple: kfp.local 2.17 resolves
``dsl.If`` conditions only on outputs named ``Output``), so a pipeline gates the
Pusher with ``with dsl.If(evaluator_task.outputs["Output"] == True): pusher(...)``;
the Pusher re-checks the blessing artifact itself.
"""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluator(
    examples: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    blessing: Output[Artifact],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[Markdown],
    eval_config: str = "",
    baseline_repository: str = "",
    model_name: str = "",
    split: str = "eval",
    slice_features: list = [],
    beam_pipeline_args: list = [],
) -> bool:
    """TFMA evaluation of the model on the RAW eval examples against thresholds and the latest pushed model;
    writes a TFX ModelEvaluation and ModelBlessing. Returns blessed (output "Output"): gate the Pusher with
    dsl.If(task.outputs["Output"] == True)."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.evaluator import executor

    result = call(
        executor.run, examples_dir=examples.path, model_dir=model.path, evaluation_dir=evaluation.path,
        blessing_dir=blessing.path, report_path=report.path, eval_config=eval_config,
        baseline_repository=baseline_repository, model_name=model_name, split=split,
        slice_features=slice_features or None, beam_pipeline_args=beam_pipeline_args or None)
    blessing.metadata.update(result.pop("blessing"))
    evaluation.metadata.update(result)
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    if result["confusion_matrix"]:
        classification_metrics.log_confusion_matrix(result["confusion_matrix"]["categories"],
                                                    result["confusion_matrix"]["matrix"])
    return bool(result["blessed"])
