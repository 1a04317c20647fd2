"""The predictor under hostile input (issue #12), served for real: every client mistake on V1 REST,
V2 REST and V2 gRPC gets a 4xx (gRPC: a client status) with one clear message, no connection is
reset, the log stays bounded, and a fuzzer finds no request that makes the server fail.

One server (module fixture) serves the trained penguin model with its schema.pbtxt and a small
``--max_request_bytes`` (64 KiB) so the size cap is cheap to hit.
"""

import asyncio
import http.client
import json
import os
import re
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers.predictor import MODEL, Server, push_model, v2_request

MAX_REQUEST_BYTES = 64 * 1024
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
JSON = {"Content-Type": "application/json"}
DATATYPES = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, penguin_model, penguin_pipeline_artifacts):
    root = tmp_path_factory.mktemp("hostile")
    repository = str(root / "repository")
    schema = os.path.join(penguin_pipeline_artifacts["schema"], "schema.pbtxt")
    push_model(penguin_model["model"], repository, schema=schema)
    server = Server(["--model_repository", repository, "--model_name", MODEL,
                     "--max_request_bytes", str(MAX_REQUEST_BYTES)], str(root / "predictor.log"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def good_v1(eval_instances) -> bytes:
    return json.dumps({"instances": eval_instances[:2]}).encode()


def v2_body(instances, features, replace=None) -> dict:
    """A V2 JSON body for ``instances``; ``replace``: {feature: data list} to swap in."""
    replace = replace or {}
    return {"inputs": [{"name": f["name"], "datatype": DATATYPES[f["dtype"]], "shape": [len(instances)],
                        "data": replace.get(f["name"], [i[f["name"]] for i in instances])} for f in features]}


def raw_json(body) -> bytes:
    """JSON text where the string "__INF__" becomes 1e309 (valid JSON syntax that no float can hold)."""
    return json.dumps(body).replace('"__INF__"', "1e309").encode()


class Client:
    """One kept-alive HTTP connection: a reset or a closed connection fails the next request."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes, headers=None, chunked: bool = False) -> tuple[int, dict, dict]:
        headers = dict(JSON if headers is None else headers)
        if chunked:
            self.connection.request("POST", path, body=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                                    headers=headers, encode_chunked=True)
        else:
            self.connection.request("POST", path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}, dict(response.getheaders())

    def close(self):
        self.connection.close()


def assert_good_v1_answer(status: int, answer: dict, n: int = 2) -> None:
    assert status == 200, answer
    assert len(answer["predictions"]) == n
    for prediction in answer["predictions"]:
        assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-5


# ---------------------------------------------------------------------- every client mistake: a clear 4xx


def _cases(instances, features):
    """(id, path, body bytes, headers, status, words in the message)."""
    first, second = instances[0], instances[1]
    v1_on_v2 = dict(first, bill_length_mm="__INF__", bill_depth_mm=None, flipper_length_mm=[181], body_mass_g=-1)
    long_keys = dict(first, **{f"k{i}_" + "x" * 200: 1 for i in range(200)})
    binary_header = json.dumps({"inputs": [{"name": "island", "datatype": "BYTES", "shape": [1],
                                            "parameters": {"binary_data_size": "x"}}]}).encode()
    sizes = {"float32": 4, "int64": 8, "string": 4}  # one value each; the strings' length prefix says 2 GB
    bytes_header = json.dumps({"inputs": [{"name": f["name"], "datatype": DATATYPES[f["dtype"]], "shape": [1],
                                           "parameters": {"binary_data_size": sizes[f["dtype"]]}}
                                          for f in features]}).encode()
    bytes_data = b"".join(b"\xff\xff\xff\x7f" if f["dtype"] == "string" else b"\x00" * sizes[f["dtype"]]
                          for f in features)
    return [
        ("truncated-json", V1, json.dumps({"instances": [first]}).encode()[:40], None, 400, ["not valid JSON"]),
        ("empty-body", V1, b"", None, 400, ["not valid JSON"]),
        ("not-utf8", V2, b"\xff\xfe{", None, 400, ["not valid JSON"]),
        ("deep-nesting", V1, b"[" * 5000 + b"]" * 5000, None, 400, ["not valid JSON"]),
        ("nan-literal", V1, json.dumps({"instances": [dict(first, bill_length_mm=float("nan"))]}).encode(), None,
         400, ["not valid JSON"]),
        ("v1-body-1e309-on-v2", V2, raw_json({"instances": [v1_on_v2]}), None, 400, ["not valid JSON", "infinity"]),
        ("v1-body-on-v2", V2, raw_json({"instances": [first]}), None, 400, ["that is a V1 body", V1]),
        ("v2-body-on-v1", V1, raw_json(v2_body([first], features)), None, 400, ["that is a V2 body", V2]),
        ("json-list", V1, b"[1, 2]", None, 400, ["expected a V1 request", "got a list"]),
        ("v2-json-list", V2, b"[1e300]", None, 400, ["expected a V2 inference request", "got a list"]),
        ("v1-unknown-category-and-string", V1,
         raw_json({"instances": [dict(first, island="Atlantis"), dict(second, bill_length_mm="long")]}), None,
         400, ["instance 1", "'bill_length_mm'", "expected a number"]),  # the first feature (by name) that fails
        ("v1-unknown-category", V1, raw_json({"instances": [first, dict(second, island="Atlantis")]}), None,
         400, ["instance 1", "'island'", "not in the training domain", "Biscoe"]),
        ("v2-fp32-1e300-and-string", V2,
         raw_json(v2_body([first, second], features, {"bill_length_mm": [1e300, "x"]})), None,
         400, ["instance 1", "'bill_length_mm'", "expected a number", "'x'"]),
        ("v2-fp32-beyond-float32", V2, raw_json(v2_body([first, second], features, {"bill_length_mm": [1e39, 1]})),
         None, 400, ["instance 0", "'bill_length_mm'", "beyond the float32 range"]),
        ("v2-null", V2, raw_json(v2_body([first, second], features, {"bill_depth_mm": [1.0, None]})), None,
         400, ["instance 1", "'bill_depth_mm'", "null (NaN)"]),
        ("v2-bool-for-number", V2, raw_json(v2_body([first, second], features, {"bill_depth_mm": [True, 1.0]})),
         None, 400, ["instance 0", "expected a number (got true)"]),
        ("v2-numeric-string", V2, raw_json(v2_body([first, second], features, {"bill_depth_mm": ["1.5", 1.0]})),
         None, 400, ["instance 0", "expected a number"]),
        ("v2-int64-fraction", V2, raw_json(v2_body([first, second], features, {"body_mass_g": [3750.5, 1]})),
         None, 400, ["instance 0", "'body_mass_g'", "expected an integer"]),
        ("v2-int64-overflow", V2, raw_json(v2_body([first, second], features, {"body_mass_g": [2 ** 64, 1]})),
         None, 400, ["'body_mass_g'", "int64 range"]),
        ("v2-number-for-string", V2, raw_json(v2_body([first, second], features, {"island": [1, 2]})), None,
         400, ["instance 0", "'island'", "expected a string"]),
        ("v2-shape-data-mismatch", V2, raw_json(v2_body([first, second], features, {"year": [2007]})), None,
         400, ["input 'year'", "needs 2 values"]),
        ("v2-wrong-datatype", V2,
         raw_json({"inputs": [dict(i, datatype="BYTES") if i["name"] == "year" else i
                              for i in v2_body([first], features)["inputs"]]}), None,
         400, ["input 'year'", "datatype 'BYTES' does not match"]),
        ("v2-no-shape", V2, raw_json({"inputs": [{"name": "year", "datatype": "INT64", "data": [1]}]}), None,
         400, ["input 'year'", "'shape' must be"]),
        ("v2-inputs-null", V2, b'{"inputs": null}', None, 400, ["'inputs' must be a list", "null"]),
        ("v2-id-not-string", V2, raw_json(dict(v2_body([first], features), id=5)), None, 400, ["'id' must be a string"]),
        ("v2-duplicate-input", V2,
         raw_json({"inputs": v2_body([first], features)["inputs"] + v2_body([first], features)["inputs"][:1]}),
         None, 400, ["is given twice"]),
        ("long-unknown-keys-clipped", V1, raw_json({"instances": [long_keys]}), None, 400,
         ["unknown features", "...'", "(200 in all)"]),
        ("many-unknown-keys-short-message", V1, raw_json({"instances": [dict(first, **{f"k{i}": 1
                                                                                      for i in range(2000)})]}),
         None, 400, ["unknown features", "(2000 in all)"]),
        ("form-content-type", V1, json.dumps({"instances": [first]}).encode(),
         {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         ["Content-Type 'application/x-www-form-urlencoded'", "application/json"]),
        ("hey-default-content-type", V2, raw_json(v2_body([first], features)), {"Content-Type": "text/html"}, 415,
         ["Content-Type 'text/html'"]),
        ("too-large", V1, raw_json({"instances": [first] * 1000}), None, 413, ["--max_request_bytes", "65,536"]),
        ("v2-binary-bad-header", V2, b'{"inputs": []}',
         {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "abc"}, 400,
         ["Inference-Header-Content-Length must be an integer"]),
        ("v2-binary-bad-size", V2, binary_header + b"\x00\x01",
         {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(binary_header))},
         400, ["malformed V2 binary request"]),
        ("v2-binary-bytes-framing", V2, bytes_header + bytes_data,
         {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(bytes_header))},
         400, ["malformed V2 binary request"]),
        ("unknown-model", "/v2/models/nope/infer", b'{"inputs": []}', None, 404, ["nope", "does not exist"]),
        ("versioned-path", f"/v2/models/{MODEL}/versions/1/infer", raw_json(v2_body([first], features)), None, 501,
         ["not supported"]),
    ]


def test_client_mistakes_get_one_clear_4xx_and_keep_the_connection(hostile, eval_instances, features, good_v1):
    """Each mistake: its status, a JSON {"error": one line naming what is wrong}, and the same kept-alive
    connection then answers a good request (no reset, no close)."""
    client = Client(hostile.http_port)
    failures = []
    try:
        for name, path, body, headers, status, words in _cases(eval_instances, features):
            got, answer, _ = client.post(path, body, headers)
            message = answer.get("error", "")
            if got != status or not isinstance(message, str) or "\n" in message or len(message) > 2000 \
                    or any(word not in message for word in words):
                failures.append(f"{name}: {got} {message[:300]!r} (expected {status} with {words})")
            assert_good_v1_answer(*client.post(V1, good_v1)[:2])
    finally:
        client.close()
    assert not failures, "\n".join(failures)


def test_a_large_chunked_body_is_413_and_a_body_without_content_type_is_json(hostile, eval_instances, good_v1):
    client = Client(hostile.http_port)
    try:
        status, answer, _ = client.post(V1, raw_json({"instances": [eval_instances[0]] * 1000}), chunked=True)
        assert status == 413 and "--max_request_bytes" in answer["error"]
        assert_good_v1_answer(*client.post(V1, good_v1, headers={})[:2])  # no Content-Type: read as JSON
    finally:
        client.close()


def test_v2_json_and_binary_answers_match(hostile, eval_instances, features):
    """The fast path's V2 JSON answer and kserve's binary-tensor decoding give the same outputs."""
    from kserve import InferenceRESTClient, RESTConfig

    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            base = f"http://127.0.0.1:{hostile.http_port}"
            return (await client.infer(base, v2_request(eval_instances[:5], features), model_name=MODEL),
                    await client.infer(base, v2_request(eval_instances[:5], features, binary=True), model_name=MODEL))
        finally:
            await client.close()

    as_json, as_binary = asyncio.run(run())
    for a, b in zip(as_json.outputs, as_binary.outputs):
        assert (a.name, a.shape, a.datatype) == (b.name, b.shape, b.datatype)
        assert a.as_numpy().tolist() == b.as_numpy().tolist()
    status, answer, _ = Client(hostile.http_port).post(V2, raw_json(dict(v2_body(eval_instances[:1], features),
                                                                         id="request-7")))
    assert status == 200 and answer["id"] == "request-7" and answer["model_version"] == "1"


# ---------------------------------------------------------------------- gRPC


def test_bad_grpc_requests_are_client_statuses_and_the_server_keeps_serving(hostile, eval_instances, features):
    import grpc
    import numpy as np
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc

    def tensor(feature, values, datatype=None):
        datatype = datatype or DATATYPES[feature["dtype"]]
        contents = {"FP32": "fp32_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}.get(datatype)
        message = pb.ModelInferRequest.InferInputTensor(name=feature["name"], datatype=datatype, shape=[len(values)])
        if contents:
            getattr(message.contents, contents).extend(
                [v.encode() for v in values] if datatype == "BYTES" else values)
        return message

    def request(override=None, raw=None):
        inputs = [tensor(f, [i[f["name"]] for i in eval_instances[:2]]) for f in features]
        for index, f in enumerate(features):
            if override and f["name"] in override:
                inputs[index] = override[f["name"]](f)
        message = pb.ModelInferRequest(model_name=MODEL, inputs=inputs)
        if raw is not None:
            for item in message.inputs:
                item.ClearField("contents")
            message.raw_input_contents.extend(raw)
        return message

    raw_good = []
    for f in features:
        values = [i[f["name"]] for i in eval_instances[:2]]
        if f["dtype"] == "string":
            raw_good.append(b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values))
        else:
            raw_good.append(np.array(values, dtype=np.float32 if f["dtype"] == "float32" else np.int64).tobytes())
    cases = [
        ("wrong-datatype", request({"year": lambda f: tensor(f, [1.0, 2.0], "FP32")}), grpc.StatusCode.INVALID_ARGUMENT,
         "input 'year'"),
        ("unknown-datatype", request({"year": lambda f: pb.ModelInferRequest.InferInputTensor(
            name="year", datatype="FOO", shape=[2])}), grpc.StatusCode.INVALID_ARGUMENT, ""),
        ("non-finite", request({"bill_length_mm": lambda f: tensor(f, [float("inf"), 1.0])}),
         grpc.StatusCode.INVALID_ARGUMENT, "'bill_length_mm'"),
        ("shape-mismatch", request({"year": lambda f: pb.ModelInferRequest.InferInputTensor(
            name="year", datatype="INT64", shape=[5], contents=pb.InferTensorContents(int64_contents=[1]))}),
         grpc.StatusCode.INVALID_ARGUMENT, "input 'year'"),
        ("raw-wrong-size", request(raw=[b"\x00\x01\x02"] * len(features)), grpc.StatusCode.INVALID_ARGUMENT,
         "data does not match"),
        ("raw-bad-bytes-framing", request(raw=[b"\xff\xff\xff\x7f" if f["dtype"] == "string" else raw_good[i]
                                               for i, f in enumerate(features)]),
         grpc.StatusCode.INVALID_ARGUMENT, "data does not match"),
        ("raw-count-mismatch", request(raw=raw_good[:2]), grpc.StatusCode.INVALID_ARGUMENT, "raw input contents"),
        ("unknown-category", request({"island": lambda f: tensor(f, ["Atlantis", "Dream"])}),
         grpc.StatusCode.INVALID_ARGUMENT, "not in the training domain"),
        ("too-large", request({"year": lambda f: tensor(f, [2007] * MAX_REQUEST_BYTES)}),
         grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ]
    with grpc.insecure_channel(f"127.0.0.1:{hostile.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        failures = []
        for name, message, code, words in cases:
            try:
                stub.ModelInfer(message, timeout=30)
                failures.append(f"{name}: answered OK")
            except grpc.RpcError as err:
                if err.code() != code or words not in (err.details() or ""):
                    failures.append(f"{name}: {err.code()} {err.details()!r} (expected {code} with {words!r})")
        assert not failures, "\n".join(failures)
        good = stub.ModelInfer(request(), timeout=30)
        assert [o.name for o in good.outputs] == ["probabilities", "class_ids", "classes"]
        raw = stub.ModelInfer(request(raw=raw_good), timeout=30)
        assert [o.name for o in raw.outputs] == ["probabilities", "class_ids", "classes"] and raw.model_version == "1"


# ---------------------------------------------------------------------- logs stay bounded


def _metric(server, name: str, labels: str) -> float:
    status, body = server.request("GET", "/metrics")
    match = re.search(rf"^{name}{{{labels}}} ([0-9.e+]+)$", body.decode(), re.M)
    return float(match.group(1)) if match else 0.0


def test_a_flood_of_bad_requests_grows_the_log_by_a_bounded_amount(hostile, eval_instances, features, good_v1):
    """2,000 bad requests of four kinds: at most a few lines each, no traceback; all still counted."""
    bodies = [(V1, b'{"instances": [{"island": "Bis'), (V2, raw_json({"instances": [eval_instances[0]]})),
              (V2, raw_json(v2_body(eval_instances[:2], features, {"bill_length_mm": ["__INF__", "x"]}))),
              (V1, raw_json({"instances": [dict(eval_instances[0], island="Atlantis")]}))]
    counted_before = _metric(hostile, "kubetfx_predictor_client_errors_total", 'status="400"')
    size_before = os.path.getsize(hostile.log_path)

    def flood(worker: int) -> set:
        client, statuses = Client(hostile.http_port), set()
        try:
            for index in range(500):
                path, body = bodies[(worker + index) % len(bodies)]
                statuses.add(client.post(path, body)[0])
        finally:
            client.close()
        return statuses

    with ThreadPoolExecutor(4) as pool:
        statuses = set().union(*pool.map(flood, range(4)))
    assert statuses == {400}
    assert_good_v1_answer(*Client(hostile.http_port).post(V1, good_v1)[:2])
    time.sleep(0.2)  # the server's stderr reaches the file
    growth = os.path.getsize(hostile.log_path) - size_before
    new_lines = hostile.log()[size_before:]
    assert "Traceback" not in new_lines
    assert growth < 12_000, f"the log grew by {growth} bytes for 2,000 bad requests:\n{new_lines[-2000:]}"
    counted = _metric(hostile, "kubetfx_predictor_client_errors_total", 'status="400"') - counted_before
    assert counted == 2000


def test_malformed_http_is_answered_and_logged_at_most_a_burst(hostile, good_v1):
    """Bytes that are not HTTP: uvicorn answers 400 and closes; its warning line is rate-limited like ours."""
    import socket

    before = hostile.log().count("Invalid HTTP request received.")
    for _ in range(60):
        with socket.create_connection(("127.0.0.1", hostile.http_port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert_good_v1_answer(*Client(hostile.http_port).post(V1, good_v1)[:2])
    time.sleep(0.2)
    logged = hostile.log().count("Invalid HTTP request received.") - before
    assert 1 <= logged <= 20  # a burst of 10 per 10 s window (two windows at most in this test)


# ---------------------------------------------------------------------- fuzzing the request path


def test_fuzzed_requests_never_get_a_5xx(hostile, eval_instances, features, good_v1):
    """hypothesis-generated JSON bodies for both protocols: near-valid ones, arbitrary JSON, broken text.

    Every answer is 200 (well-formed), 400 or 413 with an {"error": ...} body; the server stays
    ready and still answers a good request correctly.
    """
    from hypothesis import HealthCheck, given, settings, strategies as st

    names = [f["name"] for f in features]
    scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
               | st.sampled_from(["Biscoe", "Dream", "male", "female", "", "__INF__"]))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
    keys = st.sampled_from(names + ["species", "inputs", "instances"]) | st.text(max_size=10)
    good = eval_instances[0]
    v1_instance = st.builds(lambda drop, extra: {**{k: v for k, v in good.items() if k not in drop}, **extra},
                            st.sets(st.sampled_from(names), max_size=2), st.dictionaries(keys, values, max_size=2))
    v1_bodies = st.fixed_dictionaries({"instances": st.lists(v1_instance, max_size=3) | values})
    v2_input = st.fixed_dictionaries(
        {}, optional={"name": st.sampled_from(names) | st.text(max_size=6) | values,
                      "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "FP64", "INT32", "BOOL", "fp32", "X"])
                      | values,
                      "shape": st.lists(st.integers(-1, 4), max_size=3) | values,
                      "data": st.lists(values, max_size=4) | st.lists(scalars, max_size=4) | values,
                      "parameters": values})
    v2_bodies = (st.fixed_dictionaries({"inputs": st.lists(v2_input, max_size=len(names) + 1) | values},
                                       optional={"id": values, "parameters": values, "outputs": values})
                 | st.builds(lambda n, drop: {"inputs": [i for i in v2_body(eval_instances[:n], features)["inputs"]
                                                         if i["name"] not in drop]},
                             st.integers(0, 3), st.sets(st.sampled_from(names), max_size=1)))
    mutations = st.sampled_from(["as is", "truncate", "nan", "garbage"])
    client = Client(hostile.http_port)
    seen = []

    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(protocol=st.sampled_from(["v1", "v2"]), body=v1_bodies | v2_bodies | values, mutation=mutations,
           cut=st.integers(0, 200))
    def check(protocol, body, mutation, cut):
        text = raw_json(body)
        if mutation == "truncate":
            text = text[:cut]
        elif mutation == "nan":
            text = text.replace(b"0", b"NaN", 1)
        elif mutation == "garbage":
            text = text[:cut] + b"\x00\xff}" + text[cut:]
        status, answer, _ = client.post(V1 if protocol == "v1" else V2, text)
        seen.append(status)
        assert status in (200, 400, 413), (status, answer, text[:300])
        if status != 200:
            assert isinstance(answer.get("error"), str) and answer["error"], answer
        elif protocol == "v1":
            assert len(answer["predictions"]) == len(body["instances"])
        else:
            assert {o["name"] for o in answer["outputs"]} == {"probabilities", "class_ids", "classes"}

    try:
        check()
    finally:
        client.close()
    assert 200 in seen and 400 in seen  # the generator reaches both sides of the validation
    assert hostile.request("GET", f"/v2/models/{MODEL}/ready")[0] == 200
    assert_good_v1_answer(*Client(hostile.http_port).post(V1, good_v1)[:2])
    assert "Traceback" not in hostile.log()


# ---------------------------------------------------------------------- the error policy without a server


def test_error_policy_statuses_follow_the_open_inference_protocol():
    import grpc
    from fastapi.exceptions import RequestValidationError
    from kserve.errors import ModelNotFound, ModelNotReady

    from kubetfx.components.predictor import error_policy
    from kubetfx.components.predictor.schema_check import RequestError

    cases = [(RequestError("instance 0: feature 'x': expected a number"), 400, grpc.StatusCode.INVALID_ARGUMENT),
             (error_policy.PayloadTooLarge("too large"), 413, grpc.StatusCode.RESOURCE_EXHAUSTED),
             (error_policy.UnsupportedContentType("not JSON"), 415, grpc.StatusCode.INVALID_ARGUMENT),
             (ModelNotFound("m"), 404, grpc.StatusCode.NOT_FOUND),
             (ModelNotReady("m"), 503, grpc.StatusCode.UNAVAILABLE),
             (NotImplementedError("versions"), 501, grpc.StatusCode.UNIMPLEMENTED),
             (ZeroDivisionError("a bug"), 500, grpc.StatusCode.INTERNAL)]
    for exc, status, code in cases:
        outcome = error_policy.classify(exc)
        assert (outcome.http_status, outcome.grpc_code) == (status, code), exc
        assert outcome.is_server_fault == (status == 500)
    # FastAPI's validation error echoes the input, which may hold 1e309 (inf): the message must not.
    outcome = error_policy.classify(RequestValidationError([{"loc": ("body", "inputs"), "msg": "Field required",
                                                             "input": {"echoed_input": float("inf")}}]))
    assert outcome.http_status == 400 and "inputs: Field required" in outcome.message
    assert "echoed_input" not in outcome.message
    assert json.loads(error_policy.error_body(outcome)) == {"error": outcome.message}
    long = error_policy.classify(RequestError("x" * 10_000)).message
    assert len(long) == error_policy.MAX_MESSAGE_CHARS and long.endswith("...")


def test_log_limiter_lets_a_burst_through_then_summarises_what_it_left_out(caplog):
    from kubetfx.components.predictor.error_policy import LogLimiter

    now = [0.0]
    limiter = LogLimiter(burst=3, window_s=10.0, what="failed-request lines", clock=lambda: now[0])
    allowed = [limiter.allow("400") for _ in range(50)] + [limiter.allow("413")]
    assert allowed == [True] * 3 + [False] * 47 + [True]
    with caplog.at_level("WARNING", logger="kubetfx.predictor"):
        now[0] = 10.5
        assert limiter.allow("400")  # a new window
    (record,) = caplog.records
    assert "failed-request lines left out of the log in the last 10 s" in record.getMessage()
    assert "400: 47" in record.getMessage()


def test_client_errors_log_one_line_and_server_faults_their_traceback(caplog):
    from kubetfx.components.predictor import error_policy
    from kubetfx.components.predictor.schema_check import RequestError

    with caplog.at_level("WARNING", logger="kubetfx.predictor"):
        for exc in (RequestError("instance 3: feature 'island': value not in the training domain"),
                    KeyError("a bug in the server")):
            try:
                raise exc
            except Exception as raised:
                error_policy.report(error_policy.classify(raised), raised, "POST /v1/models/m:predict")
    client, server = caplog.records
    assert client.levelname == "WARNING" and client.exc_info is None
    assert client.getMessage() == ("POST /v1/models/m:predict -> 400: instance 3: feature 'island': value not in "
                                   "the training domain")
    assert server.levelname == "ERROR" and server.exc_info and server.exc_info[0] is KeyError
