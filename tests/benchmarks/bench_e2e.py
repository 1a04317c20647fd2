"""Benchmark: the whole penguin pipeline on the embedded default, per stage, next to TFX 1.16.

Runs `kubetfx run penguin` (kfp.local SubprocessRunner, every task a fresh process, as on a
cluster) with kfp.local's subprocess launcher wrapped to measure each task: wall time, CPU
time (user + system), peak RSS, and the time spent importing modules (`-X importtime`, the
top-level imports' cumulative time). The TFX anchor cannot be installed next to us (it needs
Python 3.10 and protobuf 4): its numbers, measured on this machine kind, are printed beside ours.

Usage: python tests/benchmarks/bench_e2e.py [--runs 3] [--rows N] [--parallelism P] [--output bench-results/bench_e2e.json]
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

# TFX 1.16 LocalDagRunner, penguin pipeline, caching off, same machine kind (issue #11's table), seconds.
TFX_PENGUIN = {"example-gen": 1.2, "statistics-gen": 4.6, "schema-gen + example-validator": 0.1, "transform": 28.0,
               "trainer": 27.0, "evaluator": 5.1, "whole process": (79 + 108) / 2}
# The same on 1,000,000 penguin-like rows (333k eval rows; TFX's Trainer ran 200 steps).
TFX_1M = {"example-gen": 230.0, "statistics-gen": 38.0, "schema-gen + example-validator": 0.1, "transform": 132.0,
          "trainer": 32.0, "evaluator": 181.0, "whole process": 628.0}
BIG_HYPERPARAMETERS = {"epochs": 1, "batch_size": 512}
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
_FUNCTION = "--function_to_execute"

MEASURED: list[dict] = []
_RUN_STARTED = [0.0]


def _task_name(command: list[str]) -> str:
    if _FUNCTION in command:
        return command[command.index(_FUNCTION) + 1].replace("_", "-")
    return "?"


def measured_subprocess(full_command, env_vars=None) -> int:
    """kfp.local's run_local_subprocess (with kubetfx's warm TensorFlow processes), plus wall/CPU/peak RSS
    (wait4: a warm process's import ahead of the task included) and the task's own import time."""
    from kubetfx.pipelines.local import warm_tasks

    started = time.time()
    process, warm = warm_tasks.start(full_command, env_vars)  # PYTHONPROFILEIMPORTTIME: set in run_once
    import_us, counting = 0, not warm  # a warm process's imports before its task starts were paid ahead
    for line in iter(process.stdout.readline, ""):
        if line.startswith(warm_tasks.TASK_STARTS):
            counting = True
            continue
        match = _IMPORT_LINE.match(line)
        if match:
            if counting and len(match.group(3)) == 1:  # top-level import: its cumulative time includes children
                import_us += int(match.group(2))
            continue
        print(line, end="")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    MEASURED.append({"task": _task_name(full_command), "wall_s": time.time() - started, "warm": warm,
                     "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
                     "import_s": import_us / 1e6, "start_s": started - _RUN_STARTED[0],
                     "end_s": time.time() - _RUN_STARTED[0]})
    return process.returncode


def run_once(root: str, parallelism: int | None = None, data: str | None = None) -> dict:
    """One run of the penguin pipeline, or of the tabular pipeline on ``data`` (a CSV of synthetic rows)."""
    from kfp.local import subprocess_task_handler

    from kubetfx.pipelines.local import runner as local_runner
    from kubetfx.pipelines import registry

    subprocess_task_handler.run_local_subprocess = measured_subprocess
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"  # every task process, warm ones too, reports its imports
    MEASURED.clear()
    started = _RUN_STARTED[0] = time.time()
    if data:
        entry = registry.for_data(data, "species", name="penguin-synthetic")
        code = local_runner.run(entry, root=root, parallelism=parallelism,
                                overrides={"hyperparameters": BIG_HYPERPARAMETERS})
    else:
        code = local_runner.run(registry.PIPELINES["penguin"], root=root, parallelism=parallelism)
    whole = time.time() - started
    if code != local_runner.EXIT_PUSHED:
        sys.exit(f"the pipeline did not push a model (exit code {code})")
    return {"tasks": list(MEASURED), "whole_s": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", default=os.path.join("bench-results", "bench_e2e.json"))
    parser.add_argument("--rows", type=int, default=0,
                        help="run the tabular pipeline on this many synthetic penguin-like rows instead of the "
                             f"penguins (Trainer: {BIG_HYPERPARAMETERS}); TFX's 1M-row numbers beside ours")
    parser.add_argument("--parallelism", type=int, default=None,
                        help="tasks at once (default: kubetfx run's; 1: one at a time, like kfp.local)")
    args = parser.parse_args()
    runs, data_dir = [], tempfile.TemporaryDirectory(prefix="kubetfx-bench-e2e-data-")
    data, anchors = None, TFX_PENGUIN
    if args.rows:
        from kubetfx.pipelines.synthetic import penguins

        data, anchors = penguins.write_csv(os.path.join(data_dir.name, "penguins.csv"), args.rows), TFX_1M
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kubetfx-bench-e2e-") as root:
            print(f"\n=== run {index + 1} of {args.runs}", flush=True)
            runs.append(run_once(root, args.parallelism, data))
    data_dir.cleanup()
    tasks = [t["task"] for t in runs[0]["tasks"]]
    table = {}
    for task in tasks:
        rows = [next(t for t in run["tasks"] if t["task"] == task) for run in runs]
        table[task] = {key: statistics.median(row[key] for row in rows)
                       for key in ("wall_s", "cpu_s", "peak_rss_mb", "import_s", "start_s", "end_s")}
        table[task]["warm"] = sum(row["warm"] for row in rows) > len(rows) / 2
    whole = statistics.median(run["whole_s"] for run in runs)
    what = f"{args.rows:,} synthetic penguin rows" if args.rows else "Penguin pipeline"
    print(f"\n{what}, kfp.local SubprocessRunner, median of {len(runs)} runs (seconds, MB); "
          "start/end: since the run began (tasks side by side overlap)")
    print(f"{'stage':<20}{'wall':>8}{'CPU':>8}{'imports':>9}{'peak RSS':>10}{'start':>8}{'end':>8}{'TFX 1.16':>10}"
          "  warm")
    for task, row in table.items():
        anchor = anchors.get(task)
        print(f"{task:<20}{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{row['import_s']:>9.1f}"
              f"{row['peak_rss_mb']:>10.0f}{row['start_s']:>8.1f}{row['end_s']:>8.1f}"
              f"{anchor if anchor is not None else '':>10}  {'yes' if row['warm'] else ''}")
    ratio = whole / anchors["whole process"]
    print(f"{'whole process':<20}{whole:>8.1f}{'':>43}{anchors['whole process']:>10.1f}"
          f"   ({ratio:.2f}x TFX's time)")
    without = statistics.median(run["whole_s"] - sum(t["wall_s"] for t in run["tasks"] if t["task"] == "trainer")
                                for run in runs)
    anchor_without = anchors["whole process"] - anchors["trainer"]
    print(f"{'whole minus Trainer':<20}{without:>8.1f}{'':>43}{anchor_without:>10.1f}"
          f"   ({without / anchor_without:.2f}x TFX's time)")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump({"rows": args.rows or "penguins", "median": table, "whole_s": whole, "whole_minus_trainer_s": without,
                   "runs": runs, "tfx_anchor": anchors}, handle, indent=2)
    print(f"\nwritten: {args.output}")


if __name__ == "__main__":
    main()
