"""ExampleGen's input read into one Arrow table: CSV, Parquet or TFRecord files, missing values counted.

Which CSV fields mean "missing" is explicit and set per column kind: in columns
that parse as numbers (or booleans/dates) the ``null_values`` tokens (default:
the empty field and the usual NA/NaN/null spellings), in text columns the
``string_null_values`` tokens (default: only the empty field), so a real
category "NA" (North America) stays a value. Every value treated as missing is
counted per column and token. A CSV that does not parse is diagnosed (the first
undecodable byte, the first ragged row); files of one input must agree on each
column's type. A column of ``True``/``False`` (``feature_values``' spellings) is a boolean column, stored
in the tf.Examples as int64 1/0.
"""

import codecs
import csv
import dataclasses
import io
import os

import pyarrow as pa

from kubetfx.components.common import feature_values, layout, params, provenance, storage, tfrecord
from kubetfx.components.common.errors import ConfigError, InputDataError

INPUT_FORMATS = ("auto", "csv", "parquet", "tfrecord")
# CSV fields that mean "missing" in columns that parse as numbers (booleans, dates): the empty field and the
# NA/NaN/null spellings (pyarrow's list; over any of them a numeric column would otherwise become text).
DEFAULT_NULL_VALUES = feature_values.NUMBER_NULL_TEXT
# CSV fields that mean "missing" in text columns: only the empty field, so "NA" (North America) stays a value.
DEFAULT_STRING_NULL_VALUES = feature_values.STRING_NULL_TEXT
# The "token" under which missing values of Parquet/TFRecord input (real nulls) are counted.
NATIVE_NULL = "(null)"


# ---------------------------------------------------------------------------
# Parameters


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
        value = params.json_list_or_split(value, name, lambda text: [token.strip() for token in text.split(",")],
                                          "{name}: not a valid JSON list of strings ({reason}); "
                                          "example: '[\"\", \"NA\"]'")
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
    table = _parse_csv(path, data, encoding, pacsv.ConvertOptions(
        null_values=list(tokens.numeric), strings_can_be_null=False,
        true_values=list(feature_values.CSV_TRUE_VALUES), false_values=list(feature_values.CSV_FALSE_VALUES)))
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
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as err:
        raise InputDataError(f"{path}: not a readable Parquet file ({err})") from None
    for index, field in enumerate(table.schema):  # a pandas category: its values, as TFX's Parquet reader gives them
        if pa.types.is_dictionary(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(field.type.value_type))
    return table


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
                raise InputDataError(f"column '{name}' is {column_kind(known)} in {origin[name]} but {column_kind(kind)} "
                                     f"in {path}; make the column's type consistent across files")
    schema = pa.schema([(name, target[name]) for name in columns])
    return pa.concat_tables([t.select(columns).cast(schema) for _, t in tables])


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def column_kind(kind: pa.DataType) -> str:
    """A column's type in words (integer, float, string, or Arrow's name)."""
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return str(kind)


@dataclasses.dataclass
class Loaded:
    """The input read: a table (CSV/Parquet) or TFRecord records, its fingerprint and missing-value counts."""
    table: pa.Table | None                 # CSV / Parquet input
    records: list[bytes] | None            # TFRecord input
    fingerprint: str
    missing: dict[str, dict[str, int]]     # column -> token -> values treated as missing
    kept: dict[str, dict[str, int]]        # text column -> NA-like token -> values kept as text


def count_native_nulls(table: pa.Table | pa.RecordBatch, missing: dict[str, dict[str, int]]) -> None:
    """Parquet nulls and absent TFRecord features: missing without a token."""
    for name in table.schema.names:
        nulls = table.column(table.schema.get_field_index(name)).null_count
        if nulls:
            _add_counts(missing, name, {NATIVE_NULL: nulls})


def load(files: list[str], input_format: str, encoding: str, tokens: MissingTokens) -> Loaded:
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
        return Loaded(None, records, fingerprint.value(), missing, kept)
    if input_format == "csv":
        table = _apply_string_tokens(_unify(_resolve_csv_columns(csv_files, missing)), tokens, missing, kept)
    else:
        table = _unify(tables)
        count_native_nulls(table, missing)
    ordered = {name: missing[name] for name in table.column_names if name in missing}
    return Loaded(table, None, fingerprint.value(), ordered, kept)
