"""The predictor for tests: its own process on loopback ports (:class:`Server`), models pushed into a repository.

Shared by the serving tests (test_predictor.py, test_predictor_hostile.py), the continuous-training
loop and the own-data CLI tests; the Evaluator's tests push baselines with :func:`push_model` too.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from kubetfx.components.common import layout, model_repository
from kubetfx.components.infra_validator.launcher import free_ports

MODEL = "penguin"
READY_TIMEOUT_S = 90


class Server:
    """The predictor in its own process (`python -m kubetfx.components.predictor ARGS`), real HTTP to it."""

    def __init__(self, args: list[str], log_path: str, model: str = MODEL):
        self.model = model
        self.http_port, self.grpc_port = free_ports(2)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        command = [sys.executable, "-m", "kubetfx.components.predictor", "--http_port", str(self.http_port),
                   "--grpc_port", str(self.grpc_port), "--grace_period_s", "3", *args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    @classmethod
    def attach(cls, http_port: int, model: str, log_path: str, process: subprocess.Popen) -> "Server":
        """A predictor some other command started (e.g. `make serve`), listening on ``http_port``."""
        server = cls.__new__(cls)
        server.model, server.http_port, server.grpc_port = model, http_port, None
        server.log_path, server._log, server.process = log_path, None, process
        return server

    def request(self, method: str, path: str, body=None, timeout: float = 30.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def predict(self, instances):
        status, body = self.request("POST", f"/v1/models/{self.model}:predict", {"instances": instances})
        return status, json.loads(body)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the predictor exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if self.request("GET", f"/v2/models/{self.model}/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the predictor was not ready in {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self._log is not None:
            self._log.close()


def push_model(model_dir: str, repository: str, model_name: str = MODEL, schema: str | None = None,
               statistics: str | None = None) -> tuple[int, str]:
    """A Trainer model dir pushed into ``repository`` as the Pusher pushes it: the SavedModel with
    kubetfx_model.json (and the training schema and a StatisticsGen artifact's train split, when given)
    beside it. Returns (version, its path)."""
    extra = {layout.MODEL_INFO_FILE: os.path.join(model_dir, layout.MODEL_INFO_FILE)}
    if schema:
        extra[layout.SCHEMA_FILE] = schema
    if statistics:
        extra[model_repository.TRAINING_STATISTICS_FILE] = os.path.join(layout.split_dir(statistics, "train"),
                                                                        layout.STATISTICS_FILE)
    return model_repository.push(os.path.join(model_dir, layout.SERVING_MODEL_DIR), repository, model_name, extra)


def serve_pushed(model_dir: str, workdir, model_name: str, schema: str | None = None) -> Server:
    """A predictor (not yet ready) serving ``model_dir`` pushed as ``model_name`` into a repository under
    ``workdir``, its log there too."""
    repository = os.path.join(str(workdir), "repository")
    push_model(model_dir, repository, model_name, schema=schema)
    return Server(["--model_repository", repository, "--model_name", model_name],
                  os.path.join(str(workdir), f"{model_name}.log"), model=model_name)


def v2_request(instances, features, binary: bool = False):
    """kserve's InferRequest of ``instances`` (one input per feature), as JSON data or binary tensors."""
    from kserve import InferInput, InferRequest

    datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
    inputs = []
    for feature in features:
        values = [instance[feature["name"]] for instance in instances]
        infer_input = InferInput(feature["name"], [len(values)], datatypes[feature["dtype"]])
        if binary:
            dtype = {"float32": np.float32, "int64": np.int64, "string": np.object_}[feature["dtype"]]
            infer_input.set_data_from_numpy(np.array(values, dtype=dtype), binary_data=True)
        else:
            infer_input.data = values
        inputs.append(infer_input)
    return InferRequest(model_name=MODEL, infer_inputs=inputs)
