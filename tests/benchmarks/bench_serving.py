"""Benchmark: the kubetfx predictor vs a naive kserve.Model, driven by `hey` from another process.

Each server runs in its own process on loopback ports and gets a bounded number of requests at
concurrency 1 and 16, with 1 and 32 instances per request, over V1 and V2 REST: from `hey` at
concurrency 16, from a single Python client timing each request at concurrency 1 (hey's latencies
come in 0.1 ms steps). Reported per case: requests/s, p50, p99, instances/s, and for kubetfx the
model call time inside the server (from /metrics). The floor is the in-process call of the
SavedModel's ``serving_raw`` signature (no HTTP, no JSON); the echo is the HTTP round trip without
kserve or a model. Rounds interleave the servers (the machine is shared); per case each measure's
median over the rounds is reported, and the table ends with issue #12's three targets.

Servers:
  kubetfx      python -m kubetfx.components.predictor (micro-batching, validation, quiet logs, uvloop)
  kubetfx-w2   the same with --workers 2
  kubetfx-logged  the same, logging every request to the prediction log (issue #9: within 10% of off)
  naive        a kserve.Model whose predict() calls the signature once per request, kserve defaults
               (per-request latency + access logs on) -- what the kserve docs lead to
  naive-quiet  the naive model with kserve's per-request logging turned off

Usage: python tests/benchmarks/bench_serving.py [--model_dir DIR] [--servers kubetfx,naive] [--quick]
Without --model_dir: the latest version in kubetfx-local/model-repository/penguin, else a penguin
model trained here (through the executors) into bench-results/serving/.
Writes bench-results/bench_serving.json and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL_NAME = "penguin"
ALL_SERVERS = ("kubetfx", "kubetfx-logged", "kubetfx-w2", "kubetfx-base", "naive", "naive-quiet")


# ---------------------------------------------------------------------- the naive baseline server


def naive_server(model_dir: str, http_port: int, grpc_port: int, quiet: bool) -> None:
    """A kserve.Model that calls the SavedModel signature once per request (the baseline)."""
    import numpy as np
    import tensorflow as tf
    import kserve
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    serving = os.path.join(model_dir, "Format-Serving")
    saved = serving if os.path.isdir(serving) else model_dir

    class NaiveModel(kserve.Model):
        def load(self):
            self.loaded = tf.saved_model.load(saved)
            self.signature = self.loaded.signatures["serving_raw"]
            _, kwargs = self.signature.structured_input_signature
            self.dtypes = {name: spec.dtype.as_numpy_dtype for name, spec in kwargs.items()}
            self.ready = True
            return True

        def predict(self, payload, headers=None):
            if isinstance(payload, InferRequest):
                columns = {i.name: i.as_numpy().reshape(-1).astype(self.dtypes[i.name]) for i in payload.inputs}
                out = self.signature(**columns)
                outputs = [InferOutput(name=n, shape=list(out[n].shape), datatype=d,
                                       data=[v.decode() if isinstance(v, bytes) else v
                                             for v in out[n].numpy().reshape(-1).tolist()])
                           for n, d in (("probabilities", "FP32"), ("class_ids", "INT64"), ("classes", "BYTES"))]
                return InferResponse(response_id=payload.id or "0", model_name=self.name, infer_outputs=outputs)
            instances = payload["instances"]
            columns = {name: np.array([inst[name] for inst in instances], dtype=dtype)
                       for name, dtype in self.dtypes.items()}
            out = self.signature(**columns)
            names = [c.decode() for c in out["class_names"].numpy()[0]]
            return {"predictions": [{"class": names[i], "probabilities": dict(zip(names, p))}
                                    for i, p in zip(out["class_ids"].numpy().tolist(),
                                                    out["probabilities"].numpy().tolist())]}

    model = NaiveModel(MODEL_NAME)
    model.load()
    kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1,
                       enable_latency_logging=not quiet).start([model])


def echo_server(http_port: int) -> None:
    """uvicorn (httptools, uvloop) answering a fixed V1-sized JSON: the HTTP + client cost without kserve/model."""
    import uvicorn

    body = json.dumps({"predictions": [{"class": "Adelie", "class_id": 0, "probabilities": {
        "Adelie": 0.98, "Gentoo": 0.01, "Chinstrap": 0.01}}], "model_name": MODEL_NAME, "model_version": "1"}).encode()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=http_port, access_log=False, log_level="warning")


# ---------------------------------------------------------------------- the floor


def floor(model_dir: str, repeats: int = 400) -> dict:
    """Median in-process signature call time (ms) for 1 and 32 instances."""
    import numpy as np
    import tensorflow as tf

    serving = os.path.join(model_dir, "Format-Serving")
    signature = tf.saved_model.load(serving if os.path.isdir(serving) else model_dir).signatures["serving_raw"]
    instances = penguin_instances(model_dir, 32)
    _, kwargs = signature.structured_input_signature
    result = {}
    for batch in (1, 32):
        columns = {name: np.array([inst[name] for inst in instances[:batch]], dtype=spec.dtype.as_numpy_dtype)
                   for name, spec in kwargs.items()}
        for _ in range(30):
            signature(**columns)
        for gap, key in ((0.0, f"batch{batch}_ms"), (0.001, f"batch{batch}_after_1ms_idle_ms")):
            times = []
            for _ in range(repeats):
                if gap:
                    time.sleep(gap)  # requests arrive with gaps: TF's threads and caches are cold-ish
                start = time.perf_counter()
                signature(**columns)
                times.append((time.perf_counter() - start) * 1000.0)
            result[key] = round(statistics.median(times), 4)
    return result


# ---------------------------------------------------------------------- model and payloads


def model_features(model_dir: str) -> list[dict]:
    with open(os.path.join(model_dir, "kubetfx_model.json"), encoding="utf-8") as handle:
        return json.load(handle)["raw_features"]


def penguin_instances(model_dir: str, count: int) -> list[dict]:
    """Real penguin rows (no missing values) as V1 instances over the model's features."""
    from kubetfx.pipelines.penguin import data

    features = model_features(model_dir)
    table = data.load_table(drop_missing=True).to_pylist()
    instances = []
    for row in table[:count]:
        instance = {}
        for feature in features:
            value = row[feature["name"]]
            instance[feature["name"]] = (float(value) if feature["dtype"] == "float32" else
                                         int(value) if feature["dtype"] == "int64" else str(value))
        instances.append(instance)
    return instances


def payloads(model_dir: str, workdir: str) -> dict:
    features = model_features(model_dir)
    datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
    files = {}
    for batch in (1, 32):
        instances = penguin_instances(model_dir, batch)
        v1 = {"instances": instances}
        v2 = {"inputs": [{"name": f["name"], "datatype": datatypes[f["dtype"]], "shape": [batch],
                          "data": [inst[f["name"]] for inst in instances]} for f in features]}
        for protocol, body in (("v1", v1), ("v2", v2)):
            path = os.path.join(workdir, f"payload-{protocol}-b{batch}.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(body, handle)
            files[(protocol, batch)] = path
    return files


def find_or_train_model(workdir: str) -> str:
    """The latest pushed penguin version, else a model trained here (cached in workdir)."""
    from kubetfx.components.common import model_repository

    repository = os.path.join(ROOT, "kubetfx-local", "model-repository")
    version = model_repository.latest_version(repository, MODEL_NAME)
    if version is not None:
        return model_repository.version_path(repository, MODEL_NAME, version)
    model_dir = os.path.join(workdir, "model")
    if os.path.isfile(os.path.join(model_dir, "kubetfx_model.json")):
        return model_dir
    print("no pushed penguin model: training one through the executors (~30 s)", flush=True)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--train", workdir], check=True, cwd=ROOT,
                   timeout=900)
    return model_dir


def _train(workdir: str) -> None:
    from kubetfx.components.example_gen import executor as example_gen
    from kubetfx.components.schema_gen import executor as schema_gen
    from kubetfx.components.statistics_gen import executor as statistics_gen
    from kubetfx.components.trainer import executor as trainer
    from kubetfx.components.transform import executor as transform
    from kubetfx.pipelines.penguin import data

    build = os.path.join(workdir, "train")
    shutil.rmtree(build, ignore_errors=True)
    paths = {k: os.path.join(build, k) for k in ("examples", "statistics", "schema", "graph", "transformed", "run")}
    example_gen.run(data.write_span(os.path.join(build, "data")), paths["examples"], label_column="species")
    statistics_gen.run(paths["examples"], paths["statistics"])
    schema_gen.run(paths["statistics"], paths["schema"], label_column="species")
    transform.run(paths["examples"], paths["schema"], paths["graph"], paths["transformed"], label_column="species")
    trainer.run(paths["transformed"], paths["graph"], paths["schema"], os.path.join(workdir, "model"), paths["run"],
                hyperparameters={"epochs": 30}, seed=42)


# ---------------------------------------------------------------------- servers and load


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_server(kind: str, model_dir: str, log_path: str, extra_args=(), baseline: str = ""):
    """Start one server (see the module doc) on free ports; (process, http port, log file) once it is ready."""
    http_port, grpc_port = free_ports(2)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if kind == "echo":
        command = [sys.executable, os.path.abspath(__file__), "--echo-server", "--http_port", str(http_port)]
    elif kind.startswith("kubetfx"):
        command = [sys.executable, "-m", "kubetfx.components.predictor", "--model_dir", model_dir, "--model_name",
                   MODEL_NAME, "--http_port", str(http_port), "--grpc_port", str(grpc_port), "--grace_period_s", "3"]
        if kind == "kubetfx-w2":
            command += ["--workers", "2"]
        if kind == "kubetfx-logged":  # every request's features and prediction to the prediction log
            command += ["--prediction_log_dir", tempfile.mkdtemp(prefix="kubetfx-bench-log-"),
                        "--prediction_log_sample_rate", "1.0"]
        if kind == "kubetfx-base":
            if not baseline:
                raise RuntimeError("the kubetfx-base server needs --baseline DIR")
            env["PYTHONPATH"] = os.path.abspath(baseline)  # DIR/kubetfx/ comes before the editable install
        command += list(extra_args)
    else:
        command = [sys.executable, os.path.abspath(__file__), "--naive-server", "--model_dir", model_dir,
                   "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
        if kind == "naive-quiet":
            command.append("--quiet")
    log = open(log_path, "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
                               env=env)
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{http_port}/v2/models/{MODEL_NAME}/ready"
    if kind == "echo":
        url = f"http://127.0.0.1:{http_port}/"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, http_port, log
        except OSError:
            pass
        time.sleep(0.3)
    stop_server(process, log)
    raise RuntimeError(f"{kind} server not ready in 120 s; see {log_path}")


def stop_server(process, log) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    log.close()


def percentile(sorted_values: list, p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))]


def hey(url: str, payload: str, requests: int, concurrency: int) -> dict:
    """Run hey (-n bounded, 120 s cap); req/s and latency percentiles from its per-request CSV."""
    command = ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
               "-D", payload, "-o", "csv", url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    latencies = sorted(float(r["response-time"]) * 1000.0 for r in rows)
    codes = {}
    for r in rows:
        codes[r["status-code"]] = codes.get(r["status-code"], 0) + 1
    span = max(float(r["offset"]) + float(r["response-time"]) for r in rows)
    return {"requests": len(rows), "rps": round(len(rows) / span, 1), "p50_ms": round(percentile(latencies, 50), 3),
            "p99_ms": round(percentile(latencies, 99), 3), "status": codes, "client": "hey"}


def probe(url: str, payload: str, requests: int) -> dict:
    """Concurrency 1, timed per request with perf_counter on one kept-alive connection.

    hey writes latencies in 0.1 ms steps, too coarse to compare ~1 ms medians at concurrency 1;
    this client's own cost (~0.1 ms) is in every server's numbers alike, and in the echo's.
    """
    parts = urllib.parse.urlsplit(url)
    with open(payload, "rb") as handle:
        body = handle.read()
    headers = {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    latencies, codes = [], {}
    start = time.perf_counter()
    try:
        for _ in range(requests):
            sent = time.perf_counter()
            connection.request("POST", parts.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            latencies.append((time.perf_counter() - sent) * 1000.0)
            codes[str(response.status)] = codes.get(str(response.status), 0) + 1
    finally:
        connection.close()
    span = time.perf_counter() - start
    latencies.sort()
    return {"requests": requests, "rps": round(requests / span, 1), "p50_ms": round(percentile(latencies, 50), 4),
            "p99_ms": round(percentile(latencies, 99), 4), "mean_ms": round(statistics.fmean(latencies), 4),
            "status": codes, "client": "python"}


def load(url: str, payload: str, requests: int, concurrency: int) -> dict:
    """One case: the precise single client at concurrency 1, hey above."""
    return probe(url, payload, requests) if concurrency == 1 else hey(url, payload, requests, concurrency)


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default="")
    parser.add_argument("--servers", default="kubetfx,naive", help=f"comma list of {', '.join(ALL_SERVERS)}")
    parser.add_argument("--requests", type=int, default=3000, help="requests per case with 1 instance")
    parser.add_argument("--quick", action="store_true", help="a third of the requests, one round (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all servers (interleaved: the machine is shared); the median is reported")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "bench-results"))
    parser.add_argument("--baseline", default="",
                        help="for the kubetfx-base server: a dir holding kubetfx/{components,pipelines} of another "
                             "revision, e.g. mkdir -p DIR/kubetfx && git archive REV components pipelines | "
                             "tar -x -C DIR/kubetfx && touch DIR/kubetfx/__init__.py (before/after tables)")
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train", default="", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--http_port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--grpc_port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        sys.argv = sys.argv[:1]  # kserve parses sys.argv at import
        naive_server(args.model_dir, args.http_port, args.grpc_port, args.quiet)
        return
    if args.echo_server:
        echo_server(args.http_port)
        return
    if args.floor:
        print(json.dumps(floor(args.model_dir)))
        return
    if args.train:
        _train(args.train)
        return
    if not shutil.which("hey"):
        sys.exit("bench_serving: needs the `hey` load generator (Debian: apt-get install -y hey; `make bench-serve` "
                 "installs it)")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(servers) - set(ALL_SERVERS)
    if unknown:
        sys.exit(f"unknown server(s): {', '.join(sorted(unknown))}; choose from {', '.join(ALL_SERVERS)}")
    workdir = os.path.join(args.workdir, "serving")
    os.makedirs(workdir, exist_ok=True)
    model_dir = os.path.abspath(args.model_dir) if args.model_dir else find_or_train_model(workdir)
    files = payloads(model_dir, workdir)
    base_n = max(200, args.requests // (3 if args.quick else 1))
    if args.quick:
        args.rounds = 1

    load_start = round(os.getloadavg()[0], 2)
    print(f"model: {model_dir}\nmachine: {os.cpu_count()} cores, load average {load_start:.2f}", flush=True)
    measured_floor = json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), "--floor", "--model_dir",
                                                model_dir], capture_output=True, text=True, check=True, cwd=ROOT,
                                               timeout=300).stdout.strip().splitlines()[-1])
    print(f"floor (in-process signature call, median): batch 1 {measured_floor['batch1_ms']:.3f} ms "
          f"({measured_floor['batch1_after_1ms_idle_ms']:.3f} ms after 1 ms idle), batch 32 "
          f"{measured_floor['batch32_ms']:.3f} ms\n", flush=True)

    results = []
    echo = {}
    process, port, log = start_server("echo", model_dir, os.path.join(workdir, "echo.log"))
    try:
        url = f"http://127.0.0.1:{port}/"
        hey(url, files[("v1", 1)], 300, 4)
        for concurrency in (1, 16):
            echo[f"c{concurrency}"] = load(url, files[("v1", 1)], base_n, concurrency)
    finally:
        stop_server(process, log)
    print(f"http echo (uvicorn, no kserve, no model), V1 b1: c1 {echo['c1']['rps']:.0f} req/s p50 "
          f"{echo['c1']['p50_ms']:.3f} ms; c16 {echo['c16']['rps']:.0f} req/s\n", flush=True)

    raw = []
    for round_index in range(args.rounds):
        for kind in servers:
            raw += run_server_cases(kind, model_dir, workdir, files, base_n, round_index, args.baseline)
    results = median_results(raw)

    print("\n" + table(results, servers, measured_floor, echo))
    out = {"model_dir": model_dir, "cores": os.cpu_count(), "load_average_at_start": load_start,
           "load_average_at_end": round(os.getloadavg()[0], 2), "rounds": args.rounds,
           "floor": measured_floor, "http_echo": echo, "results": results, "raw_results": raw,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = os.path.join(args.workdir, "bench_serving.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=2)
    print(f"\nsaved {path}")


def median_results(raw: list[dict]) -> list[dict]:
    """Per case, each measure's median over the rounds (the machine is shared: rounds interleave servers)."""
    cases: dict = {}
    for r in raw:
        cases.setdefault((r["server"], r["protocol"], r["batch"], r["concurrency"]), []).append(r)
    chosen = []
    for runs in cases.values():
        pick = dict(runs[0])
        for key in ("rps", "p50_ms", "p99_ms", "mean_ms", "instances_per_s", "model_call_ms", "model_call_p50_ms",
                    "instances_per_call"):
            values = [r[key] for r in runs if key in r]
            if values:
                pick[key] = round(statistics.median(values), 4)
        pick["rps_all_rounds"] = sorted(r["rps"] for r in runs)
        chosen.append(pick)
    return chosen


def run_server_cases(kind: str, model_dir: str, workdir: str, files: dict, base_n: int, round_index: int,
                     baseline: str = "") -> list:
    results = []
    process, port, log = start_server(kind, model_dir, os.path.join(workdir, f"{kind}.log"), baseline=baseline)
    try:
        urls = {"v1": f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict",
                "v2": f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer"}
        hey(urls["v1"], files[("v1", 1)], 500, 16)  # warm-up (all code paths, batch sizes)
        hey(urls["v2"], files[("v2", 1)], 500, 16)
        probe(urls["v1"], files[("v1", 1)], 200)
        for protocol in ("v1", "v2"):
            for batch in (1, 32):
                for concurrency in (1, 16):
                    n = base_n if batch == 1 else max(200, base_n // 3)
                    before = model_call_metric(port) if kind.startswith("kubetfx") else None
                    result = load(urls[protocol], files[(protocol, batch)], n, concurrency)
                    if before is not None:
                        after = model_call_metric(port)
                        calls = after["count"] - before["count"]
                        if calls:
                            result["model_call_ms"] = round((after["sum"] - before["sum"]) / calls * 1000.0, 4)
                            result["model_call_p50_ms"] = round(histogram_median(before, after) * 1000.0, 4)
                            result["instances_per_call"] = round(n * batch / calls, 2)
                    result.update(server=kind, protocol=protocol, batch=batch, concurrency=concurrency,
                                  instances_per_s=round(result["rps"] * batch, 1), round=round_index)
                    results.append(result)
                    bad = {c: k for c, k in result["status"].items() if c != "200"}
                    extra = (f"  (in-server model call p50 {result['model_call_p50_ms']:.3f} ms, mean "
                             f"{result['model_call_ms']:.3f} ms, {result['instances_per_call']:.1f} instances/call)"
                             if "model_call_ms" in result else "")
                    print(f"r{round_index} {kind:<12}{protocol:<4}b{batch:<4}c{concurrency:<4}{result['rps']:>9.1f} req/s "
                          f"p50 {result['p50_ms']:>7.3f} ms  p99 {result['p99_ms']:>7.3f} ms{extra}"
                          + (f"  NON-200: {bad}" if bad else ""), flush=True)
    finally:
        stop_server(process, log)
    return results


def model_call_metric(port: int) -> dict:
    """kubetfx_predictor_model_call_seconds from the server's /metrics: sum, count and {le: cumulative count}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    metric = {"sum": 0.0, "count": 0.0, "buckets": {}}
    prefix = "kubetfx_predictor_model_call_seconds_"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        name, value = line.rsplit(" ", 1)
        kind = name[len(prefix):].split("{")[0]
        if kind in ("sum", "count"):
            metric[kind] = float(value)
        elif kind == "bucket":
            metric["buckets"][float(name.split('le="')[1].split('"')[0])] = float(value)
    return metric


def histogram_median(before: dict, after: dict) -> float:
    """The median of the observations between two scrapes, interpolated inside its bucket (as Prometheus does)."""
    bounds = sorted(after["buckets"])
    counts = [after["buckets"][b] - before["buckets"].get(b, 0.0) for b in bounds]
    half, lower, below = counts[-1] / 2.0, 0.0, 0.0
    for bound, cumulative in zip(bounds, counts):
        if cumulative >= half and cumulative > below:
            upper = bound if bound != float("inf") else lower
            return lower + (upper - lower) * (half - below) / (cumulative - below)
        lower, below = bound, cumulative
    return float("nan")


def table(results: list[dict], servers: list[str], measured_floor: dict, echo: dict) -> str:
    by = {(r["server"], r["protocol"], r["batch"], r["concurrency"]): r for r in results}
    header = f"{'case':<16}" + "".join(f"{s + ' req/s':>20}{'p50 ms':>9}{'p99 ms':>9}" for s in servers)
    lines = [header, "-" * len(header)]
    for protocol in ("v1", "v2"):
        for batch in (1, 32):
            for concurrency in (1, 16):
                row = f"{protocol} b{batch} c{concurrency}".ljust(16)
                for server in servers:
                    r = by.get((server, protocol, batch, concurrency))
                    row += (f"{r['rps']:>20.1f}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.2f}" if r else " " * 38)
                lines.append(row)
    lines.append("")
    lines.append("concurrency 1: p50 from a timed single client (µs steps); concurrency 16: hey. Targets (issue #12): "
                 "V2 b1 c16 >= 3x naive, c1 p50 <= naive (V1, V2), server work besides the model call <= 0.5 ms")
    lines.append(f"floor, in-process signature call (median): {measured_floor['batch1_ms']:.3f} ms hot loop, "
                 f"{measured_floor['batch1_after_1ms_idle_ms']:.3f} ms after 1 ms idle; HTTP + client round trip "
                 f"without kserve or model (uvicorn echo) p50 {echo['c1']['p50_ms']:.3f} ms")
    for server in [s for s in servers if s.startswith("kubetfx")]:
        lines.append(f"{server}:")
        for protocol in ("v1", "v2"):
            ours, naive = by.get((server, protocol, 1, 16)), by.get(("naive", protocol, 1, 16))
            if ours and naive:
                ratio = ours["rps"] / naive["rps"]
                lines.append(f"  {protocol.upper()} b1 c16: {ratio:.2f}x the naive throughput; p99 {ours['p99_ms']:.2f} "
                             f"vs {naive['p99_ms']:.2f} ms" + (f"  [target >= 3x: {'met' if ratio >= 3 else 'MISSED'}]"
                                                              if protocol == "v2" else ""))
            ours, naive = by.get((server, protocol, 1, 1)), by.get(("naive", protocol, 1, 1))
            if ours and naive:
                lines.append(f"  {protocol.upper()} b1 c1: p50 {ours['p50_ms']:.3f} ms vs naive {naive['p50_ms']:.3f} ms "
                             f"[target <=: {'met' if ours['p50_ms'] <= naive['p50_ms'] else 'MISSED'}]")
            plain = by.get(("kubetfx", protocol, 1, 16))
            logged = by.get((server, protocol, 1, 16))
            if server == "kubetfx-logged" and plain and logged:
                share = logged["rps"] / plain["rps"]
                lines.append(f"  {protocol.upper()} b1 c16 with the prediction log at 100%: {share:.1%} of the "
                             f"throughput without it [target >= 90%: {'met' if share >= 0.9 else 'MISSED'}]")
            if ours and "model_call_p50_ms" in ours:
                work = ours["p50_ms"] - ours["model_call_p50_ms"] - echo["c1"]["p50_ms"]
                lines.append(f"    server work besides the model call = p50 {ours['p50_ms']:.3f} - model call p50 "
                             f"{ours['model_call_p50_ms']:.3f} (/metrics) - echo p50 {echo['c1']['p50_ms']:.3f} = "
                             f"{work:.3f} ms [target <= 0.5 ms: {'met' if work <= 0.5 else 'MISSED'}]")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
