"""Benchmark: the BulkInferrer at N rows beside the predictor's own serving path, on this machine.

Both sides run the same model (the latest pushed penguin version, else one trained here) in fresh
processes. BulkInferrer: ``kubetfx predict``'s engine over a CSV of N synthetic penguin rows
(CSV read as text, the predictor's request checks per row, the model in batches, PredictionLogs +
Parquet written), wall time, rows/s and peak RSS, at N/10 and N rows (memory must not grow with N).
Serving path, per batch size (its best batch size is the target), three ways:
- the predictor's request path in process: what the server runs for each V2 REST request minus
  the socket (orjson parse, the KServe model's preprocess → predict through its micro-batcher →
  postprocess, the response written with orjson);
- its parse and model call alone: a V2 JSON body parsed and checked (``RequestSchema.from_v2_json``),
  the signature called, the outputs turned into lists, no response written: a bound no request can
  reach, the strictest comparison;
- the served predictor over HTTP (V2 REST, ``hey``).
On a shared machine only side-by-side numbers compare: the N-row Parquet run and the two in-process
measures alternate ``--rounds`` times, and each ratio is the median of each round's own.
Usage: python tests/benchmarks/bench_bulk_inferrer.py --rows 1000000 [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BATCH_SIZES = (1, 8, 32, 128, 512, 2048, 8192, 65536)  # 65536: the BulkInferrer's own model call
HTTP_BATCH_SIZES = (32, 512, 2048, 8192, 65536)

_BULK = r"""
import json, resource, sys, time
started = time.time()
from kubetfx.components.bulk_inferrer import executor
result = executor.predict_to_file(sys.argv[1], sys.argv[2], sys.argv[3], model_name="penguin")
print(json.dumps({"seconds": time.time() - started, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024, "result": result}, default=str))
"""

_SERVING = r"""
import json, sys, time
import pyarrow.csv as pacsv
from kubetfx.components.bulk_inferrer import executor
servable = executor.load_model(sys.argv[1])
table = pacsv.read_csv(sys.argv[2]).slice(0, max(json.loads(sys.argv[3]))).to_pylist()
datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
results = {}
for batch in json.loads(sys.argv[3]):
    rows = table[:batch]
    body = {"inputs": [{"name": f.name, "datatype": datatypes[f.dtype], "shape": [batch],
                        "data": [row[f.name] for row in rows]} for f in servable.spec.features]}
    text = json.dumps(body)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        columns, n = servable.rules.from_v2_json(json.loads(text))
        outputs = servable.run(columns)
        response = {name: array.reshape(-1).tolist() for name, array in outputs.items()}
        done += n
    results[batch] = round(done / (time.perf_counter() - started), 1)
print(json.dumps(results))
"""


_PREDICTOR = r"""
import asyncio, json, sys, time
import orjson, pyarrow.csv as pacsv
from kubetfx.components.predictor import rest_front
from kubetfx.components.predictor.model import KubetfxPredictor, ServingOptions
from kubetfx.components.predictor.repository_watch import ModelSource
from kubetfx.components.predictor.schema_check import V2JsonRequest
batches = json.loads(sys.argv[3])
predictor = KubetfxPredictor("penguin", ModelSource(model_name="penguin", model_dir=sys.argv[1]),
                             ServingOptions(max_batch_size=max(batches)))
predictor.load()
table = pacsv.read_csv(sys.argv[2]).slice(0, max(batches)).to_pylist()
datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
async def main():
    results = {}
    for batch in batches:
        rows = table[:batch]
        body = orjson.dumps({"inputs": [{"name": f.name, "datatype": datatypes[f.dtype], "shape": [batch],
                                         "data": [row[f.name] for row in rows]} for f in predictor._servable.spec.features]})
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3.0:
            response, _ = await predictor(V2JsonRequest(orjson.loads(body)))
            answer, _ = rest_front._encode(response)
            done += batch
        results[batch] = round(done / (time.perf_counter() - started), 1)
    print(json.dumps(results))
asyncio.run(main())
"""


def bulk(model_dir: str, data: str, out: str) -> dict:
    result = subprocess.run([sys.executable, "-c", _BULK, model_dir, data, out], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bulk inference failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _bulk_run(model_dir: str, data: str, workdir: str, rows: int, table_format: str) -> dict:
    out = os.path.join(workdir, f"scored-{rows}.{table_format}")
    started = time.perf_counter()
    run = bulk(model_dir, data, out)
    run["wall_seconds"] = time.perf_counter() - started
    r = run["result"]
    print(f"BulkInferrer, {rows} rows -> {table_format}: {r['scored']} scored, {r['rejected']} rejected, "
          f"{run['wall_seconds']:.1f} s wall ({r['seconds']:.1f} s scoring: {r['rows_per_second']:.0f} "
          f"rows/s; model calls {r['model_seconds']:.1f} s), peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    return run


def _in_process(script: str, model_dir: str, data: str) -> dict:
    """rows/s per batch size of one of the in-process serving measures (a fresh process)."""
    serving = subprocess.run([sys.executable, "-c", script, model_dir, data, json.dumps(BATCH_SIZES)],
                             capture_output=True, text=True)
    if serving.returncode != 0:
        sys.exit(f"serving path failed:\n{serving.stderr[-3000:]}")
    return {int(batch): rps for batch, rps in json.loads(serving.stdout.strip().splitlines()[-1]).items()}


def serving_over_http(model_dir: str, data: str, workdir: str) -> dict:
    """rows/s of the served predictor (V2 REST) per batch size, with hey; {} when hey is not installed."""
    import shutil

    import pyarrow.csv as pacsv

    from bench_serving import MODEL_NAME, hey, model_features, start_server, stop_server

    if not shutil.which("hey"):
        print("hey not installed (make bench-serve installs it): the HTTP serving path is not measured")
        return {}
    features = model_features(model_dir)
    rows = pacsv.read_csv(data).slice(0, max(HTTP_BATCH_SIZES)).to_pylist()
    datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
    process, port, log = start_server("kubetfx", model_dir, os.path.join(workdir, "predictor.log"),
                                      extra_args=("--max_batch_size", str(max(HTTP_BATCH_SIZES))))
    results = {}
    try:
        for batch in HTTP_BATCH_SIZES:
            body = {"inputs": [{"name": f["name"], "datatype": datatypes[f["dtype"]], "shape": [batch],
                                "data": [row[f["name"]] for row in rows[:batch]]} for f in features]}
            payload = os.path.join(workdir, f"v2-{batch}.json")
            with open(payload, "w", encoding="utf-8") as handle:
                json.dump(body, handle)
            measured = hey(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer", payload,
                           max(200, 200_000 // batch), 4)
            results[batch] = round(measured["rps"] * batch, 1)
    finally:
        stop_server(process, log)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="BulkInferrer (N rows, Parquet) and serving path pairs")
    parser.add_argument("--workdir", default=os.path.join("bench-results", "bulk"))
    args = parser.parse_args()
    from bench_serving import find_or_train_model

    from kubetfx.pipelines.synthetic import penguins

    os.makedirs(args.workdir, exist_ok=True)
    model_dir = find_or_train_model(args.workdir)
    print(f"model: {model_dir}", flush=True)
    sizes = sorted({max(1, args.rows // 10), args.rows})
    files = {}
    for rows in sizes:
        files[rows] = os.path.join(args.workdir, f"penguins-{rows}.csv")
        if not os.path.isfile(files[rows]):
            penguins.write_csv(files[rows], rows)
    measured, rounds = {}, []
    for rows in sizes:
        for table_format in ("parquet", "csv"):
            measured[(rows, table_format)] = _bulk_run(model_dir, files[rows], args.workdir, rows, table_format)
    measures = {"request path": _PREDICTOR, "parse + model call": _SERVING}
    for index in range(args.rounds):
        run = measured[(args.rows, "parquet")] if index == 0 else \
            _bulk_run(model_dir, files[args.rows], args.workdir, args.rows, "parquet")
        paths = {name: _in_process(script, model_dir, files[sizes[0]]) for name, script in measures.items()}
        rounds.append((run["result"]["rows_per_second"], paths))
        print(f"round {index + 1}: BulkInferrer {rounds[-1][0]:.0f} rows/s; serving in process, best batch: "
              + "; ".join(f"{name} {max(path.values()):.0f} rows/s ({rounds[-1][0] / max(path.values()):.2f}x)"
                          for name, path in paths.items()), flush=True)
    http = serving_over_http(model_dir, files[sizes[0]], args.workdir)
    top = statistics.median(bulk for bulk, _ in rounds)
    wall = args.rows / measured[(args.rows, "parquet")]["wall_seconds"]
    print(f"\nAt {args.rows} rows (medians of {len(rounds)} rounds): BulkInferrer {top:.0f} rows/s scoring "
          f"({wall:.0f} rows/s with the process start and model load), Parquet + PredictionLogs; peak RSS "
          + ", ".join(f"{rows} rows {measured[(rows, 'parquet')]['peak_rss_mb']:.0f} MB" for rows in sizes))
    titles = {"request path": "the predictor's request path in process (orjson, preprocess -> micro-batcher -> "
                              "postprocess, response written)",
              "parse + model call": "its parse and model call alone (no response written: a bound)"}
    for name, title in titles.items():
        path = {batch: statistics.median(p[name][batch] for _, p in rounds) for batch in rounds[0][1][name]}
        best = max(path, key=path.get)
        ratio = statistics.median(bulk / max(p[name].values()) for bulk, p in rounds)
        print(f"Serving, {title}, rows/s: " + ", ".join(f"batch {b}: {v:.0f}" for b, v in path.items()))
        print(f"  best {path[best]:.0f} (batch {best}): BulkInferrer {ratio:.2f}x (median of same-round ratios)")
    if http:
        best = max(http, key=http.get)
        print("Serving over HTTP (V2 REST, hey, concurrency 4), rows/s: "
              + ", ".join(f"batch {b}: {v:.0f}" for b, v in http.items()))
        print(f"  best {http[best]:.0f} (batch {best}): BulkInferrer {top / http[best]:.2f}x (medians)")

if __name__ == "__main__":
    main()
