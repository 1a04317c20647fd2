"""KFP interface of Trainer (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def trainer(
    examples: Input[Dataset],
    transform_graph: Input[Artifact],
    schema: Input[Artifact],
    model: Output[Model],
    model_run: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    module_file: str = "",
    label_column: str = "",
    hyperparameters: dict = {},
    train_steps: int = 0,
    eval_steps: int = 0,
    seed: int = 42,
    problem_type: str = "auto",
    raw_examples: Input[Dataset] = None,
    best_hyperparameters: Input[Artifact] = None,
    tfjob: dict = {},
):
    """Trains a TFX run_fn (module_file) or the built-in Keras DNN on transformed examples; one SavedModel.

    ``raw_examples`` (ExampleGen's output) is read when ``examples`` is the marker of a Transform
    run with materialize=False: the transform graph is then applied in the input pipeline.
    ``best_hyperparameters`` (the Tuner's output; TFX's ``hyperparameters`` input): a module's run_fn gets
    it as fn_args.hyperparameters, the built-in trainer trains with its values. ``tfjob`` (the environment
    config's trainer_tfjob): train in a Kubeflow TFJob of several workers instead."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.trainer import executor

    arguments = dict(
        examples_dir=examples.path, transform_graph_dir=transform_graph.path,
        schema_path=schema.path, model_dir=model.path, model_run_dir=model_run.path, report_path=report.path,
        module_file=module_file, label_column=label_column, hyperparameters=hyperparameters,
        train_steps=train_steps, eval_steps=eval_steps, seed=seed, problem_type=problem_type,
        raw_examples_dir=raw_examples.path if raw_examples is not None else "",
        best_hyperparameters_dir=best_hyperparameters.path if best_hyperparameters is not None else "")
    if tfjob:
        from kubetfx.components.trainer import tfjob as tfjob_lib

        result = call(tfjob_lib.run_in_cluster, settings=tfjob, executor_kwargs=arguments)
    else:
        result = call(executor.run, **arguments)
    model_run.metadata.update(result.pop("model_run"))
    model.metadata.update(result)
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
