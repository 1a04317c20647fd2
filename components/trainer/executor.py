"""Trainer executor: a user ``run_fn(fn_args)`` (TFX module file) or the built-in Keras 3 DNN.

Inputs: the Examples (``Split-train``/``Split-eval``), the transform graph and the
raw schema. The examples are Transform's transformed examples or, when Transform
ran with ``materialize=False``, the raw examples: ``raw_examples_dir``, else the
directory its marker names. ``examples_dir`` may also be ExampleGen's output itself
(TFX's wiring). Raw examples are parsed and transformed in tf.data (fn_args.py).
Output: ``<model_dir>/Format-Serving`` (one SavedModel) and
``<model_dir>/kubetfx_model.json``; TensorBoard logs in ``model_run_dir``.
Both directories are written atomically, so a failed run leaves no model a
Pusher could pick up. User modules run with tf_keras (``TF_USE_LEGACY_KERAS=1``)
when ``keras="auto"`` — TFX module files are Keras 2 code; see keras_mode.py.
Nothing heavy is imported before the parameters are validated.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile

from kubetfx.components.common import feature_values, fileio, layout, module_loader, provenance, tfmd
from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.components.trainer import distributed, hyperparameters as hp_lib, inputs, keras_mode
from kubetfx.components.trainer.fn_args import FnArgs
from kubetfx.components.tuning import artifact as tuning_artifact, space

ARTIFACT_TYPE = "Model"
MODEL_RUN_TYPE = "ModelRun"
TRAIN_SPLIT, EVAL_SPLIT = inputs.TRAIN_SPLIT, inputs.EVAL_SPLIT
# kubetfx_model.json's training_input: what the model was trained from.
TRANSFORMED_INPUT = "transformed examples"
RAW_INPUT = "raw examples + transform graph (applied in tf.data)"
VERSION_PACKAGES = ("kubetfx", "tensorflow", "keras", "tf-keras", "tensorflow-transform", "tfx-bsl")


# --------------------------------------------------------------------------- user module


_RAW_EXAMPLES_HINT = (" (Transform ran with materialize=False: fn_args.train_files/eval_files are RAW tf.Examples; "
                      "data_accessor.tf_dataset_factory transforms them when given the transformed schema, a module "
                      "that reads the files itself needs Transform's materialize=True)")


def _run_user_module(fn_args: FnArgs, module_file: str, run_fn: str, raw_examples: bool) -> dict:
    function = module_loader.load_function(module_file, run_fn, "module_file", "run_fn")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(fn_args.seed)
    try:
        returned = function(fn_args)
    except KubetfxError:
        raise
    except Exception as err:
        location = module_loader.where(err, module_loader.source_file(function))
        # Reading raw examples as transformed ones fails in parsing (a missing feature) or on a missing key.
        hint = _RAW_EXAMPLES_HINT if raw_examples and isinstance(err, (tf.errors.OpError, KeyError)) else ""
        raise ConfigError(f"run_fn '{run_fn}' of module '{module_file}' failed at {location}: "
                          f"{module_loader.last_line(err)}{hint}") from err
    if not os.path.isfile(os.path.join(fn_args.serving_model_dir, layout.SAVED_MODEL_FILE)):
        raise ConfigError(f"run_fn '{run_fn}' of module '{module_file}' returned without writing a SavedModel to "
                          f"fn_args.serving_model_dir ({fn_args.serving_model_dir})")
    metrics = {}
    if isinstance(returned, dict):
        metrics = {k: float(v) for k, v in returned.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"problem_type": "custom", "metrics": metrics}


def _label_mapping(saved_model_dir: str, transform_graph_dir: str, label: str, schema) -> dict:
    """For a module whose transform graph maps the string label to class ids: what the Evaluator needs
    (the transformed label, the classes, a ``transform_features`` signature); {} otherwise."""
    from kubetfx.components.trainer import label_mapping

    if not label:
        return {}
    mapping = label_mapping.derive(transform_graph_dir, label, label_mapping.label_domain(schema, label))
    if mapping is None:
        return {}
    added = label_mapping.ensure_transform_signature(saved_model_dir, transform_graph_dir)
    print(f"Trainer: the transform graph maps the label '{label}' to '{mapping['transformed_label']}' "
          f"({len(mapping['class_names'])} classes)" + ("; added a transform_features signature for the Evaluator"
                                                        if added else ""), flush=True)
    return {"problem_type": "classification", **mapping,
            "label_mapping": f"transform graph: {label} -> {mapping['transformed_label']}"}


def _raw_features(transform_graph_dir: str, label: str, summary: dict, markers: bool) -> list[dict]:
    """The request features (kubetfx_model.json's ``raw_features``); those Transform imputes may be null.
    ``markers``: the served signature understands int/string missing markers (kubetfx's own ``serving_raw``,
    or a ``serving_default`` taking tf.Examples, where the predictor leaves the feature out)."""
    import tensorflow_transform as tft

    from kubetfx.components.trainer import export

    return export.raw_feature_entries(tft.TFTransformOutput(transform_graph_dir).raw_feature_spec(), label,
                                      imputed=frozenset(summary.get("imputation") or {}), markers=markers)


@contextlib.contextmanager
def _output_dirs(model_dir: str, model_run_dir: str, cluster: distributed.Cluster | None):
    """(model dir, model run dir) to write into: the artifacts, atomically; for a worker that is not the
    chief of a multi-worker run, scratch directories that are removed afterwards."""
    if cluster is not None and not cluster.is_chief:
        with tempfile.TemporaryDirectory(prefix=f"kubetfx-trainer-{cluster.task_type}-{cluster.task_index}-") as tmp:
            yield os.path.join(tmp, "model"), os.path.join(tmp, "model_run")
        return
    with fileio.atomic_directory(model_dir) as model_tmp, fileio.atomic_directory(model_run_dir) as run_tmp:
        yield model_tmp, run_tmp


# --------------------------------------------------------------------------- entry point


def run(examples_dir: str, transform_graph_dir: str, schema_path: str, model_dir: str, model_run_dir: str,
        report_path: str | None = None, metrics_path: str | None = None, module_file: str = "",
        run_fn: str = "run_fn", label_column: str = "", train_steps: int = 0, eval_steps: int = 0,
        hyperparameters: dict | str | None = None, custom_config=None, seed: int = 42, keras: str = "auto",
        problem_type: str = "auto", raw_examples_dir: str = "", best_hyperparameters_dir: str = "",
        _isolated: bool = False) -> dict:
    """Train and export; returns the Model artifact metadata (with ``metrics`` and ``model_run``).

    ``raw_examples_dir``: ExampleGen's examples, used when ``examples_dir`` is the marker of a
    Transform run with materialize=False. ``best_hyperparameters_dir``: the Tuner's output (TFX's
    ``hyperparameters`` input): a module's ``run_fn`` gets its KerasTuner config as
    ``fn_args.hyperparameters``, the built-in trainer uses its values over ``hyperparameters``.
    ``_isolated``: see :func:`run_isolated`. With ``TF_CONFIG`` naming several workers (distributed.py)
    every worker trains under MultiWorkerMirroredStrategy and only the chief writes the outputs."""
    call = {k: v for k, v in locals().items() if k != "_isolated"}
    cluster = distributed.cluster()  # a bad TF_CONFIG fails here, before anything heavy
    schema = tfmd.read_schema(schema_path)
    schema_file = tfmd.schema_path(schema_path) if os.path.isdir(schema_path) else schema_path
    summary = inputs.transform_summary(transform_graph_dir)
    label = label_column or summary.get("label_column") or ""
    features = [f.name for f in schema.feature]
    if label and label not in features:
        raise ConfigError(f"label_column '{label}' is not a feature of the schema {schema_file} "
                          f"(features: {', '.join(features) or 'none'})")
    if not module_file:
        if not label:
            raise ConfigError("label_column is required by the built-in trainer (the transform graph records none)")
        if summary.get("transforms") and not summary.get("label_column"):
            raise ConfigError(f"the transform graph {transform_graph_dir} was built without a label_column, so the "
                              f"built-in preprocessing treated '{label}' as a feature (scaled/encoded); rerun "
                              f"Transform with label_column='{label}'")
        if summary.get("label_column") and summary["label_column"] != label:
            raise ConfigError(f"label_column '{label}' differs from the label the transform graph was built for "
                              f"('{summary['label_column']}'); rerun Transform with label_column='{label}'")
    from kubetfx.components.trainer.problem import check_problem_type

    check_problem_type(problem_type)
    train_steps = inputs.non_negative_int("train_steps", train_steps)
    eval_steps = inputs.non_negative_int("eval_steps", eval_steps)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected an int, got {type(seed).__name__} {seed!r}")
    # The built-in trainer: only the given values; the others are scaled to the data (scaling.py).
    hp = hp_lib.given(hyperparameters) if not module_file else inputs.json_dict("hyperparameters", hyperparameters)
    tuned_config, tuning = tuning_artifact.read(best_hyperparameters_dir)
    tuned = {}
    if tuned_config is not None:
        if module_file:
            hp = tuned_config  # TFX: fn_args.hyperparameters is the Tuner's KerasTuner config
        else:
            tuned = space.to_builtin(tuned_config["values"])
            hp = {**hp, **tuned}
    config = inputs.json_dict("custom_config", custom_config)
    train_dir, transformed = inputs.training_examples(examples_dir, raw_examples_dir, summary)
    patterns = inputs.split_patterns(train_dir)
    if module_file:
        inputs.check_module_exists(module_file)
        if not run_fn or not run_fn.isidentifier():
            raise ConfigError(f"run_fn must be a Python identifier, got {run_fn!r}")
    legacy = keras_mode.wanted_legacy(keras, module_file)
    if not keras_mode.prepare(legacy):
        if _isolated:
            raise KubetfxError("cannot switch Keras in the trainer subprocess (TensorFlow imported too early)")
        print("Trainer: TensorFlow in this process uses the other Keras; training in a subprocess", flush=True)
        return keras_mode.run_in_subprocess(call, legacy)

    with _output_dirs(model_dir, model_run_dir, cluster) as (model_tmp, run_tmp):
        os.makedirs(run_tmp, exist_ok=True)
        fn_args = inputs.make_fn_args(run_tmp, patterns, transformed, transform_graph_dir, schema_file, train_steps,
                                      eval_steps, hp, config, label, seed,
                                      serving_model_dir=os.path.join(model_tmp, layout.SERVING_MODEL_DIR),
                                      model_run_dir=run_tmp)
        if module_file:
            info = _run_user_module(fn_args, module_file, run_fn, raw_examples=not transformed)
            info.update(label=label, train_examples=(summary.get("row_counts") or {}).get(TRAIN_SPLIT),
                        eval_examples=(summary.get("row_counts") or {}).get(EVAL_SPLIT))
            info.update(_label_mapping(fn_args.serving_model_dir, transform_graph_dir, label, schema))
        else:
            from kubetfx.components.trainer import builtin

            info = builtin.run(fn_args, label, hp, summary.get("label_vocabulary"), problem_type, cluster,
                               tuned=frozenset(tuned))
        _check_finite(info)
        from kubetfx.components.trainer import export

        signatures = export.describe_signatures(fn_args.serving_model_dir)
        # A module's own serving_raw would take a missing marker for a value: markers only for signatures we know.
        info["raw_features"] = _raw_features(transform_graph_dir, label, summary,
                                             markers=not module_file or "serving_raw" not in signatures)
        info.setdefault("hyperparameters", hp)  # the built-in trainer's: the values it trained with
        # How ExampleGen read the training data (its CSV's missing-value fields, its boolean columns): scoring reads
        # new data the same way.
        info.update(feature_values.reading_record(summary))
        info.update(
            module_file=module_file, run_fn=run_fn if module_file else "builtin", seed=seed,
            tuning=_tuning_record(tuned_config, tuning), train_steps=train_steps, eval_steps=eval_steps,
            keras="tf_keras" if module_file and keras_mode.effective_legacy() else "keras3",
            serving_model_dir=layout.SERVING_MODEL_DIR,
            training_input=TRANSFORMED_INPUT if transformed else RAW_INPUT,
            signatures=signatures,
            cluster=cluster.describe() if cluster else None,
            package_versions=provenance.package_versions(VERSION_PACKAGES))
        fileio.atomic_write(os.path.join(model_tmp, layout.MODEL_INFO_FILE), json.dumps(info, indent=2, sort_keys=True))
        # The training schema travels with the model: the predictor validates requests against it.
        shutil.copyfile(schema_file, os.path.join(model_tmp, layout.SCHEMA_FILE))

    metrics = info.get("metrics") or {}
    if cluster is not None and not cluster.is_chief:
        report_path = metrics_path = None  # the chief writes them
    if metrics_path:
        fileio.atomic_write(metrics_path, json.dumps(metrics, indent=2, sort_keys=True))
    if report_path:
        from kubetfx.components.trainer import report as trainer_report

        fileio.atomic_write(report_path, trainer_report.render(info))
    return model_metadata(info)


def model_metadata(info: dict) -> dict:
    """The Model artifact's metadata (with ``model_run``) from what kubetfx_model.json records."""
    metadata = {layout.TFX_TYPE: ARTIFACT_TYPE, **{k: v for k, v in info.items() if k != "history"}}
    metadata["model_run"] = {layout.TFX_TYPE: MODEL_RUN_TYPE, "tensorboard_log_dir": ".",
                             "epochs_run": info.get("epochs_run")}
    return metadata


def _check_finite(info: dict) -> None:
    """A model whose loss or metrics came out NaN/infinite is no model: fail, saying which (nothing is written)."""
    values = dict(info.get("metrics") or {})
    for name, series in (info.get("history") or {}).items():
        if series:
            values[f"{name} (last epoch)"] = series[-1]
    bad = [f"{name}={value}" for name, value in sorted(values.items())
           if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise KubetfxError(f"training diverged: the loss or metrics are NaN or infinite ({', '.join(bad[:4])}"
                           f"{', ...' if len(bad) > 4 else ''}); the data or its preprocessing holds non-finite "
                           "values (an infinite or NaN cell? ExampleValidator reports FLOAT_TYPE_HAS_INF), or the "
                           "learning rate is too high")


def _tuning_record(config: dict | None, record: dict) -> dict | None:
    """What kubetfx_model.json keeps of the search: where the values came from, the space, the seeds."""
    if config is None:
        return None
    keep = ("library", "objective", "direction", "seed", "trial_seeds", "best_trial", "search_space", "max_trials",
            "parallel_trials", "trials_run")
    return {"values": config.get("values"), **{k: record[k] for k in keep if k in record}}


def run_isolated(**kwargs) -> dict:
    """:func:`run` in the fresh process ``keras_mode.run_in_subprocess`` started for the wanted Keras
    (``fresh_process.py``): it trains here or fails, never starting another process."""
    return run(**kwargs, _isolated=True)
