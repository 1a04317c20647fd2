"""A dataset on which the built-in trainer's default hyperparameters are poor: a 2-D checkerboard.

Class = the parity of the cell a point falls in on a ``cells`` x ``cells`` board: a small network
(the default [16, 8]) under-fits it, a wider/deeper one learns it. Deterministic for a seed.
"""

import os

import numpy as np
import pyarrow as pa

from kubetfx.components.common import examples, layout, tfrecord


def checkerboard(rows: int, cells: int = 5, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, cells, rows), rng.uniform(0, cells, rows)
    label = (np.floor(x).astype(int) + np.floor(y).astype(int)) % 2
    return pa.table({"x": pa.array(x, pa.float32()), "y": pa.array(y, pa.float32()),
                     "label": pa.array(np.where(label == 1, "black", "white"))})


def write_examples(directory: str, table: pa.Table) -> str:
    """Split 2:1 by row position into an Examples artifact."""
    cut = table.num_rows * 2 // 3
    for split, part in (("train", table.slice(0, cut)), ("eval", table.slice(cut))):
        split_dir = layout.split_dir(directory, split)
        os.makedirs(split_dir, exist_ok=True)
        tfrecord.write_file(os.path.join(split_dir, layout.examples_file_name(0, 1)), examples.encode_examples(part))
    return directory
