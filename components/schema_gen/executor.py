"""SchemaGen executor: infer a TFMD Schema from statistics, or import a curated one.

Inference reads every split's statistics (like TFX's SchemaGen; ``exclude_splits``
leaves some out) and follows TFDV's ``infer_schema`` rules on their combination,
i.e. on all the rows as one dataset: a feature is required only when no split
lacks it, it has ``shape [1]`` only when every example of every split has one
value, and domains cover the values of every split. So whether a column with a
few missing values is required does not depend on which split the hash put those
rows in. (TFX infers from the first split and ``update_schema``s with the others;
that ends in the same types, presence, shapes and domains, except that it also
records the lowest observed presence fraction as ``min_fraction``, which again
depends on the split: we don't.) The rules:

* type: INT / FLOAT from numeric statistics, BYTES for string and bytes features;
* presence: ``min_count: 1``, plus ``min_fraction: 1.0`` when no example lacks the feature;
* ``shape { dim { size: 1 } }`` when ``infer_feature_shape`` and every example
  has exactly one value, else ``value_count { min max }`` from the statistics;
* a top-level ``string_domain`` (referenced by the feature's ``domain``) for
  UTF-8 string features with at most ``max_string_domain_size`` distinct values;
* ``int_domain { min: 0 }`` / ``float_domain { min: 0 }`` when the smallest value is >= 0;
* with a ``label_column``: environments TRAINING and SERVING, the label not in SERVING;
* no ``disallow_nan`` / ``disallow_inf`` (TFDV does not infer them): infinite values
  are named in the report; ExampleValidator reports them (FLOAT_TYPE_HAS_INF) unless a
  curated schema sets ``disallow_inf: false``.

With ``schema_file`` (like TFX's ImportSchemaGen) the file is validated and
copied verbatim instead. Output: ``<output_dir>/schema.pbtxt``.
"""

import math
import os

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from kubetfx.components.common import fileio, layout, params, report, tfmd
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.data_validation import statistics

ARTIFACT_TYPE = "Schema"
TRAINING = "TRAINING"
SERVING = "SERVING"
# Domain values listed per feature in the Markdown report.
_REPORT_DOMAIN_VALUES = 8

_Stats = statistics_pb2.FeatureNameStatistics


def _has_values(numeric_stats: statistics_pb2.NumericStatistics) -> bool:
    """Whether min/max are meaningful (at least one non-NaN value was seen)."""
    return any(bucket.sample_count for histogram in numeric_stats.histograms for bucket in histogram.buckets)


def _string_domain_values(string_stats: statistics_pb2.StringStatistics) -> list[str] | None:
    """All distinct values, when the rank histogram lists every one of them."""
    labels = [bucket.label for bucket in string_stats.rank_histogram.buckets]
    if len(labels) != string_stats.unique or len(set(labels)) != len(labels):
        return None
    return sorted(labels)


def _combined_common(parts: list[statistics_pb2.CommonStatistics], absent_examples: int,
                     target: statistics_pb2.CommonStatistics) -> None:
    present = [c for c in parts if c.num_non_missing > 0]
    target.num_non_missing = sum(c.num_non_missing for c in parts)
    target.num_missing = sum(c.num_missing for c in parts) + absent_examples
    target.tot_num_values = sum(c.tot_num_values for c in parts)
    if present:
        target.min_num_values = min(c.min_num_values for c in present)
        target.max_num_values = max(c.max_num_values for c in present)


def _combined_string_values(parts: list[statistics_pb2.StringStatistics],
                            target: statistics_pb2.StringStatistics) -> None:
    """Union of the values (rank histograms); ``unique`` counts them only when every part lists all of its own."""
    counts: dict[str, float] = {}
    complete = True
    for string in parts:
        labels = [bucket.label for bucket in string.rank_histogram.buckets]
        complete &= len(labels) == string.unique
        for bucket in string.rank_histogram.buckets:
            counts[bucket.label] = counts.get(bucket.label, 0.0) + bucket.sample_count
    # With a value missing from the listing, ``unique`` exceeds what is listed, so no domain is inferred.
    target.unique = len(counts) if complete else max(len(counts) + 1, max(s.unique for s in parts))
    for rank, (label, count) in enumerate(sorted(counts.items(), key=lambda item: (-item[1], item[0]))):
        target.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=count)


def combine_statistics(datasets: dict[str, statistics_pb2.DatasetFeatureStatistics]
                       ) -> statistics_pb2.DatasetFeatureStatistics:
    """The statistics inference needs (presence, values per example, type, min, distinct values) of
    all the splits' examples as one dataset. A feature a split lacks entirely is missing in all its examples."""
    combined = statistics_pb2.DatasetFeatureStatistics(
        name="+".join(datasets), num_examples=sum(d.num_examples for d in datasets.values()))
    per_feature: dict[str, list[tuple[str, _Stats]]] = {}
    for split, dataset in datasets.items():
        for name, stats in statistics.features_by_name(dataset).items():
            per_feature.setdefault(name, []).append((split, stats))
    for name, found in per_feature.items():
        kinds = {stats.WhichOneof("stats") for _, stats in found}
        if len(kinds) > 1:
            raise InputDataError(f"feature '{name}' has different kinds of statistics across splits ("
                                 + ", ".join(f"{split}: {stats.WhichOneof('stats')}" for split, stats in found)
                                 + "); make its type consistent, or leave a split out with exclude_splits")
        kind = kinds.pop()
        feature = combined.features.add()
        feature.path.step.append(name)
        # INT in one split and FLOAT in another: FLOAT holds both (STRING and BYTES: BYTES).
        feature.type = max(stats.type for _, stats in found)
        absent = sum(datasets[split].num_examples for split in datasets if split not in {s for s, _ in found})
        if kind is None:
            continue
        target = getattr(feature, kind)
        _combined_common([getattr(stats, kind).common_stats for _, stats in found], absent, target.common_stats)
        if kind == "num_stats":
            with_values = [stats.num_stats for _, stats in found if _has_values(stats.num_stats)]
            if with_values:
                target.min = min(n.min for n in with_values)
                target.max = max(n.max for n in with_values)
                for n in with_values:
                    target.histograms.extend(n.histograms)
        elif kind == "string_stats":
            _combined_string_values([stats.string_stats for _, stats in found], target)
    return combined


def infer_schema(dataset: statistics_pb2.DatasetFeatureStatistics, label_column: str = "",
                 infer_feature_shape: bool = True, max_string_domain_size: int = 100) -> schema_pb2.Schema:
    """A Schema for the features of one dataset's statistics (see the module docstring for the rules);
    give it :func:`combine_statistics` of the splits."""
    by_name = statistics.features_by_name(dataset)
    if label_column and label_column not in by_name:
        raise ConfigError(f"label_column '{label_column}' is not a feature of the statistics ({dataset.name}) "
                          f"(features: {', '.join(sorted(by_name)) or 'none'})")
    schema = schema_pb2.Schema()
    for name, stats in by_name.items():
        kind = stats.WhichOneof("stats")
        if kind not in ("num_stats", "string_stats", "bytes_stats"):
            continue  # STRUCT features are not produced by StatisticsGen
        common = statistics.common_stats(stats)
        feature = schema.feature.add(name=name)
        if kind == "num_stats":
            feature.type = schema_pb2.FLOAT if stats.type == _Stats.FLOAT else schema_pb2.INT
        else:
            feature.type = schema_pb2.BYTES
        feature.presence.min_count = 1
        if common.num_missing == 0:
            feature.presence.min_fraction = 1.0
        if (infer_feature_shape and common.num_missing == 0 and common.num_non_missing > 0
                and common.min_num_values == 1 and common.max_num_values == 1):
            feature.shape.dim.add(size=1)
        else:
            feature.value_count.min = common.min_num_values
            feature.value_count.max = common.max_num_values
        if kind == "num_stats" and _has_values(stats.num_stats) and stats.num_stats.min >= 0:
            if feature.type == schema_pb2.INT:
                feature.int_domain.min = 0
            else:
                feature.float_domain.min = 0.0
        elif kind == "string_stats" and stats.type == _Stats.STRING and \
                0 < stats.string_stats.unique <= max_string_domain_size:
            values = _string_domain_values(stats.string_stats)
            if values is not None:
                schema.string_domain.add(name=name, value=values)
                feature.domain = name
        if name == label_column:
            feature.not_in_environment.append(SERVING)
    if label_column:
        schema.default_environment.extend([TRAINING, SERVING])
    return schema


def _resolve_schema_file(schema_file: str) -> str:
    path = tfmd.schema_path(schema_file) if os.path.isdir(schema_file) else schema_file
    if not os.path.isfile(path):
        raise ConfigError(f"schema_file not found: {schema_file}")
    return path


def import_schema(schema_file: str) -> tuple[schema_pb2.Schema, str, str]:
    """Parse a curated schema (a ``.pbtxt`` file or a SchemaGen artifact directory).

    Returns the schema, its text and the resolved path; a parse error names the file and line.
    """
    path = _resolve_schema_file(schema_file)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err})") from None
    schema = tfmd.parse_schema_text(text, path)
    if not schema.feature and not schema.sparse_feature and not schema.tensor_representation_group:
        raise ConfigError(f"{path}: the schema defines no features")
    return schema, text, path


# --------------------------------------------------------------------------- report


def _presence(feature: schema_pb2.Feature) -> str:
    if feature.presence.min_fraction >= 1.0:
        return "required"
    if feature.presence.min_count:
        return f"optional (min count {feature.presence.min_count})"
    return "optional"


def _shape(feature: schema_pb2.Feature) -> str:
    if feature.HasField("shape"):
        return "shape [" + ", ".join(str(d.size) for d in feature.shape.dim) + "]"
    if feature.HasField("value_count"):
        low, high = feature.value_count.min, feature.value_count.max
        return f"{low} per example" if low == high else f"{low}–{high} per example"
    return "–"


def _bound(message, field: str):
    return getattr(message, field) if message.HasField(field) else None


def _domain(feature: schema_pb2.Feature, string_domains: dict[str, schema_pb2.StringDomain]) -> str:
    kind = feature.WhichOneof("domain_info")
    if kind in ("domain", "string_domain"):
        domain = string_domains.get(feature.domain) if kind == "domain" else feature.string_domain
        if domain is None:
            return f"`{feature.domain}` (not defined)"
        values = list(domain.value)
        shown = ", ".join(values[:_REPORT_DOMAIN_VALUES]) + (", …" if len(values) > _REPORT_DOMAIN_VALUES else "")
        return f"{len(values)} values: {shown}"
    if kind in ("int_domain", "float_domain"):
        domain = getattr(feature, kind)
        return report.bounds(_bound(domain, "min"), _bound(domain, "max"))
    return kind.replace("_", " ") if kind else "–"


def _infinite_values(dataset: statistics_pb2.DatasetFeatureStatistics) -> list[str]:
    """Report lines for numeric features whose statistics reach ±inf (inference does not reject them)."""
    lines = []
    for name, stats in statistics.features_by_name(dataset).items():
        if stats.HasField("num_stats") and _has_values(stats.num_stats) and \
                (math.isinf(stats.num_stats.min) or math.isinf(stats.num_stats.max)):
            lines.append(f"* `{name}` has infinite values (min {report.fmt(stats.num_stats.min)}, max "
                         f"{report.fmt(stats.num_stats.max)}). ExampleValidator reports them (FLOAT_TYPE_HAS_INF); "
                         "to accept them, set `float_domain { disallow_inf: false }` on it in a curated schema "
                         "(schema_file).")
    return lines


def render_report(schema: schema_pb2.Schema, source_line: str, notes: list[str] = ()) -> str:
    string_domains = {domain.name: domain for domain in schema.string_domain}
    rows = []
    for feature in schema.feature:
        notes_cell = []
        if feature.not_in_environment:
            notes_cell.append("not in " + ", ".join(feature.not_in_environment))
        if feature.in_environment:
            notes_cell.append("only in " + ", ".join(feature.in_environment))
        rows.append([f"`{feature.name}`", schema_pb2.FeatureType.Name(feature.type), _presence(feature),
                     _shape(feature), _domain(feature, string_domains), "; ".join(notes_cell) or "–"])
    lines = ["# SchemaGen", "", source_line, "",
             f"{len(schema.feature)} features"
             + (f"; environments: {', '.join(schema.default_environment)}" if schema.default_environment else "")
             + ".", "",
             report.table(["Feature", "Type", "Presence", "Values", "Domain", "Environments"], rows), ""]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def _parse_exclude_splits(exclude_splits) -> list[str]:
    names = params.string_list(exclude_splits or None, "exclude_splits",
                               lambda text: [s.strip() for s in text.split(",") if s.strip()], "'serving' or ['eval']")
    return names or []


def _inference_statistics(statistics_dir: str, exclude_splits) -> dict[str, statistics_pb2.DatasetFeatureStatistics]:
    """The statistics of every split not excluded; an unknown excluded split is an error."""
    datasets = tfmd.read_all_statistics(statistics_dir)
    excluded = _parse_exclude_splits(exclude_splits)
    unknown = [s for s in excluded if s not in datasets]
    if unknown:
        raise ConfigError(f"exclude_splits names {unknown}, not splits of the statistics {statistics_dir} "
                          f"(splits: {', '.join(datasets)})")
    kept = {split: dataset for split, dataset in datasets.items() if split not in excluded}
    if not kept:
        raise ConfigError(f"exclude_splits {excluded} leaves no split of {statistics_dir} to infer the schema from")
    return kept


def run(statistics_dir: str | None, output_dir: str, report_path: str | None = None, schema_file: str = "",
        label_column: str = "", infer_feature_shape: bool = True, max_string_domain_size: int = 100,
        exclude_splits=()) -> dict:
    """Write ``<output_dir>/schema.pbtxt`` inferred from every split of ``statistics_dir`` but
    ``exclude_splits`` (a list, JSON list or comma-separated names), or imported from
    ``schema_file`` when that is set (then ``statistics_dir`` may be empty).

    Returns the artifact metadata: tfx_type, number of features and the source.
    """
    notes: list[str] = []
    if schema_file:
        schema, text, path = import_schema(schema_file)
        if label_column and label_column not in {f.name for f in schema.feature}:
            raise ConfigError(f"label_column '{label_column}' is not a feature of the imported schema {path} "
                              f"(features: {', '.join(f.name for f in schema.feature) or 'none'})")
        source = f"imported:{path}"
        source_line = f"Imported from the curated schema file `{path}` (copied verbatim)."
    else:
        if not statistics_dir:
            raise ConfigError("SchemaGen needs either statistics (a StatisticsGen output) or a schema_file")
        if max_string_domain_size < 0:
            raise ConfigError(f"max_string_domain_size must be >= 0, got {max_string_domain_size}")
        datasets = _inference_statistics(statistics_dir, exclude_splits)
        dataset = combine_statistics(datasets)
        schema = infer_schema(dataset, label_column, infer_feature_shape, max_string_domain_size)
        if not schema.feature:
            raise InputDataError(f"statistics of split(s) {', '.join(datasets)} in {statistics_dir} have no features")
        text = None
        source = f"inferred:{','.join(datasets)}"
        source_line = (f"Inferred from the statistics of split(s) {', '.join(f'`{s}`' for s in datasets)} "
                       f"({report.fmt(int(dataset.num_examples))} examples together) in `{statistics_dir}`: "
                       "a feature is required only if no split lacks it.")
        notes = _infinite_values(dataset)
    markdown = render_report(schema, source_line, notes) if report_path else None
    with fileio.atomic_directory(output_dir) as temp_dir:
        if text is None:
            tfmd.write_schema(tfmd.schema_path(temp_dir), schema)
        else:
            fileio.atomic_write(tfmd.schema_path(temp_dir), text)
    if report_path:
        fileio.atomic_write(report_path, markdown)
    return {layout.TFX_TYPE: ARTIFACT_TYPE, "features": len(schema.feature), "source": source}
