"""What a later stage reads of a Transform run besides TFT's own graph: kubetfx's JSON files in its artifacts.

* the TransformGraph artifact: TFT's ``transform_fn/`` (+ ``transformed_metadata/``) and kubetfx's
  summary (label, feature mapping, vocabularies, row counts, whether examples were materialized);
* a transformed-examples artifact of a run with ``materialize=False``: only a marker naming the raw
  examples the graph was analyzed on (the Trainer then transforms them in tf.data).

File names come from common/layout.py. Plain JSON: nothing here imports TensorFlow (the graph
itself is read with ``tft.TFTransformOutput``).
"""

from __future__ import annotations

import json
import os

from kubetfx.components.common import layout
from kubetfx.components.common.errors import InputDataError


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def check_transform_graph(transform_graph_dir: str) -> None:
    """InputDataError unless ``transform_graph_dir`` holds a TFT ``transform_fn/``."""
    if not os.path.isdir(os.path.join(transform_graph_dir, layout.TRANSFORM_FN_DIR)):
        raise InputDataError(f"{transform_graph_dir} is not a transform graph (no {layout.TRANSFORM_FN_DIR}/ "
                             "directory)")


def read_summary(transform_graph_dir: str) -> dict:
    """The ``kubetfx_transform.json`` of a transform graph ({} for graphs other tools wrote)."""
    summary = _read_json(os.path.join(transform_graph_dir, layout.TRANSFORM_SUMMARY_FILE))
    return {} if summary is None else summary


def read_not_materialized_marker(examples_dir: str) -> dict | None:
    """The marker's content when ``examples_dir`` is a transformed-examples artifact of a run with
    materialize=False; None when it holds examples."""
    return _read_json(os.path.join(examples_dir, layout.NOT_MATERIALIZED_FILE))
