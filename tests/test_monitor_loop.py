"""The monitor on the real predictor's own log: no false alarm on ordinary client traffic, no retraining that a
retrain cannot fix, no second retrain from the log the first one read, and never "no retraining needed" when
nothing was logged. Real parts: the predictor in its own process, real HTTP, a real trained penguin model."""

import os
import signal
import subprocess
import time

import pytest

from kubetfx.components.common import prediction_log
from kubetfx.components.infra_validator.launcher import free_ports
from kubetfx.pipelines import registry
from kubetfx.pipelines.cli import main as cli

from helpers.messages import user_error
from helpers.predictor import MODEL, Server, push_model
from helpers.traffic import longer_bills, penguin_traffic, send

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def local_root(tmp_path, penguin_model, penguin_pipeline_artifacts):
    """A local root as `make run` leaves it: version 1 pushed with its schema and training statistics."""
    root = tmp_path / "root"
    push(root, penguin_model, penguin_pipeline_artifacts)
    return root


def push(root, penguin_model, artifacts, model_name: str = MODEL) -> int:
    from kubetfx.components.common import tfmd

    version, _ = push_model(penguin_model["model"], registry.model_repository_dir(str(root)), model_name,
                            schema=tfmd.schema_path(artifacts["schema"]), statistics=str(artifacts["root"] / "statistics"))
    return version


def serve_and_send(root, tmp_path, traffic, model_name: str = MODEL) -> list[int]:
    server = Server(["--model_repository", registry.model_repository_dir(str(root)), "--model_name", model_name,
                     "--prediction_log_dir", registry.prediction_log_dir(str(root))],
                    str(tmp_path / f"server-{time.monotonic_ns()}.log"), model=model_name)
    try:
        server.wait_ready()
        return [request["status"] for request in send(server, traffic)]
    finally:
        server.stop()  # the log is closed: every record is on disk


def monitor(capsys, root, *args):
    code = cli.main(["monitor", *args, "--root", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


def test_integer_columns_sent_as_floats_raise_no_alarm(local_root, tmp_path, capsys, penguins_table):
    """pandas gives 181.0 for an int column; the predictor accepts it as an INT, so must the monitor."""
    traffic = penguin_traffic(penguins_table, 400, seed=0, as_floats=True)
    assert traffic[0][0]["flipper_length_mm"] == float(int(traffic[0][0]["flipper_length_mm"]))
    assert set(serve_and_send(local_root, tmp_path, traffic)) == {200}
    code, out, _ = monitor(capsys, local_root, MODEL)
    assert code == 0 and "Monitored 400 logged predictions" in out, out
    assert "UNEXPECTED_DATA_TYPE" not in out and "Retrain" not in out and "Alert" not in out, out
    assert "No retraining needed." in out


def test_a_retrain_is_not_asked_for_twice_by_the_same_log(local_root, tmp_path, capsys, penguins_table,
                                                          penguin_model, penguin_pipeline_artifacts):
    traffic = penguin_traffic(penguins_table, 400, seed=1, shift=longer_bills, as_floats=True)
    assert set(serve_and_send(local_root, tmp_path, traffic)) == {200}
    code, out, _ = monitor(capsys, local_root, MODEL)
    assert code == 0 and "Retrain:" in out and "bill_length_mm: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in out
    # What `--retrain` ends in: the pipeline pushes version 2 (test_continuous_training runs it for real).
    assert push(local_root, penguin_model, penguin_pipeline_artifacts) == 2
    code, out, _ = monitor(capsys, local_root, MODEL)
    assert code == 0 and "Retrain" not in out, out
    assert "since version 2 was pushed" in out and "nothing decided" in out.lower(), out
    assert "No retraining needed." not in out


def test_a_type_anomaly_alerts_and_does_not_retrain(local_root, tmp_path, capsys, penguins_table):
    """Years sent as strings: the predictor turns them away (and logs them); retraining cannot fix a client."""
    def year_as_text(row, rng):
        row["year"] = str(row["year"]) if rng.random() < 0.05 else row["year"]
        return row

    statuses = serve_and_send(local_root, tmp_path, penguin_traffic(penguins_table, 400, seed=2, shift=year_as_text))
    assert 400 in statuses and 200 in statuses
    code, out, _ = monitor(capsys, local_root, MODEL, "--retrain")
    assert code == 0, out
    assert "Retrain" not in out and "Retraining" not in out, out
    alerts = out.split("Alerts")[1]
    assert "year: UNEXPECTED_DATA_TYPE" in alerts and "retraining cannot fix" in out, out


def test_no_log_says_so_and_too_few_records_decide_nothing(local_root, tmp_path, capsys, penguins_table):
    code, out, err = monitor(capsys, local_root, MODEL)
    message = user_error(code, err)
    assert "no prediction log" in message and "make serve" in message and "No retraining" not in out, message
    assert set(serve_and_send(local_root, tmp_path, penguin_traffic(penguins_table, 20, seed=3))) == {200}
    code, out, _ = monitor(capsys, local_root, MODEL)
    assert code == 0 and "only 20 logged predictions" in out and "nothing decided" in out.lower(), out
    assert "No retraining needed." not in out


def test_make_serve_and_make_monitor_work_for_any_pushed_model(tmp_path, penguin_model, penguin_pipeline_artifacts,
                                                               penguins_table):
    """`make serve MODEL=...` logs predictions and `make monitor MODEL=...` reads them, whatever the name."""
    root = tmp_path / "root"
    push(root, penguin_model, penguin_pipeline_artifacts, model_name="birds")
    http_port, grpc_port = free_ports(2)
    make = ["make", "-s", "-C", ROOT, f"ROOT={root}", "MODEL=birds"]
    with open(tmp_path / "serve.log", "wb") as log:
        serving = subprocess.Popen(make + ["serve", f"HTTP_PORT={http_port}", f"GRPC_PORT={grpc_port}"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        server = Server.attach(http_port, "birds", str(tmp_path / "serve.log"), serving)
        server.wait_ready()
        assert {r["status"] for r in send(server, penguin_traffic(penguins_table, 150, seed=4))} == {200}
    finally:
        os.killpg(serving.pid, signal.SIGTERM)
        serving.wait(30)
    records, _ = prediction_log.read_records(registry.prediction_log_dir(str(root)), "birds", include_open=True)
    assert len(records) == 150
    result = subprocess.run(make + ["monitor"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Monitored 150 logged predictions of birds" in result.stdout and "No retraining needed." in result.stdout
