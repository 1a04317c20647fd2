"""StatisticsGen executor: exact TFMD statistics of every split, without TensorFlow or Beam.

Reads each split of a TFX-layout Examples artifact into Arrow (large_list
columns, a null list = feature missing in that example) and computes what TFDV
computes with ``data_validation/statistics.py`` (exact, pyarrow.compute +
NumPy), every feature of every split in parallel threads.

Output: ``Split-<name>/FeatureStats.pb`` (a DatasetFeatureStatisticsList with
one dataset per file, as TFX writes it) plus an optional Markdown report.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
from tensorflow_metadata.proto.v0 import statistics_pb2

from kubetfx.components.common import examples, fileio, layout, report, tfmd
from kubetfx.components.common.errors import InputDataError
from kubetfx.components.data_validation import statistics

ARTIFACT_TYPE = "ExampleStatistics"
# Top values shown per feature in the Markdown report.
_REPORT_TOP_VALUES = 5
_REPORT_LABEL_CHARS = 40

_FeatureStats = statistics_pb2.FeatureNameStatistics


def _max_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


# --------------------------------------------------------------------------- report


def _values_per_example(common: statistics_pb2.CommonStatistics) -> str:
    if not common.num_non_missing:
        return "–"
    if common.min_num_values == common.max_num_values:
        return report.fmt(int(common.min_num_values))
    return (f"{report.fmt(int(common.min_num_values))}–{report.fmt(int(common.max_num_values))} "
            f"(avg {report.fmt(float(common.avg_num_values), 3)})")


def _split_report(dataset: statistics_pb2.DatasetFeatureStatistics) -> list[str]:
    total = dataset.num_examples
    numeric_rows, string_rows = [], []
    for feature in dataset.features:
        name = tfmd.feature_name(feature)
        type_name = _FeatureStats.Type.Name(feature.type)
        if feature.HasField("num_stats"):
            num = feature.num_stats
            common = num.common_stats
            has_values = any(h.buckets for h in num.histograms)
            standard = statistics.histogram_by_type(num, statistics_pb2.Histogram.STANDARD)
            histogram = ""
            if standard is not None:
                histogram = report.sparkline(b.sample_count for b in standard.buckets)
                negative, positive = statistics.infinity_counts(standard)
                notes = [f"{report.fmt(n)} {what}" for n, what in ((int(standard.num_nan), "NaN"),
                                                                   (negative, "-inf"), (positive, "+inf")) if n]
                if notes:
                    histogram += f" ({', '.join(notes)})"
            numbers = [num.mean, num.std_dev, None, num.min, num.median, num.max]
            cells = [report.fmt(v) if has_values else "–" for v in numbers]
            if has_values:
                cells[2] = report.percent(num.num_zeros, common.tot_num_values)
            numeric_rows.append([
                f"`{name}`", type_name, report.fmt(int(common.num_non_missing)),
                report.percent(common.num_missing, total), _values_per_example(common), *cells, histogram,
            ])
        elif feature.HasField("string_stats"):
            string = feature.string_stats
            common = string.common_stats
            top = []
            for item in string.top_values[:_REPORT_TOP_VALUES]:
                label = item.value
                if len(label) > _REPORT_LABEL_CHARS:
                    label = label[:_REPORT_LABEL_CHARS] + "…"
                top.append(f"{label} ({report.fmt(int(item.frequency))})")
            if string.unique > _REPORT_TOP_VALUES:
                top.append("…")
            string_rows.append([
                f"`{name}`", type_name, report.fmt(int(common.num_non_missing)),
                report.percent(common.num_missing, total), _values_per_example(common),
                report.fmt(int(string.unique)), ", ".join(top) or "–",
                report.fmt(string.avg_length, 3) if common.tot_num_values else "–",
            ])
    lines = [f"## Split `{dataset.name}`: {report.fmt(int(total))} examples, "
             f"{len(dataset.features)} features", ""]
    if numeric_rows:
        lines += ["### Numeric features", "", report.table(
            ["Feature", "Type", "Count", "Missing", "Values/example", "Mean", "Std dev", "Zeros",
             "Min", "Median", "Max", "Histogram"], numeric_rows), ""]
    if string_rows:
        lines += ["### Categorical features", "", report.table(
            ["Feature", "Type", "Count", "Missing", "Values/example", "Unique", "Top values", "Avg length"],
            string_rows), ""]
    return lines


def render_report(examples_dir: str, datasets: dict[str, statistics_pb2.DatasetFeatureStatistics]) -> str:
    lines = ["# StatisticsGen", "",
             f"Statistics of `{examples_dir}`, splits: {', '.join(f'`{s}`' for s in datasets)}. "
             "Count = examples with the feature; Missing = share of examples without it; "
             "histograms are equal-width over the finite values (±inf and NaN counted beside them).", ""]
    for dataset in datasets.values():
        lines += _split_report(dataset)
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def _read_split(examples_dir: str, split: str) -> pa.RecordBatch:
    batch = examples.read_split(examples_dir, split)
    if batch.num_rows == 0:
        raise InputDataError(f"split '{split}' of Examples artifact {examples_dir} has no examples; "
                             "statistics need at least one")
    return batch


def run(examples_dir: str, output_dir: str, report_path: str | None = None,
        splits: list[str] | None = None) -> dict:
    """Write ``Split-<name>/FeatureStats.pb`` for each split of ``examples_dir`` into ``output_dir``.

    ``splits=None`` (or empty) means every split present. Returns the artifact
    metadata: tfx_type, split_names (JSON list), num_examples per split and the
    number of distinct features.
    """
    if splits:
        splits = list(dict.fromkeys(splits))
    else:
        if not os.path.isdir(examples_dir):
            raise InputDataError(f"Examples artifact directory {examples_dir} does not exist")
        splits = layout.list_splits(examples_dir)
        if not splits:
            raise InputDataError(f"Examples artifact {examples_dir} has no Split-* directories")
    with ThreadPoolExecutor(max_workers=_max_workers()) as pool:
        batches = dict(zip(splits, pool.map(lambda split: _read_split(examples_dir, split), splits)))
        pending = {split: (batch.num_rows, statistics.submit_features(batch, pool)) for split, batch in batches.items()}
        del batches
        stats = {split: statistics.assemble(split, rows, features) for split, (rows, features) in pending.items()}
    datasets = {split: stats_list.datasets[0] for split, stats_list in stats.items()}
    markdown = render_report(examples_dir, datasets) if report_path else None
    with fileio.atomic_directory(output_dir) as temp_dir:
        for split, stats_list in stats.items():
            tfmd.write_statistics(temp_dir, split, stats_list)
    if report_path:
        fileio.atomic_write(report_path, markdown)
    features = {tfmd.feature_name(f) for dataset in datasets.values() for f in dataset.features}
    return {
        layout.TFX_TYPE: ARTIFACT_TYPE,
        layout.SPLIT_NAMES: json.dumps(sorted(datasets)),
        "num_examples": {split: int(dataset.num_examples) for split, dataset in datasets.items()},
        "features": len(features),
    }
