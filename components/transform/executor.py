"""Transform executor: run a ``preprocessing_fn`` with tf.Transform on Beam.

Analyzes the ``splits_to_analyze`` (train) split(s) of a TFX-layout Examples
artifact, transforms every split, and writes:

* ``transform_graph_dir``: TFT layout (``transform_fn/``, ``transformed_metadata/``)
  plus the raw ``metadata/`` that WriteTransformFn leaves out, so
  ``tft.TFTransformOutput(dir).raw_feature_spec()`` works, plus
  ``kubetfx_transform.json`` (label, feature mapping, vocabularies, row counts);
* ``transformed_examples_dir``: ``Split-<name>/data_tfrecord-*.gz`` tf.Examples.

Both are written atomically. ``module_file`` (import path or .py path) provides
the function; without it the schema-derived default is used
(default_preprocessing.py). TensorFlow/TFT/Beam are imported only inside ``run``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil

from kubetfx.components.common import examples, fileio, layout, module_loader, params, provenance, tfmd, tfrecord
from kubetfx.components.common.errors import ConfigError, InputDataError, KubetfxError

ARTIFACT_TYPE = "TransformGraph"
SUMMARY_FILE = "kubetfx_transform.json"
RAW_METADATA_DIR = "metadata"
DEFAULT_BEAM_ARGS = ["--runner=DirectRunner", "--direct_num_workers=1"]
VERSION_PACKAGES = ("kubetfx", "tensorflow", "tensorflow-transform", "apache-beam", "tfx-bsl",
                    "tensorflow-metadata")
_TEMP_DIR = ".tft-temp"


def parse_beam_args(beam_pipeline_args) -> list[str]:
    """A list of flags; also accepts a JSON list or a shell-style string. Unset: the DirectRunner defaults."""
    parsed = params.string_list(beam_pipeline_args, "beam_pipeline_args", shlex.split, "['--runner=DirectRunner']")
    return list(DEFAULT_BEAM_ARGS) if parsed is None else parsed


def _split_patterns(examples_dir: str) -> dict[str, str]:
    if not os.path.isdir(examples_dir):
        raise InputDataError(f"Examples artifact directory {examples_dir} does not exist")
    splits = layout.list_splits(examples_dir)
    if not splits:
        raise InputDataError(f"Examples artifact {examples_dir} has no Split-* directories")
    patterns = {}
    for split in splits:
        examples.split_files(examples_dir, split)  # raises when the split has no files
        patterns[split] = os.path.join(layout.split_dir(examples_dir, split), "*")
    return patterns


class _BadReturn(TypeError):
    """The preprocessing_fn returned something other than a dict of tensors."""


class _Guard:
    """Wraps the user's preprocessing_fn to tell its failures apart from Beam's own."""

    def __init__(self, function, label: str):
        self.function, self.label, self.failure = function, label, None

    def __call__(self, inputs):
        try:
            outputs = self.function(inputs)
        except Exception as err:
            self.failure = err
            raise
        if not isinstance(outputs, dict) or not outputs:
            self.failure = _BadReturn(f"must return a non-empty dict of feature name -> tensor, "
                                      f"got {type(outputs).__name__}")
            raise self.failure
        return outputs


def _resolve_function(module_file: str, function_name: str, schema, label_column: str):
    from kubetfx.components.transform import default_preprocessing

    if module_file:
        function = module_loader.load_function(module_file, function_name, "module_file", "preprocessing_fn")
        return function, None, f"preprocessing_fn '{function_name}' of module '{module_file}'"
    function = default_preprocessing.make_preprocessing_fn(schema, label_column)
    return function, function.plan, "the built-in preprocessing_fn"


def _count_rows(directory: str, split: str) -> int:
    return sum(len(tfrecord.read_file(path, verify=False)) for path in examples.split_files(directory, split))


def _label_info(label_column: str, plan: dict | None, transformed: dict, vocabs: dict) -> dict:
    if not label_column:
        return {}
    if plan is not None:
        step = plan[label_column]
        return {"transformed_label": step["output"], "label_vocabulary": step["vocabulary"],
                "label_transform": step["transform"]}
    # A user module: TFX modules name outputs <raw>_xf.
    key = next((k for k in (label_column, f"{label_column}_xf") if k in transformed), None)
    vocab = next((v for v in ("label_vocabulary", f"{label_column}_vocabulary", label_column) if v in vocabs), None)
    return {"transformed_label": key, "label_vocabulary": vocab, "label_transform": "module"}


def run(examples_dir: str, schema_path: str, transform_graph_dir: str, transformed_examples_dir: str,
        report_path: str | None = None, module_file: str = "", preprocessing_fn: str = "preprocessing_fn",
        label_column: str = "", beam_pipeline_args: list[str] | None = None,
        splits_to_analyze=("train",)) -> dict:
    """Analyze + transform ``examples_dir``; returns the TransformGraph artifact metadata.

    The returned dict also holds ``transformed_examples``: the metadata of the
    transformed Examples artifact.
    """
    schema = tfmd.read_schema(schema_path)
    feature_names = [f.name for f in schema.feature]
    if label_column and label_column not in feature_names:
        raise ConfigError(f"label_column '{label_column}' is not a feature of the schema {schema_path} "
                          f"(features: {', '.join(feature_names) or 'none'})")
    patterns = _split_patterns(examples_dir)
    if isinstance(splits_to_analyze, str):
        splits_to_analyze = [s.strip() for s in splits_to_analyze.split(",") if s.strip()]
    analyze = list(dict.fromkeys(splits_to_analyze or ()))
    missing = [s for s in analyze if s not in patterns]
    if not analyze or missing:
        raise ConfigError(f"splits_to_analyze {missing or analyze} not in the Examples artifact "
                          f"{examples_dir} (splits: {', '.join(patterns)})")
    beam_args = parse_beam_args(beam_pipeline_args)
    function, plan, described = _resolve_function(module_file, preprocessing_fn, schema, label_column)
    guard = _Guard(function, described)

    # Heavy imports (TF, TFT, Beam) only from here on.
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from kubetfx.components.transform import beam_pipeline, summary

    with fileio.atomic_directory(transform_graph_dir) as graph_tmp, \
            fileio.atomic_directory(transformed_examples_dir) as examples_tmp:
        try:
            counts = beam_pipeline.run(guard, schema, patterns, analyze, graph_tmp, examples_tmp,
                                       os.path.join(graph_tmp, _TEMP_DIR), beam_args)
        except KubetfxError:
            raise
        except Exception as err:
            if guard.failure is not None:
                if isinstance(guard.failure, _BadReturn):
                    raise ConfigError(f"{described} {guard.failure}") from err
                location = module_loader.where(guard.failure, module_loader.source_file(function))
                raise ConfigError(f"{described} failed at {location}: "
                                  f"{module_loader.last_line(guard.failure)}") from err
            raise KubetfxError(f"the Transform Beam pipeline failed ({described}): "
                               f"{module_loader.last_line(err)}") from err
        shutil.rmtree(os.path.join(graph_tmp, _TEMP_DIR), ignore_errors=True)
        metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                                   os.path.join(graph_tmp, RAW_METADATA_DIR))
        counts = {s: n if n is not None else _count_rows(examples_tmp, s) for s, n in counts.items()}
        transformed = summary.transformed_features(graph_tmp)
        vocabs = summary.vocabularies(graph_tmp)
        metadata = {
            layout.TFX_TYPE: ARTIFACT_TYPE,
            layout.SPLIT_NAMES: json.dumps(list(patterns)),
            "analyzed_splits": analyze,
            "row_counts": counts,
            "raw_features": feature_names,
            "transformed_features": transformed,
            "feature_mapping": {n: s["output"] for n, s in plan.items()} if plan else {},
            "transforms": {n: s["transform"] for n, s in plan.items()} if plan else {},
            "label_column": label_column,
            **_label_info(label_column, plan, transformed, vocabs),
            "vocabularies": {name: info["size"] for name, info in vocabs.items()},
            "z_scores": summary.z_scores(graph_tmp, plan),
            "module_file": module_file,
            "preprocessing_fn": preprocessing_fn if module_file else "default",
            "beam_pipeline_args": beam_args,
            "package_versions": provenance.package_versions(VERSION_PACKAGES),
        }
        fileio.atomic_write(os.path.join(graph_tmp, SUMMARY_FILE), json.dumps(metadata, indent=2, sort_keys=True))
    if report_path:
        fileio.atomic_write(report_path, summary.render(metadata, vocabs))
    metadata["transformed_examples"] = {
        layout.TFX_TYPE: "Examples",
        layout.SPLIT_NAMES: json.dumps(list(patterns)),
        "payload_format": "FORMAT_TF_EXAMPLE",
        "row_counts": counts,
        "columns": sorted(transformed),
        "transformed": True,
    }
    return metadata


def read_summary(transform_graph_dir: str) -> dict:
    """The ``kubetfx_transform.json`` of a transform graph ({} for graphs other tools wrote)."""
    path = os.path.join(transform_graph_dir, SUMMARY_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
