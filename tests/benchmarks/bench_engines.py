"""Benchmark: Transform and the Evaluator's TFMA path on N rows, locally and on Flink and Spark with 1 and 2 workers.

Each step runs in a fresh process (as a KFP task does); for an engine, inside the engines' network
namespace against a cluster started here with 1, then 2 TaskManagers / Spark workers (each with one
slot / core). Besides wall time it reports where the time goes: the engine's own job time (Flink:
the job's duration at the JobManager; Spark: the application's duration at the master), everything
outside it (imports, pipeline construction, submission, writing results), the SDK workers' start-up
(from the worker pool's request to the worker's control channel, median) and the shuffle (bytes
between tasks; Spark also the executors' shuffle write and fetch-wait time). One run per cell: only
ratios within one run of this script are meaningful.
Usage: python tests/benchmarks/bench_engines.py --rows 1000000 [--engines flink,spark] [--workers 2,1]
"""

import argparse
import datetime
import glob
import json
import os
import re
import statistics
import subprocess
import time

from bench_evaluator import MODEL_NAME, trained_model
from step_runner import run_step

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENGINES_SH = os.path.join(ROOT, "engines", "engines.sh")
STATE = os.environ.get("KUBETFX_ENGINES_STATE") or os.path.join(ROOT, "build", "engines")
EXEC = (ENGINES_SH, "exec", "--")
_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


def engines(*args: str) -> str:
    return subprocess.run([ENGINES_SH, *args], check=True, capture_output=True, text=True).stdout


def _in_netns_json(url: str):
    return json.loads(subprocess.run([*EXEC, "curl", "-sf", url], check=True, capture_output=True, text=True).stdout)


def _stamp(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def worker_startups(engine: str, since: float) -> tuple[list[float], list[float]]:
    """For the worker requests after ``since``: seconds from each request to that worker's control channel
    (process start, Beam imported), and to its first data channel (its first bundle: the pipeline's DoFns
    unpickled, TensorFlow & co. imported)."""
    pending, ready, first_data = {}, [], []
    waiting_data: dict[str, list[float]] = {}
    with open(os.path.join(STATE, engine, "logs", "worker-pool.log"), errors="replace") as handle:
        for line in handle:
            started = re.match(_STAMP + r" worker_pool: starting worker (\S+)", line)
            if started and _stamp(started.group(1)) >= since:
                pending.setdefault(started.group(2), []).append(_stamp(started.group(1)))
            control = re.match(_STAMP + r" worker (\S+) INFO .*Control channel established", line)
            if control and pending.get(control.group(2)):
                requested = pending[control.group(2)].pop(0)
                ready.append(_stamp(control.group(1)) - requested)
                waiting_data.setdefault(control.group(2), []).append(requested)
            data = re.match(_STAMP + r" worker (\S+) INFO .*Data channel established", line)
            if data and waiting_data.get(data.group(2)):
                first_data.append(_stamp(data.group(1)) - waiting_data[data.group(2)].pop(0))
    return ready, first_data


def flink_job(since: float) -> dict:
    jobs = [j for j in _in_netns_json("http://127.0.0.1:8081/jobs/overview")["jobs"] if j["start-time"] / 1000 >= since]
    job = max(jobs, key=lambda j: j["start-time"])
    detail = _in_netns_json(f"http://127.0.0.1:8081/jobs/{job['jid']}")
    shuffled = sum(v["metrics"].get("write-bytes", 0) for v in detail["vertices"])
    return {"job_seconds": job["duration"] / 1000, "shuffle_mb": shuffled / 1e6, "tasks": job["tasks"]["total"]}


def spark_job(since: float) -> dict:
    apps = [a for a in _in_netns_json("http://127.0.0.1:8080/json/")["completedapps"] if a["starttime"] / 1000 >= since]
    app = max(apps, key=lambda a: a["starttime"])
    totals = {"shuffle_mb": 0.0, "shuffle_write_s": 0.0, "fetch_wait_s": 0.0, "executor_run_s": 0.0}
    for path in glob.glob(os.path.join(STATE, "spark", "events", app["id"] + "*")):
        with open(path, errors="replace") as handle:
            for line in handle:
                if '"SparkListenerTaskEnd"' not in line:
                    continue
                metrics = json.loads(line).get("Task Metrics") or {}
                write, read = metrics.get("Shuffle Write Metrics", {}), metrics.get("Shuffle Read Metrics", {})
                totals["shuffle_mb"] += write.get("Shuffle Bytes Written", 0) / 1e6
                totals["shuffle_write_s"] += write.get("Shuffle Write Time", 0) / 1e9
                totals["fetch_wait_s"] += read.get("Fetch Wait Time", 0) / 1e3
                totals["executor_run_s"] += metrics.get("Executor Run Time", 0) / 1e3
    return {"job_seconds": app["duration"] / 1000, **totals}


def steps(paths: dict) -> dict:
    transform = {"examples_dir": paths["examples"], "schema_path": paths["schema"], "label_column": "species"}
    evaluator = {"examples_dir": paths["examples"], "model_dir": paths["model"], "engine": "tfma",
                 "baseline_repository": paths["repository"], "model_name": MODEL_NAME}
    return {
        "transform (materialize)": ("transform", {**transform, "materialize": True}, ("transform_graph_dir",
                                                                                     "transformed_examples_dir")),
        "transform (analyze only)": ("transform", {**transform, "materialize": False, "transformed_examples_dir": None},
                                     ("transform_graph_dir",)),
        "evaluator (TFMA, baseline)": ("evaluator", evaluator, ("evaluation_dir", "blessing_dir")),
    }


def run(config: str, engine: str, beam_args: list[str], paths: dict, out: str, only: list[str]) -> list[dict]:
    rows = []
    for name, (module, kwargs, outputs) in steps(paths).items():
        if only and not any(part in name for part in only):
            continue
        target = os.path.join(out, config, module + ("-analyze" if kwargs.get("materialize") is False else ""))
        kwargs = {**kwargs, **{key: os.path.join(target, key) for key in outputs}, "beam_pipeline_args": beam_args}
        started = time.time()
        measured = run_step(module, kwargs, EXEC if engine else ())
        row = {"config": config, "step": name, "wall_s": measured["wall_seconds"],
               "peak_rss_mb": measured["peak_rss_mb"]}
        if module == "evaluator":
            row["blessed"] = measured["result"]["blessed"]
        if engine:
            row.update(flink_job(started) if engine == "flink" else spark_job(started))
            row["outside_job_s"] = row["wall_s"] - row["job_seconds"]
            startups, first_bundles = worker_startups(engine, started)
            row["sdk_workers"] = len(startups)
            row["sdk_startup_s"] = statistics.median(startups) if startups else None
            row["sdk_first_bundle_s"] = statistics.median(first_bundles) if first_bundles else None
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def memory(engine: str) -> str:
    return engines("status").split(f"{engine}:", 1)[1].split("\n\n")[0].split("spark:")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="bench-results")
    parser.add_argument("--engines", default="flink,spark")
    parser.add_argument("--workers", default="2,1")
    parser.add_argument("--steps", default="", help="only the steps whose name contains one of these (comma list)")
    parser.add_argument("--no-local", action="store_true", help="skip the local default runs")
    args = parser.parse_args()

    from kubetfx.pipelines.synthetic import penguins

    data = os.path.join(args.workdir, "data", f"penguins-{args.rows}.csv")
    if not os.path.exists(data):
        penguins.write_csv(data, args.rows)
    root = os.path.join(args.workdir, "engines")
    paths = trained_model(f"synthetic-{args.rows}", data, root,
                          {"epochs": 1, "batch_size": 512, "early_stopping_patience": 0})
    paths["schema"] = os.path.join(root, f"synthetic-{args.rows}", "schema")
    out = os.path.join(root, "runs")
    subprocess.run(["rm", "-rf", out], check=True)
    only = [part for part in args.steps.split(",") if part]
    rows = [] if args.no_local else run("local default (FnApiRunner, 1 process)", "", [], paths, out, only)
    results = os.path.join(args.workdir, "bench_engines.json" if not only and not args.no_local
                           else f"bench_engines-{'-'.join(only) or 'all'}.json")
    for workers in [int(w) for w in args.workers.split(",") if w]:  # in the order given, each engine in turn
        for engine in [e for e in args.engines.split(",") if e]:
            engines("down", engine)
            started = time.time()
            engines("up", engine, "--workers", str(workers))
            up_seconds = time.time() - started
            beam_args = engines("args", engine).split()
            config = f"{engine}, {workers} worker{'s' if workers > 1 else ''}"
            print(f"{config}: up in {up_seconds:.1f} s; processes:{memory(engine)}", flush=True)
            for row in run(config, engine, beam_args, paths, out, only):
                rows.append({**row, "engine_up_s": up_seconds})
            print(f"{config}: after the runs:{memory(engine)}", flush=True)
            engines("down", engine)
            with open(results, "w") as handle:  # after every configuration: a partial run keeps what it measured
                json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
