"""The model monitor on real penguin statistics and schema, with logged requests drawn from (shifted) penguins."""

import json
import os
import random

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from kubetfx.components.common import prediction_log, tfmd
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.model_monitor import executor as monitor

MODEL = "penguin"


@pytest.fixture(scope="module")
def training(penguin_pipeline_artifacts):
    root = penguin_pipeline_artifacts["root"]
    return {"statistics": str(root / "statistics"), "schema": tfmd.schema_path(penguin_pipeline_artifacts["schema"])}


def penguin_requests(table, count: int, seed: int, shift=None) -> list[dict]:
    """``count`` requests drawn with replacement from the penguins (no label), optionally shifted."""
    rows = [{k: v for k, v in row.items() if k != "species"} for row in table.to_pylist()]
    rng = random.Random(seed)
    drawn = [dict(rng.choice(rows)) for _ in range(count)]
    return [shift(row, rng) if shift else row for row in drawn]


def heavier_and_from_atlantis(row: dict, rng: random.Random) -> dict:
    row["body_mass_g"] = int(round(row["body_mass_g"] * 1.3))
    if rng.random() < 0.05:
        row["island"] = "Atlantis"
    return row


def write_log(log_dir: str, requests: list[dict], batch: int = 10) -> None:
    """Through the predictor's own writer: one record per instance, requests of ``batch`` instances."""
    writer = prediction_log.RotatingWriter(log_dir, MODEL, max_bytes=64 * 1024)
    for start in range(0, len(requests), batch):
        instances = requests[start:start + batch]
        writer.write(prediction_log.records_for(f"r{start}", MODEL, "1", instances,
                                                [{"class": "Adelie"} for _ in instances]))
    writer.close()


def run_monitor(tmp_path, training, **kwargs):
    return monitor.run(str(tmp_path / "log"), MODEL, training["statistics"], training["schema"],
                       str(tmp_path / "out"), report_path=str(tmp_path / "report.html"),
                       metrics_path=str(tmp_path / "metrics.json"), **kwargs)


@pytest.mark.parametrize("seed", [0, 1])
def test_requests_like_the_training_data_raise_no_alarm(tmp_path, training, penguins_table, seed):
    write_log(str(tmp_path / "log"), penguin_requests(penguins_table, 1000, seed))
    result = run_monitor(tmp_path, training)
    assert result["decision"] == {"retrain": False, "reasons": [], "alerts": []}, result["decision"]
    assert result["window"]["records"] == 1000 and result["anomalies"] == []
    assert set(result["skew"]) == {"island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                   "body_mass_g", "year"}


@pytest.mark.parametrize("seed", [0, 1])
def test_shifted_requests_flag_exactly_the_shifted_features_and_ask_for_retraining(tmp_path, training,
                                                                                  penguins_table, seed):
    write_log(str(tmp_path / "log"), penguin_requests(penguins_table, 1000, seed, heavier_and_from_atlantis))
    result = run_monitor(tmp_path, training)
    assert result["decision"]["retrain"] is True
    assert result["anomalies"] == ["body_mass_g", "island"]
    assert [r.split(":")[0] for r in result["decision"]["reasons"]] == ["body_mass_g"]  # skew: a retrain can fix it
    assert [a.split(":")[0] for a in result["decision"]["alerts"]] == ["island"]  # a new island: it cannot
    anomalies = tfmd.read_anomalies(str(tmp_path / "out"), monitor.SERVING_SPLIT)
    reasons = {name: [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason]
               for name, info in anomalies.anomaly_info.items()}
    assert reasons == {"body_mass_g": ["COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"],
                       "island": ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]}
    assert result["skew"]["body_mass_g"] > monitor.DEFAULT_JSD
    assert any(r.startswith("body_mass_g: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH") for r in
               result["decision"]["reasons"])
    report = (tmp_path / "report.html").read_text()
    assert "RETRAIN" in report and report.count("<svg") >= 14  # distribution + trend per feature
    decision = json.loads((tmp_path / "out" / monitor.DECISION_FILE).read_text())
    assert decision["retrain"] is True
    prom = (tmp_path / "out" / monitor.PROMETHEUS_FILE).read_text()
    assert 'kubetfx_feature_skew{model="penguin",feature="body_mass_g",measure="jsd"}' in prom
    assert 'kubetfx_monitor_retrain{model="penguin"} 1' in prom


def test_a_type_change_and_a_missing_feature_are_alerts_not_a_retrain(tmp_path, training, penguins_table):
    """Schema anomalies are the clients' (or the schema's) to fix: the next version would meet the same requests."""
    requests = penguin_requests(penguins_table, 300, 3)
    for row in requests:
        row["year"] = str(row["year"])  # a client sends years as strings
        del row["sex"]
    write_log(str(tmp_path / "log"), requests)
    result = run_monitor(tmp_path, training)
    anomalies = tfmd.read_anomalies(str(tmp_path / "out"), monitor.SERVING_SPLIT)
    types = {name: {anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason}
             for name, info in anomalies.anomaly_info.items()}
    assert "UNEXPECTED_DATA_TYPE" in types["year"]
    assert "SCHEMA_MISSING_COLUMN" in types["sex"]
    assert result["decision"]["retrain"] is False and result["decision"]["reasons"] == []
    assert sorted(a.split(":")[0] for a in result["decision"]["alerts"]) == ["sex", "year"]
    assert 'kubetfx_monitor_alerts{model="penguin"} 2' in (tmp_path / "out" / monitor.PROMETHEUS_FILE).read_text()


def test_live_quality_from_late_labels(tmp_path, training, penguins_table):
    requests = penguin_requests(penguins_table, 200, 4)
    write_log(str(tmp_path / "log"), requests)
    labels = tmp_path / "labels.csv"
    # Half the requests labelled: the logged prediction (always Adelie) is right for a quarter of those.
    rows = ["request_id,instance,label"] + [f"r{i - i % 10},{i % 10},{'Adelie' if i % 4 == 0 else 'Gentoo'}"
                                            for i in range(0, 200, 2)]
    labels.write_text("\n".join(rows) + "\n")
    info = {"problem_type": "classification", "metrics": {"eval_accuracy": 0.97}}
    result = run_monitor(tmp_path, training, labels=str(labels), model_info=info)
    assert result["live_quality"] == {"labelled": 100, "accuracy": 0.5}
    assert any("live accuracy 0.5000 on 100 labelled requests is below" in r for r in result["decision"]["reasons"])


def test_too_few_records_decide_nothing_and_windows_select_records(tmp_path, training, penguins_table):
    write_log(str(tmp_path / "log"), penguin_requests(penguins_table, 20, 5))
    result = run_monitor(tmp_path, training)
    assert result["decision"]["retrain"] is False and "only 20 logged predictions" in result["decision"]["note"]
    records, skipped = prediction_log.read_records(str(tmp_path / "log"), MODEL, last_n=5)
    assert len(records) == 5 and skipped == 0
    assert prediction_log.read_records(str(tmp_path / "log"), MODEL, start="2999-01-01")[0] == []
    with pytest.raises(ConfigError, match="give a time window .* or last_n, not both"):
        run_monitor(tmp_path, training, last_n=5, start="2026-01-01")


def test_the_logger_never_blocks_and_counts_what_it_drops(tmp_path):
    import threading
    import time

    logger = prediction_log.PredictionLogger(str(tmp_path), MODEL, queue_size=1)
    release = threading.Event()
    real_write = logger.writer.write
    logger.writer.write = lambda records: (release.wait(10), real_write(records))  # a sink that hangs
    logger.log("r0", "1", [{"a": 0}], [{"class": "x"}])  # taken by the writer thread, which now hangs
    deadline = time.monotonic() + 5
    while logger.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    logger.log("r1", "1", [{"a": 1}], [{"class": "x"}])  # fills the queue
    started = time.monotonic()
    logger.log("r2", "1", [{"a": 2}, {"a": 3}], [{"class": "x"}, {"class": "y"}])  # no room: dropped, at once
    assert time.monotonic() - started < 0.1 and logger.dropped == 2
    release.set()
    logger.close()
    records, _ = prediction_log.read_records(str(tmp_path), MODEL)
    assert [r["request_id"] for r in records] == ["r0", "r1"] and logger.written == 2
    assert not any(f.endswith(prediction_log.PART) for f in os.listdir(tmp_path / MODEL))


def test_kserves_logger_cloudevents_become_the_same_records(tmp_path):
    """What KServe's agent POSTs (binary and structured CloudEvents, V1 and V2 bodies), over real HTTP."""
    import threading
    import urllib.error
    import urllib.request

    from kubetfx.components.model_monitor import sink

    server = sink.make_server(str(tmp_path), 0, host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"

    def post(body: dict, headers: dict) -> int:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    binary = {"ce-specversion": "1.0", "ce-source": "http://localhost:9081/", "ce-inferenceservicename": "penguin",
              "Content-Type": "application/json"}
    instances = [{"island": "Biscoe", "body_mass_g": 5000}, {"island": "Dream", "body_mass_g": 3500}]
    assert post({"instances": instances}, {**binary, "ce-id": "a1", "ce-type": sink.REQUEST_TYPE}) == 202
    assert post({"predictions": [{"class": "Gentoo"}, {"class": "Adelie"}], "model_version": "4"},
                {**binary, "ce-id": "a1", "ce-type": sink.RESPONSE_TYPE}) == 202
    v2_request = {"inputs": [{"name": "island", "datatype": "BYTES", "shape": [1], "data": ["Torgersen"]},
                  {"name": "body_mass_g", "datatype": "INT64", "shape": [1], "data": [3300]}]}
    v2_response = {"outputs": [{"name": "classes", "datatype": "BYTES", "shape": [1], "data": ["Adelie"]}],
                   "model_version": "4"}
    structured = {"Content-Type": "application/cloudevents+json"}
    assert post({"id": "b2", "type": sink.RESPONSE_TYPE, "inferenceservicename": "penguin", "data": v2_response},
                structured) == 202  # the response may arrive first
    assert post({"id": "b2", "type": sink.REQUEST_TYPE, "inferenceservicename": "penguin", "data": v2_request},
                structured) == 202
    try:
        post({"x": 1}, {"Content-Type": "application/json"})
        raise AssertionError("a non-CloudEvent was accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 400
    server.shutdown()
    for logger in server.loggers.values():
        logger.close()
    records, _ = prediction_log.read_records(str(tmp_path), "penguin")
    assert [(r["request_id"], r["instance"], r["features"], r["prediction"], r["model_version"]) for r in records] == [
        ("a1", 0, instances[0], {"class": "Gentoo"}, "4"), ("a1", 1, instances[1], {"class": "Adelie"}, "4"),
        ("b2", 0, {"island": "Torgersen", "body_mass_g": 3300}, {"classes": "Adelie"}, "4")]
