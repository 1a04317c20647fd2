"""One trial of the built-in search in its own pod (a Katib trial): ``python -m kubetfx.components.tuner.trial``.

Reads the inputs the Tuner copied to the shared workspace (``inputs.json`` names them and the run's
settings), trains the built-in model at the given point of the space and prints ``objective=<value>``
after every epoch, the line Katib's StdOut metrics collector reads (validation accuracy, or the
negated validation loss of a regression: always higher is better). Exit code 1 with one
``kubetfx: ...`` line on a bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from kubetfx.components.common.errors import KubetfxError
from kubetfx.components.tuning import space

INPUTS_FILE = "inputs.json"


def _arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubetfx.components.tuner.trial")
    parser.add_argument("--workspace", required=True, help="the folder the Tuner copied its inputs to")
    for p in space.BUILTIN:
        parser.add_argument(f"--{p.name}", required=True)
    parser.add_argument("--trial-seed", type=int, default=None, help="default: the run's seed")
    return parser.parse_args(argv)


def run(workspace: str, values: dict, trial_seed: int | None = None, log=print) -> float | None:
    """Train one trial; returns its objective (higher is better)."""
    from kubetfx.components.trainer import builtin, hyperparameters as hp_lib, inputs
    from kubetfx.components.tuning import search

    with open(os.path.join(workspace, INPUTS_FILE), encoding="utf-8") as handle:
        settings = json.load(handle)
    folder = lambda name: os.path.join(workspace, name) if settings.get(name) else ""  # noqa: E731
    summary = inputs.transform_summary(folder("transform_graph"))
    train_dir, transformed = inputs.training_examples(folder("examples"), folder("raw_examples"), summary)
    label = settings["label_column"] or summary.get("label_column") or ""
    seed = settings["seed"] if trial_seed is None else trial_seed
    fn_args = inputs.make_fn_args(workspace, inputs.split_patterns(train_dir), transformed, folder("transform_graph"),
                                  settings["schema_file"], settings.get("train_steps", 0),
                                  settings.get("eval_steps", 0), None, None, label, seed)
    prepared = builtin.prepare(fn_args, label, summary.get("label_vocabulary"), settings.get("problem_type", "auto"))
    metric, direction = search.OBJECTIVES[prepared.problem.kind]
    sign = 1.0 if direction == "max" else -1.0
    base_hp = hp_lib.given(settings.get("hyperparameters"))
    builtin.set_seeds(seed)
    train_ds, eval_ds = prepared.datasets(fn_args, prepared.plan(fn_args, base_hp).hyperparameters["batch_size"], seed)

    def on_epoch(epoch: int, logs: dict) -> bool:
        if logs.get(metric) is not None:
            log(f"epoch={epoch + 1} objective={sign * float(logs[metric]):.6g} {metric}={float(logs[metric]):.6g}")
        return False

    fitted = search.train_trial(fn_args, prepared, train_ds, eval_ds, base_hp, values, seed, on_epoch)
    value = search.objective_of(fitted["history"], metric, direction)
    if value is not None:
        log(f"objective={sign * value:.6g}")
    return None if value is None else sign * value


def main(argv=None) -> int:
    args = _arguments(argv)
    try:
        values = space.parse_assignment({p.name: getattr(args, p.name) for p in space.BUILTIN})
        run(args.workspace, values, args.trial_seed, log=lambda line: print(line, flush=True))
    except (KubetfxError, OSError, KeyError, ValueError) as err:
        print(f"kubetfx: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
