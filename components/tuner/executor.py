"""Tuner executor: TFX's Tuner for module files (``tuner_fn`` + KerasTuner), a built-in search otherwise.

Inputs as the Trainer's (the examples, the transform graph, the schema; raw examples when
Transform did not materialize). What it does:

* the module file defines ``tuner_fn``: TFX's Tuner, unchanged (``module_search.py``);
* ``tune`` and no module file: the built-in search space (width, depth, learning rate, dropout)
  with Optuna, every trial the built-in trainer's model (``tuning/search.py``);
* neither: no search, decided without importing TensorFlow; the output says so and the
  Trainer trains with its own hyperparameters.

Outputs: ``best_hyperparameters_dir`` (TFX's ``best_hyperparameters.txt`` + ``kubetfx_tuning.json``),
``tuner_results_dir`` (``tuner_results.json``: every trial), an HTML report with the objective per
trial, and KFP metrics (returned in ``metrics``). Both directories are written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile

from kubetfx.components.common import fileio, layout, module_loader, provenance, tfmd
from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.components.trainer import hyperparameters as hp_lib, inputs, keras_mode
from kubetfx.components.tuning import artifact, space

ARTIFACT_TYPE = "HyperParameters"
RESULTS_TYPE = "TunerResults"
TUNER_FN = "tuner_fn"
VERSION_PACKAGES = ("kubetfx", "tensorflow", "keras", "keras-tuner", "optuna")
ISOLATED_TARGET = "kubetfx.components.tuner.executor:run_isolated"


def defines_tuner_fn(module_file: str, function: str = TUNER_FN) -> bool:
    """Whether the module file defines ``function`` at top level (read as source: nothing runs)."""
    return function in module_loader.top_level_functions(module_file)


def _needs_fresh_process() -> bool:
    """A module's tuner_fn builds tf_keras models, so keras_tuner must be imported against tf_keras, before
    TensorFlow resolves ``tensorflow.keras``: only a process that has not imported TensorFlow (a KFP task) can."""
    import sys

    if "keras_tuner" in sys.modules:
        from kubetfx.components.trainer.tfx_compat import kerastuner

        return kerastuner.uses_tf_keras() is not True
    return "tensorflow" in sys.modules


def positive(name: str, value) -> int:
    value = inputs.non_negative_int(name, value)
    if value < 1:
        raise ConfigError(f"{name}: must be 1 or more, got {value}")
    return value


def _skip(best_dir: str, results_dir: str, report_path: str | None, reason: str) -> dict:
    record = {"reason": reason}
    with fileio.atomic_directory(best_dir) as best_tmp, fileio.atomic_directory(results_dir) as results_tmp:
        artifact.write(best_tmp, None, record)
        fileio.atomic_write(os.path.join(results_tmp, layout.TUNER_RESULTS_FILE), "[]")
    if report_path:
        from kubetfx.components.tuner import report

        fileio.atomic_write(report_path, report.render({"tuned": False, **record}, []))
    print(f"Tuner: no search ({reason})", flush=True)
    return {layout.TFX_TYPE: ARTIFACT_TYPE, "tuned": 0, "reason": reason, "metrics": {},
            "tuner_results": {layout.TFX_TYPE: RESULTS_TYPE, "trials": 0}}


def run(examples_dir: str, transform_graph_dir: str, schema_path: str, best_hyperparameters_dir: str,
        tuner_results_dir: str, report_path: str | None = None, module_file: str = "", tuner_fn: str = TUNER_FN,
        label_column: str = "", tune: bool = False, max_trials: int = 12, parallel_trials: int = 1,
        train_steps: int = 0, eval_steps: int = 0, hyperparameters: dict | str | None = None, seed: int = 42,
        problem_type: str = "auto", raw_examples_dir: str = "", custom_config=None, _isolated: bool = False) -> dict:
    """Search (or not); returns the HyperParameters artifact metadata (``metrics``, ``tuner_results``)."""
    call = {k: v for k, v in locals().items() if k != "_isolated"}
    max_trials = positive("max_trials", max_trials)
    parallel_trials = positive("parallel_trials", parallel_trials)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected an int, got {type(seed).__name__} {seed!r}")
    if module_file:
        inputs.check_module_exists(module_file)
        has_tuner_fn = defines_tuner_fn(module_file, tuner_fn)
        if not has_tuner_fn:
            if tune:
                raise ConfigError(f"tune=true, but module_file {module_file} defines no {tuner_fn}(fn_args): the "
                                  "built-in search space tunes the built-in trainer only; add a tuner_fn (TFX's "
                                  "Tuner) or drop the module_file")
            return _skip(best_hyperparameters_dir, tuner_results_dir, report_path,
                         f"tune=false and the module file defines no {tuner_fn}")
    elif not tune:
        return _skip(best_hyperparameters_dir, tuner_results_dir, report_path, "tune=false and no module file")
    base_hp = hp_lib.given(hyperparameters) if not module_file else None  # the others: scaled to the data
    schema = tfmd.read_schema(schema_path)
    schema_file = tfmd.schema_path(schema_path) if os.path.isdir(schema_path) else schema_path
    summary = inputs.transform_summary(transform_graph_dir)
    label = label_column or summary.get("label_column") or ""
    if not module_file and label not in [f.name for f in schema.feature]:
        raise ConfigError(f"label_column '{label}' is not a feature of the schema {schema_file}")
    train_dir, transformed = inputs.training_examples(examples_dir, raw_examples_dir, summary)
    patterns = inputs.split_patterns(train_dir)
    train_steps = inputs.non_negative_int("train_steps", train_steps)
    eval_steps = inputs.non_negative_int("eval_steps", eval_steps)
    legacy = keras_mode.wanted_legacy("auto", module_file)
    if not keras_mode.prepare(legacy) or (legacy and _needs_fresh_process()):
        if _isolated:
            raise KubetfxError("cannot switch Keras in the tuner subprocess (TensorFlow imported too early)")
        print("Tuner: TensorFlow in this process uses the other Keras; tuning in a subprocess", flush=True)
        return keras_mode.run_in_subprocess(call, legacy, ISOLATED_TARGET)

    with tempfile.TemporaryDirectory(prefix="kubetfx-tuner-") as working_dir:
        fn_args = inputs.make_fn_args(working_dir, patterns, transformed, transform_graph_dir, schema_file,
                                      train_steps, eval_steps, None, inputs.json_dict("custom_config", custom_config),
                                      label, seed)
        if module_file:
            from kubetfx.components.tuner import module_search

            config, trials, facts = module_search.run(fn_args, module_file, tuner_fn)
            best = max((t for t in trials if t.objective is not None), default=None,
                       key=lambda t: t.objective if facts["direction"] == "max" else -t.objective)
            search_space = [f"{e['class_name']} {e['config'].get('name')}: "
                            + json.dumps({k: v for k, v in e["config"].items() if k not in ("name", "conditions")})
                            for e in config.get("space", [])]
        else:
            from kubetfx.components.trainer import builtin
            from kubetfx.components.tuning import search

            prepared = builtin.prepare(fn_args, label, summary.get("label_vocabulary"), problem_type)
            trials, facts = search.run(fn_args, prepared, base_hp, max_trials, seed, parallel_trials)
            best = search.best(trials, facts["direction"])
            if best is None:
                raise ConfigError(f"the search ran {len(trials)} trials and none finished with a value of "
                                  f"{facts['objective']}; see the trial lines above")
            config = space.kerastuner_config(best.values)
            search_space = space.describe()
            facts["base_hyperparameters"] = base_hp
    return write_outputs(best_hyperparameters_dir, tuner_results_dir, report_path, config, trials, facts, best,
                         search_space, module_file, tuner_fn if module_file else "")


def write_outputs(best_hyperparameters_dir: str, tuner_results_dir: str, report_path: str | None, config: dict,
                  trials: list, facts: dict, best, search_space: list[str], module_file: str = "",
                  tuner_fn: str = "") -> dict:
    """TFX's best_hyperparameters.txt, the record, every trial, the report; the artifact metadata and metrics."""
    record = {**facts, "best_trial": best.as_dict() if best else None, "search_space": search_space,
              "trials_run": len(trials), "module_file": module_file, "tuner_fn": tuner_fn,
              "package_versions": provenance.package_versions(VERSION_PACKAGES)}
    with fileio.atomic_directory(best_hyperparameters_dir) as best_tmp, \
            fileio.atomic_directory(tuner_results_dir) as results_tmp:
        artifact.write(best_tmp, config, record)
        fileio.atomic_write(os.path.join(results_tmp, layout.TUNER_RESULTS_FILE),
                            json.dumps([t.as_dict() for t in trials], indent=2))
    if report_path:
        from kubetfx.components.tuner import report

        fileio.atomic_write(report_path, report.render({**record, "tuned": True}, trials))
    metrics = {"trials": float(len(trials)), "pruned_trials": float(sum(t.state == "PRUNED" for t in trials)),
               "search_seconds": float(facts["search_seconds"])}
    if best is not None:
        metrics[f"best_{facts['objective']}"] = float(best.objective)
        metrics["best_trial"] = float(best.number)
        metrics.update({f"best_{k}": float(v) for k, v in best.values.items() if isinstance(v, (int, float))})
    metrics.update({f"trial_{t.number:02d}_{facts['objective']}": float(t.objective) for t in trials
                    if t.objective is not None})
    print(f"Tuner: best trial {best.number if best else '-'}: {config.get('values')}", flush=True)
    return {layout.TFX_TYPE: ARTIFACT_TYPE, "tuned": 1, "best_values": config.get("values"),
            **{k: v for k, v in record.items() if k != "package_versions"}, "metrics": metrics,
            "tuner_results": {layout.TFX_TYPE: RESULTS_TYPE, "trials": len(trials)}}


def run_isolated(**kwargs) -> dict:
    """:func:`run` in the fresh process ``keras_mode.run_in_subprocess`` started for the wanted Keras."""
    return run(**kwargs, _isolated=True)
