"""Benchmark: Transform and Trainer on the penguins and on N synthetic penguin-like rows.

Each component runs in a fresh process (as a KFP task does), with Transform's
``materialize=False`` (analyze only; the Trainer applies the transform graph in tf.data)
and ``materialize=True`` (transformed examples written, the Trainer reads them).
Data prep (ExampleGen/StatisticsGen/SchemaGen) is not timed here; bench_data_validation
does that. CPU seconds (user + system of the component's process) are printed beside wall
time: on a shared machine they move less than wall time.
Usage: python tests/benchmarks/bench_model.py --rows 1000000 [--materialize false|true|both]
"""

import argparse
import json
import os
import resource
import shutil

from step_runner import print_header, print_row, run_step

from kubetfx.components.example_gen import executor as example_gen
from kubetfx.components.schema_gen import executor as schema_gen
from kubetfx.components.statistics_gen import executor as statistics_gen

LABEL = "species"
MODES = {"false": [False], "true": [True], "both": [False, True]}


def prepare(name: str, csv: str, root: str) -> dict:
    paths = {k: os.path.join(root, name, k) for k in ("examples", "statistics", "schema")}
    shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    example_gen.run(csv, paths["examples"], label_column=LABEL)
    statistics_gen.run(paths["examples"], paths["statistics"])
    schema_gen.run(paths["statistics"], paths["schema"], label_column=LABEL)
    return paths


def _timed_step(module: str, kwargs: dict) -> dict:
    """run_step, plus the CPU seconds of the (waited-for) child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured = run_step(module, kwargs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print_row(module, measured)
    print(f"  {module}: {measured['cpu_seconds']:.1f} CPU s", flush=True)
    return measured


def bench(name: str, paths: dict, hyperparameters: dict, materialize: bool) -> dict:
    print(f"\n{name}, Transform materialize={materialize}")
    print_header()
    mode = "materialized" if materialize else "analyzed"
    out = {k: os.path.join(os.path.dirname(paths["examples"]), f"{k}-{mode}")
           for k in ("graph", "transformed", "model", "model_run")}
    for path in out.values():
        shutil.rmtree(path, ignore_errors=True)
    transform = _timed_step("transform", {
        "examples_dir": paths["examples"], "schema_path": paths["schema"], "transform_graph_dir": out["graph"],
        "transformed_examples_dir": out["transformed"], "label_column": LABEL, "materialize": materialize})
    trainer = _timed_step("trainer", {
        "examples_dir": out["transformed"], "raw_examples_dir": paths["examples"],
        "transform_graph_dir": out["graph"], "schema_path": paths["schema"], "model_dir": out["model"],
        "model_run_dir": out["model_run"], "label_column": LABEL, "hyperparameters": hyperparameters})
    info = trainer["result"]
    print(f"  trainer: {info.get('examples_per_second', 0):,.0f} training examples/s on {info.get('devices')}, "
          f"epochs {info.get('epochs_run')}, trained from {info.get('training_input')}, "
          f"metrics {info.get('metrics')}")
    print(f"  transform + trainer: {transform['wall_seconds'] + trainer['wall_seconds']:.1f} s wall, "
          f"{transform['cpu_seconds'] + trainer['cpu_seconds']:.1f} CPU s")
    return {"materialize": materialize,
            "transform_wall_seconds": transform["wall_seconds"], "trainer_wall_seconds": trainer["wall_seconds"],
            "transform_cpu_seconds": transform["cpu_seconds"], "trainer_cpu_seconds": trainer["cpu_seconds"],
            "transform_peak_rss_mb": transform["peak_rss_mb"], "trainer_peak_rss_mb": trainer["peak_rss_mb"],
            "examples_per_second": info.get("examples_per_second"), "metrics": info.get("metrics")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="bench-results")
    parser.add_argument("--epochs", type=int, default=2, help="epochs on the synthetic rows")
    parser.add_argument("--materialize", choices=sorted(MODES), default="both",
                        help="Transform's materialize: false (analyze only), true, or both one after the other")
    args = parser.parse_args()

    from kubetfx.pipelines.penguin import data as penguin_data
    from kubetfx.pipelines.synthetic import penguins

    root = os.path.join(args.workdir, "model")
    data = os.path.join(args.workdir, "data", f"penguins-{args.rows}.csv")
    if not os.path.exists(data):
        penguins.write_csv(data, args.rows)
    datasets = [("penguins", "penguins (333 rows, built-in trainer defaults)",
                 penguin_data.write_span(os.path.join(root, "data")), {}),
                ("synthetic", f"synthetic penguin-like ({args.rows:,} rows, {args.epochs} epochs, batch 512)", data,
                 {"epochs": args.epochs, "batch_size": 512, "early_stopping_patience": 0})]
    results = {}
    for key, title, csv, hyperparameters in datasets:
        paths = prepare(key, csv, root)
        results[key] = [bench(title, paths, hyperparameters, materialize) for materialize in MODES[args.materialize]]
    with open(os.path.join(args.workdir, "bench_model.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
