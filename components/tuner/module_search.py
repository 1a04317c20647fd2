"""A TFX module file's ``tuner_fn(fn_args) -> TunerFnResult``, run as TFX's Tuner runs it.

TFX's executor: ``result = tuner_fn(fn_args)``, ``result.tuner.search(**result.fit_kwargs)``,
then ``best_hyperparameters.txt`` = ``tuner.get_best_hyperparameters()[0].get_config()``. The
module's tuner is a real KerasTuner tuner (RandomSearch, BayesianOptimization, Hyperband...);
its trials are read back from ``tuner.oracle`` for the report.
"""

from __future__ import annotations

import time

from kubetfx.components.common import module_loader
from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.components.tuning.search import Trial


def _trials(tuner) -> list[Trial]:
    trials = []
    for index, trial in enumerate(sorted(tuner.oracle.trials.values(), key=lambda t: str(t.trial_id))):
        epochs = 0
        for name in trial.metrics.metrics:
            epochs = max(epochs, len(trial.metrics.get_history(name)))
        state = str(getattr(trial, "status", "COMPLETED")).upper()
        trials.append(Trial(index, dict(trial.hyperparameters.values), trial.score,
                            "COMPLETE" if state == "COMPLETED" else state, epochs, 0.0))
    return trials


def run(fn_args, module_file: str, tuner_fn: str = "tuner_fn", log=print) -> tuple[dict, list[Trial], dict]:
    """(best KerasTuner config, the trials, facts) of the module's search."""
    function = module_loader.load_function(module_file, tuner_fn, "module_file", "tuner_fn")
    import keras_tuner
    import tensorflow as tf

    tf.keras.utils.set_random_seed(fn_args.seed)
    started = time.perf_counter()
    try:
        result = function(fn_args)
        tuner, fit_kwargs = result.tuner, dict(result.fit_kwargs or {})
        tuner.search_space_summary()
        tuner.search(**fit_kwargs)
        best_hps = tuner.get_best_hyperparameters()
    except KubetfxError:
        raise
    except Exception as err:
        location = module_loader.where(err, module_loader.source_file(function))
        raise ConfigError(f"tuner_fn '{tuner_fn}' of module '{module_file}' failed at {location}: "
                          f"{module_loader.last_line(err)}") from err
    if not best_hps:
        raise ConfigError(f"tuner_fn '{tuner_fn}' of module '{module_file}': the search finished no trial, so there "
                          "are no best hyperparameters (every trial failed; see the log above)")
    objective = tuner.oracle.objective
    name = getattr(objective, "name", str(objective))
    direction = getattr(objective, "direction", "max")
    trials = _trials(tuner)
    log(f"Tuner: {len(trials)} trials of the module's {type(tuner).__name__}; best {name}: "
        f"{tuner.oracle.get_best_trials(1)[0].score}")
    facts = {"library": f"keras-tuner {keras_tuner.__version__}", "tuner": type(tuner).__name__,
             "objective": name, "direction": direction, "seed": fn_args.seed, "trial_seeds": "the module's tuner",
             "max_trials": getattr(tuner.oracle, "max_trials", None), "parallel_trials": 1,
             "search_seconds": round(time.perf_counter() - started, 3)}
    return best_hps[0].get_config(), trials, facts
