"""Canary promotion decided by the models' live behaviour: the sequential test's guarantees, the decision rules, and
the whole experiment -- two versions served side by side by the real predictor, real HTTP traffic, late labels,
`kubetfx monitor` deciding and the Pusher's rollout code applying it -- plus the monitor pipeline's canary step."""

import glob
import json
import os
import random
import time

import numpy as np
import pytest
import yaml

from kubetfx.components.common import tfmd
from kubetfx.components.model_monitor import canary, sequential
from kubetfx.components.pusher import local_rollout
from kubetfx.pipelines import registry
from kubetfx.pipelines.cli import main as cli

from helpers.predictor import MODEL, Server, push_model
from helpers.traffic import penguin_traffic, send, write_labels

SETTINGS = canary.CanarySettings(alpha=0.05, margin=0.05)


# ----------------------------------------------------------------------------- the sequential test


def _run_to_decision(stable_p: float, canary_p: float, rng, step: int = 20, settings=SETTINGS) -> str:
    """Look after every ``step`` samples per version, as a monitor run every few minutes does; the first decision."""
    stable, candidate = rng.random(20_000) < stable_p, rng.random(20_000) < canary_p
    for n in range(step, 20_000, step):
        records = ([{"model_version": "1", "request_id": f"s{i}", "prediction": {"class": "x"}} for i in range(n)]
                   + [{"model_version": "2", "request_id": f"c{i}", "prediction": {"class": "x"}} for i in range(n)])
        labels = {**{(f"s{i}", 0): "x" if stable[i] else "y" for i in range(n)},
                  **{(f"c{i}", 0): "x" if candidate[i] else "y" for i in range(n)}}
        result = canary.evaluate(records, "1", "2", labels, "classification", settings)
        if result["action"] != canary.WAIT:
            return result["action"]
    return canary.WAIT


def test_a_canary_worse_by_more_than_the_margin_is_promoted_at_most_alpha_of_the_time():
    """Peeking at every step must not inflate false promotions: stable 0.90, canary 0.84 (worse by 0.06 > 0.05)."""
    rng = np.random.default_rng(7)
    decisions = [_run_to_decision(0.90, 0.84, rng, step=40) for _ in range(60)]
    assert decisions.count(canary.PROMOTE) <= 0.05 * len(decisions) + 1, decisions
    assert decisions.count(canary.ROLLBACK) >= 0.8 * len(decisions)


def test_the_confidence_sequence_covers_the_true_difference_at_every_look():
    rng = np.random.default_rng(3)
    misses = 0
    for _ in range(200):
        a, b = rng.random(3000) < 0.8, rng.random(3000) < 0.7
        for n in range(20, 3000, 20):  # 149 looks
            interval = sequential.compare(sequential.Arm.of(a[:n], True), sequential.Arm.of(b[:n], True), 0.05, 0.05)
            if not interval.low <= -0.1 <= interval.high:
                misses += 1
                break
    assert misses <= 0.05 * 200, misses  # a fixed-sample 95% interval read 149 times misses far more often


def test_planned_samples_shrink_with_a_wider_margin_and_grow_with_a_smaller_alpha():
    assert sequential.planned_samples(0.05, 0.05, 0.05, 0.025) > sequential.planned_samples(0.05, 0.05, 0.1, 0.05)
    assert sequential.planned_samples(0.05, 0.01, 0.05, 0.025) > sequential.planned_samples(0.05, 0.05, 0.05, 0.025)
    half = sequential.half_width(2 * 0.05 / sequential.planned_samples(0.05, 0.05, 0.05, 0.025), 0.05, 0.05)
    assert half <= 0.025


# ----------------------------------------------------------------------------- the decision rules


def _records(version: str, count: int, *, prefix: str, classes=("a",), error_share=0.0, latency=1.0, seed=0):
    rng = random.Random(seed)
    records = []
    for i in range(count):
        failed = rng.random() < error_share
        records.append({"request_id": f"{prefix}{i}", "instance": 0, "model_version": version,
                        "latency_ms": latency * (0.8 + 0.4 * rng.random()),
                        "prediction": {"error": "turned away"} if failed else {"class": rng.choice(classes)}})
    return records


def test_without_labels_a_canary_that_answers_differently_waits_for_labels():
    records = (_records("1", 400, prefix="s", classes=("a", "b")) + _records("2", 400, prefix="c", classes=("a",)))
    result = canary.evaluate(records, "1", "2", None, "classification", SETTINGS)
    assert result["action"] == canary.WAIT and "--labels" in result["reason"], result["reason"]


def test_without_labels_a_canary_that_answers_alike_is_promoted_at_the_tests_length():
    alike = _records("1", 3000, prefix="s", classes=("a", "b"), seed=1) + _records("2", 3000, prefix="c",
                                                                                  classes=("a", "b"), seed=2)
    early = canary.evaluate(alike[:100] + alike[3000:3100], "1", "2", None, "classification", SETTINGS)
    assert early["action"] == canary.WAIT and early["planned_samples"] > 100
    result = canary.evaluate(alike, "1", "2", None, "classification", SETTINGS)
    assert result["planned_samples"] <= 3000 and result["action"] == canary.PROMOTE, result["reason"]


def test_a_canary_that_fails_more_requests_or_answers_slower_is_rolled_back():
    failing = _records("1", 300, prefix="s") + _records("2", 300, prefix="c", error_share=0.2)
    result = canary.evaluate(failing, "1", "2", None, "classification", SETTINGS)
    assert result["action"] == canary.ROLLBACK and "fails more requests" in result["reason"]
    slow = _records("1", 300, prefix="s", latency=2.0) + _records("2", 300, prefix="c", latency=9.0)
    result = canary.evaluate(slow, "1", "2", None, "classification", SETTINGS)
    assert result["action"] == canary.ROLLBACK and "slower" in result["reason"]


def test_nothing_is_decided_below_the_minimum_sample():
    result = canary.evaluate(_records("1", 10, prefix="s") + _records("2", 10, prefix="c", error_share=1.0), "1", "2",
                             None, "classification", SETTINGS)
    assert result["action"] == canary.WAIT and "at least 30" in result["reason"]


# ----------------------------------------------------------------------------- the experiment, for real


def experiment(tmp_path, stable_model: str, canary_model: str, artifacts, table, seed: int) -> dict:
    """Push ``stable_model`` (v1), serve it with a 50% canary, push ``canary_model`` (v2); then rounds of 100 labelled
    instances and one `kubetfx monitor --labels` each, until a decision; then who answers."""
    root = tmp_path / f"root-{seed}"
    repository = registry.model_repository_dir(str(root))
    schema, statistics = tfmd.schema_path(artifacts["schema"]), str(artifacts["root"] / "statistics")
    push_model(stable_model, repository, schema=schema, statistics=statistics)
    server = Server(["--model_repository", repository, "--model_name", MODEL, "--canary_percent", "50",
                     "--poll_interval_s", "0.3", "--prediction_log_dir", registry.prediction_log_dir(str(root))],
                    str(tmp_path / f"server-{seed}.log"))
    labels, rounds, answered = tmp_path / f"labels-{seed}.csv", [], set()
    try:
        server.wait_ready()
        push_model(canary_model, repository, schema=schema, statistics=statistics)
        for _ in range(600):  # until the canary answers (loaded in the background, then half the requests)
            if server.predict([penguin_traffic(table, 1, seed)[0][0]])[1].get("model_version") == "2":
                break
        else:
            raise AssertionError(server.log()[-3000:])
        assert local_rollout.state(local_rollout.read(repository, MODEL)) == local_rollout.CANARY
        for round_number in range(12):
            sent = send(server, penguin_traffic(table, 100, seed * 100 + round_number))
            assert {request["status"] for request in sent} == {200}
            answered |= {request["body"]["model_version"] for request in sent}
            write_labels(labels, sent)
            assert cli.main(["monitor", MODEL, "--root", str(root), "--labels", str(labels)]) == 0
            latest = sorted(glob.glob(str(root / "monitor" / MODEL / "*")))[-1]
            verdict = json.load(open(os.path.join(latest, "decision.json")))["canary"]
            report = open(os.path.join(latest, "report.html"), encoding="utf-8").read()
            rounds.append({"action": verdict["action"], "reason": verdict["reason"], "report": report})
            if verdict["action"] != canary.WAIT:
                break
        time.sleep(2.0)  # the predictor follows the rollout document at its next poll (every 0.3 s)
        after = {server.predict([instance])[1]["model_version"] for instance, _ in penguin_traffic(table, 40, seed + 1)}
    finally:
        server.stop()
    return {"rounds": rounds, "after": after, "answered_during": answered,
            "document": local_rollout.read(repository, MODEL)}


@pytest.mark.parametrize("stable, candidate, action, said, kept, rollout", [
    ("good_model", "untrained_model", canary.ROLLBACK, "the canary is worse", "1", "rolled-back"),
    ("untrained_model", "good_model", canary.PROMOTE, "the canary is better", "2", "promoted")])
def test_a_worse_canary_is_rolled_back_and_a_better_one_promoted(request, tmp_path, capsys, penguin_pipeline_artifacts,
                                                                 penguins_table, stable, candidate, action, said,
                                                                 kept, rollout):
    run = experiment(tmp_path, request.getfixturevalue(stable), request.getfixturevalue(candidate),
                     penguin_pipeline_artifacts, penguins_table, seed=1 if action == canary.ROLLBACK else 2)
    last = run["rounds"][-1]
    print(f"\n{action}:", len(run["rounds"]), "round(s) of 100 labelled instances:", last["reason"])
    assert last["action"] == action and said in last["reason"], run["rounds"]
    assert run["answered_during"] == {"1", "2"} and run["after"] == {kept}
    predictor = run["document"]["spec"]["predictor"]
    assert predictor.get("canaryTrafficPercent") == (0 if action == canary.ROLLBACK else None)  # the Pusher's patch
    assert run["document"]["metadata"]["annotations"]["kubetfx.io/rollout"] == rollout
    assert f"Canary: version 2 vs 1 — {action.upper()}" in last["report"]
    assert "<svg" in last["report"].split("Canary:")[1]


def test_an_equal_canary_waits_until_the_tests_length_then_is_promoted(tmp_path, capsys, good_model,
                                                                       penguin_pipeline_artifacts, penguins_table):
    run = experiment(tmp_path, good_model, good_model, penguin_pipeline_artifacts, penguins_table, seed=3)
    actions = [r["action"] for r in run["rounds"]]
    print("\nequal canary:", actions, run["rounds"][-1]["reason"])
    assert actions[-1] == canary.PROMOTE and set(actions[:-1]) == {canary.WAIT}, actions
    # The predictor routes each 10-instance request at random: a first round may leave the canary under the minimum
    # sample; what must hold back the promotion is the sequential test itself, before its planned length.
    waits = [r["reason"] for r in run["rounds"][:-1]]
    assert any("no difference shown yet" in reason for reason in waits), waits
    assert all("no difference shown yet" in reason or "before any decision" in reason for reason in waits), waits
    assert "no worse than the stable version by more than 0.05 after the test's" in run["rounds"][-1]["reason"]
    assert run["after"] == {"2"}


# ----------------------------------------------------------------------------- on the cluster (compiled)


@pytest.mark.parametrize("env, alpha", [("dev", 0.05), ("prod", 0.01)])
def test_the_monitor_pipeline_carries_the_canary_decision_with_the_environments_alpha(tmp_path, capsys, env, alpha):
    output = tmp_path / f"monitor-{env}.yaml"
    assert cli.main(["compile", "monitor", "--env", env, "-o", str(output)]) == 0
    spec = next(yaml.safe_load_all(output.read_text()))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["canary"]["defaultValue"]["alpha"] == alpha
    assert parameters["deploy"]["defaultValue"]["name"]  # the Pusher's InferenceService it decides about
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["canary-rollout"]["taskInfo"]["name"] == "CanaryDecision"
    assert tasks["model-monitor"]["dependentTasks"] == ["canary-rollout"]
    executor = spec["deploymentSpec"]["executors"]["exec-canary-rollout"]["container"]
    assert "rollout_step.run_cluster" in " ".join(executor["command"] + executor.get("args", []))


def _cluster_service(percent: int = 50) -> dict:
    """The Pusher's InferenceService mid-canary as the API server returns it: revision 2 ready with its share."""
    return {"metadata": {"name": "penguin", "namespace": "ml", "generation": 2, "annotations": {
                "kubetfx.io/model-version": "2", "kubetfx.io/previous-model-version": "1",
                "kubetfx.io/previous-storage-uri": "pvc://kubetfx-model-repository/penguin/1"}},
            "spec": {"predictor": {"canaryTrafficPercent": percent,
                                   "model": {"storageUri": "pvc://kubetfx-model-repository/penguin/2"}}},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}],
                       "components": {"predictor": {"latestCreatedRevision": "penguin-predictor-2",
                                                    "latestReadyRevision": "penguin-predictor-2",
                                                    "traffic": [{"revisionName": "penguin-predictor-2",
                                                                 "percent": percent}]}}}}


@pytest.mark.parametrize("canary_right, action", [(0.3, "rollback"), (1.0, "promote")])
def test_the_cluster_step_decides_on_the_sinks_records_and_patches_the_inference_service(
        tmp_path, good_model, penguin_pipeline_artifacts, penguins_table, canary_right, action):
    """run_cluster: the InferenceService read and patched through the API (a recording fake), the sink's records."""
    from kubetfx.components.common import prediction_log
    from kubetfx.components.model_monitor import rollout_step

    from helpers.kube_fakes import RecordingCustomObjectsApi

    repository = tmp_path / "repository"
    for _ in range(2):
        push_model(good_model, str(repository), schema=tfmd.schema_path(penguin_pipeline_artifacts["schema"]),
                   statistics=str(penguin_pipeline_artifacts["root"] / "statistics"))
    writer = prediction_log.RotatingWriter(str(tmp_path / "log"), MODEL)
    rng, rows = random.Random(5), ["request_id,instance,label"]
    for i, (instance, label) in enumerate(penguin_traffic(penguins_table, 400, seed=5)):
        version = "2" if i % 2 else "1"
        right = rng.random() < (canary_right if version == "2" else 1.0)
        answer = label if right else next(k for k in ("Adelie", "Gentoo", "Chinstrap") if k != label)
        writer.write(prediction_log.records_for(f"e{i}", MODEL, version, [instance], [{"class": answer}]))
        rows.append(f"e{i},0,{label}")
    writer.close()
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    api = RecordingCustomObjectsApi({("ml", "penguin"): _cluster_service()})
    result = rollout_step.run_cluster(str(tmp_path / "log"), str(repository), MODEL, str(tmp_path / "out"),
                                      canary={"alpha": 0.01, "margin": 0.05}, deploy={"name": "penguin",
                                                                                       "namespace": "ml"},
                                      labels=str(tmp_path / "labels.csv"), report_path=str(tmp_path / "r.html"),
                                      api=api)
    assert result["action"] == action and result["applied"] is True, result["reason"]
    patched = api.objects[("ml", "penguin")]
    if action == "rollback":
        assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 0
        assert patched["spec"]["predictor"]["model"]["storageUri"] == "pvc://kubetfx-model-repository/penguin/1"
    else:
        assert "canaryTrafficPercent" not in patched["spec"]["predictor"]
    assert [call[0] for call in api.calls] == ["get", "patch"]
    assert "Canary: version 2 vs 1" in (tmp_path / "r.html").read_text()
