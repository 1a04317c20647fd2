"""The penguin pipeline: Palmer Penguins species classification, TFX's reference example."""

from kubetfx.pipelines.tabular import pipeline as tabular
from kubetfx.pipelines.config import PipelineConfig

MODEL_NAME = "penguin"
PIPELINE_NAME = "kubetfx-penguin"
LABEL = "species"
DESCRIPTION = "Palmer Penguins species classification, TFX-style, on Kubeflow Pipelines v2."


def make(config: PipelineConfig | None = None):
    return tabular.build(PIPELINE_NAME, DESCRIPTION, LABEL, MODEL_NAME, config)


penguin_pipeline = make()
