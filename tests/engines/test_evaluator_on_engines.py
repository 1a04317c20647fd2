"""The Evaluator's TFMA path on a Flink and a Spark cluster equals TFMA on the local default.

The candidate (the trained penguin model) against a baseline (the untrained one, pushed as version
1 of the model repository), TFX-style thresholds (a value and a change threshold) on every slice:
the same metrics for candidate and baseline on every slice (float tolerance), the same plots,
validation result, blessing and reasons.
"""

import pytest

from helpers.evaluation_outputs import MODEL_NAME, TFX_PENGUIN_CONFIG, assert_same_evaluation, evaluate
from helpers.predictor import push_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory, raw_examples, good_model, untrained_model) -> dict:
    root = tmp_path_factory.mktemp("evaluator-engines")
    repository = str(root / "repository")
    assert push_model(untrained_model, repository, MODEL_NAME)[0] == 1
    config = root / "eval_config.pbtxt"
    config.write_text(TFX_PENGUIN_CONFIG)
    arguments = {"examples_dir": raw_examples, "model_dir": good_model, "eval_config": str(config),
                 "baseline_repository": repository, "model_name": MODEL_NAME, "engine": "tfma"}
    return {"arguments": arguments, "local": evaluate(root / "local", **arguments)}


def test_tfma_on_the_engine_equals_the_local_run(setup, engine, tmp_path):
    name, beam_args = engine
    local = setup["local"]
    assert local["result"]["blessed"] == 1 and local["result"]["baseline_version"] == 1
    run = evaluate(tmp_path, **setup["arguments"], beam_pipeline_args=beam_args)
    assert run["result"]["engine"] == "tfma"
    assert run["result"]["baseline_metrics"], f"{name}: no baseline metrics"
    assert_same_evaluation(run, local)
