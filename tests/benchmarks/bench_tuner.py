"""Benchmark: which library searches the built-in space faster on this machine's cores.

The same trials (the built-in DNN, early stopping on the validation loss, the same data and
datasets) under Optuna (TPE sampler + median pruner: what ``tuning/search.py`` uses) and
KerasTuner (BayesianOptimization; Hyperband, its early-stopping search). Data: a 6 x 6
checkerboard (``tests/helpers/tuning_data.py``), where the default hyperparameters reach ~0.65
accuracy. Reported per library: the best validation accuracy, the trials, and the seconds until
the best-so-far first reached the target (trial-end granularity), each a median of ``--repeats``.
Usage: python tests/benchmarks/bench_tuner.py [--rows 4000] [--trials 12] [--target 0.85] [--repeats 1]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from helpers.tuning_data import checkerboard, write_examples  # noqa: E402


def prepare(root: str, rows: int):
    from kubetfx.components.schema_gen import executor as schema_gen
    from kubetfx.components.statistics_gen import executor as statistics_gen
    from kubetfx.components.trainer import builtin, inputs
    from kubetfx.components.trainer import hyperparameters as hp_lib
    from kubetfx.components.transform import executor as transform

    examples = write_examples(os.path.join(root, "examples"), checkerboard(rows, cells=6))
    statistics_gen.run(examples, os.path.join(root, "statistics"))
    schema_gen.run(os.path.join(root, "statistics"), os.path.join(root, "schema"), label_column="label")
    transform.run(examples, os.path.join(root, "schema"), os.path.join(root, "graph"), os.path.join(root, "t"),
                  label_column="label")
    graph, schema = os.path.join(root, "graph"), os.path.join(root, "schema", "schema.pbtxt")
    fn_args = inputs.make_fn_args(root, inputs.split_patterns(os.path.join(root, "t")), True, graph, schema, 0, 0,
                                  None, None, "label", 42)
    return fn_args, builtin.prepare(fn_args, "label"), hp_lib.parse({})


def run_optuna(fn_args, prepared, base_hp, trials: int, seed: int) -> list[tuple[float, float]]:
    from kubetfx.components.tuning import search

    started, ends = time.perf_counter(), []
    found, _ = search.run(fn_args, prepared, base_hp, trials, seed, log=lambda line: ends.append(
        time.perf_counter() - started))
    return [(at, t.objective if t.state == "COMPLETE" and t.objective is not None else 0.0)
            for at, t in zip(ends, found)]


def run_kerastuner(fn_args, prepared, base_hp, trials: int, seed: int, kind: str) -> list[tuple[float, float]]:
    import keras
    import keras_tuner

    from kubetfx.components.trainer import default_model
    from kubetfx.components.tuning import space

    train_ds, eval_ds = prepared.datasets(fn_args, base_hp["batch_size"], seed)
    plan = prepared.plan(fn_args, base_hp)
    epochs, steps, eval_steps = base_hp["epochs"], plan.steps_per_epoch, plan.eval_steps

    def build(hp):
        values = {}
        for p in space.BUILTIN:
            sampling = "log" if p.log else "linear"
            values[p.name] = hp.Int(p.name, int(p.low), int(p.high), sampling=sampling) if p.kind == "int" else \
                hp.Float(p.name, p.low, p.high, sampling=sampling)
        return default_model.build(prepared.inputs, prepared.problem, {**base_hp, **space.to_builtin(values)}, seed)

    ends, started = [], time.perf_counter()

    class TrialEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            ends.append((time.perf_counter() - started, max(self.model.history.history.get("val_accuracy", [0]))))

    objective = keras_tuner.Objective("val_accuracy", "max")
    with tempfile.TemporaryDirectory() as directory:
        if kind == "hyperband":
            tuner = keras_tuner.Hyperband(build, objective=objective, max_epochs=epochs, factor=3, seed=seed,
                                          hyperband_iterations=1, directory=directory, project_name="b")
        else:
            tuner = keras_tuner.BayesianOptimization(build, objective=objective, max_trials=trials, seed=seed,
                                                     directory=directory, project_name="b")
        tuner.search(train_ds.repeat(), steps_per_epoch=steps, validation_data=eval_ds.repeat(),
                     validation_steps=eval_steps, epochs=epochs, verbose=0,
                     callbacks=[keras.callbacks.EarlyStopping(patience=base_hp["early_stopping_patience"],
                                                              restore_best_weights=True), TrialEnd()])
    return ends


def summarize(ends: list[tuple[float, float]], target: float) -> dict:
    best, reached = 0.0, None
    for at, value in ends:
        best = max(best, value)
        if reached is None and best >= target:
            reached = at
    return {"best": round(best, 4), "trials": len(ends), "seconds": round(ends[-1][0], 1) if ends else 0,
            "seconds_to_target": None if reached is None else round(reached, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--libraries", default="optuna,kerastuner-bayesian,kerastuner-hyperband")
    args = parser.parse_args()
    from kubetfx.components.tuning import cores

    with tempfile.TemporaryDirectory(prefix="bench-tuner-") as root:
        fn_args, prepared, base_hp = prepare(root, args.rows)
        results = {}
        for library in args.libraries.split(","):
            runs = []
            for repeat in range(args.repeats):
                seed = 42 + repeat
                ends = run_optuna(fn_args, prepared, base_hp, args.trials, seed) if library == "optuna" else \
                    run_kerastuner(fn_args, prepared, base_hp, args.trials, seed, library.split("-")[1])
                runs.append(summarize(ends, args.target))
                print(f"{library} (seed {seed}): {runs[-1]}", flush=True)
            reached = [r["seconds_to_target"] for r in runs if r["seconds_to_target"] is not None]
            results[library] = {"best": statistics.median(r["best"] for r in runs),
                                "trials": statistics.median(r["trials"] for r in runs),
                                "seconds": statistics.median(r["seconds"] for r in runs),
                                "seconds_to_target": statistics.median(reached) if len(reached) == len(runs) else None,
                                "reached_target": f"{len(reached)}/{len(runs)}"}
    print(f"\nBuilt-in search, {args.rows} checkerboard rows, target val_accuracy {args.target}, "
          f"{cores.available()} cores:")
    print(f"{'library':<24} {'best':>6} {'trials':>6} {'seconds':>8} {'to target':>10} {'reached':>8}")
    for library, r in results.items():
        to_target = "-" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.1f}"
        print(f"{library:<24} {r['best']:>6.3f} {r['trials']:>6} {r['seconds']:>8.1f} {to_target:>10} "
              f"{r['reached_target']:>8}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
