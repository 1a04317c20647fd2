"""The pipelines the CLI knows: how to build each one and what it runs on locally.

``penguin`` and ``churn`` are examples of the one tabular pipeline; :func:`for_data` builds
the same pipeline for a user's own data and label (``kubetfx run --data FILE --label COL``).
"""

import dataclasses
import os
import re
from typing import Callable

CHURN_LOCAL_ROWS = 50_000


TRAINING, MONITOR = "training", "monitor"


@dataclasses.dataclass(frozen=True)
class PipelineEntry:
    name: str
    make: Callable  # PipelineConfig | None -> @dsl.pipeline function
    local_arguments: Callable[[str], dict]  # local root (data/, model-repository/ inside) -> pipeline arguments
    kind: str = TRAINING  # which environment values its compile bakes in (compiler.environment_defaults)
    # Parameters the command line fixed (``--data``: input_uri): they win over an environment's defaults.
    parameters: dict = dataclasses.field(default_factory=dict)

    def parameter_help(self) -> dict:
        if self.kind == MONITOR:
            from kubetfx.pipelines.monitor.pipeline import PARAMETER_HELP
        else:
            from kubetfx.pipelines.tabular.pipeline import PARAMETER_HELP
        return PARAMETER_HELP


def _span_pattern(root: str, file_name: str) -> str:
    from kubetfx.components.common.storage import SPAN_TOKEN

    return os.path.join(os.path.abspath(root), f"span-{SPAN_TOKEN}", file_name)


def _make_penguin(config=None):
    from kubetfx.pipelines.penguin import pipeline

    return pipeline.make(config)


def model_repository_dir(local_root: str) -> str:
    """The embedded default's model repository (what `make serve` serves)."""
    return os.path.join(os.path.abspath(local_root), "model-repository")


def _penguin_local_arguments(local_root: str) -> dict:
    from kubetfx.pipelines.penguin import data

    root = os.path.join(local_root, "data", "penguins")
    data.write_span(root, span=1)
    return {"input_uri": _span_pattern(root, "penguins.csv"), "push_destination": model_repository_dir(local_root)}


def _make_churn(config=None):
    from kubetfx.pipelines.churn import pipeline

    return pipeline.make(config)


def _churn_local_arguments(local_root: str) -> dict:
    from kubetfx.pipelines.synthetic import churn

    root = os.path.join(local_root, "data", "churn")
    path = os.path.join(root, "span-1", "churn.csv")
    if not os.path.exists(path):
        churn.write_csv(path, CHURN_LOCAL_ROWS)
    return {"input_uri": _span_pattern(root, "churn.csv"), "push_destination": model_repository_dir(local_root)}


def _is_remote(uri: str) -> bool:
    return "://" in uri


def model_name_for(data: str) -> str:
    """A model name from the data's location: ``data/iris.csv`` -> ``iris``, ``wine/span-{SPAN}/*.csv`` -> ``wine``."""
    from kubetfx.components.common.storage import SPAN_TOKEN

    parts = [p for p in re.split(r"[/\\]", data.split("://", 1)[-1]) if p]
    for part in reversed(parts):
        stem = re.sub(r"(\.(csv|tsv|parquet|pq|tfrecord))?(\.gz)?$", "", part, flags=re.IGNORECASE)
        if SPAN_TOKEN in stem or any(c in stem for c in "*?[") or re.fullmatch(r"span-?\d*", stem):
            continue
        name = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")
        if name and name[0].isalnum():
            return name[:63]
    return "model"


def for_data(data: str, label: str, name: str | None = None, problem_type: str = "auto") -> PipelineEntry:
    """The tabular pipeline for a user's data file/dir/glob/{SPAN} pattern, predicting ``label``."""
    from kubetfx.components.common import model_repository

    model_name = model_repository.check_model_name(name or model_name_for(data))
    data_uri = data if _is_remote(data) else os.path.abspath(data)

    def make(config=None):
        from kubetfx.pipelines.tabular import pipeline as tabular

        return tabular.build(f"kubetfx-{model_name}", f"{model_name}: predict '{label}' from {data}", label,
                             model_name, config, problem_type=problem_type)

    def local_arguments(local_root: str) -> dict:
        return {"input_uri": data_uri, "push_destination": model_repository_dir(local_root)}

    return PipelineEntry(model_name, make, local_arguments, parameters={"input_uri": data_uri})


def prediction_log_dir(local_root: str) -> str:
    """The embedded default's prediction log (what `make serve` writes and `make monitor` reads)."""
    return os.path.join(os.path.abspath(local_root), "prediction-log")


def _make_monitor(config=None):
    from kubetfx.pipelines.monitor import pipeline

    return pipeline.make(config)


def _monitor_local_arguments(local_root: str) -> dict:
    return {"prediction_log": prediction_log_dir(local_root), "model_repository": model_repository_dir(local_root)}


PIPELINES = {
    "penguin": PipelineEntry("penguin", _make_penguin, _penguin_local_arguments),
    "churn": PipelineEntry("churn", _make_churn, _churn_local_arguments),
    "monitor": PipelineEntry("monitor", _make_monitor, _monitor_local_arguments, MONITOR),
}
