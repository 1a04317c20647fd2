"""Benchmark: the model monitor on N logged predictions (default 1,000,000), in a fresh process.

Writes N penguin-like records with the predictor's own log writer (synthetic rows, the training
statistics and schema computed from the same generator), then times `model_monitor.executor.run`
(read + statistics + checks + report) and prints wall time and peak RSS.

Usage: python tests/benchmarks/bench_monitor.py [--records 1000000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_RUN = r"""
import json, resource, sys, time
started = time.time()
from kubetfx.components.model_monitor import executor
result = executor.run(*sys.argv[1:6], last_n=0)
print(json.dumps({"seconds": time.time() - started, "records": result["window"]["records"],
                  "retrain": result["retrain"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    from kubetfx.components.common import prediction_log, tfmd
    from kubetfx.components.example_gen import executor as example_gen
    from kubetfx.components.schema_gen import executor as schema_gen
    from kubetfx.components.statistics_gen import executor as statistics_gen
    from kubetfx.pipelines.synthetic import penguins

    root = tempfile.mkdtemp(prefix="kubetfx-bench-monitor-")
    csv = os.path.join(root, "train.csv")
    penguins.write_csv(csv, 100_000, seed=1)
    example_gen.run(csv, os.path.join(root, "examples"), label_column="species")
    statistics_gen.run(os.path.join(root, "examples"), os.path.join(root, "statistics"))
    schema_gen.run(os.path.join(root, "statistics"), os.path.join(root, "schema"), label_column="species")
    serving_csv = os.path.join(root, "serving.csv")
    penguins.write_csv(serving_csv, args.records, seed=2)
    started = time.time()
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(serving_csv).drop(["species"])
    writer = prediction_log.RotatingWriter(os.path.join(root, "log"), "penguin")
    rows = table.to_pylist()
    for start in range(0, len(rows), 1000):
        chunk = rows[start:start + 1000]
        writer.write(prediction_log.records_for(f"r{start}", "penguin", "1", chunk, [{"class": "Adelie"}] * len(chunk)))
    writer.close()
    print(f"wrote {len(rows)} records in {time.time() - started:.1f} s "
          f"({sum(os.path.getsize(f) for f in prediction_log.log_files(os.path.join(root, 'log'), 'penguin')) / 1e6:.0f} MB)")
    result = subprocess.run([sys.executable, "-c", _RUN, os.path.join(root, "log"), "penguin",
                             os.path.join(root, "statistics"), tfmd.schema_path(os.path.join(root, "schema")),
                             os.path.join(root, "out")], capture_output=True, text=True)
    if result.returncode:
        sys.exit(result.stderr[-3000:])
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"model monitor on {measured['records']} logged predictions: {measured['seconds']:.1f} s, "
          f"peak RSS {measured['peak_rss_mb']:.0f} MB, retrain={measured['retrain']}")


if __name__ == "__main__":
    main()
