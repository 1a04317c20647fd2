"""InfraValidator: serve the candidate model with the real predictor and send it real requests.

Starts the predictor on the candidate on free loopback ports (``launcher.py``), in one of two ways
(``launch``):

* ``"in_process"`` (default): this task builds the predictor with the CLI's own code path
  (``predictor.server.build``: model load and warm-up, ``kserve.ModelServer``, the REST front door
  and error policy) and runs kserve's uvicorn server on a background thread
  (``predictor.server.ServerThread``; REST only, asyncio's loop). No second interpreter, no second
  TensorFlow/kserve import, and a stop without a process's signal round trip.
* ``"process"``: ``python -m kubetfx.components.predictor --model_dir <candidate>`` in a
  subprocess, exactly the command the ``kubetfx-predictor`` ServingRuntime runs (also its gRPC
  listener and uvloop).

Either way it polls readiness every 20 ms, reads the V2 model metadata over HTTP, sends
``num_requests`` V1 requests built from raw examples of ``split`` (label dropped) and checks each
answer's shape: one prediction per instance, probabilities over the class names summing to 1
(classification) or a finite number (regression). The server is always stopped, also on failure.

Verdict: ``INFRA_BLESSED`` / ``INFRA_NOT_BLESSED`` + ``blessing.json`` with the reasons
(``common/blessing.py``). A server that does not come up (corrupt model, port taken, timeout)
or answers wrongly is a NOT_BLESSED verdict whose reason carries the server's last log lines;
the pipeline then skips the push. Bad inputs (no model dir, no examples, an unknown ``launch``)
raise ConfigError. No TensorFlow import at module level: the server (thread or process) loads it.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import statistics
import tempfile
import time
import uuid

from kubetfx.components.common import blessing, fileio, layout, report
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.infra_validator.launcher import Launched, PredictorInProcess, PredictorProcess, free_ports

INSTANCES_PER_REQUEST = 4
LAUNCHES = ("in_process", "process")


# ---------------------------------------------------------------------- requests from examples


def _scalar(values):
    """One tf.Example feature value list -> a JSON scalar (None when missing)."""
    if values is None or len(values) == 0:
        return None
    value = values[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def instances_from_examples(examples_dir: str, split: str, features: list[str], count: int) -> list[dict]:
    """Up to ``count`` complete rows of ``split`` as V1 instances over ``features`` (the label is not one).

    Decodes file by file and only as many records as needed (a large eval split is not read whole).
    """
    from kubetfx.components.common import examples, tfrecord

    instances: list[dict] = []
    seen_columns: set = set()
    for path in examples.split_files(examples_dir, split):
        records = tfrecord.read_file(path)[:max(4 * count, 256)]
        if not records:
            continue
        batch = examples.decode_examples(records, source=path)
        seen_columns |= set(batch.schema.names)
        missing = [f for f in features if f not in batch.schema.names]
        if missing:
            continue  # these rows lack the feature entirely; another file may have it
        columns = {name: batch.column(name).to_pylist() for name in features}
        for row in range(batch.num_rows):
            instance = {name: _scalar(columns[name][row]) for name in features}
            if any(value is None for value in instance.values()):
                continue  # a missing value cannot be sent to a [None]-shaped signature input
            instances.append(instance)
            if len(instances) >= count:
                return instances
    if not instances:
        missing = [f for f in features if f not in seen_columns]
        if missing:
            raise InputDataError(f"Examples artifact {examples_dir} split '{split}' lacks the model's input "
                                 f"feature(s) {', '.join(missing)} (it has: {', '.join(sorted(seen_columns))})")
        raise InputDataError(f"Examples artifact {examples_dir} split '{split}' has no row with every model "
                             f"feature present ({', '.join(features)})")
    return instances


# ---------------------------------------------------------------------- checks


def _check_metadata(body: bytes) -> tuple[list[str], dict, list[str]]:
    """(input names, {output name: datatype}, problems) from GET /v2/models/NAME."""
    try:
        meta = json.loads(body)
    except ValueError as err:
        return [], {}, [f"model metadata is not JSON: {err}"]
    inputs = [i.get("name") for i in meta.get("inputs") or [] if isinstance(i, dict)]
    outputs = {o.get("name"): o.get("datatype") for o in meta.get("outputs") or [] if isinstance(o, dict)}
    problems = []
    if not inputs:
        problems.append("model metadata lists no inputs")
    if not outputs:
        problems.append("model metadata lists no outputs")
    return inputs, outputs, problems


def _check_predictions(body: bytes, instances: int, class_names: list[str], kind: str,
                       outputs: list[str]) -> list[str]:
    """``kind``: classification (probabilities over the class names), regression (a finite number) or
    generic (an object with every output of the model metadata)."""
    try:
        answer = json.loads(body)
    except ValueError as err:
        return [f"the answer is not JSON: {err}"]
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        return [f"the answer has no 'predictions' list: {str(answer)[:200]}"]
    if len(predictions) != instances:
        return [f"{len(predictions)} predictions for {instances} instances"]
    problems = []
    for index, prediction in enumerate(predictions):
        if kind == "generic":
            if not isinstance(prediction, dict) or not set(outputs) <= set(prediction):
                problems.append(f"instance {index}: expected the outputs {sorted(outputs)}, got "
                                f"{str(prediction)[:200]}")
            continue
        if kind == "regression":
            value = prediction.get("prediction") if isinstance(prediction, dict) else None
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"instance {index}: prediction {value!r} is not a finite number")
            continue
        probabilities = prediction.get("probabilities") if isinstance(prediction, dict) else None
        if not isinstance(probabilities, dict):
            problems.append(f"instance {index}: no probabilities in {str(prediction)[:200]}")
            continue
        if class_names and sorted(probabilities) != sorted(class_names):
            problems.append(f"instance {index}: probabilities over {sorted(probabilities)}, expected the class "
                            f"names {sorted(class_names)}")
        values = list(probabilities.values())
        if not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values) \
                or abs(sum(values) - 1.0) > 1e-3:
            problems.append(f"instance {index}: probabilities {values} are not a distribution")
        if prediction.get("class") not in probabilities:
            problems.append(f"instance {index}: class {prediction.get('class')!r} is not one of the classes")
    return problems


def _check_serving(server: Launched, timeout_s: float, num_requests: int, info: dict, instances,
                   read_instances, metadata: dict, problems: list, latencies: list) -> None:
    """Model metadata, then ``num_requests`` V1 requests; problems and latencies appended in place.

    ``instances``: the requests' rows, or None to read them for the inputs the metadata lists.
    """
    name = server.model_name
    status, body = server.request("GET", f"/v2/models/{name}")
    if status != 200:
        problems.append(f"GET /v2/models/{name} answered HTTP {status}: {body[:200]!r}")
        return
    inputs, outputs, meta_problems = _check_metadata(body)
    problems += meta_problems
    if meta_problems:
        return
    if instances is None:
        label = str(info.get("label") or "")
        instances = read_instances([name for name in inputs if name != label])
    kind = "classification" if "probabilities" in outputs else "regression" if "predictions" in outputs else "generic"
    class_names = [str(c) for c in info.get("class_names") or []]
    per = max(1, len(instances) // num_requests)
    for index in range(num_requests):
        chunk = instances[index * per:(index + 1) * per] or instances[:per]
        payload = json.dumps({"instances": chunk}).encode()
        start = time.perf_counter()
        try:
            status, body = server.request("POST", f"/v1/models/{name}:predict", payload, timeout=timeout_s)
        except (OSError, http.client.HTTPException) as err:
            problems.append(f"request {index}: no answer: {type(err).__name__}: {err}")
            return
        latencies.append((time.perf_counter() - start) * 1000.0)
        metadata["requests"] += 1
        metadata["instances"] += len(chunk)
        if status != 200:
            problems.append(f"request {index}: HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
            continue
        problems += [f"request {index}: {p}" for p in
                     _check_predictions(body, len(chunk), class_names, kind, list(outputs))]
        if index == 0:
            try:
                metadata["model_version"] = json.loads(body).get("model_version")
            except (ValueError, AttributeError):
                pass


# ---------------------------------------------------------------------- entry point


def _model_info(model_dir: str) -> dict:
    path = os.path.join(model_dir, layout.MODEL_INFO_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}  # the server decides whether the model is usable


def _check_inputs(model_dir: str, examples_dir: str, split: str, timeout_s, num_requests, launch) -> None:
    if launch not in LAUNCHES:
        raise ConfigError(f"launch must be one of {', '.join(repr(x) for x in LAUNCHES)} (how the predictor is "
                          f"started: in this task's process, or as the ServingRuntime's command), got {launch!r}")
    if not model_dir or not os.path.isdir(model_dir):
        raise ConfigError(f"model dir {model_dir!r} does not exist (expected the Trainer's Model artifact)")
    if not (os.path.isdir(os.path.join(model_dir, layout.SERVING_MODEL_DIR)) or
            os.path.isfile(os.path.join(model_dir, layout.SAVED_MODEL_FILE))):
        raise ConfigError(f"model dir {model_dir} has no {layout.SERVING_MODEL_DIR}/ "
                          "(expected the Trainer's Model artifact)")
    if not examples_dir or not os.path.isdir(examples_dir):
        raise ConfigError(f"examples dir {examples_dir!r} does not exist (expected an Examples artifact)")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if not isinstance(num_requests, int) or isinstance(num_requests, bool) or num_requests < 1:
        raise ConfigError(f"num_requests must be a positive integer, got {num_requests!r}")
    if not split:
        raise ConfigError("split is empty: name the Examples split to build requests from (e.g. 'eval')")


def run(model_dir: str, examples_dir: str, blessing_dir: str, report_path: str | None = None,
        timeout_s: float = 120, num_requests: int = 5, split: str = "eval", launch: str = "in_process", *,
        http_port: int = 0, instances_per_request: int = INSTANCES_PER_REQUEST) -> dict:
    """Serve ``model_dir`` (Format-Serving layout), send real requests, write the InfraBlessing.

    ``launch``: ``"in_process"`` (the predictor's code path on a thread of this process) or
    ``"process"`` (the ServingRuntime's command in a subprocess); see the module doc.
    ``http_port``: 0 picks a free loopback port (tests pin one to exercise "port in use").
    Returns the InfraBlessing metadata: blessed (1/0), reason, launch, startup_seconds ("ready after"),
    requests, instances, latency_ms, ...
    """
    _check_inputs(model_dir, examples_dir, split, timeout_s, num_requests, launch)
    model_dir = os.path.abspath(model_dir)
    info = _model_info(model_dir)
    declared = [str(f.get("name")) for f in info.get("raw_features") or [] if isinstance(f, dict)]
    wanted = max(1, int(instances_per_request)) * num_requests
    # Read the examples before starting anything: bad inputs are errors, not verdicts. Without
    # kubetfx_model.json the features come from the server's model metadata (instances None).
    instances = instances_from_examples(examples_dir, split, declared, wanted) if declared else None

    model_name = f"infra-validation-{uuid.uuid4().hex[:8]}"
    ports = free_ports(2)
    http_port = http_port or ports[0]
    grpc_port = ports[1] if ports[1] != http_port else ports[0]
    metadata = {"tfx_type": "InfraBlessing", "model_dir": model_dir, "split": split, "timeout_s": timeout_s,
                "launch": launch, "http_port": http_port, "requests": 0, "instances": 0}
    problems: list[str] = []
    latencies: list[float] = []
    started = time.perf_counter()
    work_dir = None
    if launch == "process":
        work_dir = tempfile.mkdtemp(prefix="kubetfx-infra-")
        server: Launched = PredictorProcess(model_dir, model_name, http_port, grpc_port,
                                             os.path.join(work_dir, "predictor.log"))
    else:
        server = PredictorInProcess(model_dir, model_name, http_port)
    try:
        ready, why = server.wait_ready(float(timeout_s))
        metadata["startup_seconds"] = round(time.perf_counter() - started, 3)
        if not ready:
            problems.append(why)
        else:
            _check_serving(server, float(timeout_s), num_requests, info, instances,
                           lambda features: instances_from_examples(examples_dir, split, features, wanted),
                           metadata, problems, latencies)
    except (OSError, http.client.HTTPException) as err:
        problems.append(f"the predictor server stopped answering: {type(err).__name__}: {err}")
    finally:
        server.stop()
    if isinstance(server, PredictorInProcess):
        metadata["startup_phases"] = server.startup_phases()
        if server.left_running:
            metadata["server_thread_left_running"] = True
    tail = server.log_tail()
    blessed = not problems
    if problems and not metadata["requests"] and tail:
        problems[0] += f": {server.failure(tail)}"
    if blessed:
        reasons = [f"the predictor served the candidate: {metadata['requests']} requests "
                   f"({metadata['instances']} instances) answered correctly; ready after "
                   f"{metadata['startup_seconds']:.1f} s ({launch.replace('_', '-')})"]
    else:
        reasons = problems[:10] + (["server log (last lines):\n" + "\n".join(tail)] if tail else [])
    metadata["blessed"] = int(blessed)
    metadata["reason"] = reasons[0] if blessed else "; ".join(problems[:5])
    metadata["latency_ms"] = ({"mean": round(statistics.fmean(latencies), 3), "p50": round(statistics.median(latencies), 3),
                               "max": round(max(latencies), 3)} if latencies else {})
    metadata["server_log_tail"] = tail
    blessing.write_blessing(blessing_dir, blessed, reasons, infra=True,
                            details={k: v for k, v in metadata.items() if k not in ("server_log_tail",)})
    if report_path:
        fileio.atomic_write(report_path, _report(metadata, reasons, tail))
    if work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return metadata


def _report(metadata: dict, reasons: list[str], tail: list[str]) -> str:
    verdict = "INFRA_BLESSED" if metadata["blessed"] else "INFRA_NOT_BLESSED"
    lines = ["# InfraValidator", "", f"**Verdict**: {verdict}", "", "## Why", ""]
    lines += [f"- {r.splitlines()[0]}" for r in reasons]
    latency = metadata.get("latency_ms") or {}
    rows = [["model", f"`{metadata['model_dir']}`"], ["model version", metadata.get("model_version") or "–"],
            ["launch", "in this task's process" if metadata.get("launch") == "in_process"
             else "a subprocess (the ServingRuntime's command)"],
            ["server ready after", f"{metadata.get('startup_seconds', 0):.2f} s (limit {metadata['timeout_s']} s)"],
            ["requests / instances", f"{metadata['requests']} / {metadata['instances']} (split {metadata['split']})"],
            ["latency p50 / max", f"{report.fmt(latency.get('p50'))} / {report.fmt(latency.get('max'))} ms"
             if latency else "–"]]
    lines += ["", "## Serving check", "", report.table(["", ""], rows)]
    if tail and not metadata["blessed"]:
        lines += ["", "## Server log (last lines)", "", "```", *tail, "```"]
    return "\n".join(lines) + "\n"
