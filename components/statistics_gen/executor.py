"""StatisticsGen executor: exact TFMD statistics of every split, without TensorFlow or Beam.

Reads each split of a TFX-layout Examples artifact into Arrow (large_list
columns, a null list = feature missing in that example) and computes, per
feature, what TFDV computes: common statistics (presence, values per example),
numeric statistics (mean, std dev, zeros, min/median/max, equal-width and
quantile histograms) or string statistics (unique count, top values, average
length, rank histogram). Everything is exact (pyarrow.compute + NumPy), and
features are computed in parallel threads (both release the GIL).

Infinite values are kept, as TFDV keeps them: min/max are -inf/+inf, the
STANDARD histogram counts them in extreme buckets [-inf, -inf] / [inf, inf]
(equal-width buckets over the finite values in between), quantile boundaries
among them are infinite, and the mean is ±inf (NaN with both signs). The
standard deviation is then NaN (TFDV writes 0 there, from max(0, NaN)).
NaN values are not values: they are counted in each histogram's ``num_nan``.

Output: ``Split-<name>/FeatureStats.pb`` (a DatasetFeatureStatisticsList with
one dataset per file, as TFX writes it) plus an optional Markdown report.
"""

import json
import os
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import statistics_pb2

from kubetfx.components.common import examples, fileio, layout, report, stats_util, tfmd
from kubetfx.components.common.errors import InputDataError

ARTIFACT_TYPE = "ExampleStatistics"
NUM_TOP_VALUES = 20
NUM_RANK_HISTOGRAM_BUCKETS = 1000
# Top values shown per feature in the Markdown report.
_REPORT_TOP_VALUES = 5
_REPORT_LABEL_CHARS = 40

_FeatureStats = statistics_pb2.FeatureNameStatistics


def _max_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


# --------------------------------------------------------------------------- per-feature statistics


def _fill_common_stats(stats: statistics_pb2.CommonStatistics, column: pa.Array) -> None:
    num_missing = column.null_count
    lengths = pc.list_value_length(column)
    if num_missing:
        lengths = lengths.drop_null()
    lengths = lengths.to_numpy(zero_copy_only=False)
    stats.num_non_missing = len(lengths)
    stats.num_missing = num_missing
    if len(lengths):
        total = int(lengths.sum())
        stats.min_num_values = int(lengths.min())
        stats.max_num_values = int(lengths.max())
        stats.tot_num_values = total
        stats.avg_num_values = total / len(lengths)
        stats.num_values_histogram.CopyFrom(
            stats_util.quantiles_histogram(stats_util.quantiles(lengths), len(lengths)))


def _fill_numeric_stats(stats: statistics_pb2.NumericStatistics, values: pa.Array) -> None:
    array = values.to_numpy(zero_copy_only=False)
    num_nan = 0
    if array.dtype.kind == "f":
        nan = np.isnan(array)
        num_nan = int(np.count_nonzero(nan))
        if num_nan:
            array = array[~nan]
    elif array.dtype.kind == "b":
        array = array.astype(np.int64)
    if array.size:
        boundaries = stats_util.quantiles(array)  # 0, 0.1, ..., 1: min, deciles, max
        with np.errstate(invalid="ignore"):  # inf - inf in the mean/variance of infinite values: NaN
            stats.mean = float(array.mean(dtype=np.float64))
            stats.std_dev = float(array.std(dtype=np.float64))
        stats.num_zeros = int(np.count_nonzero(array == 0))
        stats.min = float(boundaries[0])
        stats.median = float(boundaries[len(boundaries) // 2])
        stats.max = float(boundaries[-1])
        stats.histograms.append(stats_util.standard_histogram(array, stats.min, stats.max, num_nan))
        stats.histograms.append(stats_util.quantiles_histogram(boundaries, array.size, num_nan))
    elif num_nan:
        for kind in (statistics_pb2.Histogram.STANDARD, statistics_pb2.Histogram.QUANTILES):
            stats.histograms.add(type=kind, num_nan=num_nan)


def _label(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _fill_string_stats(stats: statistics_pb2.StringStatistics, values: pa.Array) -> bool:
    """Fill ``stats``; returns whether every value is valid UTF-8."""
    counts = pc.value_counts(values)
    uniques, frequencies = counts.field("values"), counts.field("counts")
    stats.unique = len(counts)
    if len(values):
        stats.avg_length = pc.sum(pc.binary_length(values)).as_py() / len(values)
    try:
        uniques.cast(pa.large_string())
        is_utf8 = True
    except pa.ArrowInvalid:
        is_utf8 = False
        invalid = 0
        for value, frequency in zip(uniques.to_pylist(), frequencies.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                invalid += frequency
        stats.invalid_utf8_count = invalid
    # Rank by frequency, ties broken by value, so that the output is deterministic.
    ranked = pa.table({"frequency": frequencies, "value": uniques})
    order = [("frequency", "descending"), ("value", "ascending")]
    if ranked.num_rows > NUM_RANK_HISTOGRAM_BUCKETS:
        ranked = ranked.take(pc.select_k_unstable(ranked, NUM_RANK_HISTOGRAM_BUCKETS, sort_keys=order))
    ranked = ranked.take(pc.sort_indices(ranked, sort_keys=order))
    labels = [_label(value) for value in ranked.column("value").to_pylist()]
    ranked_frequencies = ranked.column("frequency").to_pylist()
    for label, frequency in zip(labels[:NUM_TOP_VALUES], ranked_frequencies):
        stats.top_values.add(value=label, frequency=frequency)
    for rank, (label, frequency) in enumerate(zip(labels, ranked_frequencies)):
        stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=frequency)
    return is_utf8


def feature_statistics(name: str, column: pa.Array | pa.ChunkedArray) -> statistics_pb2.FeatureNameStatistics:
    """Statistics of one feature given as a list column (a null list = missing in that example)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise InputDataError(f"feature '{name}': expected a list column (as decoded from tf.Examples), "
                             f"got {column.type}")
    value_type = column.type.value_type
    feature = _FeatureStats()
    feature.path.step.append(name)
    values = pc.list_flatten(column)
    if pa.types.is_integer(value_type) or pa.types.is_boolean(value_type) or pa.types.is_floating(value_type):
        feature.type = _FeatureStats.FLOAT if pa.types.is_floating(value_type) else _FeatureStats.INT
        _fill_common_stats(feature.num_stats.common_stats, column)
        _fill_numeric_stats(feature.num_stats, values)
    elif (pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type) or pa.types.is_string(value_type)
          or pa.types.is_large_string(value_type) or pa.types.is_null(value_type)):
        # A null value type means the feature is present but never has a value: treat it as empty strings.
        if not pa.types.is_large_binary(value_type):
            values = values.cast(pa.large_binary())
        _fill_common_stats(feature.string_stats.common_stats, column)
        is_utf8 = _fill_string_stats(feature.string_stats, values)
        feature.type = _FeatureStats.STRING if is_utf8 else _FeatureStats.BYTES
    else:
        raise InputDataError(f"feature '{name}': values of type {value_type} are not supported "
                             "(tf.Example features are int64, float or bytes)")
    return feature


def _submit(batch: pa.RecordBatch | pa.Table, executor: Executor | None) -> list:
    names = sorted(batch.schema.names)
    columns = [batch.column(batch.schema.get_field_index(n)) for n in names]
    if executor is None:
        return [feature_statistics(n, c) for n, c in zip(names, columns)]
    return [executor.submit(feature_statistics, n, c) for n, c in zip(names, columns)]


def _assemble(name: str, num_examples: int, features: list) -> statistics_pb2.DatasetFeatureStatisticsList:
    stats_list = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats_list.datasets.add(name=name, num_examples=num_examples)
    dataset.features.extend(f if isinstance(f, _FeatureStats) else f.result() for f in features)
    return stats_list


def generate_statistics(batch: pa.RecordBatch | pa.Table, name: str,
                        executor: Executor | None = None) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A DatasetFeatureStatisticsList with one dataset ``name`` for the list columns of ``batch``.

    Features are listed by name and computed in ``executor`` (a thread pool) if given.
    """
    return _assemble(name, batch.num_rows, _submit(batch, executor))


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
            standard = stats_util.histogram_by_type(num, statistics_pb2.Histogram.STANDARD)
            histogram = ""
            if standard is not None:
                histogram = report.sparkline(b.sample_count for b in standard.buckets)
                negative, positive = stats_util.infinity_counts(standard)
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
        pending = {split: (batch.num_rows, _submit(batch, pool)) for split, batch in batches.items()}
        del batches
        stats = {split: _assemble(split, rows, features) for split, (rows, features) in pending.items()}
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
