"""The prediction log keeps to its size and age limits under load -- the predictor's and the cluster sink's --, counts
what it deleted and dropped in /metrics, keeps the newest records for the monitor, and the monitor says when its
window reaches back past what retention kept."""

import concurrent.futures
import json
import os
import threading
import time
import urllib.request

import pytest

from kubetfx.components.common import prediction_log
from kubetfx.components.model_monitor import sink

from helpers.predictor import Server, push_model
from helpers.traffic import penguin_traffic

MODEL = "penguin"


def directory_bytes(path) -> int:
    total = 0
    for entry in os.scandir(path):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:  # deleted while we looked
            pass
    return total


class SizeWatch:
    """Samples a directory's size every few milliseconds on a thread: the largest it ever was."""

    def __init__(self, path):
        self.path, self.largest, self._stop = path, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            if os.path.isdir(self.path):
                self.largest = max(self.largest, directory_bytes(self.path))
            time.sleep(0.003)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def test_a_capped_writer_never_exceeds_its_cap_and_keeps_the_newest_records(tmp_path):
    cap = 200_000
    writer = prediction_log.RotatingWriter(str(tmp_path), MODEL, max_bytes=20_000, max_total_bytes=cap)
    directory = tmp_path / MODEL
    largest = 0
    for i in range(4000):  # ~2.5 MB of records through a 200 kB log
        writer.write(prediction_log.records_for(f"r{i}", MODEL, "1", [{"x": i, "pad": "p" * 500}], [{"y": 1}]))
        largest = max(largest, directory_bytes(directory))
    writer.close()
    assert largest <= cap and directory_bytes(directory) <= cap
    assert writer.deleted_files > 50 and writer.deleted_bytes > 2_000_000
    records, skipped = prediction_log.read_records(str(tmp_path), MODEL)
    assert skipped == 0 and records[-1]["request_id"] == "r3999"  # the newest are kept, oldest deleted first
    assert len(records) > 250 and records[0]["request_id"] != "r0"
    marker = json.loads((directory / prediction_log.RETENTION_FILE).read_text())
    assert marker["deleted_files"] == writer.deleted_files and marker["deleted_through"] <= records[0]["time"]


def test_lines_piled_up_behind_a_busy_server_are_written_in_files_of_the_size_asked_for(tmp_path):
    """The writer wakes after many requests: what piled up goes into files of at most max_bytes each, so that
    keeping the directory under its cap deletes the oldest and leaves the newest to read."""
    log = prediction_log.PredictionLogger(str(tmp_path), MODEL, max_bytes=20_000, max_total_bytes=120_000,
                                          flush_interval_s=3600)
    for i in range(300):  # ~150 kB, all pending at once
        log.log(f"r{i}", "1", [{"x": i, "pad": "p" * 400}], [{"y": 1}])
    log.close()
    files = prediction_log.log_files(str(tmp_path), MODEL)
    assert len(files) > 3 and max(os.path.getsize(path) for path in files) <= 20_000
    records, _ = prediction_log.read_records(str(tmp_path), MODEL)
    assert records[-1]["request_id"] == "r299" and log.written + log.dropped == 300


def test_files_older_than_the_age_limit_are_deleted(tmp_path):
    writer = prediction_log.RotatingWriter(str(tmp_path), MODEL, max_bytes=1, max_age_s=3600)
    for i in range(3):
        writer.write(prediction_log.records_for(f"r{i}", MODEL, "1", [{"x": i}], [{"y": 1}]))  # a file each
    files = prediction_log.log_files(str(tmp_path), MODEL)
    assert len(files) == 3
    two_hours_ago = time.time() - 7200
    for path in files[:2]:
        os.utime(path, (two_hours_ago, two_hours_ago))
    writer.maintain(force=True)
    assert prediction_log.log_files(str(tmp_path), MODEL) == files[2:] and writer.deleted_files == 2
    writer.close()


def test_the_monitor_says_when_retention_cut_its_window(tmp_path, penguin_pipeline_artifacts, penguins_table):
    from kubetfx.components.common import tfmd
    from kubetfx.components.model_monitor import executor as monitor

    writer = prediction_log.RotatingWriter(str(tmp_path / "log"), MODEL, max_bytes=30_000, max_total_bytes=150_000)
    for i, (instance, _) in enumerate(penguin_traffic(penguins_table, 1500, seed=0)):
        writer.write(prediction_log.records_for(f"r{i}", MODEL, "1", [instance], [{"class": "Adelie"}]))
    writer.close()
    result = monitor.run(str(tmp_path / "log"), MODEL, str(penguin_pipeline_artifacts["root"] / "statistics"),
                         tfmd.schema_path(penguin_pipeline_artifacts["schema"]), str(tmp_path / "out"),
                         start="2000-01-01T00:00:00Z", report_path=str(tmp_path / "report.html"))
    assert 100 < result["window"]["records"] < 1500
    cut = result["window"]["retention"]
    assert cut["deleted_files"] > 0 and cut["deleted_through"] < result["window"]["start"]
    assert "deleted by the log's retention" in (tmp_path / "report.html").read_text()


def test_the_predictor_keeps_its_log_under_the_cap_under_load(tmp_path, penguin_model, penguins_table):
    repository, log_dir, cap = tmp_path / "repository", tmp_path / "log", 300_000
    push_model(penguin_model["model"], str(repository))
    server = Server(["--model_repository", str(repository), "--model_name", MODEL, "--prediction_log_dir",
                     str(log_dir), "--prediction_log_max_total_bytes", str(cap),
                     "--prediction_log_max_file_bytes", "40000"], str(tmp_path / "server.log"))
    instances = [instance for instance, _ in penguin_traffic(penguins_table, 20, seed=1)]
    try:
        server.wait_ready()
        with SizeWatch(log_dir / MODEL) as watch, concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: server.predict(instances)[0], range(1500)))  # ~30,000 records
        assert set(statuses) == {200}
        time.sleep(0.5)  # the writer thread's last flush
        status, body = server.request("GET", "/metrics")
        metrics = body.decode()
    finally:
        server.stop()
    assert 0 < watch.largest <= cap, watch.largest
    assert directory_bytes(log_dir / MODEL) <= cap
    deleted = [line for line in metrics.splitlines() if line.startswith("kubetfx_predictor_prediction_log_deleted_")]
    assert deleted and all(float(line.split()[-1]) > 0 for line in deleted), deleted
    assert 'outcome="dropped"' in metrics
    records, _ = prediction_log.read_records(str(log_dir), MODEL)
    assert records and len(records) < 30_000  # what the monitor reads: the newest


def test_the_cluster_sink_keeps_its_volume_under_the_cap_under_load(tmp_path):
    cap = 250_000
    server = sink.make_server(str(tmp_path), 0, host="127.0.0.1", max_total_bytes=cap, max_file_bytes=25_000)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    instance = {"island": "Biscoe", "bill_length_mm": 39.1, "note": "n" * 300}

    def post_pair(i: int) -> int:
        codes = []
        for kind, body in ((sink.REQUEST_TYPE, {"instances": [instance] * 4}),
                           (sink.RESPONSE_TYPE, {"predictions": [{"class": "Adelie"}] * 4, "model_version": "1"})):
            request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
                "Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": f"e{i}", "ce-type": kind,
                "ce-inferenceservicename": MODEL})
            with urllib.request.urlopen(request, timeout=10) as response:
                codes.append(response.status)
        return max(codes)

    try:
        with SizeWatch(tmp_path / MODEL) as watch, concurrent.futures.ThreadPoolExecutor(6) as pool:
            assert set(pool.map(post_pair, range(1500))) == {202}  # ~1.9 MB of records
        time.sleep(0.3)
        with urllib.request.urlopen(url + "metrics", timeout=10) as response:
            metrics = response.read().decode()
    finally:
        server.shutdown()
        for logger in server.loggers.values():
            logger.close()
    assert 0 < watch.largest <= cap, watch.largest
    assert 'kubetfx_prediction_log_deleted_files{model="penguin"}' in metrics
    assert float(metrics.split('kubetfx_prediction_log_deleted_files{model="penguin"}')[1].split()[0]) > 0


@pytest.mark.parametrize("flag, value", [("--max_total_bytes", "0"), ("--max_total_bytes", "100")])
def test_the_sink_refuses_a_cap_it_cannot_keep(flag, value, capsys):
    with pytest.raises(SystemExit) as raised:
        sink.main(["--log_dir", "/tmp/unused", flag, value])
    assert raised.value.code == 2 and "max_total_bytes" in capsys.readouterr().err
