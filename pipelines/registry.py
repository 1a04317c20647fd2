"""The pipelines the CLI knows: how to build each one and what it runs on locally."""

import dataclasses
import os
from typing import Callable

CHURN_LOCAL_ROWS = 50_000


@dataclasses.dataclass(frozen=True)
class PipelineEntry:
    name: str
    make: Callable  # PipelineConfig | None -> @dsl.pipeline function
    local_arguments: Callable[[str], dict]  # local root (data/, model-repository/ inside) -> pipeline arguments


def _span_pattern(root: str, file_name: str) -> str:
    from kubetfx.components.common.storage import SPAN_TOKEN

    return os.path.join(os.path.abspath(root), f"span-{SPAN_TOKEN}", file_name)


def _make_penguin(config=None):
    from kubetfx.pipelines.penguin import pipeline

    return pipeline.make(config)


def model_repository(local_root: str) -> str:
    """The embedded default's model repository (what `make serve` serves)."""
    return os.path.join(os.path.abspath(local_root), "model-repository")


def _penguin_local_arguments(local_root: str) -> dict:
    from kubetfx.pipelines.penguin import data

    root = os.path.join(local_root, "data", "penguins")
    data.write_span(root, span=1)
    return {"input_uri": _span_pattern(root, "penguins.csv"), "push_destination": model_repository(local_root)}


def _make_churn(config=None):
    from kubetfx.pipelines.churn import pipeline

    return pipeline.make(config)


def _churn_local_arguments(local_root: str) -> dict:
    from kubetfx.pipelines.synthetic import churn

    root = os.path.join(local_root, "data", "churn")
    path = os.path.join(root, "span-1", "churn.csv")
    if not os.path.exists(path):
        churn.write_csv(path, CHURN_LOCAL_ROWS)
    return {"input_uri": _span_pattern(root, "churn.csv"), "push_destination": model_repository(local_root)}


PIPELINES = {
    "penguin": PipelineEntry("penguin", _make_penguin, _penguin_local_arguments),
    "churn": PipelineEntry("churn", _make_churn, _churn_local_arguments),
}
