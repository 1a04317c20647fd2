"""Benchmark: Transform and Trainer on the penguins and on N synthetic penguin-like rows.

Each component runs in a fresh process (as a KFP task does). Data prep
(ExampleGen/StatisticsGen/SchemaGen) is not timed here; bench_data_validation does that.
Usage: python tests/benchmarks/bench_model.py --rows 1000000
"""

import argparse
import json
import os
import shutil

from step_runner import print_header, print_row, run_step

from kubetfx.components.example_gen import executor as example_gen
from kubetfx.components.schema_gen import executor as schema_gen
from kubetfx.components.statistics_gen import executor as statistics_gen

LABEL = "species"


def prepare(name: str, csv: str, root: str) -> dict:
    paths = {k: os.path.join(root, name, k) for k in ("examples", "statistics", "schema", "graph", "transformed",
                                                       "model", "model_run")}
    shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    example_gen.run(csv, paths["examples"], label_column=LABEL)
    statistics_gen.run(paths["examples"], paths["statistics"])
    schema_gen.run(paths["statistics"], paths["schema"], label_column=LABEL)
    return paths


def bench(name: str, paths: dict, hyperparameters: dict) -> dict:
    print(f"\n{name}")
    print_header()
    transform = run_step("transform", {"examples_dir": paths["examples"], "schema_path": paths["schema"],
                                       "transform_graph_dir": paths["graph"],
                                       "transformed_examples_dir": paths["transformed"], "label_column": LABEL})
    print_row("transform", transform)
    trainer = run_step("trainer", {"examples_dir": paths["transformed"], "transform_graph_dir": paths["graph"],
                                   "schema_path": paths["schema"], "model_dir": paths["model"],
                                   "model_run_dir": paths["model_run"], "label_column": LABEL,
                                   "hyperparameters": hyperparameters})
    print_row("trainer", trainer)
    info = trainer["result"]
    print(f"  trainer: {info.get('examples_per_second', 0):,.0f} training examples/s on {info.get('devices')}, "
          f"epochs {info.get('epochs_run')}, metrics {info.get('metrics')}")
    return {"transform_wall_seconds": transform["wall_seconds"], "trainer_wall_seconds": trainer["wall_seconds"],
            "transform_peak_rss_mb": transform["peak_rss_mb"], "trainer_peak_rss_mb": trainer["peak_rss_mb"],
            "examples_per_second": info.get("examples_per_second"), "metrics": info.get("metrics")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="bench-results")
    parser.add_argument("--epochs", type=int, default=2, help="epochs on the synthetic rows")
    args = parser.parse_args()

    from kubetfx.pipelines.penguin import data as penguin_data
    from kubetfx.pipelines.synthetic import penguins

    root = os.path.join(args.workdir, "model")
    results = {"penguins": bench("penguins (333 rows, built-in trainer defaults)",
                                 prepare("penguins", penguin_data.write_span(os.path.join(root, "data")), root), {})}
    data = os.path.join(args.workdir, "data", f"penguins-{args.rows}.csv")
    if not os.path.exists(data):
        penguins.write_csv(data, args.rows)
    results["synthetic"] = bench(f"synthetic penguin-like ({args.rows:,} rows, {args.epochs} epochs, batch 512)",
                                 prepare("synthetic", data, root),
                                 {"epochs": args.epochs, "batch_size": 512, "early_stopping_patience": 0})
    with open(os.path.join(args.workdir, "bench_model.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
