"""Benchmark: InfraValidator on the penguin model, launch="in_process" vs launch="process".

Each run is a fresh Python process calling the KFP component's own function (as a task's body
does, artifacts on local paths), so "task wall" includes the interpreter, the imports, the server's
start and stop, and the process exit. "ready after" is the component's own ``startup_seconds``
(from starting the server to its readiness answering 200). Runs alternate between the modes;
medians of ``--runs`` are printed with the load average (the machine may be shared).
Usage: python tests/benchmarks/bench_infra_validator.py [--runs 3] [--model DIR --examples DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_TASK = r"""
import json, sys
from kfp.dsl import Artifact, Dataset, Markdown, Model
from kubetfx.components.infra_validator.component import infra_validator

args = json.loads(sys.argv[1])
blessing = Artifact(uri=args["out"] + "/blessing")
blessed = infra_validator.python_func(model=Model(uri=args["model"]), examples=Dataset(uri=args["examples"]),
                                      blessing=blessing, report=Markdown(uri=args["out"] + "/report.md"),
                                      launch=args["launch"])
print(json.dumps({"blessed": blessed, **blessing.metadata}, default=str), flush=True)
"""

MODES = ("in_process", "process")


def run_task(model: str, examples: str, out: str, launch: str) -> dict:
    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _TASK, json.dumps(
        {"model": model, "examples": examples, "out": out, "launch": launch})], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{launch} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if not measured["blessed"]:
        sys.exit(f"{launch}: not blessed: {measured.get('reason')}")
    measured["task_wall_seconds"] = wall
    return measured


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench-results")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default="", help="a Trainer model dir (default: train the penguin model)")
    parser.add_argument("--examples", default="", help="its Examples artifact (with --model)")
    args = parser.parse_args()

    root = os.path.join(args.workdir, "infra_validator")
    if args.model:
        model, examples = args.model, args.examples
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_evaluator import trained_model

        from kubetfx.pipelines.penguin import data as penguin_data

        paths = trained_model("penguins", penguin_data.write_span(os.path.join(root, "data")), root, {})
        model, examples = paths["model"], paths["examples"]

    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs)", flush=True)
    rows = {mode: [] for mode in MODES}
    for index in range(args.runs):
        for mode in MODES if index % 2 == 0 else reversed(MODES):
            measured = run_task(model, examples, os.path.join(root, "runs", f"{mode}-{index}"), mode)
            rows[mode].append(measured)
            phases = measured.get("startup_phases") or {}
            print(f"  run {index + 1} {mode:<11} task wall {measured['task_wall_seconds']:5.2f} s, ready after "
                  f"{measured['startup_seconds']:5.2f} s {json.dumps(phases) if phases else ''}", flush=True)
    print(f"load average after:  {load_average()}")
    print(f"\n{'launch':<12}{'task wall s':>13}{'ready after s':>15}   (median of {args.runs})")
    summary = {}
    for mode in MODES:
        wall = statistics.median(m["task_wall_seconds"] for m in rows[mode])
        ready = statistics.median(m["startup_seconds"] for m in rows[mode])
        summary[mode] = {"task_wall_seconds": wall, "ready_after_seconds": ready}
        print(f"{mode:<12}{wall:>13.2f}{ready:>15.2f}")
    with open(os.path.join(args.workdir, "bench_infra_validator.json"), "w") as handle:
        json.dump({"summary": summary, "runs": rows, "load_average_after": load_average()}, handle, indent=2,
                  default=str)


if __name__ == "__main__":
    main()
