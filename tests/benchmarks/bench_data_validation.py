"""Benchmark: ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator on synthetic rows.

Each component runs in a fresh process, as a KFP task does, so the wall time
includes interpreter start and imports; peak RSS is per process.
Usage: python tests/benchmarks/bench_data_validation.py --rows 1000000
"""

import argparse
import json
import os
import shutil

from step_runner import print_header, print_row, run_step

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="bench-results")
    args = parser.parse_args()

    from kubetfx.pipelines.synthetic import penguins

    data = os.path.join(args.workdir, "data", f"penguins-{args.rows}.csv")
    if not os.path.exists(data):
        print(f"generating {args.rows:,} synthetic penguin rows -> {data}")
        penguins.write_csv(data, args.rows)
    run_dir = os.path.join(args.workdir, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    out = {name: os.path.join(run_dir, name) for name in ("examples", "statistics", "schema", "anomalies")}
    steps = [
        ("example_gen", {"input_uri": data, "output_dir": out["examples"], "label_column": "species"}),
        ("statistics_gen", {"examples_dir": out["examples"], "output_dir": out["statistics"],
                            "report_path": os.path.join(run_dir, "statistics.md")}),
        ("schema_gen", {"statistics_dir": out["statistics"], "output_dir": out["schema"],
                        "label_column": "species"}),
        ("example_validator", {"statistics_dir": out["statistics"], "schema_path": out["schema"],
                               "output_dir": out["anomalies"], "fail_on_anomalies": False,
                               "report_path": os.path.join(run_dir, "anomalies.md")}),
    ]
    print(f"\n{args.rows:,} rows, {os.cpu_count()} cores, one process per component\n")
    print_header()
    total = 0.0
    results = {}
    for module, kwargs in steps:
        measured = run_step(module, kwargs)
        results[module] = {k: v for k, v in measured.items() if k != "result"}
        total += measured["wall_seconds"]
        print_row(module, measured)
    print(f"{'total':<20}{total:>9.2f}")
    results["total_wall_seconds"] = total
    results["rows"] = args.rows
    with open(os.path.join(args.workdir, "bench_data_validation.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
