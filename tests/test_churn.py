"""The second problem type end to end through the executors: binary churn classification
on synthetic data with string and numeric features."""

import json
import os

import pytest

from kubetfx.components.example_gen import executor as example_gen
from kubetfx.components.schema_gen import executor as schema_gen
from kubetfx.components.statistics_gen import executor as statistics_gen
from kubetfx.components.trainer import executor as trainer
from kubetfx.components.transform import executor as transform
from kubetfx.pipelines.synthetic import churn


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("churn")
    csv = churn.write_csv(str(root / "churn.csv"), 6000, seed=3)
    paths = {k: str(root / k) for k in ("examples", "statistics", "schema", "graph", "transformed", "model", "run")}
    example_gen.run(csv, paths["examples"], label_column=churn.LABEL)
    statistics_gen.run(paths["examples"], paths["statistics"])
    schema_gen.run(paths["statistics"], paths["schema"], label_column=churn.LABEL)
    transform.run(paths["examples"], paths["schema"], paths["graph"], paths["transformed"], label_column=churn.LABEL)
    result = trainer.run(paths["transformed"], paths["graph"], paths["schema"], paths["model"], paths["run"],
                         label_column=churn.LABEL, hyperparameters={"epochs": 8, "batch_size": 64})
    return paths, result


def test_binary_classification_on_mixed_features(churn_model):
    paths, result = churn_model
    with open(os.path.join(paths["model"], "kubetfx_model.json")) as handle:
        info = json.load(handle)
    assert info["problem_type"] == "classification"
    assert sorted(info["class_names"]) == ["0", "1"]
    raw = {f["name"] if isinstance(f, dict) else f: f for f in info["raw_features"]}
    assert {"contract", "region", "tenure_months", "monthly_charges"} <= set(raw)
    # The generator's Bayes accuracy is ~0.8; majority class is ~0.6.
    assert result["metrics"]["eval_accuracy"] > 0.7
