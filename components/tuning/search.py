"""The built-in search: Optuna's TPE sampler over the built-in space, each trial the built-in Keras DNN.

Why Optuna, not KerasTuner, for the built-in space: measured on this project's 2-core machine
(``tests/benchmarks/bench_tuner.py``, docs/components.md), TPE with median pruning reached the
target quality sooner; KerasTuner stays the engine of TFX module files' ``tuner_fn``.

Every trial trains the same model the Trainer builds (``default_model.build``/``fit``: early
stopping on the validation loss), on datasets built once per search. After each epoch the trial
reports its objective; Optuna's median pruner stops a trial whose objective is worse than the
median of earlier trials at the same epoch. Every trial trains with the run's seed on datasets made
anew under it, as the Trainer then trains the best values: the best trial is the Trainer's model.
Trials run one after another by default: with
``parallel_trials`` > 1 (never more than the cores the process may use) Optuna runs them in
threads, which is faster on more cores but no longer reproducible. Sequentially, the same seed
gives the same trials and the same best trial.
"""

from __future__ import annotations

import dataclasses
import math
import time

from kubetfx.components.tuning import cores, space

# What a trial optimizes: (history key, direction) per problem kind.
OBJECTIVES = {"classification": ("val_accuracy", "max"), "regression": ("val_loss", "min")}
PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS = 3, 4


@dataclasses.dataclass
class Trial:
    number: int
    values: dict
    objective: float | None
    state: str            # COMPLETE | PRUNED | FAIL
    epochs: int
    seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def objective_of(history: dict, name: str, direction: str) -> float | None:
    values = [v for v in history.get(name, []) if v is not None and math.isfinite(v)]
    if not values:
        return None
    return max(values) if direction == "max" else min(values)


def train_trial(fn_args, prepared, train_ds, eval_ds, base_hp: dict, values: dict, seed: int,
                epoch_callback=None) -> dict:
    """Train the built-in model at one point of the space; the fit's history, epochs and seconds.

    ``epoch_callback(epoch, logs) -> bool``: True stops the training (a pruned trial).
    """
    import keras

    from kubetfx.components.trainer import builtin, default_model

    plan = prepared.plan(fn_args, {**base_hp, **space.to_builtin(values)})
    hp, epochs, steps_per_epoch, eval_steps = (plan.hyperparameters, plan.hyperparameters["epochs"],
                                               plan.steps_per_epoch, plan.eval_steps)
    builtin.set_seeds(seed)
    model = default_model.build(prepared.inputs, prepared.problem, hp, seed)
    callbacks = []
    if epoch_callback is not None:
        class _Report(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch_callback(epoch, dict(logs or {})):
                    self.model.stop_training = True

        callbacks.append(_Report())
    return default_model.fit(model, train_ds, eval_ds, hp, epochs, steps_per_epoch, eval_steps, None, callbacks,
                             verbose=0)


def run(fn_args, prepared, base_hp: dict, max_trials: int, seed: int, parallel_trials: int = 1,
        log=print) -> tuple[list[Trial], dict]:
    """Search; returns (every trial in order, facts about the search: objective, library, seeds, cores, ...)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from kubetfx.components.trainer import builtin

    metric, direction = OBJECTIVES[prepared.problem.kind]
    workers = max(1, min(int(parallel_trials), cores.available()))
    trials: list[Trial] = []

    def objective(trial):
        values = space.suggest(trial)
        started = time.perf_counter()
        pruned = {"flag": False}

        def on_epoch(epoch: int, logs: dict) -> bool:
            value = logs.get(metric)
            if value is None:
                return False
            trial.report(float(value), epoch)
            pruned["flag"] = trial.should_prune()
            return pruned["flag"]

        builtin.set_seeds(seed)  # the datasets' shuffle seeds derive from the global seed at their creation
        train_ds, eval_ds = prepared.datasets(fn_args, prepared.plan(fn_args, base_hp).hyperparameters["batch_size"],
                                              seed)
        fitted = train_trial(fn_args, prepared, train_ds, eval_ds, base_hp, values, seed, on_epoch)
        value = objective_of(fitted["history"], metric, direction)
        state = "PRUNED" if pruned["flag"] else ("COMPLETE" if value is not None else "FAIL")
        record = Trial(trial.number, values, value, state, fitted["epochs_run"], round(time.perf_counter() - started, 3))
        trials.append(record)
        log(f"Tuner: trial {trial.number}: {_show(values)} -> {metric} "
            f"{'n/a' if value is None else f'{value:.4f}'} ({state.lower()}, {record.epochs} epochs, "
            f"{record.seconds:.1f} s)")
        if state == "PRUNED":
            raise optuna.TrialPruned()
        return value if value is not None else float("nan")

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max_trials))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS)
    study = optuna.create_study(direction="maximize" if direction == "max" else "minimize", sampler=sampler,
                                pruner=pruner)
    started = time.perf_counter()
    study.optimize(objective, n_trials=max_trials, n_jobs=workers, catch=())
    trials.sort(key=lambda t: t.number)
    facts = {"library": f"optuna {optuna.__version__}", "sampler": "TPESampler", "pruner": "MedianPruner",
             "objective": metric, "direction": direction, "seed": seed,
             "trial_seeds": "every trial: the run's seed (what the Trainer trains with)",
             "max_trials": max_trials, "parallel_trials": workers, "cores_available": cores.available(),
             "search_seconds": round(time.perf_counter() - started, 3)}
    return trials, facts


def best(trials: list[Trial], direction: str) -> Trial | None:
    """The best trial that ran to its end (a pruned trial never wins); ties go to the earlier trial."""
    finished = [t for t in trials if t.state == "COMPLETE" and t.objective is not None]
    if not finished:
        return None
    sign = -1 if direction == "max" else 1
    return min(finished, key=lambda t: (sign * t.objective, t.number))


def _show(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
