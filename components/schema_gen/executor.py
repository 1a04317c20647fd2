"""SchemaGen executor: infer a TFMD Schema from statistics, or import a curated one.

Inference follows TFDV's ``infer_schema`` rules on one split's statistics:

* type: INT / FLOAT from numeric statistics, BYTES for string and bytes features;
* presence: ``min_count: 1``, plus ``min_fraction: 1.0`` when no example lacks the feature;
* ``shape { dim { size: 1 } }`` when ``infer_feature_shape`` and every example
  has exactly one value, else ``value_count { min max }`` from the statistics;
* a top-level ``string_domain`` (referenced by the feature's ``domain``) for
  UTF-8 string features with at most ``max_string_domain_size`` distinct values;
* ``int_domain { min: 0 }`` / ``float_domain { min: 0 }`` when the smallest value is >= 0;
* with a ``label_column``: environments TRAINING and SERVING, the label not in SERVING.

With ``schema_file`` (like TFX's ImportSchemaGen) the file is validated and
copied verbatim instead. Output: ``<output_dir>/schema.pbtxt``.
"""

import os

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from kubetfx.components.common import fileio, layout, report, stats_util, tfmd
from kubetfx.components.common.errors import ConfigError, InputDataError

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


def infer_schema(dataset: statistics_pb2.DatasetFeatureStatistics, label_column: str = "",
                 infer_feature_shape: bool = True, max_string_domain_size: int = 100) -> schema_pb2.Schema:
    """A Schema for the features of one split's statistics (see the module docstring for the rules)."""
    by_name = stats_util.features_by_name(dataset)
    if label_column and label_column not in by_name:
        raise ConfigError(f"label_column '{label_column}' is not a feature of split '{dataset.name}' "
                          f"(features: {', '.join(sorted(by_name)) or 'none'})")
    schema = schema_pb2.Schema()
    for name, stats in by_name.items():
        kind = stats.WhichOneof("stats")
        if kind not in ("num_stats", "string_stats", "bytes_stats"):
            continue  # STRUCT features are not produced by StatisticsGen
        common = stats_util.common_stats(stats)
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


def render_report(schema: schema_pb2.Schema, source_line: str) -> str:
    string_domains = {domain.name: domain for domain in schema.string_domain}
    rows = []
    for feature in schema.feature:
        notes = []
        if feature.not_in_environment:
            notes.append("not in " + ", ".join(feature.not_in_environment))
        if feature.in_environment:
            notes.append("only in " + ", ".join(feature.in_environment))
        rows.append([f"`{feature.name}`", schema_pb2.FeatureType.Name(feature.type), _presence(feature),
                     _shape(feature), _domain(feature, string_domains), "; ".join(notes) or "–"])
    lines = ["# SchemaGen", "", source_line, "",
             f"{len(schema.feature)} features"
             + (f"; environments: {', '.join(schema.default_environment)}" if schema.default_environment else "")
             + ".", "",
             report.table(["Feature", "Type", "Presence", "Values", "Domain", "Environments"], rows), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def _split_statistics(statistics_dir: str, split: str) -> statistics_pb2.DatasetFeatureStatistics:
    stats_list = tfmd.read_statistics(statistics_dir, split)
    if len(stats_list.datasets) != 1:
        raise InputDataError(f"{layout.split_dir(statistics_dir, split)}: expected one dataset, "
                             f"found {len(stats_list.datasets)}")
    return stats_list.datasets[0]


def run(statistics_dir: str | None, output_dir: str, report_path: str | None = None, schema_file: str = "",
        label_column: str = "", infer_feature_shape: bool = True, max_string_domain_size: int = 100,
        split: str = "train") -> dict:
    """Write ``<output_dir>/schema.pbtxt`` inferred from ``split`` of ``statistics_dir``, or
    imported from ``schema_file`` when that is set (then ``statistics_dir`` may be empty).

    Returns the artifact metadata: tfx_type, number of features and the source.
    """
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
        dataset = _split_statistics(statistics_dir, split)
        schema = infer_schema(dataset, label_column, infer_feature_shape, max_string_domain_size)
        if not schema.feature:
            raise InputDataError(f"statistics of split '{split}' in {statistics_dir} have no features")
        text = None
        source = f"inferred:{split}"
        source_line = (f"Inferred from the statistics of split `{split}` ({report.fmt(int(dataset.num_examples))} "
                       f"examples) in `{statistics_dir}`.")
    markdown = render_report(schema, source_line) if report_path else None
    with fileio.atomic_directory(output_dir) as temp_dir:
        if text is None:
            tfmd.write_schema(tfmd.schema_path(temp_dir), schema)
        else:
            fileio.atomic_write(tfmd.schema_path(temp_dir), text)
    if report_path:
        fileio.atomic_write(report_path, markdown)
    return {layout.TFX_TYPE: ARTIFACT_TYPE, "features": len(schema.feature), "source": source}
