"""The KServe predictor, served for real: a subprocess on loopback ports with the real penguin model.

One server (module fixture) serves a temporary model repository holding the trained penguin
model (with schema.pbtxt beside it, so string domains are checked); the tests talk V1 and V2 REST
with plain HTTP and kserve's own InferenceRESTClient / InferenceGRPCClient, send bad requests,
read /metrics, and finally push new versions to watch the hot reload.
"""

import asyncio
import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from helpers.predictor import MODEL, Server, push_model, v2_request

# ---------------------------------------------------------------------- helpers


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def served(tmp_path_factory, penguin_model, penguin_pipeline_artifacts):
    """The predictor on a temp repository holding version 1 (+ schema.pbtxt), polling every 0.3 s."""
    root = tmp_path_factory.mktemp("predictor")
    repository = str(root / "repository")
    schema = os.path.join(penguin_pipeline_artifacts["schema"], "schema.pbtxt")
    assert push_model(penguin_model["model"], repository, schema=schema)[0] == 1
    server = Server(["--model_repository", repository, "--model_name", MODEL, "--poll_interval_s", "0.3"],
                    str(root / "predictor.log"))
    try:
        server.wait_ready()
        server.repository, server.schema = repository, schema
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def savedmodel_outputs(penguin_model, eval_instances, features):
    """The SavedModel's own serving_raw outputs on the eval instances, in this process."""
    import tensorflow as tf

    signature = tf.saved_model.load(os.path.join(penguin_model["model"], "Format-Serving")).signatures["serving_raw"]
    dtypes = {"float32": np.float32, "int64": np.int64, "string": object}
    columns = {f["name"]: np.array([i[f["name"]] for i in eval_instances], dtype=dtypes[f["dtype"]]) for f in features}
    return {name: value.numpy() for name, value in signature(**columns).items()}


# ---------------------------------------------------------------------- serving


def test_v1_matches_the_savedmodel(served, eval_instances, savedmodel_outputs, penguin_model):
    status, answer = served.predict(eval_instances)
    assert status == 200, answer
    assert answer["model_name"] == MODEL and answer["model_version"] == "1"
    predictions = answer["predictions"]
    assert len(predictions) == len(eval_instances)
    class_names = json.load(open(os.path.join(penguin_model["model"], "kubetfx_model.json")))["class_names"]
    expected = savedmodel_outputs["probabilities"]
    for index, prediction in enumerate(predictions):
        assert list(prediction["probabilities"]) == class_names
        probabilities = np.array(list(prediction["probabilities"].values()))
        assert abs(probabilities.sum() - 1.0) < 1e-5
        np.testing.assert_allclose(probabilities, expected[index], atol=1e-6)
        assert prediction["class_id"] == int(savedmodel_outputs["class_ids"][index])
        assert prediction["class"] == class_names[prediction["class_id"]]
    assert {p["class"] for p in predictions} <= set(class_names)


def test_concurrent_requests_are_batched_and_answered_in_order(served, eval_instances, savedmodel_outputs):
    """Many single-instance requests at once: each gets its own row back (no mix-up in the batcher)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(index):
        return index, served.predict([eval_instances[index]])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(len(eval_instances))))
    for index, (status, answer) in results:
        assert status == 200
        np.testing.assert_allclose(list(answer["predictions"][0]["probabilities"].values()),
                                   savedmodel_outputs["probabilities"][index], atol=1e-6)


def test_v2_rest_and_grpc_with_kserve_clients(served, eval_instances, features, savedmodel_outputs):
    from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig

    async def run():
        rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        grpc_client = InferenceGRPCClient(url=f"127.0.0.1:{served.grpc_port}", timeout=30, retries=2)
        try:
            base = f"http://127.0.0.1:{served.http_port}"
            json_answer = await rest.infer(base, v2_request(eval_instances, features), model_name=MODEL)
            binary_answer = await rest.infer(base, v2_request(eval_instances, features, binary=True),
                                             model_name=MODEL)
            grpc_answer = await grpc_client.infer(v2_request(eval_instances, features, binary=True))
            grpc_json = await grpc_client.infer(v2_request(eval_instances[:3], features))
            ready = await grpc_client.is_model_ready(MODEL)
            return json_answer, binary_answer, grpc_answer, grpc_json, ready
        finally:
            await rest.close()
            await grpc_client.close()

    json_answer, binary_answer, grpc_answer, grpc_json, ready = asyncio.run(run())
    assert ready
    n = len(eval_instances)
    assert grpc_answer.model_version == "1"  # kserve's REST client drops model_version (from_bytes); raw JSON below
    for answer in (json_answer, binary_answer, grpc_answer):
        outputs = {o.name: o for o in answer.outputs}
        assert set(outputs) == {"probabilities", "class_ids", "classes"}
        assert outputs["probabilities"].datatype == "FP32" and outputs["probabilities"].shape == [n, 3]
        np.testing.assert_allclose(outputs["probabilities"].as_numpy().reshape(n, 3),
                                   savedmodel_outputs["probabilities"], atol=1e-6)
        assert outputs["class_ids"].as_numpy().reshape(-1).tolist() == savedmodel_outputs["class_ids"].tolist()
        classes = [c.decode() if isinstance(c, bytes) else c for c in outputs["classes"].as_numpy().reshape(-1)]
        assert classes == [c.decode() for c in savedmodel_outputs["classes"]]
    assert {o.name: o.shape for o in grpc_json.outputs}["probabilities"] == [3, 3]
    status, body = served.request("POST", f"/v2/models/{MODEL}/infer", v2_request(eval_instances[:2], features)
                                  .to_rest()[0])
    assert status == 200 and json.loads(body)["model_version"] == "1"


def test_model_metadata_lists_typed_inputs_and_outputs(served, features):
    status, body = served.request("GET", f"/v2/models/{MODEL}")
    assert status == 200
    metadata = json.loads(body)
    datatypes = {"float32": "FP32", "int64": "INT64", "string": "BYTES"}
    assert {i["name"]: (i["datatype"], i["shape"]) for i in metadata["inputs"]} == \
        {f["name"]: (datatypes[f["dtype"]], [-1]) for f in features}
    assert {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]} == \
        {"probabilities": ("FP32", [-1, 3]), "class_ids": ("INT64", [-1]), "classes": ("BYTES", [-1])}

    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=30)
    assert {i.name: i.datatype for i in reply.inputs} == {f["name"]: datatypes[f["dtype"]] for f in features}
    assert [o.name for o in reply.outputs] == ["probabilities", "class_ids", "classes"]


@pytest.mark.parametrize("change, words", [
    (lambda i: i.pop("island"), ["instance 1", "missing feature 'island'"]),
    (lambda i: i.update(bill_length_mm="long"), ["instance 1", "'bill_length_mm'", "expected a number"]),
    (lambda i: i.update(body_mass_g=3750.5), ["instance 1", "'body_mass_g'", "expected an integer"]),
    (lambda i: i.update(island="Atlantis"), ["instance 1", "'island'", "not in the training domain", "Biscoe"]),
    (lambda i: i.update(bill_depth_mm=None), ["instance 1", "'bill_depth_mm'", "NaN"]),
    (lambda i: i.update(species="Adelie"), ["instance 1", "unknown feature 'species'", "is the label"]),
    (lambda i: i.update(wingspan=3.0), ["instance 1", "unknown feature 'wingspan'"]),
], ids=["missing", "wrong-type", "not-integer", "unknown-category", "nan", "label", "extra"])
def test_bad_v1_request_is_a_400_naming_the_feature(served, eval_instances, change, words):
    instances = [dict(eval_instances[0]), dict(eval_instances[1])]
    change(instances[1])
    status, answer = served.predict(instances)
    assert status == 400, answer
    for word in words:
        assert word in answer["error"], answer["error"]
    status, answer = served.predict(eval_instances[:1])  # still serving
    assert status == 200


def test_bad_v2_requests_rest_and_grpc(served, eval_instances, features):
    import grpc
    from kserve import InferenceGRPCClient

    bad = [dict(i) for i in eval_instances[:2]]
    bad[1]["island"] = "Atlantis"
    status, body = served.request("POST", f"/v2/models/{MODEL}/infer", json.loads(
        json.dumps({"inputs": [{"name": f["name"], "datatype": {"float32": "FP32", "int64": "INT64",
                                                               "string": "BYTES"}[f["dtype"]],
                                "shape": [2], "data": [i[f["name"]] for i in bad]} for f in features]})))
    assert status == 400 and b"instance 1" in body and b"'island'" in body

    nan = [dict(i) for i in eval_instances[:2]]
    nan[0]["bill_length_mm"] = float("nan")

    async def run():
        client = InferenceGRPCClient(url=f"127.0.0.1:{served.grpc_port}", timeout=30, retries=2)
        try:
            with pytest.raises(grpc.RpcError) as raised:
                await client.infer(v2_request(nan, features, binary=True))
            return raised.value
        finally:
            await client.close()

    error = asyncio.run(run())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "instance 0" in error.details() and "'bill_length_mm'" in error.details() and "NaN" in error.details()
    assert served.predict(eval_instances[:1])[0] == 200


def test_metrics_endpoint(served, eval_instances):
    served.predict(eval_instances[:2])
    status, body = served.request("GET", "/metrics")
    text = body.decode()
    assert status == 200
    for metric in ("request_predict_seconds_count", "kubetfx_predictor_batch_size_count",
                   "kubetfx_predictor_model_call_seconds_count", 'kubetfx_predictor_model_version{model="penguin"} 1.0',
                   "kubetfx_predictor_invalid_requests_total"):
        assert metric in text, metric


# ---------------------------------------------------------------------- hot reload (mutates the repository: last)


def test_hot_reload_switches_to_new_versions_and_skips_corrupt_ones(served, penguin_model, eval_instances):
    current = int(served.predict(eval_instances[:1])[1]["model_version"])
    new, _ = push_model(penguin_model["model"], served.repository, schema=served.schema)
    assert new == current + 1
    wait_for(lambda: served.predict(eval_instances[:1])[1]["model_version"] == str(new), 30,
             f"responses from version {new}")
    assert "switched from version %d to version %d" % (current, new) in served.log()

    # A corrupt version: saved_model.pb present (so it is "complete") but not a SavedModel.
    corrupt = os.path.join(served.repository, MODEL, str(new + 1))
    staging = os.path.join(served.repository, MODEL, ".tmp-push-corrupt")
    shutil.copytree(os.path.join(served.repository, MODEL, str(new)), staging)
    with open(os.path.join(staging, "saved_model.pb"), "wb") as handle:
        handle.write(b"not a SavedModel")
    os.rename(staging, corrupt)
    wait_for(lambda: f"version {new + 1} failed to load and is skipped; still serving version {new}" in served.log(),
             30, "the corrupt version to be skipped")
    status, answer = served.predict(eval_instances[:2])
    assert status == 200 and answer["model_version"] == str(new)
    status, body = served.request("GET", "/metrics")
    assert 'kubetfx_predictor_load_failures_total{model="penguin"} 1.0' in body.decode()


# ---------------------------------------------------------------------- a single model dir, two workers


def test_model_dir_with_two_workers(tmp_path, penguin_model, eval_instances, savedmodel_outputs):
    """--model_dir (the InfraValidator's and KServe's layout) and --workers 2: each worker loads the model
    and answers through the REST front door (size cap, error policy) like the single-process server."""
    server = Server(["--model_dir", penguin_model["model"], "--model_name", MODEL, "--workers", "2",
                     "--model_version", "7", "--max_request_bytes", "4096"], str(tmp_path / "predictor.log"))
    try:
        server.wait_ready()
        for _ in range(6):
            status, answer = server.predict(eval_instances[:4])
            assert status == 200 and answer["model_version"] == "7"
            np.testing.assert_allclose([list(p["probabilities"].values()) for p in answer["predictions"]],
                                       savedmodel_outputs["probabilities"][:4], atol=1e-6)
            status, body = server.request("POST", f"/v2/models/{MODEL}/infer", b'{"instances": [{"x": 1e309}]}')
            assert status == 400 and b"not valid JSON" in body
            assert server.predict(eval_instances * 10)[0] == 413
        log = server.log()
        assert log.count("serving model 'penguin' version 7") >= 2, log[-3000:]  # parent + worker(s)
        assert "Traceback" not in log
    finally:
        server.stop()


# ---------------------------------------------------------------------- pieces without a server


def test_micro_batcher_coalesces_and_isolates_a_failing_request():
    from kubetfx.components.predictor.batching import MicroBatcher

    sizes = []

    def model(columns):
        sizes.append(len(columns["x"]))
        if (columns["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": columns["x"] * 2.0}

    batcher = MicroBatcher(model, max_batch_size=8, max_wait_us=2000, name="test")

    async def run():
        async def one(value):
            try:
                return (await batcher.submit({"x": np.array([value], dtype=np.float32)}, 1))["y"].tolist()
            except ValueError as err:
                return str(err)

        return await asyncio.gather(*(one(float(v)) for v in [*range(10), -1.0, *range(10, 15)]))

    results = asyncio.run(run())
    batcher.close()
    assert results[:10] == [[2.0 * v] for v in range(10)] and results[11:] == [[2.0 * v] for v in range(10, 15)]
    assert results[10] == "negative input"  # only the bad request fails; its batch-mates are re-run alone
    assert max(sizes) > 1 and max(sizes) <= 8


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_serving_runtime_manifest_builds_offline_and_matches_the_pusher(tmp_path, overlay):
    """`kubectl kustomize manifests/overlays/<env>` works offline and gives a valid kserve ServingRuntime."""
    import types

    import kserve
    import kubernetes.client.models as k8s_models
    import yaml
    from kserve.api_client import ApiClient

    from kubetfx.components.predictor.__main__ import build_parser
    from kubetfx.components.pusher import inference_service

    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(["kubectl", "kustomize", os.path.join(root, "manifests", "overlays", overlay)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    (runtime,) = [o for o in yaml.safe_load_all(out) if o["kind"] == "ServingRuntime"]
    assert runtime["kind"] == "ServingRuntime" and runtime["metadata"]["name"] == inference_service.KUBETFX_RUNTIME
    spec = runtime["spec"]
    assert spec["supportedModelFormats"] == [{"name": inference_service.KUBETFX_MODEL_FORMAT, "version": "1",
                                              "autoSelect": True, "priority": 1}]
    assert spec["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    (container,) = spec["containers"]
    assert container["command"] == ["python3", "-m", "kubetfx.components.predictor"]
    args, unknown = build_parser().parse_known_args(container["args"])
    assert not unknown and args.model_dir == "/mnt/models" and args.model_name == "{{.Name}}"
    # Round trip through kserve's typed model: an unknown or misspelt field would be dropped.
    models = types.SimpleNamespace(**{**vars(k8s_models), **vars(kserve.models)})
    original, kserve.models = kserve.models, models  # kserve's ApiClient resolves types in kserve.models only
    try:
        client = ApiClient()
        typed = client._ApiClient__deserialize(runtime, "V1alpha1ServingRuntime")
    finally:
        kserve.models = original
    assert client.sanitize_for_serialization(typed) == runtime


def test_micro_batcher_runs_a_lone_request_inline_and_batches_concurrent_ones_in_its_thread():
    import threading

    from kubetfx.components.predictor.batching import MicroBatcher

    calls = []

    def model(columns):
        calls.append((threading.current_thread().name, len(columns["x"])))
        return {"y": columns["x"] + 1}

    batcher = MicroBatcher(model, max_batch_size=64, name="inline")

    async def run():
        lone = await batcher.submit({"x": np.array([1.0])}, 1)
        many = await asyncio.gather(*(batcher.submit({"x": np.array([float(v)])}, 1) for v in range(5)))
        return lone, many

    lone, many = asyncio.run(run())
    batcher.close()
    assert lone["y"].tolist() == [2.0] and [m["y"].tolist() for m in many] == [[1.0], [2.0], [3.0], [4.0], [5.0]]
    assert calls[0] == (threading.main_thread().name, 1)  # idle: no thread hand-off
    assert calls[1] == ("kubetfx-batcher-inline", 5)  # one turn, five requests: one call in the worker


def test_v1_and_v2_requests_are_logged_as_the_same_records(tmp_path, penguin_model, eval_instances, features):
    """V1 logs the request's instance dicts, V2 its columns (cheaper for the writer thread): read back, the
    monitor gets the same features and predictions from both."""
    from kubetfx.components.common import prediction_log

    repository = str(tmp_path / "repository")
    push_model(penguin_model["model"], repository)
    log_dir = str(tmp_path / "prediction-log")
    server = Server(["--model_repository", repository, "--model_name", MODEL, "--prediction_log_dir", log_dir],
                    str(tmp_path / "server.log"))
    try:
        server.wait_ready()
        instances = eval_instances[:5]
        status, _ = server.request("POST", f"/v1/models/{MODEL}:predict", {"instances": instances})
        assert status == 200
        v2 = {"inputs": [{"name": f["name"], "shape": [len(instances)],
                          "datatype": {"float32": "FP32", "int64": "INT64", "string": "BYTES"}[f["dtype"]],
                          "data": [i[f["name"]] for i in instances]} for f in features]}
        status, _ = server.request("POST", f"/v2/models/{MODEL}/infer", v2)
        assert status == 200
        def logged():
            records, _ = prediction_log.read_records(log_dir, MODEL, include_open=True)
            return records if len(records) == 10 else None

        records = wait_for(logged, 20, "10 logged records")
    finally:
        server.stop()
    by_request = {}
    for record in records:
        by_request.setdefault(record["request_id"], []).append(record)
    assert len(by_request) == 2
    v1_records, v2_records = sorted(by_request.values(), key=lambda rs: rs[0]["time"])
    for one, two, sent in zip(v1_records, v2_records, instances):
        assert one["features"] == sent
        assert two["features"].keys() == sent.keys()
        for name, value in sent.items():
            assert two["features"][name] == pytest.approx(value, rel=1e-6) if isinstance(value, float) \
                else two["features"][name] == value
        assert one["prediction"]["class"] == two["prediction"]["class"]
        assert one["prediction"]["class_id"] == two["prediction"]["class_id"]
        assert list(one["prediction"]["probabilities"].values()) == pytest.approx(two["prediction"]["probabilities"],
                                                                                  abs=1e-6)
