"""KFP interface of the Tuner (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def tuner(
    examples: Input[Dataset],
    transform_graph: Input[Artifact],
    schema: Input[Artifact],
    best_hyperparameters: Output[Artifact],
    tuner_results: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    module_file: str = "",
    label_column: str = "",
    tune: bool = False,
    max_trials: int = 12,
    parallel_trials: int = 1,
    hyperparameters: dict = {},
    train_steps: int = 0,
    eval_steps: int = 0,
    seed: int = 42,
    problem_type: str = "auto",
    katib_experiment: dict = {},
    raw_examples: Input[Dataset] = None,
):
    """Searches hyperparameters: a module's tuner_fn (KerasTuner, as TFX) or the built-in space (tune=true);
    on a cluster compiled for Katib, as a Katib Experiment. Writes TFX's best_hyperparameters.txt."""
    from kubetfx.components.common.entrypoint import call

    arguments = dict(examples_dir=examples.path, transform_graph_dir=transform_graph.path, schema_path=schema.path,
                     best_hyperparameters_dir=best_hyperparameters.path, tuner_results_dir=tuner_results.path,
                     report_path=report.path, module_file=module_file, label_column=label_column, tune=tune,
                     max_trials=max_trials, parallel_trials=parallel_trials, hyperparameters=hyperparameters,
                     train_steps=train_steps, eval_steps=eval_steps, seed=seed, problem_type=problem_type,
                     raw_examples_dir=raw_examples.path if raw_examples is not None else "")
    if katib_experiment:
        from kubetfx.components.tuner import katib_run

        result = call(katib_run.run, experiment=katib_experiment, **arguments)
    else:
        from kubetfx.components.tuner import executor

        result = call(executor.run, **arguments)
    tuner_results.metadata.update(result.pop("tuner_results"))
    for name, value in result.pop("metrics").items():
        metrics.log_metric(name, value)
    best_hyperparameters.metadata.update(result)
