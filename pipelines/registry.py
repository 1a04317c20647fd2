"""The pipelines the CLI knows: how to build each one and what it runs on locally."""

import dataclasses
import os
from typing import Callable


@dataclasses.dataclass(frozen=True)
class PipelineEntry:
    name: str
    pipeline_func: Callable[[], Callable]
    local_arguments: Callable[[str], dict]  # local data root -> pipeline arguments


def _penguin_pipeline():
    from kubetfx.pipelines.penguin.pipeline import penguin_pipeline

    return penguin_pipeline


def _penguin_local_arguments(data_root: str) -> dict:
    from kubetfx.components.common.storage import SPAN_TOKEN
    from kubetfx.pipelines.penguin import data

    penguins_root = os.path.join(data_root, "penguins")
    data.write_span(penguins_root, span=1)
    return {"input_uri": os.path.join(os.path.abspath(penguins_root), f"span-{SPAN_TOKEN}", "penguins.csv")}


PIPELINES = {
    "penguin": PipelineEntry("penguin", _penguin_pipeline, _penguin_local_arguments),
}
