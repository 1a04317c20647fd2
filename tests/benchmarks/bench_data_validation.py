"""Benchmark: ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator on synthetic rows.

Each component runs in a fresh process, as a KFP task does, so the wall time
includes interpreter start and imports; peak RSS is per process.
Usage: python tests/benchmarks/bench_data_validation.py --rows 1000000
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

_STEP = r"""
import json, resource, sys, time
started = time.time()
from kubetfx.components.{module} import executor
executor.run(**json.loads(sys.argv[1]))
print(json.dumps({{"seconds_in_process": time.time() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tensorflow_imported": "tensorflow" in sys.modules}}))
"""


def _run_step(module: str, kwargs: dict) -> dict:
    started = time.time()
    result = subprocess.run([sys.executable, "-c", _STEP.format(module=module), json.dumps(kwargs)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{module} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    measured["wall_seconds"] = time.time() - started
    return measured


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
    print(f"{'component':<20}{'wall s':>9}{'in-proc s':>11}{'peak RSS MB':>13}{'TF imported':>13}")
    total = 0.0
    results = {}
    for module, kwargs in steps:
        measured = _run_step(module, kwargs)
        results[module] = measured
        total += measured["wall_seconds"]
        print(f"{module:<20}{measured['wall_seconds']:>9.2f}{measured['seconds_in_process']:>11.2f}"
              f"{measured['peak_rss_mb']:>13.0f}{str(measured['tensorflow_imported']):>13}")
    print(f"{'total':<20}{total:>9.2f}")
    results["total_wall_seconds"] = total
    results["rows"] = args.rows
    with open(os.path.join(args.workdir, "bench_data_validation.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
