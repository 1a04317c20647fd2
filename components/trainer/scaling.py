"""The built-in trainer's schedule scaled to the data: batch size, epochs, steps, early stopping (no TensorFlow).

The defaults in ``hyperparameters.DEFAULTS`` are the small-data values (the penguins train
with them unchanged). A value the user gives (or the Tuner found) always wins; the others grow
with the train split's row count:

- ``batch_size``: 32, doubled while one pass over the train split takes more than
  ``PASS_STEPS`` steps, at most ``MAX_BATCH``;
- an epoch is one pass, or ``PASS_STEPS`` steps of a larger split (unless ``epochs`` is given:
  then an epoch is a whole pass); ``epochs``: at most 40, within ``STEP_BUDGET`` training steps;
- ``early_stopping_patience``: 8, or a quarter of fewer budgeted epochs (at least 2);
- validation after each epoch reads the first ``VALIDATION_STEPS`` eval batches (the same ones
  every epoch) unless ``eval_steps`` is given.

``train_steps`` > 0 (TFX's TrainArgs.num_steps) replaces the budget: whole epochs covering them,
or one epoch of ``train_steps`` steps when that is less than a pass.
"""

from __future__ import annotations

import dataclasses
import math

from kubetfx.components.trainer.hyperparameters import DEFAULTS

PASS_STEPS = 500
MAX_BATCH = 1024
STEP_BUDGET = 3000
VALIDATION_STEPS = 100
MIN_PATIENCE = 2
SCALED = ("batch_size", "epochs", "early_stopping_patience")
RULE = (f"batch_size {DEFAULTS['batch_size']}, doubled while a pass over the train split takes more than "
        f"{PASS_STEPS} steps (at most {MAX_BATCH}); an epoch: a pass, or {PASS_STEPS} steps of a larger split; "
        f"epochs {DEFAULTS['epochs']} within a budget of {STEP_BUDGET} training steps; early_stopping_patience "
        f"{DEFAULTS['early_stopping_patience']}, or a quarter of fewer epochs (at least {MIN_PATIENCE}); validation: "
        f"the first {VALIDATION_STEPS} eval batches at most. Given values win.")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one built-in training run uses: the hyperparameters, the schedule and where each value came from."""

    hyperparameters: dict
    steps_per_epoch: int
    eval_steps: int
    sources: dict  # name -> "given", "tuner", "default", "scaled" or "train_steps"

    def describe(self) -> str:
        hp = self.hyperparameters
        changed = [f"{name} {source}" for name, source in self.sources.items() if source != "default"]
        return (f"batch_size {hp['batch_size']}, {hp['epochs']} epochs of {self.steps_per_epoch} steps, "
                f"early_stopping_patience {hp['early_stopping_patience']}, {self.eval_steps} validation steps"
                + (f" ({', '.join(changed)})" if changed else ""))

    def as_dict(self) -> dict:
        return {"steps_per_epoch": self.steps_per_epoch, "validation_steps": self.eval_steps,
                "total_steps": self.steps_per_epoch * self.hyperparameters["epochs"], "sources": self.sources}


def batch_size(train_examples: int) -> int:
    batch = DEFAULTS["batch_size"]
    while batch < MAX_BATCH and math.ceil(train_examples / batch) > PASS_STEPS:
        batch *= 2
    return batch


def patience(epochs: int) -> int:
    return min(DEFAULTS["early_stopping_patience"], max(MIN_PATIENCE, epochs // 4))


def plan(given: dict, train_examples: int, eval_examples: int, train_steps: int = 0, eval_steps: int = 0,
         tuned=()) -> Plan:
    """The plan for ``train_examples`` / ``eval_examples`` rows; ``given``: the user's and the Tuner's values
    (``tuned``: the names whose value the Tuner found)."""
    hp = {**DEFAULTS, **given}
    sources = {name: "tuner" if name in tuned else "given" if name in given else "default" for name in DEFAULTS}
    if "batch_size" not in given:
        hp["batch_size"] = batch_size(train_examples)
    batch = hp["batch_size"]
    pass_steps = max(1, math.ceil(train_examples / batch))
    if train_steps > 0:
        steps_per_epoch = min(pass_steps, train_steps)
        hp["epochs"] = math.ceil(train_steps / steps_per_epoch)
        sources["epochs"] = "train_steps"
    elif "epochs" in given:
        steps_per_epoch = pass_steps
    else:
        steps_per_epoch = min(pass_steps, PASS_STEPS)
        hp["epochs"] = max(1, min(DEFAULTS["epochs"], STEP_BUDGET // steps_per_epoch))
        if "early_stopping_patience" not in given:
            hp["early_stopping_patience"] = patience(hp["epochs"])
    for name in SCALED:
        if sources[name] == "default" and hp[name] != DEFAULTS[name]:
            sources[name] = "scaled"
    eval_pass = max(1, math.ceil(eval_examples / batch))
    validation = eval_steps if eval_steps > 0 else min(eval_pass, VALIDATION_STEPS)
    return Plan(hp, steps_per_epoch, validation, sources)


def defaults_table(train_sizes=(250, 10_000, 100_000, 1_000_000, 10_000_000)) -> list[str]:
    """Lines showing the rule and the defaults it resolves to at a few train split sizes (``kubetfx params``)."""
    fixed = {k: v for k, v in DEFAULTS.items() if k not in SCALED}
    lines = ["built-in trainer defaults: " + ", ".join(f"{k}={v}" for k, v in fixed.items()) + "; scaled: " + RULE,
             f"{'train rows':>12}  {'batch_size':>10}  {'epochs':>6}  {'steps/epoch':>11}  {'total steps':>11}  "
             f"{'patience':>8}"]
    for rows in train_sizes:
        resolved = plan({}, rows, rows // 2)
        hp = resolved.hyperparameters
        lines.append(f"{rows:>12,}  {hp['batch_size']:>10}  {hp['epochs']:>6}  {resolved.steps_per_epoch:>11}  "
                     f"{resolved.as_dict()['total_steps']:>11}  {hp['early_stopping_patience']:>8}")
    return lines
