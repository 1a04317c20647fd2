"""Benchmark: the Evaluator's fast path vs TFMA, on the penguins and on N synthetic penguin-like rows.

Each Evaluator run is a fresh process (as a KFP task is), repeated ``--runs`` times; the
table shows the median wall time (with min–max), the median in-process time and peak RSS.
Default EvalConfig (classification: accuracy, crossentropy, confusion matrix, slices on
island and sex), without and with a baseline (the same model pushed to a repository,
so TFMA and the fast path evaluate two models). It also checks that both engines agree
on the blessing and the Overall metrics. Data prep (bench_model.prepare) and training are
not part of the benchmark and are reused from ``--workdir`` when present.

Usage: python tests/benchmarks/bench_evaluator.py --rows 1000000 [--runs 3] [--tfma-runs 3]
"""

import argparse
import json
import os
import shutil
import statistics

from bench_model import LABEL, prepare
from step_runner import print_header, print_row, run_step

from kubetfx.components.common import model_repository

MODEL_NAME = "penguin"


def trained_model(name: str, csv: str, root: str, hyperparameters: dict) -> dict:
    """ExampleGen..Trainer on ``csv`` (bench_model's data prep, then Transform and Trainer with their defaults);
    skipped when ``root/name`` already has a model, which is then pushed as the baseline."""
    directory = os.path.join(root, name)
    paths = {"examples": os.path.join(directory, "examples"), "model": os.path.join(directory, "model"),
             "repository": os.path.join(directory, "repository")}
    if not os.path.isfile(os.path.join(paths["model"], "kubetfx_model.json")):
        print(f"\n{name}: data prep and training (not part of this benchmark)")
        prepared = prepare(name, csv, root)
        graph, transformed = os.path.join(directory, "graph"), os.path.join(directory, "transformed")
        print_header()
        print_row("transform", run_step("transform", {
            "examples_dir": prepared["examples"], "schema_path": prepared["schema"], "transform_graph_dir": graph,
            "transformed_examples_dir": transformed, "label_column": LABEL}))
        print_row("trainer", run_step("trainer", {
            "examples_dir": transformed, "transform_graph_dir": graph, "schema_path": prepared["schema"],
            "model_dir": paths["model"], "model_run_dir": os.path.join(directory, "model_run"),
            "label_column": LABEL, "hyperparameters": hyperparameters}))
    if not model_repository.list_versions(paths["repository"], MODEL_NAME):
        model_repository.push(os.path.join(paths["model"], "Format-Serving"), paths["repository"], MODEL_NAME,
                              extra_files={"kubetfx_model.json": os.path.join(paths["model"], "kubetfx_model.json")})
    return paths


def evaluate(paths: dict, engine: str, with_baseline: bool, runs: int, out: str) -> dict:
    """``runs`` fresh-process Evaluator runs; medians of wall time, in-process time and peak RSS."""
    measured = []
    for i in range(runs):
        target = os.path.join(out, f"{engine}-{'baseline' if with_baseline else 'alone'}-{i}")
        kwargs = {"examples_dir": paths["examples"], "model_dir": paths["model"], "engine": engine,
                  "evaluation_dir": os.path.join(target, "evaluation"),
                  "blessing_dir": os.path.join(target, "blessing")}
        if with_baseline:
            kwargs.update(baseline_repository=paths["repository"], model_name=MODEL_NAME)
        shutil.rmtree(target, ignore_errors=True)  # the Evaluator refuses to overwrite its outputs
        measured.append(run_step("evaluator", kwargs))
    walls = [m["wall_seconds"] for m in measured]
    last = measured[-1]["result"]
    return {"engine": last["engine"], "baseline": with_baseline, "runs": runs,
            "wall_median": statistics.median(walls), "wall_min": min(walls), "wall_max": max(walls),
            "in_process_median": statistics.median(m["seconds_in_process"] for m in measured),
            "analysis_median": statistics.median(m["result"]["analysis_seconds"] for m in measured),
            "peak_rss_mb_median": statistics.median(m["peak_rss_mb"] for m in measured),
            "eval_examples": last["eval_examples"], "blessed": last["blessed"], "metrics": last["metrics"]}


def print_evaluator_header() -> None:
    print(f"{'engine':<7}{'baseline':>9}{'eval rows':>10}{'runs':>5}{'wall s (median, min-max)':>27}"
          f"{'in-proc s':>11}{'analysis s':>12}{'peak RSS MB':>13}{'blessed':>9}")


def print_evaluator_row(row: dict) -> None:
    spread = f"{row['wall_median']:.2f} ({row['wall_min']:.2f}-{row['wall_max']:.2f})"
    print(f"{row['engine']:<7}{str(row['baseline']):>9}{row['eval_examples']:>10}{row['runs']:>5}{spread:>27}"
          f"{row['in_process_median']:>11.2f}{row['analysis_median']:>12.2f}{row['peak_rss_mb_median']:>13.0f}"
          f"{row['blessed']:>9}", flush=True)


def agreement(rows: list[dict]) -> str:
    """Both engines' blessing and the largest relative difference of their Overall metrics."""
    by_engine = {(row["engine"], row["baseline"]): row for row in rows}
    lines = []
    for with_baseline in (False, True):
        fast, tfma = by_engine.get(("fast", with_baseline)), by_engine.get(("tfma", with_baseline))
        if not (fast and tfma):
            continue
        worst = max((abs(fast["metrics"][k] - v) / max(abs(v), 1e-12) for k, v in tfma["metrics"].items()),
                    default=0.0)
        same = fast["blessed"] == tfma["blessed"] and fast["metrics"].keys() == tfma["metrics"].keys()
        lines.append(f"  baseline={with_baseline}: {'same blessing and metrics' if same else 'DIFFERENT'}, "
                     f"largest relative difference of Overall metrics {worst:.2g}")
    return "\n".join(lines)


def bench_evaluator(title: str, paths: dict, args, out: str) -> list[dict]:
    print(f"\n{title}")
    print_evaluator_header()
    rows = []
    for with_baseline in (False, True):
        for engine, runs in (("fast", args.runs), ("tfma", args.tfma_runs)):
            if runs:
                rows.append(evaluate(paths, engine, with_baseline, runs, out))
                print_evaluator_row(rows[-1])
    print(agreement(rows))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="bench-results")
    parser.add_argument("--runs", type=int, default=3, help="fast-path runs per case (median reported)")
    parser.add_argument("--tfma-runs", type=int, default=3, help="TFMA runs per case (0: skip TFMA)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs on the synthetic rows")
    args = parser.parse_args()

    from kubetfx.pipelines.penguin import data as penguin_data
    from kubetfx.pipelines.synthetic import penguins

    root = os.path.join(args.workdir, "evaluator")
    results = {}
    csv = penguin_data.write_span(os.path.join(root, "data"))
    paths = trained_model("penguins", csv, root, {})
    results["penguins"] = bench_evaluator("Evaluator, penguins", paths, args,
                                          os.path.join(root, "runs-penguins"))
    data = os.path.join(args.workdir, "data", f"penguins-{args.rows}.csv")
    if not os.path.exists(data):
        penguins.write_csv(data, args.rows)
    paths = trained_model(f"synthetic-{args.rows}", data, root,
                          {"epochs": args.epochs, "batch_size": 512, "early_stopping_patience": 0})
    results["synthetic"] = bench_evaluator(f"Evaluator, synthetic penguin-like ({args.rows:,} rows)", paths, args,
                                           os.path.join(root, f"runs-{args.rows}"))
    with open(os.path.join(args.workdir, "bench_evaluator.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
