"""`make serve` -> traffic -> `make monitor` -> retrain on the newest span -> the served model reloads, locally.

The whole loop with real parts: the penguin pipeline on kfp.local, the predictor in its own process
writing its prediction log, real HTTP requests, the monitor CLI, and the hot reload — while a client
keeps sending requests, none of which may fail.
"""

import itertools
import os
import random
import threading
import time

import pyarrow.csv as pacsv
import pyarrow.compute as pc

from kubetfx.pipelines.cli import main as cli
from kubetfx.pipelines.local import runner as local_runner
from kubetfx.pipelines.penguin import data as penguin_data

from helpers.predictor import MODEL, Server


def requests_from(table, count: int, seed: int, shift: bool) -> list[dict]:
    rows = [{k: v for k, v in row.items() if k != "species"} for row in table.to_pylist()]
    rng = random.Random(seed)
    drawn = [dict(rng.choice(rows)) for _ in range(count)]
    for row in drawn:
        if shift:
            row["bill_length_mm"] = round(row["bill_length_mm"] * 1.3, 1)
            if rng.random() < 0.05:
                row["island"] = "Atlantis"
    return drawn


def replay(server: Server, requests: list[dict], batch: int = 10) -> list[int]:
    return [server.predict(requests[i:i + batch])[0] for i in range(0, len(requests), batch)]


def test_serve_replay_monitor_retrain_and_reload_without_a_failed_request(tmp_path, capsys):
    root = tmp_path / "root"
    assert cli.main(["run", MODEL, "--root", str(root)]) == local_runner.EXIT_PUSHED
    capsys.readouterr()
    table = penguin_data.load_table(drop_missing=True)
    server = Server(["--model_repository", str(root / "model-repository"), "--model_name", MODEL,
                     "--prediction_log_dir", str(root / "prediction-log"), "--poll_interval_s", "1"],
                    str(tmp_path / "server.log"))
    failures, answered_versions, stop = [], [], threading.Event()
    try:
        server.wait_ready()
        assert set(replay(server, requests_from(table, 300, seed=0, shift=False))) == {200}
        code = cli.main(["monitor", MODEL, "--root", str(root), "--retrain"])
        out = capsys.readouterr().out
        assert code == 0 and "Monitored 300 logged predictions of penguin (versions 1)" in out, out
        assert "No retraining needed." in out and "Retrain" not in out

        # The world changes: longer bills (what the model tells species by), and a few penguins from an
        # island never seen in training.
        statuses = replay(server, requests_from(table, 600, seed=1, shift=True))
        assert 400 in statuses and 200 in statuses  # Atlantis is turned away, and logged all the same
        shifted = table.set_column(table.schema.get_field_index("bill_length_mm"), "bill_length_mm",
                                   pc.round(pc.multiply(table.column("bill_length_mm"), 1.3), 1))
        span_2 = root / "data" / "penguins" / "span-2"
        span_2.mkdir(parents=True)
        pacsv.write_csv(shifted, str(span_2 / "penguins.csv"))  # the newest span the retraining will read

        # The client's traffic from now on: the changed world (what version 2 will be trained on), no Atlantis.
        current = [r for r in requests_from(table, 400, seed=2, shift=True) if r["island"] != "Atlantis"]

        def client():
            for sent in itertools.count():
                if stop.is_set():
                    return
                status, body = server.predict([current[sent % len(current)]])
                if status != 200:
                    failures.append((status, body))
                else:
                    answered_versions.append(body["model_version"])
                time.sleep(0.1)

        watcher = threading.Thread(target=client, daemon=True)
        watcher.start()
        code = cli.main(["monitor", MODEL, "--root", str(root), "--last-n", "600", "--retrain"])
        out = capsys.readouterr().out
        assert "Monitored 600 logged predictions" in out and "Retrain:" in out, out
        assert "bill_length_mm: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in out.split("Retrain:")[1]
        assert "island: ENUM_TYPE_UNEXPECTED_STRING_VALUES" in out.split("Alerts")[1].split("Retrain:")[0]
        assert code == local_runner.EXIT_PUSHED, out
        assert "span" in open(os.path.join(root, "logs", sorted(os.listdir(root / "logs"))[-1])).read()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not answered_versions or answered_versions[-1] != "2"):
            time.sleep(0.5)
        stop.set()
        watcher.join(10)
        assert answered_versions and answered_versions[-1] == "2", server.log()[-2000:]
        assert "1" in answered_versions  # the client was answered before and after the switch
        assert failures == []

        # Monitoring again, with --retrain: the log the first retrain was decided on cannot ask for a second one.
        runs = os.listdir(root / "logs")
        code = cli.main(["monitor", MODEL, "--root", str(root), "--retrain"])
        out = capsys.readouterr().out
        assert code == 0 and "against version 2's training data" in out and "since version 2 was pushed" in out, out
        assert "Retrain" not in out and os.listdir(root / "logs") == runs, out
        assert sorted(os.listdir(root / "model-repository" / MODEL)) == ["1", "2"]
    finally:
        stop.set()
        server.stop()
