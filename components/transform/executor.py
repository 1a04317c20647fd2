"""Transform executor: run a ``preprocessing_fn`` with tf.Transform on Beam.

Analyzes the ``splits_to_analyze`` (train) split(s) of a TFX-layout Examples
artifact and writes:

* ``transform_graph_dir``: TFT layout (``transform_fn/``, ``transformed_metadata/``)
  plus the raw ``metadata/`` that WriteTransformFn leaves out, so
  ``tft.TFTransformOutput(dir).raw_feature_spec()`` works, plus
  ``kubetfx_transform.json`` (label, feature mapping, vocabularies, row counts);
* ``transformed_examples_dir``: with ``materialize=True`` (TFX's default) every split
  transformed, ``Split-<name>/data_tfrecord-*.gz`` tf.Examples; with ``materialize=False``
  only ``kubetfx_not_materialized.json``, a marker naming the raw examples: the Trainer then
  parses the raw examples and applies the transform graph in its tf.data input
  pipeline (the same graph the exported model serves with), and the Beam pipeline
  skips the transform pass and the writing.

Both are written atomically. ``module_file`` (import path or .py path) provides
the function; without it the schema-derived default is used
(default_preprocessing.py), which imputes missing values inside the graph and
records what it filled in (``imputation`` in the summary, metadata and report).
When the data break the schema's promise that a feature is in every example,
the error names the feature, the split and how many examples lack it.
TensorFlow/TFT/Beam are imported only inside ``run``.

Locally the pipeline runs on Beam's in-process FnApiRunner: Beam's DirectRunner
would first try to download and start the Prism runner binary, and fall back to
the same FnApiRunner when that fails (no network, a proxy).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil

from kubetfx.components.common import examples, fileio, layout, module_loader, provenance, tfmd, tfrecord
from kubetfx.components.common.beam_args import DEFAULT_BEAM_ARGS, parse_beam_args  # noqa: F401 - re-exported
from kubetfx.components.common.errors import ConfigError, InputDataError, KubetfxError
from kubetfx.components.transform import default_preprocessing

ARTIFACT_TYPE = "TransformGraph"
RAW_METADATA_DIR = "metadata"
VERSION_PACKAGES = ("kubetfx", "tensorflow", "tensorflow-transform", "apache-beam", "tfx-bsl",
                    "tensorflow-metadata")
_TEMP_DIR = ".tft-temp"


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


def _examples_without_value(examples_dir: str, splits, features) -> dict[str, tuple[int, dict[str, int]]]:
    """Split -> (examples, feature -> examples with no value for it). Decodes every split: error paths only."""
    import pyarrow.compute as pc

    result = {}
    for split in splits:
        batch = examples.read_split(examples_dir, split)
        lacking = {}
        for name in features:
            if name not in batch.schema.names:
                lacking[name] = batch.num_rows
                continue
            lengths = pc.list_value_length(batch.column(batch.schema.get_field_index(name))).fill_null(0)
            lacking[name] = int(pc.sum(pc.equal(lengths, 0)).as_py() or 0)
        result[split] = (batch.num_rows, lacking)
    return result


def _where_missing(counts: dict[str, tuple[int, dict[str, int]]], feature: str) -> str:
    """E.g. "3 of 229 examples of split 'train' and 1 of 115 examples of split 'eval'"."""
    parts = [f"{lacking[feature]} of {total} examples of split '{split}'"
             for split, (total, lacking) in counts.items() if lacking.get(feature)]
    return " and ".join(parts)


def _label_error(examples_dir: str, schema_path: str, splits, label: str) -> ConfigError:
    counts = _examples_without_value(examples_dir, splits, [label])
    where = _where_missing(counts, label)
    if not where:
        return ConfigError(f"label_column '{label}' has a value in every example, but the schema {schema_path} lets "
                           "it be missing or hold several values; the built-in preprocessing_fn needs the label "
                           "with shape {dim {size: 1}}: set that on the label in the schema (schema_file)")
    return ConfigError(f"label_column '{label}' has no value in {where}; the built-in Transform cannot impute a "
                       "label. Drop (or fill in) the rows without a label before ExampleGen and run again, or give "
                       "a module_file whose preprocessing_fn handles them.")


def _fixed_feature_error(examples_dir: str, schema_path: str, schema, splits) -> InputDataError | None:
    """The data lack a feature the schema says is in every example (shape [1]): name it, where and how often."""
    fixed = [f.name for f in schema.feature if default_preprocessing.is_fixed_scalar(f)]
    counts = _examples_without_value(examples_dir, splits, fixed)
    problems = [f"feature '{name}' has no value in {_where_missing(counts, name)}" for name in fixed
                if _where_missing(counts, name)]
    if not problems:
        return None
    these = "this feature" if len(problems) == 1 else "these features"
    return InputDataError(
        f"{'; '.join(problems)}. The schema {schema_path} gives {these} a fixed shape [1] (a value in every "
        "example), so tf.Transform cannot read those examples. Let the schema allow missing values and the built-in "
        "preprocessing_fn imputes them: infer the schema again from statistics of these examples (SchemaGen makes "
        "a feature that any split lacks optional), or in a curated schema replace `shape` by "
        "`value_count { min: 1 max: 1 }` and drop `presence.min_fraction`. If the values are missing because a CSV "
        "token such as 'NA' meant something else there, change ExampleGen's null_values.")


def _resolve_function(module_file: str, function_name: str, schema, label_column: str, numeric_imputation: str):
    if module_file:
        function = module_loader.load_function(module_file, function_name, "module_file", "preprocessing_fn")
        return function, None, f"preprocessing_fn '{function_name}' of module '{module_file}'"
    function = default_preprocessing.make_preprocessing_fn(schema, label_column, numeric_imputation)
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


def run(examples_dir: str, schema_path: str, transform_graph_dir: str, transformed_examples_dir: str | None,
        report_path: str | None = None, module_file: str = "", preprocessing_fn: str = "preprocessing_fn",
        label_column: str = "", beam_pipeline_args: list[str] | None = None,
        splits_to_analyze=("train",), numeric_imputation: str = "mean", materialize: bool = True) -> dict:
    """Analyze (+ transform, with ``materialize``) ``examples_dir``; returns the TransformGraph artifact metadata.

    ``numeric_imputation`` ("mean" or "median"): what the built-in preprocessing_fn fills in
    for a missing number (unused with a module_file). ``materialize=False``: analyze only;
    ``transformed_examples_dir`` (optional then) gets the not-materialized marker. The
    returned dict also holds ``transformed_examples``: that artifact's metadata.
    """
    if not isinstance(materialize, bool):
        raise ConfigError(f"materialize: expected a bool (true: write transformed examples, false: only the "
                          f"transform graph), got {type(materialize).__name__} {materialize!r}")
    if materialize and not transformed_examples_dir:
        raise ConfigError("transformed_examples_dir is required with materialize=True (where the transformed "
                          "examples go); with materialize=False only the transform graph is written")
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
    default_preprocessing.check_numeric_imputation(numeric_imputation)  # also with a module_file: a typo is a typo
    try:
        function, plan, described = _resolve_function(module_file, preprocessing_fn, schema, label_column,
                                                      numeric_imputation)
    except default_preprocessing.LabelNotScalarError as err:
        raise _label_error(examples_dir, schema_path, patterns, err.feature) from None
    guard = _Guard(function, described)

    # Heavy imports (TF, TFT, Beam) only from here on.
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from kubetfx.components.transform import analyzer_constants, beam_pipeline, summary

    with fileio.atomic_directory(transform_graph_dir) as graph_tmp, \
            _optional_atomic_directory(transformed_examples_dir) as examples_tmp:
        try:
            counts = beam_pipeline.run(guard, schema, patterns, analyze, graph_tmp,
                                       examples_tmp if materialize else None, os.path.join(graph_tmp, _TEMP_DIR),
                                       beam_args)
        except KubetfxError:
            raise
        except Exception as err:
            if guard.failure is not None:
                if isinstance(guard.failure, _BadReturn):
                    raise ConfigError(f"{described} {guard.failure}") from err
                location = module_loader.where(guard.failure, module_loader.source_file(function))
                raise ConfigError(f"{described} failed at {location}: "
                                  f"{module_loader.last_line(guard.failure)}") from err
            diagnosed = _fixed_feature_error(examples_dir, schema_path, schema, patterns)
            if diagnosed is not None:
                raise diagnosed from err
            raise KubetfxError(f"the Transform Beam pipeline failed ({described}): "
                               f"{module_loader.last_line(err)}") from err
        shutil.rmtree(os.path.join(graph_tmp, _TEMP_DIR), ignore_errors=True)
        metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                                   os.path.join(graph_tmp, RAW_METADATA_DIR))
        counts = {s: n if n is not None else _count_rows(examples_tmp if materialize else examples_dir, s)
                  for s, n in counts.items()}
        transformed = summary.transformed_features(graph_tmp)
        vocabs = summary.vocabularies(graph_tmp)
        constants = analyzer_constants.read(os.path.join(graph_tmp, layout.TRANSFORM_FN_DIR))
        imputation = summary.imputations(graph_tmp, plan, constants)
        _check_imputation(imputation, examples_dir, analyze)
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
            "z_scores": summary.z_scores(plan, constants),
            "imputation": imputation,
            "module_file": module_file,
            "preprocessing_fn": preprocessing_fn if module_file else "default",
            "beam_pipeline_args": beam_args,
            "raw_examples": os.path.abspath(examples_dir),
            **examples.reading_facts(examples_dir),  # how ExampleGen read the data: the model records it
            "materialized": materialize,
            "package_versions": provenance.package_versions(VERSION_PACKAGES),
        }
        fileio.atomic_write(os.path.join(graph_tmp, layout.TRANSFORM_SUMMARY_FILE),
                            json.dumps(metadata, indent=2, sort_keys=True))
        examples_metadata = _transformed_examples_metadata(materialize, os.path.abspath(examples_dir),
                                                           list(patterns), counts, sorted(transformed))
        if examples_tmp and not materialize:
            fileio.atomic_write(os.path.join(examples_tmp, layout.NOT_MATERIALIZED_FILE),
                                json.dumps(examples_metadata, indent=2, sort_keys=True))
    if report_path:
        fileio.atomic_write(report_path, summary.render(metadata, vocabs))
    metadata["transformed_examples"] = examples_metadata
    return metadata


@contextlib.contextmanager
def _optional_atomic_directory(path: str | None):
    if not path:
        yield None
        return
    with fileio.atomic_directory(path) as temp:
        yield temp


def _transformed_examples_metadata(materialized: bool, raw_examples_dir: str, splits: list[str],
                                   counts: dict, columns: list[str]) -> dict:
    """The transformed Examples artifact's metadata; without materializing also the marker's content."""
    common = {layout.TFX_TYPE: "Examples", layout.SPLIT_NAMES: json.dumps(splits), "row_counts": counts}
    if materialized:
        return {**common, "payload_format": "FORMAT_TF_EXAMPLE", "columns": columns, "transformed": True,
                "materialized": True}
    return {**common, "transformed": False, "materialized": False, "raw_examples": raw_examples_dir,
            "note": "Transform ran with materialize=False: no transformed examples here. Train from the raw "
                    "examples and the transform graph (the kubetfx Trainer does: give it the raw examples).",
            "transformed_columns": columns}


def _check_imputation(imputation: dict[str, dict], examples_dir: str, analyzed: list[str]) -> None:
    """A feature with no value in the analyzed splits has no mean/median to fill in (TFT's analyzers then
    give 0). Only a 0 is checked against the data, so complete data cost nothing."""
    suspects = [name for name, info in imputation.items() if info["value"] == 0.0]
    if not suspects:
        return
    counts = _examples_without_value(examples_dir, analyzed, suspects)
    empty = [name for name in suspects if all(lacking[name] == total for total, lacking in counts.values())]
    if empty:
        where = " and ".join(f"{total} examples of split '{split}'" for split, (total, _) in counts.items())
        raise InputDataError(f"feature(s) {', '.join(repr(n) for n in empty)} have no value in any of the {where} "
                             "analyzed, so the built-in preprocessing_fn has no mean/median to fill in for a "
                             "missing value. Drop the column (or give it values) before ExampleGen, or give a "
                             "module_file.")
