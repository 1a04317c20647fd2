"""ExampleGen executor: read tabular input, split it deterministically, write tf.Examples.

Splits are assigned by a 64-bit hash of each row (or of a partition column), so
re-running on the same data gives byte-identical files, and adding rows never
moves existing rows between splits. No TensorFlow import: the examples are
serialized by vectorized Arrow code.

Which CSV fields mean "missing" is explicit and set per column kind: in columns
that parse as numbers (or booleans/dates) the ``null_values`` tokens (default:
the empty field and the usual NA/NaN/null spellings), in text columns the
``string_null_values`` tokens (default: only the empty field), so a real
category "NA" (North America) stays a value. Every value treated as missing is
counted per column and token in the metadata and the report.
"""

import codecs
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from kubetfx.components.common import examples, feature_names, fileio, layout, provenance, report, storage, tfrecord
from kubetfx.components.common.errors import ConfigError, InputDataError

DEFAULT_SPLITS = {"train": 2.0, "eval": 1.0}
INPUT_FORMATS = ("auto", "csv", "parquet", "tfrecord")
ROWS_PER_SHARD = 250_000
MAX_SHARDS = 16
HASH_ALGORITHM = "blake2b-64 per value, splitmix64 row mix over sorted column names"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
# CSV fields that mean "missing" in columns that parse as numbers (booleans, dates): the empty field and the
# NA/NaN/null spellings (pyarrow's list; over any of them a numeric column would otherwise become text).
DEFAULT_NULL_VALUES = ("", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "#N/A",
                       "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN")
# CSV fields that mean "missing" in text columns: only the empty field, so "NA" (North America) stays a value.
DEFAULT_STRING_NULL_VALUES = ("",)
# The "token" under which missing values of Parquet/TFRecord input (real nulls) are counted.
NATIVE_NULL = "(null)"


# ---------------------------------------------------------------------------
# Parameters


def parse_splits(splits) -> dict[str, float]:
    """Accept {"train": 2, "eval": 1} or "train:2,eval:1"; weights need not sum to 1."""
    if splits is None or splits == "" or splits == {}:
        return dict(DEFAULT_SPLITS)
    if isinstance(splits, str):
        parsed = {}
        for part in splits.split(","):
            name, sep, weight = part.partition(":")
            if not sep:
                raise ConfigError(f"splits: '{part}' is not name:weight (example: 'train:8,eval:1,test:1')")
            parsed[name.strip()] = weight
        splits = parsed
    result = {}
    for name, weight in splits.items():
        if not _SPLIT_NAME.match(str(name)):
            raise ConfigError(f"splits: split name '{name}' must use only letters, digits, '_' or '-'")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"splits: weight of '{name}' must be a number, got {weight!r}") from None
        if not weight > 0 or math.isinf(weight):
            raise ConfigError(f"splits: weight of '{name}' must be positive, got {weight}")
        result[str(name)] = weight
    if len(result) < 1:
        raise ConfigError("splits: give at least one split")
    return result


@dataclasses.dataclass(frozen=True)
class MissingTokens:
    """The CSV fields that mean "missing": ``numeric`` in columns that parse as numbers, ``string`` in text."""
    numeric: tuple[str, ...] = DEFAULT_NULL_VALUES
    string: tuple[str, ...] = DEFAULT_STRING_NULL_VALUES


def parse_null_values(value, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Tokens from a JSON list (``'["", "NA"]'``), a list, or a comma-separated string where an
    empty item is the empty field (``',NA'`` = the empty field and NA). Unset (None or "") gives
    ``default``; ``'[]'`` means no field is missing."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return tuple(default)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{name}: not a valid JSON list of strings ({err}); "
                                  f"example: '[\"\", \"NA\"]'") from None
        else:
            value = [token.strip() for token in text.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(token, str) for token in value):
        raise ConfigError(f"{name} must be a JSON list of strings like '[\"\", \"NA\"]' or comma-separated "
                          f"tokens like ',NA' (an empty item is the empty field), got {value!r}")
    return tuple(dict.fromkeys(value))


def detect_format(files: list[str], input_format: str) -> str:
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"input_format must be one of {', '.join(INPUT_FORMATS)}, got '{input_format}'")
    if input_format != "auto":
        return input_format
    formats = set()
    for path in files:
        name = os.path.basename(path).lower()
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            formats.add("csv")
        elif name.endswith((".parquet", ".pq")):
            formats.add("parquet")
        elif ".tfrecord" in name or name.startswith(layout.EXAMPLES_FILE_PREFIX):
            formats.add("tfrecord")
        else:
            raise ConfigError(f"cannot tell the format of {path} from its name; "
                              "set input_format to csv, parquet or tfrecord")
    if len(formats) > 1:
        raise ConfigError(f"input mixes formats ({', '.join(sorted(formats))}); give one format per input")
    return formats.pop()


# ---------------------------------------------------------------------------
# Reading


def _diagnose_csv(path: str, data: bytes, encoding: str) -> str | None:
    """Find the first undecodable byte or ragged row; return a precise message."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line_no = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line_end = data.find(b"\n", err.start)
        line = data[line_start: line_end if line_end >= 0 else len(data)]
        header = next(csv.reader([data[: data.find(b"\n")].decode(encoding, "replace")]), [])
        column = "?"
        for index, field in enumerate(next(csv.reader([line.decode("latin-1")]), [])):
            try:
                field.encode("latin-1").decode(encoding)
            except UnicodeDecodeError:
                column = header[index] if index < len(header) else f"#{index + 1}"
                break
        return (f"{path}: line {line_no}, column '{column}': byte 0x{data[err.start]:02x} is not valid "
                f"{encoding}. If the file uses another encoding, set encoding (e.g. 'latin-1').")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    for row in reader:
        if row and len(row) != len(header):
            return (f"{path}: line {reader.line_num} has {len(row)} fields but the header has "
                    f"{len(header)} ({', '.join(header)}); fix the row or quote fields that contain commas")
    return None


def _parse_csv(path: str, data: bytes, encoding: str, convert_options) -> pa.Table:
    import pyarrow.csv as pacsv

    read_options = pacsv.ReadOptions(encoding=encoding) if codecs.lookup(encoding).name != "utf-8" \
        else pacsv.ReadOptions()
    try:
        table = pacsv.read_csv(pa.BufferReader(data), read_options=read_options,
                               parse_options=pacsv.ParseOptions(delimiter="\t" if path.endswith(".tsv") else ","),
                               convert_options=convert_options)
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise InputDataError(_diagnose_csv(path, data, encoding) or f"{path}: cannot parse CSV: {err}") from None
    if any(pa.types.is_binary(field.type) for field in table.schema):  # Arrow's fallback for invalid UTF-8
        raise InputDataError(_diagnose_csv(path, data, encoding)
                             or f"{path}: column(s) {[f.name for f in table.schema if pa.types.is_binary(f.type)]} "
                                f"are not valid {encoding}")
    return table


@dataclasses.dataclass
class _CsvFile:
    """One parsed CSV file: typed columns, and the raw text of the columns where missing tokens matter."""
    path: str
    table: pa.Table
    raw: dict[str, pa.ChunkedArray]  # non-text columns with nulls, and columns with no value at all


def _read_csv(path: str, data: bytes, encoding: str, tokens: MissingTokens) -> _CsvFile:
    """Parse with the numeric tokens as nulls and text kept verbatim (text tokens are applied later).

    The raw text of non-text columns with nulls is read again (only then: no cost on complete data)
    to count which token each missing value was.
    """
    import pyarrow.csv as pacsv

    if not data.strip():
        raise InputDataError(f"{path} is empty (0 data bytes); expected a header line and rows")
    if path.lower().endswith(".gz"):
        import gzip
        data = gzip.decompress(data)
    table = _parse_csv(path, data, encoding, pacsv.ConvertOptions(null_values=list(tokens.numeric),
                                                                   strings_can_be_null=False))
    needs_raw = [field.name for field in table.schema
                 if not _is_text(field.type) and table.column(field.name).null_count]
    raw = {}
    if needs_raw:
        text = _parse_csv(path, data, encoding, pacsv.ConvertOptions(
            include_columns=needs_raw, column_types={name: pa.string() for name in needs_raw},
            strings_can_be_null=False, quoted_strings_can_be_null=False))
        raw = {name: text.column(name) for name in needs_raw}
    return _CsvFile(path, table, raw)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _token_counts(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """Token -> occurrences, most frequent first (ties by token), for the metadata and the report."""
    import pyarrow.compute as pc

    counts = pc.value_counts(values)
    pairs = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())
    return dict(sorted(pairs, key=lambda item: (-item[1], item[0])))


def _add_counts(target: dict[str, dict[str, int]], column: str, counts: dict[str, int]) -> None:
    if counts:
        merged = target.setdefault(column, {})
        for token, count in counts.items():
            merged[token] = merged.get(token, 0) + count


def _resolve_csv_columns(files: list[_CsvFile], missing: dict[str, dict[str, int]]) -> list[tuple[str, pa.Table]]:
    """Decide, per column, numbers or text; count the numeric tokens that became missing.

    A column with no value in one file (every field a missing token) takes its type from the other
    files; with no value in any file it is text, so a column of only "NA" keeps "NA" as a value.
    """
    text_columns = set()
    for name in files[0].table.column_names:
        kinds = [f.table.schema.field(name).type for f in files if name in f.table.column_names]
        if any(_is_text(kind) for kind in kinds) or all(pa.types.is_null(kind) for kind in kinds):
            text_columns.add(name)
    tables = []
    for csv_file in files:
        table = csv_file.table
        for name, raw in csv_file.raw.items():
            if name in text_columns and pa.types.is_null(table.schema.field(name).type):
                table = table.set_column(table.schema.get_field_index(name), name, raw)
            elif name not in text_columns:
                _add_counts(missing, name, _token_counts(raw.filter(table.column(name).is_null())))
        tables.append((csv_file.path, table))
    return tables


def _apply_string_tokens(table: pa.Table, tokens: MissingTokens, missing: dict[str, dict[str, int]],
                         kept: dict[str, dict[str, int]]) -> pa.Table:
    """Null the text fields that are ``tokens.string``; record NA-like values kept as text in ``kept``.

    One look-up per column finds both; the common case (no such field) costs nothing more.
    """
    import pyarrow.compute as pc

    string_tokens = set(tokens.string)
    either = pa.array(list(dict.fromkeys(tokens.string + tokens.numeric)), pa.string())
    for index, field in enumerate(table.schema):
        if not _is_text(field.type) or not len(either):
            continue
        column = table.column(index)
        found = pc.is_in(column, value_set=either)
        if not pc.any(found).as_py():
            continue
        counts = _token_counts(column.filter(found))
        _add_counts(missing, field.name, {t: n for t, n in counts.items() if t in string_tokens})
        _add_counts(kept, field.name, {t: n for t, n in counts.items() if t not in string_tokens})
        if field.name in missing:
            is_missing = pc.is_in(column, value_set=pa.array(tokens.string, pa.string()))
            table = table.set_column(index, field.name, pc.if_else(is_missing, pa.scalar(None, field.type), column))
    return table


def _read_parquet(path: str, data: bytes) -> pa.Table:
    import pyarrow.parquet as pq

    if not data:
        raise InputDataError(f"{path} is empty (0 bytes)")
    try:
        return pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as err:
        raise InputDataError(f"{path}: not a readable Parquet file ({err})") from None


def _unify(tables: list[tuple[str, pa.Table]]) -> pa.Table:
    """Concatenate per-file tables; int+float widen to float, other type clashes are errors."""
    first_path, first = tables[0]
    columns = first.column_names
    target: dict[str, pa.DataType] = {}
    origin: dict[str, str] = {}
    for path, table in tables:
        if set(table.column_names) != set(columns):
            missing = sorted(set(columns) - set(table.column_names))
            extra = sorted(set(table.column_names) - set(columns))
            raise InputDataError(f"{path} has different columns than {first_path}: "
                                 f"missing {missing or 'none'}, extra {extra or 'none'}")
        for name in columns:
            kind = table.schema.field(name).type
            known = target.get(name)
            if known is None or pa.types.is_null(known):
                target[name], origin[name] = kind, path
            elif pa.types.is_null(kind) or kind == known:
                continue
            elif _is_number(kind) and _is_number(known):
                target[name] = pa.float64() if (pa.types.is_floating(kind) or pa.types.is_floating(known)) \
                    else pa.int64()
            else:
                raise InputDataError(f"column '{name}' is {_kind(known)} in {origin[name]} but {_kind(kind)} "
                                     f"in {path}; make the column's type consistent across files")
    schema = pa.schema([(name, target[name]) for name in columns])
    return pa.concat_tables([t.select(columns).cast(schema) for _, t in tables])


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _kind(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return str(kind)


# ---------------------------------------------------------------------------
# Hash partitioning


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a fast, well-distributed, platform-independent uint64 mix."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash_bytes(values) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(v, digest_size=8).digest(), "little") for v in values],
                    dtype=np.uint64)


def _column_hash(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """uint64 hash per value; numbers hash by value (181 == 181.0), nulls to a constant."""
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False))
    kind = column.type
    if _is_number(kind) or pa.types.is_boolean(kind):
        numbers = column.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        numbers = np.where(numbers == 0.0, 0.0, numbers)  # -0.0 and 0.0 hash alike
        hashes = _mix(numbers.view(np.uint64))
    else:
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            column = column.cast(pa.string())
        encoded = pc.dictionary_encode(column)
        dictionary = [v.encode() if isinstance(v, str) else v for v in encoded.dictionary.to_pylist()]
        unique_hashes = _hash_bytes(dictionary) if dictionary else np.zeros(0, np.uint64)
        indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        hashes = unique_hashes[indices] if len(unique_hashes) else np.zeros(len(column), np.uint64)
    return np.where(valid, hashes, _NULL_HASH)


def row_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """One uint64 per row from the given columns, independent of column order."""
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in sorted(columns):
            combined = _mix(combined * np.uint64(0x100000001B3) ^ _column_hash(table.column(name)))
    return combined


def assign_splits(hashes: np.ndarray, weights: list[float]) -> np.ndarray:
    """Split index per row: the hash as a fraction in [0, 1) against cumulative weights."""
    fractions = (hashes >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    bounds = np.cumsum(weights) / sum(weights)
    return np.minimum(np.searchsorted(bounds, fractions, side="right"), len(weights) - 1)


# ---------------------------------------------------------------------------
# Writing


def _write_shard(directory: str, shard: int, num_shards: int, records: list[bytes]) -> int:
    framed = tfrecord.encode_records(records)
    data = tfrecord.compress(framed)
    with open(os.path.join(directory, layout.examples_file_name(shard, num_shards)), "wb") as handle:
        handle.write(data)
    return len(data)


def _shard_count(rows: int, num_shards: int) -> int:
    if num_shards > 0:
        return num_shards
    return max(1, min(MAX_SHARDS, math.ceil(rows / ROWS_PER_SHARD)))


def _write_split(pool, directory: str, records_for_split, rows: int, num_shards: int):
    """Queue the shards of one split; returns futures of bytes written."""
    os.makedirs(directory, exist_ok=True)
    shards = _shard_count(rows, num_shards)
    per_shard = math.ceil(rows / shards) if rows else 0
    return [pool.submit(lambda s=s: _write_shard(directory, s, shards,
                                                 records_for_split(s * per_shard, min(rows, (s + 1) * per_shard))))
            for s in range(shards)]


# ---------------------------------------------------------------------------
# Entry point


@dataclasses.dataclass
class _Loaded:
    table: pa.Table | None                 # CSV / Parquet input
    records: list[bytes] | None            # TFRecord input
    fingerprint: str
    missing: dict[str, dict[str, int]]     # column -> token -> values treated as missing
    kept: dict[str, dict[str, int]]        # text column -> NA-like token -> values kept as text


def _count_native_nulls(table: pa.Table | pa.RecordBatch, missing: dict[str, dict[str, int]]) -> None:
    """Parquet nulls and absent TFRecord features: missing without a token."""
    for name in table.schema.names:
        nulls = table.column(table.schema.get_field_index(name)).null_count
        if nulls:
            _add_counts(missing, name, {NATIVE_NULL: nulls})


def _load(files: list[str], input_format: str, encoding: str, tokens: MissingTokens) -> _Loaded:
    """Read every file into one table (or the records of TFRecord input)."""
    fingerprint = provenance.ContentFingerprint()
    csv_files: list[_CsvFile] = []
    tables = []
    records: list[bytes] = []
    for path in files:
        data = storage.read_bytes(path)
        fingerprint.add(data)
        if input_format == "csv":
            csv_files.append(_read_csv(path, data, encoding, tokens))
        elif input_format == "parquet":
            tables.append((path, _read_parquet(path, data)))
        else:
            if not data:
                raise InputDataError(f"{path} is empty (0 bytes)")
            records.extend(tfrecord.decode_file(data, source=path))
    missing: dict[str, dict[str, int]] = {}
    kept: dict[str, dict[str, int]] = {}
    if input_format == "tfrecord":
        return _Loaded(None, records, fingerprint.value(), missing, kept)
    if input_format == "csv":
        table = _apply_string_tokens(_unify(_resolve_csv_columns(csv_files, missing)), tokens, missing, kept)
    else:
        table = _unify(tables)
        _count_native_nulls(table, missing)
    ordered = {name: missing[name] for name in table.column_names if name in missing}
    return _Loaded(table, None, fingerprint.value(), ordered, kept)


def run(input_uri: str, output_dir: str, *, splits=None, partition_column: str = "", label_column: str = "",
        input_format: str = "auto", encoding: str = "utf-8", num_shards: int = 0,
        null_values=None, string_null_values=None, report_path: str | None = None) -> dict:
    """Read ``input_uri`` and write a TFX-layout Examples artifact to ``output_dir``.

    ``null_values`` / ``string_null_values``: the CSV fields that mean "missing" in numeric /
    text columns (see :func:`parse_null_values`; unset: ``DEFAULT_NULL_VALUES`` /
    ``DEFAULT_STRING_NULL_VALUES``). Returns the artifact metadata (split names, span, row
    counts, columns, fingerprint, missing values per column and token).
    """
    split_weights = parse_splits(splits)
    tokens = MissingTokens(parse_null_values(null_values, "null_values", DEFAULT_NULL_VALUES),
                           parse_null_values(string_null_values, "string_null_values", DEFAULT_STRING_NULL_VALUES))
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"encoding '{encoding}' is not a known text encoding") from None
    files, span = storage.resolve_input(input_uri)
    fmt = detect_format(files, input_format)
    loaded = _load(files, fmt, encoding, tokens)
    table, records, fingerprint = loaded.table, loaded.records, loaded.fingerprint

    if table is not None:
        for name in table.column_names:
            kind = table.schema.field(name).type
            if pa.types.is_nested(kind):
                raise InputDataError(f"column '{name}' in {files[0]} has nested type {kind}; "
                                     "ExampleGen takes flat columns")
        columns = table.column_names
        column_types = {name: _kind(table.schema.field(name).type) for name in columns}
        num_rows = table.num_rows
    else:
        decoded = examples.decode_examples(records, source=", ".join(files))
        columns = sorted(decoded.schema.names)
        column_types = {name: str(decoded.schema.field(name).type.value_type) for name in columns}
        num_rows = len(records)
        _count_native_nulls(decoded, loaded.missing)

    where = files[0] if len(files) == 1 else f"{len(files)} files under {input_uri}"
    # Columns keep their names; where TensorFlow needs an identifier, feature_names.safe_name is used.
    # Two columns that would share one is an error now, not a crash in the Trainer's export.
    tensorflow_names = {c: s for c, s in feature_names.safe_names(columns, where).items() if c != s}
    if num_rows == 0:
        raise InputDataError(f"{where}: no data rows (only a header?)")
    for role, name in (("label_column", label_column), ("partition_column", partition_column)):
        if name and name not in columns:
            raise InputDataError(f"{role} '{name}' is not a column of {where}; columns are: {', '.join(columns)}")

    if table is not None:
        hashes = row_hashes(table, [partition_column] if partition_column else columns)
    elif partition_column:
        import pyarrow.compute as pc
        hashes = row_hashes(pa.table({partition_column: pc.list_element(decoded.column(partition_column), 0)}),
                            [partition_column])
    else:
        hashes = _mix(_hash_bytes(records))
    names = list(split_weights)
    assignment = assign_splits(hashes, list(split_weights.values()))

    row_counts = {}
    for index, split in enumerate(names):
        if not np.any(assignment == index):
            basis = f"partition column '{partition_column}'" if partition_column else "the row hash"
            raise InputDataError(f"split '{split}' got no rows from {where} ({num_rows} rows split by {basis}); "
                                 "use more data, a partition column with more distinct values, or other weights")
    with fileio.atomic_directory(output_dir) as temp_dir, ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = []
        for index, split in enumerate(names):
            rows_idx = np.flatnonzero(assignment == index)
            row_counts[split] = int(len(rows_idx))
            if table is not None:
                split_table = table.take(pa.array(rows_idx))
                get = lambda lo, hi, t=split_table: examples.encode_examples(t.slice(lo, hi - lo))
            else:
                split_records = [records[i] for i in rows_idx]
                get = lambda lo, hi, r=split_records: r[lo:hi]
            futures += _write_split(pool, layout.split_dir(temp_dir, split), get, len(rows_idx), num_shards)
        bytes_written = sum(f.result() for f in futures)

    metadata = {
        layout.TFX_TYPE: "Examples",
        layout.SPLIT_NAMES: json.dumps(names),
        layout.SPAN: span if span is not None else 0,
        "payload_format": "FORMAT_TF_EXAMPLE",
        "row_counts": row_counts,
        "columns": columns,
        "tensorflow_names": tensorflow_names,
        "column_types": column_types,
        "input_files": files,
        "input_format": fmt,
        "input_fingerprint": fingerprint,
        "split_weights": split_weights,
        "null_values": list(tokens.numeric),
        "string_null_values": list(tokens.string),
        "missing_values": loaded.missing,
        "na_like_values_kept": loaded.kept,
        "partition": partition_column or "whole row",
        "hash": HASH_ALGORITHM,
        "bytes_written": bytes_written,
        "package_versions": provenance.package_versions(),
    }
    if label_column:
        metadata["label_column"] = label_column
    if report_path:
        fileio.atomic_write(report_path, _report(metadata))
    return metadata


def _token_label(token: str) -> str:
    return "empty field" if token == "" else token if token == NATIVE_NULL else f"`{token}`"


def _tokens_text(tokens: list[str]) -> str:
    return ", ".join(_token_label(t) for t in tokens) if tokens else "nothing"


def _missing_report(metadata: dict, total: int) -> list[str]:
    """Which fields were treated as missing, per column and token, and NA-like text kept as values."""
    lines = ["## Missing values", ""]
    if metadata["input_format"] == "csv":
        lines += [f"Treated as missing: in numeric columns {_tokens_text(metadata['null_values'])} "
                  f"(`null_values`); in text columns {_tokens_text(metadata['string_null_values'])} "
                  "(`string_null_values`).", ""]
    missing = metadata["missing_values"]
    if missing:
        rows = [[f"`{column}`", metadata["column_types"][column], report.fmt(sum(tokens.values())),
                 report.percent(sum(tokens.values()), total),
                 ", ".join(f"{_token_label(t)} × {report.fmt(n)}" for t, n in tokens.items())]
                for column, tokens in missing.items()]
        lines += [report.table(["column", "type", "missing", "share", "by token"], rows), ""]
    else:
        lines += ["No missing values.", ""]
    for column, tokens in metadata["na_like_values_kept"].items():
        kept = ", ".join(f"{_token_label(t)} × {report.fmt(n)}" for t, n in tokens.items())
        lines += [f"Text column `{column}` keeps {kept} as values (a numeric column would treat them as "
                  "missing); if they mean missing there, add them to `string_null_values` "
                  "(e.g. `string_null_values=\",NA\"`: the empty field and NA).", ""]
    return lines


def _report(metadata: dict) -> str:
    counts = metadata["row_counts"]
    total = sum(counts.values())
    lines = ["# ExampleGen", "",
             f"**Input**: {len(metadata['input_files'])} {metadata['input_format']} file(s), "
             f"span {metadata[layout.SPAN]}, fingerprint `{metadata['input_fingerprint'][:23]}…`", "",
             "## Splits", "",
             report.table(["split", "rows", "share"],
                          [[s, report.fmt(n), report.percent(n, total)] for s, n in counts.items()]), "",
             f"Partitioned by hash of the {metadata['partition']}; re-running on the same data "
             "gives identical splits.", "",
             "## Columns", "",
             report.table(["#", "column", "type", "name in the model's signature"],
                          [[i + 1, c, metadata["column_types"][c], metadata["tensorflow_names"].get(c, c)]
                           for i, c in enumerate(metadata["columns"])]),
             "", *_missing_report(metadata, total)]
    return "\n".join(lines) + "\n"
