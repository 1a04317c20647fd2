"""The kubetfx tabular pipeline, built for a dataset's label and a deployment config.

ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Tuner -> Trainer
-> Evaluator + InfraValidator -> Pusher (only when both blessed); BulkInferrer when the Evaluator blessed
the model (the eval split, or ``inference_data``). The Tuner searches only when
asked (``tune=true``, or a module file with a ``tuner_fn``); otherwise it says so in a second and
the Trainer uses its own hyperparameters.
The same function runs on kfp.local and compiles for a cluster; the environment config
only adds what kfp.local ignores: images, GPU pool, resources, the model repository's
volume or credentials.
"""

from kfp import dsl

from kubetfx.components.bulk_inferrer.component import bulk_inferrer
from kubetfx.components.common.image import component_image
from kubetfx.components.evaluator.component import evaluator
from kubetfx.components.example_gen.component import example_gen
from kubetfx.components.example_validator.component import example_validator
from kubetfx.components.infra_validator.component import infra_validator
from kubetfx.components.pusher.component import pusher
from kubetfx.components.schema_gen.component import schema_gen
from kubetfx.components.statistics_gen.component import statistics_gen
from kubetfx.components.trainer.component import trainer
from kubetfx.components.transform.component import transform
from kubetfx.components.tuner.component import tuner
from kubetfx.pipelines.cluster import kubernetes_settings
from kubetfx.pipelines.config import PipelineConfig


# What each pipeline parameter means (`kubetfx params`, docs/pipelines.md): one line each.
PARAMETER_HELP = {
    "input_uri": "CSV/Parquet/TFRecord file, directory, glob or {SPAN} pattern (local path, gs://, s3://)",
    "push_destination": "model repository base the Pusher pushes <model_name>/<version>/ under "
                        "(local path, mounted PVC, gs://, s3://)",
    "model_name": "name of the model in the repository and of its InferenceService",
    "label_column": "the column to predict",
    "problem_type": "auto (string or few-integer label: classification, else regression), classification "
                    "or regression",
    "splits": "split names and weights, e.g. train:8,eval:1,test:1 (hash of each row: reproducible)",
    "null_values": "CSV fields meaning missing in numeric columns (comma-separated, an empty item is the empty "
                   "field, or a JSON list; empty: the empty field, NA, N/A, NaN, null and their usual spellings)",
    "string_null_values": "CSV fields meaning missing in text columns (same format; empty: only the empty field, "
                          "so a category 'NA' stays a value)",
    "exclude_splits": "splits SchemaGen leaves out when inferring the schema (comma-separated, e.g. serving)",
    "numeric_imputation": "built-in preprocessing: what fills a missing number, mean or median of the training data",
    "materialize": "Transform also writes the transformed examples (TFX's materialize, default there true); "
                   "false: only the transform graph, which the Trainer applies in its tf.data input pipeline "
                   "(faster; the model is the same)",
    "schema_file": "a curated TFMD schema.pbtxt to validate against instead of the inferred one",
    "fail_on_anomalies": "stop the pipeline when ExampleValidator finds anomalies (true/false)",
    "module_file": "a TFX-style module with preprocessing_fn and run_fn (file path or import path; "
                   "empty: the built-ins)",
    "hyperparameters": "built-in trainer: hidden_units, learning_rate, batch_size, epochs, dropout, "
                       "early_stopping_patience (JSON object; those not given: defaults, batch_size, epochs and "
                       "early stopping scaled to the train rows, see `kubetfx params`); module files: passed as "
                       "fn_args.hyperparameters",
    "tune": "search hyperparameters before training: the built-in space (width, depth, learning rate, dropout) "
            "for the built-in trainer; a module file's tuner_fn runs whenever it has one (TFX's Tuner)",
    "max_trials": "built-in search: trials to run (each trains the model, with early stopping and pruning)",
    "parallel_trials": "built-in search: trials at once, never more than the cores the task has (1: reproducible)",
    "train_steps": "training steps (TFX TrainArgs.num_steps; 0: the built-in trainer's epochs and step budget)",
    "eval_steps": "evaluation steps per epoch (TFX EvalArgs.num_steps; 0: the whole eval split for module files, "
                  "at most 100 batches for the built-in trainer)",
    "seed": "random seed of the model's initialisation and training (recorded with the model)",
    "eval_config": "TFMA EvalConfig (text proto, JSON or a file path; empty: derived from the problem type)",
    "inference_data": "BulkInferrer: new data to score once the model is blessed (file, directory, glob or {SPAN} "
                      "pattern; empty: the eval split)",
    "deploy": "KServe InferenceService settings for the Pusher (JSON object; empty: push only; "
              "an environment's compile fills it from its manifests)",
}


def katib_template(config: PipelineConfig, pipeline_name: str) -> dict:
    """The Katib Experiment the Tuner submits when the environment tunes on Katib; {} for in-task trials."""
    if config.tuner.backend != "katib":
        return {}
    from kubetfx.pipelines.cluster import katib

    return katib.experiment_template(config, pipeline_name)


def build(name: str, description: str, label: str, model_name: str, config: PipelineConfig | None = None,
          problem_type: str = "auto"):
    """A ``@dsl.pipeline`` function for data labelled ``label``."""
    config = config or PipelineConfig()
    image = component_image()
    katib_experiment = katib_template(config, name)

    def configure(task, display_name: str, reads_outside_world: bool = False):
        """Display name, image, resources; never cached when the result depends on more than the inputs."""
        task.set_display_name(display_name)
        if reads_outside_world:  # KFP caches on input values: a new {SPAN} or a newer baseline would be missed
            task.set_caching_options(enable_caching=False)
        task.set_container_image(image)
        kubernetes_settings.apply_resources(task, config.resources.get(task.name.replace("-", "_")))
        return task

    @dsl.pipeline(name=name, description=description)
    def pipeline(
        input_uri: str,
        push_destination: str,
        model_name: str = model_name,
        label_column: str = label,
        problem_type: str = problem_type,
        splits: str = "train:2,eval:1",
        null_values: str = "",
        string_null_values: str = "",
        exclude_splits: str = "",
        numeric_imputation: str = "mean",
        materialize: bool = False,
        schema_file: str = "",
        fail_on_anomalies: bool = True,
        module_file: str = "",
        hyperparameters: dict = {},
        tune: bool = False,
        max_trials: int = 12,
        parallel_trials: int = 1,
        train_steps: int = 0,
        eval_steps: int = 0,
        seed: int = 42,
        eval_config: str = "",
        inference_data: str = "",
        deploy: dict = {},
    ):
        """The parameters are described in PARAMETER_HELP (`kubetfx params`)."""
        examples = configure(example_gen(input_uri=input_uri, label_column=label_column, splits=splits,
                                         null_values=null_values, string_null_values=string_null_values),
                             "ExampleGen", reads_outside_world=True)  # resolves {SPAN} and globs at run time
        statistics = configure(statistics_gen(examples=examples.outputs["examples"]), "StatisticsGen")
        schema = configure(schema_gen(statistics=statistics.outputs["statistics"], label_column=label_column,
                                      schema_file=schema_file, exclude_splits=exclude_splits), "SchemaGen")
        validation = configure(example_validator(statistics=statistics.outputs["statistics"],
                                                 schema=schema.outputs["schema"],
                                                 fail_on_anomalies=fail_on_anomalies), "ExampleValidator")
        transformed = configure(transform(examples=examples.outputs["examples"], schema=schema.outputs["schema"],
                                          module_file=module_file, label_column=label_column,
                                          numeric_imputation=numeric_imputation, materialize=materialize),
                                "Transform")
        transformed.after(validation)  # anomalies stop the pipeline before any training
        tuned = configure(tuner(examples=transformed.outputs["transformed_examples"],
                                raw_examples=examples.outputs["examples"], transform_graph=transformed.outputs[
                                    "transform_graph"], schema=schema.outputs["schema"], module_file=module_file,
                                label_column=label_column, tune=tune, max_trials=max_trials,
                                parallel_trials=parallel_trials, hyperparameters=hyperparameters,
                                train_steps=train_steps, eval_steps=eval_steps, seed=seed, problem_type=problem_type,
                                katib_experiment=katib_experiment), "Tuner")
        if katib_experiment:  # the Tuner shares its inputs with the trial pods on the workspace volume
            kubernetes_settings.mount_tuner_workspace(tuned, config.tuner)
        else:  # in-task trials: on the GPU pool like the Trainer
            kubernetes_settings.apply_gpu_pool(tuned, config.trainer_gpu, component_image(gpu=True))
        tfjob = config.trainer_tfjob.for_component(config.kfp.resolved_namespace(), config.trainer_gpu)
        if tfjob:
            tfjob["image"] = component_image(gpu=config.trainer_gpu.count > 0)
        trained = configure(trainer(examples=transformed.outputs["transformed_examples"],
                                    raw_examples=examples.outputs["examples"],  # read when not materialized
                                    transform_graph=transformed.outputs["transform_graph"],
                                    schema=schema.outputs["schema"], module_file=module_file,
                                    label_column=label_column, hyperparameters=hyperparameters,
                                    train_steps=train_steps, eval_steps=eval_steps, seed=seed,
                                    problem_type=problem_type, tfjob=tfjob,
                                    best_hyperparameters=tuned.outputs["best_hyperparameters"]), "Trainer")
        if not tfjob:  # a TFJob's workers get the GPUs, not the task that launches them
            kubernetes_settings.apply_gpu_pool(trained, config.trainer_gpu, component_image(gpu=True))
        evaluation = configure(evaluator(examples=examples.outputs["examples"], model=trained.outputs["model"],
                                         eval_config=eval_config, baseline_repository=push_destination,
                                         model_name=model_name), "Evaluator",
                               reads_outside_world=True)  # the baseline: the repository's latest version
        kubernetes_settings.mount_model_repository(evaluation, config.model_repository)  # the baseline
        infra = configure(infra_validator(model=trained.outputs["model"], examples=examples.outputs["examples"]),
                          "InfraValidator", reads_outside_world=True)  # the serving stack as it is today
        with dsl.If(evaluation.outputs["Output"] == True, name="model-blessed"):  # noqa: E712 - KFP condition
            configure(bulk_inferrer(model=trained.outputs["model"], examples=examples.outputs["examples"],
                                    model_blessing=evaluation.outputs["blessing"], data_uri=inference_data,
                                    model_name=model_name), "BulkInferrer",
                      reads_outside_world=True)  # inference_data may be a {SPAN} pattern
            with dsl.If(infra.outputs["Output"] == True, name="infra-blessed"):  # noqa: E712
                pushed = configure(pusher(model=trained.outputs["model"], model_blessing=evaluation.outputs["blessing"],
                                          infra_blessing=infra.outputs["blessing"], push_destination=push_destination,
                                          model_name=model_name, deploy=deploy,
                                          statistics=statistics.outputs["statistics"]), "Pusher",
                                   reads_outside_world=True)  # the next version number, the cluster
                kubernetes_settings.mount_model_repository(pushed, config.model_repository)

    return pipeline
