"""The churn pipeline: the tabular pipeline on synthetic churn data (binary classification)."""

from kubetfx.pipelines.tabular import pipeline as tabular
from kubetfx.pipelines.config import PipelineConfig
from kubetfx.pipelines.synthetic.churn import LABEL

MODEL_NAME = "churn"
PIPELINE_NAME = "kubetfx-churn"
DESCRIPTION = "Customer churn (binary classification) on synthetic tabular data."


def make(config: PipelineConfig | None = None):
    return tabular.build(PIPELINE_NAME, DESCRIPTION, LABEL, MODEL_NAME, config)
