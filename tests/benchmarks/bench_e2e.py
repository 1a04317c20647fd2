"""Benchmark: the whole penguin pipeline on the embedded default, per stage, side by side with TFX 1.16.

Runs the TFX anchor (``tfx_anchor.py``: ../shared/anchor-tfx set up in ``ANCHOR_DIR``) and
`kubetfx run penguin` alternately in the same run, on the same machine, and prints the ratios of
each pair (only same-run ratios mean anything on a shared machine). kubetfx's tasks run as
`kubetfx run` runs them (kfp.local subprocesses; TensorFlow tasks in warm processes that serve several
in turn: pipelines/local/warm_tasks.py) with the launcher wrapped to measure each: wall time, CPU
time (user + system), peak RSS, the time spent importing modules (`-X importtime`, the top-level
imports' cumulative time). ``--big``: both on the anchor's
1,000,000-row penguin-like CSV, kubetfx with its no-code defaults (`kubetfx run --data`).
Without a set-up anchor it says so in one line and exits 2.

Usage: python tests/benchmarks/bench_e2e.py [--runs 3] [--big] [--anchor DIR] [--parallelism P] [--output FILE]
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

import tfx_anchor

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
    (a fresh warm process's import ahead of its task included; a reused one's CPU from its task's start)
    and the task's own import time."""
    from kubetfx.pipelines.local import warm_tasks

    started = time.time()
    task = warm_tasks.start(full_command, env_vars)  # PYTHONPROFILEIMPORTTIME: set in run_once
    import_us, counting = 0, not task.warm  # a warm process's imports before its task starts were paid ahead
    for line in task.lines():
        if line.startswith(warm_tasks.TASK_STARTS):
            counting = True
            continue
        match = _IMPORT_LINE.match(line)
        if match:
            if counting and len(match.group(3)) == 1:  # top-level import: its cumulative time includes children
                import_us += int(match.group(2))
            continue
        print(line, end="")
    code = task.wait()
    MEASURED.append({"task": _task_name(full_command), "wall_s": time.time() - started, "warm": task.warm,
                     "reused": task.reused, "cpu_s": task.cpu_s, "peak_rss_mb": task.peak_rss_mb,
                     "import_s": import_us / 1e6, "start_s": started - _RUN_STARTED[0],
                     "end_s": time.time() - _RUN_STARTED[0]})
    return code


def _evaluator_metrics(root: str) -> dict:
    """Our Evaluator's overall metrics (executor_output.json of the run under ``root``)."""
    for folder, _, files in os.walk(root):
        if os.path.basename(folder) == "evaluator" and "executor_output.json" in files:
            with open(os.path.join(folder, "executor_output.json"), encoding="utf-8") as handle:
                return json.load(handle)["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    return {}


def run_once(root: str, parallelism: int | None = None, data: str | None = None) -> dict:
    """One run of the penguin pipeline, or of the tabular pipeline with its defaults on ``data`` (a CSV)."""
    from kfp.local import subprocess_task_handler

    from kubetfx.pipelines.local import runner as local_runner
    from kubetfx.pipelines import registry

    subprocess_task_handler.run_local_subprocess = measured_subprocess
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"  # every task process, warm ones too, reports its imports
    MEASURED.clear()
    started = _RUN_STARTED[0] = time.time()
    entry = registry.for_data(data, "species", name="penguin-1m") if data else registry.PIPELINES["penguin"]
    code = local_runner.run(entry, root=root, parallelism=parallelism)
    whole = time.time() - started
    if code != local_runner.EXIT_PUSHED:
        sys.exit(f"the pipeline did not push a model (exit code {code})")
    metrics = _evaluator_metrics(root)
    return {"tasks": list(MEASURED), "whole_s": whole, "accuracy": metrics.get("sparse_categorical_accuracy"),
            "examples": metrics.get("example_count")}


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _cell(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="pairs: TFX then kubetfx, alternately")
    parser.add_argument("--big", action="store_true", help="the anchor's 1,000,000-row CSV instead of the penguins")
    parser.add_argument("--anchor", default=None, help="the set-up TFX anchor (default: $ANCHOR_DIR, else ../anchor)")
    parser.add_argument("--output", default=os.path.join("bench-results", "bench_e2e.json"))
    parser.add_argument("--parallelism", type=int, default=None,
                        help="tasks at once (default: kubetfx run's; 1: one at a time, like kfp.local)")
    args = parser.parse_args()
    anchor = tfx_anchor.locate(args.anchor)
    if anchor is None:
        wanted = os.path.abspath(args.anchor or os.environ.get("ANCHOR_DIR") or tfx_anchor.DEFAULT_DIR)
        print(f"bench-e2e: the TFX anchor is not set up in {wanted}: run `ANCHOR_DIR={wanted} bash "
              "../shared/anchor-tfx/setup.sh` (~4 min), or give --anchor/ANCHOR_DIR", file=sys.stderr)
        sys.exit(2)
    dataset = tfx_anchor.PENGUINS_1M if args.big else tfx_anchor.PENGUINS
    data = tfx_anchor.data_csv(anchor, dataset) if args.big else None
    pairs = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kubetfx-bench-e2e-tfx-") as tfx_root, \
                tempfile.TemporaryDirectory(prefix="kubetfx-bench-e2e-") as root:
            load = os.getloadavg()[0]
            print(f"\n=== pair {index + 1} of {args.runs}: TFX 1.16 anchor ({dataset}; load {load:.2f})", flush=True)
            tfx = tfx_anchor.run(anchor, dataset, tfx_root)
            print(f"TFX: {tfx['whole_s']:.1f} s, eval accuracy {_cell(tfx.get('accuracy'), 4)}", flush=True)
            print(f"=== pair {index + 1} of {args.runs}: kubetfx (load {os.getloadavg()[0]:.2f})", flush=True)
            ours = run_once(root, args.parallelism, data)
            pairs.append({"tfx": tfx, "kubetfx": ours, "load_before": load, "load_after": os.getloadavg()[0]})
    report(pairs, "the anchor's 1,000,000-row CSV" if args.big else "the penguins", args.output)


def _trainer_s(run: dict) -> float:
    return sum(t["wall_s"] for t in run["tasks"] if t["task"] == "trainer")


def report(pairs: list[dict], what: str, output: str) -> None:
    runs = [p["kubetfx"] for p in pairs]
    tasks = [t["task"] for t in runs[0]["tasks"]]
    table = {}
    for task in tasks:
        rows = [next(t for t in run["tasks"] if t["task"] == task) for run in runs]
        table[task] = {key: statistics.median(row[key] for row in rows)
                       for key in ("wall_s", "cpu_s", "peak_rss_mb", "import_s", "start_s", "end_s")}
        table[task]["warm"] = sum(row["warm"] for row in rows) > len(rows) / 2
        table[task]["tfx_s"] = _median(tfx_anchor.stage(p["tfx"]["components"], task) for p in pairs)
    print(f"\n{what}: kubetfx (kfp.local SubprocessRunner) and TFX 1.16 (LocalDagRunner, caching off) alternately "
          f"in this run, median of {len(pairs)} pairs (seconds, MB); start/end: since the run began")
    print(f"{'stage':<20}{'wall':>8}{'CPU':>8}{'imports':>9}{'peak RSS':>10}{'start':>8}{'end':>8}{'TFX 1.16':>10}"
          "  warm")
    for task, row in table.items():
        print(f"{task:<20}{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{row['import_s']:>9.1f}"
              f"{row['peak_rss_mb']:>10.0f}{row['start_s']:>8.1f}{row['end_s']:>8.1f}"
              f"{_cell(row['tfx_s']):>10}  {'yes' if row['warm'] else ''}")
    ratios = {
        "whole process": [p["kubetfx"]["whole_s"] / p["tfx"]["whole_s"] for p in pairs],
        "whole minus Trainer": [(p["kubetfx"]["whole_s"] - _trainer_s(p["kubetfx"]))
                                / (p["tfx"]["whole_s"] - (p["tfx"]["components"].get("trainer") or 0)) for p in pairs],
        "Trainer": [_trainer_s(p["kubetfx"]) / p["tfx"]["components"]["trainer"] for p in pairs
                    if p["tfx"]["components"].get("trainer")],
    }
    print(f"\nsame-run ratios, kubetfx / TFX (per pair; median):")
    for name, values in ratios.items():
        print(f"  {name:<20}{' '.join(f'{v:.2f}x' for v in values):<30} median {_cell(_median(values), 2)}x")
    for p in pairs:
        print(f"  pair: kubetfx {p['kubetfx']['whole_s']:.1f} s (eval accuracy {_cell(p['kubetfx']['accuracy'], 4)}), "
              f"TFX {p['tfx']['whole_s']:.1f} s (eval accuracy {_cell(p['tfx'].get('accuracy'), 4)}); "
              f"load average {p['load_before']:.2f} before, {p['load_after']:.2f} after")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as handle:
        json.dump({"data": what, "median": table, "ratios": ratios, "pairs": pairs}, handle, indent=2)
    print(f"\nwritten: {output}")


if __name__ == "__main__":
    main()
