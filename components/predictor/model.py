"""The ``kserve.Model``: load -> preprocess (validate) -> predict (micro-batched) -> postprocess.

Protocols (kserve routes them; this class only sees decoded payloads):

* V1 REST ``POST /v1/models/NAME:predict`` ``{"instances": [{feature: value, ...}, ...]}`` ->
  ``{"predictions": [...], "model_name": NAME, "model_version": "3"}``; a classification prediction
  is ``{"class": "Adelie", "class_id": 0, "probabilities": {"Adelie": 0.98, ...}}``, a regression
  one ``{"prediction": 4123.5}``.
* V2 / Open Inference Protocol, REST ``POST /v2/models/NAME/infer`` and gRPC ``ModelInfer``: one
  input per feature (FP32 / INT64 / BYTES, shape [N]); outputs ``probabilities`` FP32 [N, K],
  ``class_ids`` INT64 [N], ``classes`` BYTES [N] (regression: ``predictions`` FP32 [N]);
  ``model_version`` is the served version. ``GET /v2/models/NAME`` lists the inputs and outputs.

The REST front door (``rest_front.py``) hands V1 bodies over as parsed JSON and V2 JSON bodies as a
``V2JsonRequest``; gRPC and V2 binary-tensor requests arrive as kserve's ``InferRequest``.
``postprocess`` answers each in kind (a dict for the front door to write, an ``InferResponse`` for kserve).

The served version is one attribute (``_servable``) swapped atomically by the repository watcher;
a request takes it once in ``preprocess`` and carries it to ``postprocess``, so it finishes on the
version it started on.

``--workers N``: kserve pickles this object into each worker process. The TF objects, threads and
locks are left out of the pickle; each worker loads the model in a background thread (its liveness
ping keeps answering) and its HTTP server starts accepting only once the model is loaded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass

from kserve import Model
from kserve.errors import ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from prometheus_client import Counter, Gauge

from kubetfx.components.common import feature_values, prediction_log
from kubetfx.components.predictor import kserve_changes, repository_watch, servable as servable_lib
from kubetfx.components.predictor.schema_check import RequestError, V2JsonRequest, json_kind

logger = logging.getLogger("kubetfx.predictor")

MODEL_VERSION = Gauge("kubetfx_predictor_model_version", "The model version being served", ["model"])
LOGGED_RECORDS = Gauge("kubetfx_predictor_prediction_log_records", "Prediction log records of this process, "
                       "by outcome: written to the log, or dropped (queue full or the sink failed)",
                       ["model", "outcome"])
LOG_DELETED_FILES = Gauge("kubetfx_predictor_prediction_log_deleted_files", "Prediction log files this process "
                          "deleted to keep the log within its size and age limits", ["model"])
LOG_DELETED_BYTES = Gauge("kubetfx_predictor_prediction_log_deleted_bytes", "Bytes of prediction log this process "
                          "deleted to keep the log within its size and age limits", ["model"])
INVALID_REQUESTS = Counter("kubetfx_predictor_invalid_requests", "Requests rejected by schema validation",
                           ["model"])


@dataclass(frozen=True)
class ServingOptions:
    allow_nan: bool = False
    max_batch_size: int = 64
    max_batch_wait_us: int = 0
    poll_interval_s: float = 10.0
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    worker_load_timeout_s: float = 600.0
    max_request_bytes: int = 8 * 1024 * 1024  # REST bodies and gRPC messages; larger ones get 413 / RESOURCE_EXHAUSTED
    prediction_log_dir: str = ""  # where to log requests and predictions for the model monitor (empty: off)
    prediction_log_sample_rate: float = 1.0
    prediction_log_max_total_bytes: int = prediction_log.DEFAULT_MAX_TOTAL_BYTES  # 0: no limit
    prediction_log_max_file_bytes: int = prediction_log.DEFAULT_MAX_BYTES
    prediction_log_max_age_s: float = prediction_log.DEFAULT_MAX_AGE_S  # 0: no limit
    canary_percent: int = 0  # a newly pushed version gets this share of requests until a rollout decision (0: off)


class _Work:
    """One request on its way through preprocess -> predict -> postprocess."""

    __slots__ = ("servable", "columns", "n", "request", "outputs", "request_id", "instances", "started")

    def __init__(self, servable, columns, n, request, request_id=None, instances=None, started=0.0):
        self.started = started  # perf_counter when preprocess took it: the log's per-request latency
        self.servable = servable
        self.columns = columns
        self.n = n
        self.request = request  # V2: the InferRequest (gRPC, binary REST) or V2JsonRequest (JSON REST); V1: None
        self.outputs = None
        self.request_id = request_id  # the client's (V2 "id", or an x-request-id header), else one of ours
        self.instances = instances  # V1: the request's own instance dicts (what the prediction log writes)


_RESPONSE_IDS = itertools.count(1)
_RESPONSE_ID_PREFIX = uuid.uuid4().hex[:12]  # per process (each --workers child imports this module anew)


def _new_response_id() -> str:
    """A unique id for a V2 response whose request gave none (a uuid4 per request showed in the profile)."""
    return f"{_RESPONSE_ID_PREFIX}-{next(_RESPONSE_IDS)}"


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json_columns(body: dict, n: int) -> dict | None:
    """A checked V2 JSON body's own data lists by input name (what the prediction log writes, as V1 logs the
    request's instance objects); None when an input's data is nested (shape [N, 1] as [[v], ...])."""
    columns = {}
    for entry in body["inputs"]:
        data = entry["data"]
        if len(data) != n or (n and type(data[0]) is list):
            return None
        columns[entry["name"]] = data
    return columns


def _log_columns(columns: dict) -> dict:
    """Request columns (numpy, by feature name) as the prediction log writes them: numbers stay numpy
    arrays (orjson writes them without a Python object per value), text becomes str; a missing int or
    string (the marker it was sent to the model as, ``feature_values``) is null again."""
    logged = {}
    for name, column in columns.items():
        missing = feature_values.is_missing(column) if column.dtype.kind != "f" else None
        if missing is not None and missing.any():
            logged[name] = [None if gone else _text(v) if column.dtype == object else v
                            for v, gone in zip(column.tolist(), missing.tolist())]
        else:
            logged[name] = [_text(v) for v in column.tolist()] if column.dtype == object else column
    return logged


def _request_id(headers) -> str | None:
    if not headers:
        return None
    return headers.get("x-request-id") or headers.get("X-Request-Id")


class KubetfxPredictor(Model):
    def __init__(self, name: str, source: repository_watch.ModelSource, options: ServingOptions | None = None):
        super().__init__(name)
        self.source = source
        self.options = options or ServingOptions()
        self._servable = None
        self._watcher = None
        self._skipped: set = set()
        self._loaded = threading.Event()
        self._load_error: str | None = None
        self._prediction_log = None  # made in the serving process (each --workers child has its own)
        self._canary = None  # a newer version on trial (--canary_percent), beside _servable
        self._canary_share = 0.0

    # ------------------------------------------------------------------ loading
    def _load_location(self, location):
        o = self.options
        return servable_lib.load(location, allow_nan=o.allow_nan, max_batch_size=o.max_batch_size,
                                 max_batch_wait_us=o.max_batch_wait_us, intra_op_threads=o.intra_op_threads,
                                 inter_op_threads=o.inter_op_threads)

    def _switch(self, new) -> None:
        self._open_prediction_log()
        old, self._servable = self._servable, new
        self.ready = True
        self._loaded.set()
        MODEL_VERSION.labels(self.name).set(float(new.version) if str(new.version).isdigit() else 0)
        logger.info("serving model '%s' version %s from %s (loaded in %.2f s; request validation: %s)",
                    self.name, new.version, new.location.saved_model_dir, new.load_seconds, new.rules.source)
        if old is not None:
            old.close()  # its batcher finishes the requests already queued, then stops

    def load(self) -> bool:
        """Load the initial version synchronously (errors propagate: the server must not start without it)."""
        self._switch(self.source.load_initial(self._load_location, self._skipped))
        return self.ready

    def start(self) -> None:
        """Called by kserve.ModelServer once registered: start watching the repository."""
        if self._servable is not None:
            self.ready = True
            self._start_watcher()

    def _start_watcher(self) -> None:
        if self.source.watchable and self._watcher is None and self._servable is not None:
            self._watcher = repository_watch.RepositoryWatcher(
                self.source, self._load_location, self._on_new_version, int(self._servable.version),
                self.options.poll_interval_s, skipped=self._skipped, on_poll=self._follow_rollout)
            self._watcher.start()

    # ------------------------------------------------------------------ local canary (--canary_percent)
    def _on_new_version(self, new) -> None:
        """A newer pushed version: served at once, or -- with --canary_percent -- tried beside the served one."""
        if not self.options.canary_percent or self._servable is None or not self.source.repository:
            self._switch(new)
            return
        from kubetfx.components.pusher import local_rollout

        stable, percent = self._servable.version, self.options.canary_percent
        local_rollout.start_canary(self.source.repository, self.name, int(stable), int(new.version), percent)
        old, self._canary, self._canary_share = self._canary, new, percent / 100.0
        if old is not None:
            old.close()
        logger.info("version %s is a canary: %d%% of requests (version %s the rest) until a rollout decision "
                    "(kubetfx monitor) promotes it or rolls it back", new.version, percent, stable)

    def _follow_rollout(self) -> None:
        """Apply what the rollout document says now: promoted (the canary takes all), rolled back (it is dropped)."""
        canary = self._canary
        if canary is None:
            return
        from kubetfx.components.pusher import local_rollout

        service = local_rollout.read(self.source.repository, self.name)
        if service is None or local_rollout.versions(service)[0] != int(self._servable.version):
            return  # not this rollout's document (its previous version is the one served beside the canary)
        state = local_rollout.state(service)
        if state == local_rollout.PROMOTED and local_rollout.versions(service)[1] == int(canary.version):
            self._canary = None
            self._switch(canary)
            logger.info("canary version %s promoted: it serves every request", canary.version)
        elif state == local_rollout.ROLLED_BACK:
            self._canary = None
            canary.close()
            logger.info("canary version %s rolled back: version %s serves every request", canary.version,
                        self._servable.version)

    def _pick(self):
        """The servable a request goes to: the canary for its share of requests, else the stable version."""
        canary = self._canary
        if canary is not None and random.random() < self._canary_share:
            return canary
        return self._servable

    def _open_prediction_log(self) -> None:
        """The prediction log of this process: off the request path (queue + writer thread), counted in /metrics."""
        if not self.options.prediction_log_dir or self._prediction_log is not None:
            return
        o = self.options
        log = prediction_log.PredictionLogger(o.prediction_log_dir, self.name, sample_rate=o.prediction_log_sample_rate,
                                              max_bytes=o.prediction_log_max_file_bytes,
                                              max_total_bytes=o.prediction_log_max_total_bytes,
                                              max_age_s=o.prediction_log_max_age_s)
        LOGGED_RECORDS.labels(self.name, "written").set_function(lambda: log.written)
        LOGGED_RECORDS.labels(self.name, "dropped").set_function(lambda: log.dropped)
        LOG_DELETED_FILES.labels(self.name).set_function(lambda: log.writer.deleted_files)
        LOG_DELETED_BYTES.labels(self.name).set_function(lambda: log.writer.deleted_bytes)
        self._prediction_log = log

    def _log_prediction(self, work: _Work, predictions) -> None:
        if self._prediction_log is not None:
            instances = work.instances
            if instances is None and isinstance(work.request, V2JsonRequest):
                instances = _json_columns(work.request.body, work.n)
            if instances is None:
                instances = lambda: _log_columns(work.columns)  # noqa: E731 - made only when logged
            self._prediction_log.log(work.request_id or _new_response_id(), work.servable.version, instances,
                                     predictions, count=work.n,
                                     latency_ms=round((time.perf_counter() - work.started) * 1000.0, 3))

    def _log_rejected(self, servable, payload, headers, err: RequestError) -> None:
        """A rejected request is what the model was asked too (an unseen category, a type change): logged
        with the reason as its prediction, so the monitor sees what the schema check turned away."""
        if self._prediction_log is None or servable is None:
            return
        body = payload.body if isinstance(payload, V2JsonRequest) else payload
        if not isinstance(body, dict):
            return  # not JSON instances (binary tensors, garbage): nothing a monitor could compare

        def instances():
            rows = prediction_log.instances_of(body)
            return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else []

        self._prediction_log.log(_request_id(headers) or _new_response_id(), servable.version, instances,
                                 lambda: [{"error": str(err)[:300]}] * len(instances()), count=1)

    def stop(self) -> None:
        if self._prediction_log is not None:
            self._prediction_log.close()
        if self._watcher is not None:
            self._watcher.stop()
        if self._servable is not None:
            self._servable.close()
        if self._canary is not None:
            self._canary.close()
        self.ready = False

    @property
    def version(self) -> str | None:
        return None if self._servable is None else self._servable.version

    # ------------------------------------------------------------------ workers (pickling)
    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("_servable", "_watcher", "_loaded", "_http_client_instance", "_grpc_client_stub",
                    "_prediction_log", "_canary"):
            state[key] = None
        state["ready"] = False
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._loaded = threading.Event()
        # This worker builds its own REST app.
        kserve_changes.install_kserve_changes(self.options.max_request_bytes, (KubetfxPredictor,))
        kserve_changes.quiet_logs()
        threading.Thread(target=self._load_in_worker, name="kubetfx-worker-load", daemon=True).start()
        try:  # the worker's HTTP server waits for the model before accepting connections
            from kserve.model_server import app

            app.router.on_startup.append(self._wait_until_loaded)
        except Exception:  # pragma: no cover - an unpickle outside a kserve worker
            pass

    def _load_in_worker(self) -> None:
        try:
            self._switch(self.source.load_initial(self._load_location, self._skipped))
            self._start_watcher()
        except Exception as err:
            self._load_error = f"{type(err).__name__}: {err}"
            logger.error("worker could not load the model: %s", self._load_error)
            self._loaded.set()

    async def _wait_until_loaded(self) -> None:
        kserve_changes.quiet_logs()
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(None, self._loaded.wait, self.options.worker_load_timeout_s)
        if not done or self._servable is None:
            raise RuntimeError(f"model '{self.name}' did not load in this worker: "
                               f"{self._load_error or 'timed out'}")

    # ------------------------------------------------------------------ metadata
    def get_input_types(self) -> list[dict]:
        return [] if self._servable is None else self._servable.spec.input_types()

    def get_output_types(self) -> list[dict]:
        return [] if self._servable is None else self._servable.spec.output_types()

    # ------------------------------------------------------------------ inference
    def validate(self, payload):
        return payload  # preprocess validated it against the training schema

    async def preprocess(self, payload, headers=None) -> _Work:
        started = time.perf_counter()
        servable = self._pick()
        if servable is None:
            raise ModelNotReady(self.name)
        try:
            if isinstance(payload, V2JsonRequest):
                columns, n = servable.rules.from_v2_json(payload.body, self.name)
                return _Work(servable, columns, n, payload, payload.id or _request_id(headers), started=started)
            if isinstance(payload, InferRequest):
                columns, n = servable.rules.from_infer_request(payload)
                return _Work(servable, columns, n, payload, payload.id or _request_id(headers), started=started)
            if isinstance(payload, (bytes, bytearray)):  # kserve passes a body it did not read as JSON as is
                raise RequestError(f"unsupported request body ({json_kind(payload)}); send JSON with Content-Type: "
                                   f'application/json: {{"instances": [...]}} to /v1/models/{self.name}:predict or '
                                   f'{{"inputs": [...]}} to /v2/models/{self.name}/infer')
            columns, n = servable.rules.from_v1_json(payload, self.name)
            return _Work(servable, columns, n, None, _request_id(headers), payload.get("instances"), started)
        except RequestError as err:
            INVALID_REQUESTS.labels(self.name).inc()
            self._log_rejected(servable, payload, headers, err)
            raise

    async def predict(self, work: _Work, headers=None, response_headers=None) -> _Work:
        work.outputs = await work.servable.batcher.submit(work.columns, work.n)
        return work

    async def postprocess(self, work: _Work, headers=None, response_headers=None):
        if self._prediction_log is not None and work.request_id is None:
            work.request_id = _new_response_id()  # logged and answered: labels arriving later can refer to it
        if work.request is None:
            predictions = self._v1_predictions(work)
            self._log_prediction(work, predictions)
            answer = {"predictions": predictions, "model_name": self.name, "model_version": work.servable.version}
            if work.request_id:
                answer["id"] = work.request_id
            return answer
        self._log_prediction(work, lambda: self._prediction_columns(work))
        if isinstance(work.request, V2JsonRequest):  # the REST fast path writes this dict as JSON itself
            return {"model_name": self.name, "model_version": work.servable.version,
                    "id": work.request_id or _new_response_id(),
                    "outputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}
                                for name, datatype, shape, data in self._v2_outputs(work)]}
        return InferResponse(response_id=work.request_id or _new_response_id(), model_name=self.name,
                             model_version=work.servable.version, from_grpc=work.request.from_grpc,
                             infer_outputs=[InferOutput(name=name, shape=shape, datatype=datatype, data=data)
                                            for name, datatype, shape, data in self._v2_outputs(work)])

    def _v1_predictions(self, work: _Work) -> list:
        spec, outputs = work.servable.spec, work.outputs
        if spec.is_classification:
            names = work.servable.class_names
            return [{"class": names[class_id], "class_id": class_id, "probabilities": dict(zip(names, row))}
                    for class_id, row in zip(outputs["class_ids"].tolist(), outputs["probabilities"].tolist())]
        if spec.is_regression:
            return [{"prediction": value} for value in outputs["predictions"].tolist()]
        columns = {name: [_text(v) for v in array.tolist()] if array.dtype == object else array.tolist()
                   for name, array in outputs.items()}
        return [{name: column[i] for name, column in columns.items()} for i in range(work.n)]

    def _prediction_columns(self, work: _Work) -> dict:
        """What ``_v1_predictions`` says, as columns (for the prediction log of V2 requests: no dict per
        instance); ``probabilities`` is one list per instance, in ``class_id`` order."""
        spec, outputs = work.servable.spec, work.outputs
        if spec.is_classification:
            names = work.servable.class_names
            class_ids = outputs["class_ids"]
            return {"class": [names[i] for i in class_ids.tolist()], "class_id": class_ids,
                    "probabilities": outputs["probabilities"]}
        if spec.is_regression:
            return {"prediction": outputs["predictions"]}
        return _log_columns(outputs)

    @staticmethod
    def _v2_outputs(work: _Work) -> list[tuple]:
        """The V2 outputs as (name, datatype, shape, flat data list), for either response type."""
        outputs = []
        for output in work.servable.spec.v2_outputs():
            array = work.outputs[output.name]
            flat = array.reshape(-1).tolist()
            outputs.append((output.name, output.datatype, list(array.shape),
                            [_text(v) for v in flat] if array.dtype == object else flat))
        return outputs
