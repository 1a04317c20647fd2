"""Transform's outputs compared across runs: vocabulary files, analyzer results, transformed examples.

One run is the reference (the default in-process runner); another (another Beam runner, or the
analyze-only mode) must give the same graph: the same vocabulary files byte for byte, the same
analyzer results in ``kubetfx_transform.json``, the same outputs on the eval split, and, when
materialized, the same transformed examples per split as a multiset (a distributed runner may
write them in another order).
"""

from __future__ import annotations

import collections
import glob
import os

import numpy as np

from kubetfx.components.common import tfrecord

from helpers.pipeline_cache import transform_eval_split

# kubetfx_transform.json entries that hold analyzer results (or what follows from them).
ANALYZER_KEYS = ("vocabularies", "z_scores", "imputation", "transformed_features", "row_counts", "label_vocabulary")


def vocabulary_files(graph: str) -> dict[str, bytes]:
    """File name -> bytes of each vocabulary (asset) of a transform graph."""
    paths = glob.glob(os.path.join(graph, "transform_fn", "assets", "*"))
    assert paths, f"no vocabulary files in {graph}"
    return {os.path.basename(path): open(path, "rb").read() for path in paths}


def example_multisets(examples_dir: str) -> dict[str, collections.Counter]:
    """Split -> multiset of its tf.Examples, serialized deterministically (a proto map's wire order is not)."""
    import tensorflow as tf

    result = {}
    for split_dir in sorted(glob.glob(os.path.join(examples_dir, "Split-*"))):
        records = [record for path in sorted(glob.glob(os.path.join(split_dir, "*")))
                   for record in tfrecord.read_file(path)]
        result[os.path.basename(split_dir)] = collections.Counter(
            tf.train.Example.FromString(record).SerializeToString(deterministic=True) for record in records)
    return result


def assert_same_graph(graph: str, metadata: dict, reference: dict) -> None:
    """``graph`` (whose executor result is ``metadata``) equals the reference run's transform graph exactly.

    ``reference``: a dict with ``metadata``, ``transform_graph`` and ``examples`` (the raw examples).
    """
    expected = reference["metadata"]
    for key in ANALYZER_KEYS:
        assert metadata[key] == expected[key], key
    assert vocabulary_files(graph) == vocabulary_files(reference["transform_graph"])
    ours = transform_eval_split(graph, reference["examples"])
    theirs = transform_eval_split(reference["transform_graph"], reference["examples"])
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
