"""Benchmark: the predictor under hostile traffic -- good V1 clients beside clients sending bad requests.

What a user's load test does (issue #12): for ``--duration`` seconds (default 30), several `hey`
processes hit one predictor at once:

  good-v1            good V1 requests (one real penguin instance), concurrency 8
  bad-v1             V1 with an unknown category and a string for a number, concurrency 4
  truncated-json     a V1 body cut in half, concurrency 2
  v1-body-on-v2      a V1-shaped body with 1e309, null, a list and a negative value, sent to V2, concurrency 2
  bad-v2-fp32        a V2 request whose FP32 data holds 1e309 and a string, concurrency 2
  v2-fp32-no-shape   a sloppier one: a single FP32 input with 1e309 and a string and no shape, concurrency 2

Reported per stream: status codes and transport errors (connection resets); for the server: how much
its log grew and how many tracebacks it holds; afterwards the server must still be ready and answer
a good request correctly. The run passes when no stream got a 5xx or a transport error, the good
stream got only 200s, and the log grew by less than ``--max_log_bytes`` (1 MB). Exit code 0 when it
passes, 1 when not (the table says what failed).

Usage: python tests/benchmarks/bench_abuse.py [--model_dir DIR] [--duration 30] [--server_args "..."]
Writes bench-results/bench_abuse.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_serving  # noqa: E402  (the shared model, payload and server helpers)

MODEL_NAME = bench_serving.MODEL_NAME
V1_PATH = f"/v1/models/{MODEL_NAME}:predict"
V2_PATH = f"/v2/models/{MODEL_NAME}/infer"


def streams(model_dir: str) -> list[dict]:
    """The traffic mix: (name, path, body bytes, concurrency, what counts as right)."""
    instances = bench_serving.penguin_instances(model_dir, 2)
    good = json.dumps({"instances": instances[:1]}).encode()
    bad_v1 = [dict(instance) for instance in instances]
    bad_v1[0]["island"] = "Atlantis"
    bad_v1[1]["bill_length_mm"] = "long"
    v1_on_v2 = dict(instances[0], bill_length_mm="__INF__", bill_depth_mm=None, flipper_length_mm=[181],
                    body_mass_g=-3750)
    datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
    features = bench_serving.model_features(model_dir)
    first_float = next(f["name"] for f in features if f["dtype"] == "float32")
    v2_inputs = [{"name": f["name"], "datatype": datatypes[f["dtype"]], "shape": [2],
                  "data": ["__INF__", "not a number"] if f["name"] == first_float
                  else [instance[f["name"]] for instance in instances]} for f in features]

    def raw(body) -> bytes:  # 1e309 is valid JSON syntax but no float: json.dumps cannot write it
        return json.dumps(body).replace('"__INF__"', "1e309").encode()

    return [
        {"name": "good-v1", "path": V1_PATH, "body": good, "concurrency": 8, "good": True},
        {"name": "bad-v1", "path": V1_PATH, "body": raw({"instances": bad_v1}), "concurrency": 4},
        {"name": "truncated-json", "path": V1_PATH, "body": good[: len(good) // 2], "concurrency": 2},
        {"name": "v1-body-on-v2", "path": V2_PATH, "body": raw({"instances": [v1_on_v2]}), "concurrency": 2},
        {"name": "bad-v2-fp32", "path": V2_PATH, "body": raw({"inputs": v2_inputs}), "concurrency": 2},
        {"name": "v2-fp32-no-shape", "path": V2_PATH, "concurrency": 2,
         "body": raw({"inputs": [{"name": first_float, "datatype": "FP32", "data": ["__INF__", "not a number"]}]})},
    ]


_STATUS_LINE = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.M)
_ERROR_LINE = re.compile(r"^\s*\[(\d+)\]\s+(.*)$", re.M)


def parse_hey_summary(text: str) -> dict:
    """Status-code counts and transport errors from hey's summary output."""
    statuses = {code: int(count) for code, count in _STATUS_LINE.findall(text)}
    errors = {}
    if "Error distribution:" in text:
        for count, message in _ERROR_LINE.findall(text.split("Error distribution:", 1)[1]):
            kind = ("connection reset" if "reset by peer" in message else "EOF" if message.endswith("EOF")
                    else "connection closed" if "closed idle connection" in message
                    else "timeout" if "Timeout" in message or "timeout" in message else message[-80:])
            errors[kind] = errors.get(kind, 0) + int(count)
    return {"status": statuses, "errors": errors}


def run_mix(port: int, mix: list[dict], duration_s: int, workdir: str) -> list[dict]:
    """All streams at once, each its own hey process for duration_s; their counts."""
    running = []
    for stream in mix:
        body_path = os.path.join(workdir, f"abuse-{stream['name']}.body")
        with open(body_path, "wb") as handle:
            handle.write(stream["body"])
        command = ["hey", "-z", f"{duration_s}s", "-c", str(stream["concurrency"]), "-m", "POST",
                   "-T", "application/json", "-D", body_path, f"http://127.0.0.1:{port}{stream['path']}"]
        running.append((stream, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True)))
    results = []
    for stream, process in running:
        out, _ = process.communicate(timeout=duration_s + 120)
        counts = parse_hey_summary(out)
        results.append({"stream": stream["name"], "concurrency": stream["concurrency"], "path": stream["path"],
                        **counts})
    return results


def after_check(port: int, model_dir: str) -> tuple[bool, str]:
    """The server is ready and a good request gets a correct-looking answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready", timeout=10) as r:
            if r.status != 200:
                return False, f"not ready: {r.status}"
        body = json.dumps({"instances": bench_serving.penguin_instances(model_dir, 1)}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{V1_PATH}", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            answer = json.loads(r.read())
        probabilities = answer["predictions"][0]["probabilities"]
        if abs(sum(probabilities.values()) - 1.0) > 1e-4:
            return False, f"probabilities do not sum to 1: {probabilities}"
        return True, f"ready; a good request answered {answer['predictions'][0]['class']}"
    except (OSError, ValueError, KeyError, IndexError) as err:
        return False, f"{type(err).__name__}: {err}"


def verdict(results: list[dict], log_growth: int, max_log_bytes: int, after_ok: bool) -> list[str]:
    """What failed (empty: the run passes)."""
    failures = []
    for r in results:
        server_errors = sum(n for code, n in r["status"].items() if code.startswith("5"))
        if server_errors:
            failures.append(f"{r['stream']}: {server_errors} x 5xx")
        if r["errors"]:
            failures.append(f"{r['stream']}: transport errors {r['errors']}")
        if r["stream"] == "good-v1" and set(r["status"]) - {"200"}:
            failures.append(f"good-v1: non-200 answers {r['status']}")
    if log_growth >= max_log_bytes:
        failures.append(f"the server log grew by {log_growth:,} bytes (limit {max_log_bytes:,})")
    if not after_ok:
        failures.append("the server did not answer a good request correctly afterwards")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default="")
    parser.add_argument("--duration", type=int, default=30, help="seconds of traffic")
    parser.add_argument("--max_log_bytes", type=int, default=1_000_000, help="most the server log may grow")
    parser.add_argument("--server_args", default="", help="extra predictor flags, e.g. '--workers 2'")
    parser.add_argument("--workdir", default=os.path.join(bench_serving.ROOT, "bench-results"))
    args = parser.parse_args()
    if not shutil.which("hey"):
        sys.exit("bench_abuse: needs the `hey` load generator (Debian: apt-get install -y hey; "
                 "`make bench-abuse` installs it)")
    workdir = os.path.join(args.workdir, "serving")
    os.makedirs(workdir, exist_ok=True)
    model_dir = os.path.abspath(args.model_dir) if args.model_dir else bench_serving.find_or_train_model(workdir)
    mix = streams(model_dir)
    log_path = os.path.join(workdir, "abuse-server.log")
    print(f"model: {model_dir}\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}\n"
          f"{args.duration} s of: " + ", ".join(f"{s['name']} c{s['concurrency']}" for s in mix), flush=True)
    process, port, log = bench_serving.start_server("kubetfx", model_dir, log_path,
                                                    extra_args=shlex.split(args.server_args))
    try:
        log.flush()
        log_before = os.path.getsize(log_path)
        tracebacks_before = _count(log_path, "Traceback")
        started = time.monotonic()
        results = run_mix(port, mix, args.duration, workdir)
        elapsed = time.monotonic() - started
        after_ok, after_why = after_check(port, model_dir)
        alive = process.poll() is None
    finally:
        bench_serving.stop_server(process, log)
    log_growth = os.path.getsize(log_path) - log_before
    tracebacks = _count(log_path, "Traceback") - tracebacks_before
    failures = verdict(results, log_growth, args.max_log_bytes, after_ok and alive)

    print(f"\n{'stream':<16}{'conc':>5}  {'status codes':<34}{'transport errors'}")
    for r in results:
        codes = ", ".join(f"{n:,} x {code}" for code, n in sorted(r["status"].items())) or "-"
        errors = ", ".join(f"{n:,} {kind}" for kind, n in r["errors"].items()) or "0"
        print(f"{r['stream']:<16}{r['concurrency']:>5}  {codes:<34}{errors}")
    print(f"\nserver log: +{log_growth:,} bytes in {elapsed:.0f} s, {tracebacks:,} tracebacks "
          f"(limit {args.max_log_bytes:,} bytes); afterwards: {after_why}")
    print("PASS: no 5xx, no transport errors, log bounded" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    out = {"model_dir": model_dir, "duration_s": args.duration, "server_args": args.server_args,
           "cores": os.cpu_count(), "results": results, "log_growth_bytes": log_growth, "tracebacks": tracebacks,
           "after": after_why, "failures": failures, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = os.path.join(args.workdir, "bench_abuse.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=2)
    print(f"saved {path}")
    return 1 if failures else 0


def _count(path: str, word: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return sum(line.count(word) for line in handle)


if __name__ == "__main__":
    sys.exit(main())
