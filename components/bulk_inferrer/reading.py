"""The data to score, streamed in Arrow batches: an Examples artifact's split, or CSV/Parquet/TFRecord files.

A file, directory, glob or ``{SPAN}`` pattern (the newest span) is resolved as ExampleGen resolves
it. CSV: the model's number features are parsed by Arrow and the rest read as text; from a value
Arrow does not parse as a number on, the file is read as text, so a value of the wrong type is the
row's problem (the table check rejects it with a reason), never the whole file's; Parquet keeps its
types; tf.Examples are decoded per chunk. Batches hold at most ``BATCH_ROWS`` rows, whatever the input's size.
"""

from __future__ import annotations

import os
from typing import Iterator

import pyarrow as pa

from kubetfx.components.common import examples, layout, storage, tfrecord
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.common.feature_values import NUMBER_NULL_TEXT

BATCH_ROWS = 65536
# Arrow's CSV reader reads ~40 blocks ahead of a slower consumer: small blocks keep that bounded (~40 MB),
# joined into batches of BATCH_ROWS. A row may not be longer than a block.
CSV_BLOCK_BYTES = 1 << 20


def resolve(data_uri: str, split: str = "") -> tuple[list[str], str, int | None]:
    """(files, format, span) of an Examples artifact (``split``) or a file/dir/glob/{SPAN} pattern."""
    from kubetfx.components.example_gen.reading import detect_format

    if not data_uri:
        raise ConfigError("no data to score: give an Examples artifact with a split, or a file, directory, glob or "
                          "{SPAN} pattern of CSV/Parquet/TFRecord files")
    if os.path.isdir(data_uri) and layout.list_splits(data_uri):
        return examples.split_files(data_uri, split or "eval"), "tfrecord", None
    try:
        files, span = storage.resolve_input(data_uri)
    except FileNotFoundError as err:
        raise ConfigError(f"data {data_uri}: {err}") from None
    if not files:
        raise ConfigError(f"data {data_uri}: no files match")
    return files, detect_format(files, "auto"), span


def _rebatch(batches, rows: int) -> Iterator[pa.RecordBatch]:
    """Batches joined (copied once) into batches of ``rows`` rows; the last may be shorter, and so is the one before
    a change of schema (a CSV read on as text, :func:`_csv_blocks`)."""
    pending, count = [], 0
    for batch in batches:
        if pending and batch.schema != pending[0].schema:
            yield pa.concat_batches(pending)
            pending, count = [], 0
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            merged = pa.concat_batches(pending)
            whole = count - count % rows
            yield from (merged.slice(start, rows) for start in range(0, whole, rows))
            pending, count = [merged.slice(whole)], count - whole
    if count:
        yield pa.concat_batches(pending)


def _csv_blocks(path: str, delimiter: str, numbers: frozenset, null_text: tuple) -> Iterator[pa.RecordBatch]:
    """The CSV's blocks: the ``numbers`` columns parsed by Arrow as float64 (``null_text``'s fields null), the
    rest as text; from a block with a value Arrow does not parse as a number (``True``, `` 5``, ``n/a?``) on, every
    column as text, so that the table check decides per row and says why. Both give the same values."""
    import pyarrow.csv as csv

    with pa.input_stream(path) as stream:  # the header, to give every column its type
        header = csv.open_csv(stream, read_options=csv.ReadOptions(block_size=1 << 16),
                              parse_options=csv.ParseOptions(delimiter=delimiter)).schema.names

    def reader(typed: bool):
        return csv.open_csv(path, read_options=csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                            parse_options=csv.ParseOptions(delimiter=delimiter),
                            convert_options=csv.ConvertOptions(
                                column_types={n: pa.float64() if typed and n in numbers else pa.string() for n in header},
                                strings_can_be_null=False, null_values=list(null_text)))

    done = 0
    if numbers & set(header):
        try:
            for block in reader(True):
                done += block.num_rows
                yield block
            return
        except pa.ArrowInvalid as err:
            if "conversion error" not in str(err):  # not a value but the file (a row of too many fields): as text too
                raise
    for block in reader(False):  # the rows already given skipped by count, as both readers count them
        if done >= block.num_rows:
            done -= block.num_rows
            continue
        yield block.slice(done)
        done = 0


def _csv_batches(path: str, numbers: frozenset, null_text: tuple) -> Iterator[pa.RecordBatch]:
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    try:
        yield from _rebatch(_csv_blocks(path, delimiter, numbers, null_text), BATCH_ROWS)
    except pa.ArrowInvalid as err:
        raise InputDataError(f"{path}: not a readable CSV file ({str(err).splitlines()[0][:200]})") from None


def _parquet_batches(path: str) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputDataError(f"{path}: not a readable Parquet file ({err})") from None
    yield from handle.iter_batches(batch_size=BATCH_ROWS)


def _tfrecord_batches(path: str) -> Iterator[pa.RecordBatch]:
    records = tfrecord.read_file(path)
    for start in range(0, len(records), BATCH_ROWS):
        yield examples.decode_examples(records[start:start + BATCH_ROWS], source=path)


def batches(files: list[str], data_format: str, numbers=(),
            null_text: tuple = NUMBER_NULL_TEXT) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(file, batch of at most ``BATCH_ROWS`` rows, never empty) in file order; ``numbers``: the columns a CSV's
    values are parsed as numbers in (the model's number features; ``null_text``: the fields that are null there,
    as ExampleGen read the training CSV), the others read as text."""
    numbers = frozenset(numbers)
    reader = {"csv": lambda path: _csv_batches(path, numbers, null_text), "parquet": _parquet_batches,
              "tfrecord": _tfrecord_batches}[data_format]
    for path in files:
        for batch in reader(path):
            for start in range(0, batch.num_rows, BATCH_ROWS):  # a CSV block holds more: memory per batch, bounded
                yield path, batch.slice(start, BATCH_ROWS)
