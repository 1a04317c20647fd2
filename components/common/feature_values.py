"""What a feature's value may be when scoring: one rule for the predictor, the BulkInferrer and the monitor.

The predictor accepts ``3750.0`` for an INT feature (pandas writes integer columns with a missing
value as floats) and ``39`` for a FLOAT one; the monitor reads the logged requests with the same
rule, so a value the predictor accepted as an INT is an INT to the monitor too.

Booleans: ExampleGen's CSV reader reads a column of ``True``/``False`` (pyarrow's spellings below,
case-sensitive) as a boolean column, and a boolean column (CSV or Parquet) is stored in the
tf.Examples as int64 1/0 (``common.examples``): its feature is an INT. So an INT feature that was a
boolean column in training takes JSON ``true``/``false``, those spellings in text and a typed boolean
column, as 1/0 (ExampleGen records its boolean columns and the model keeps them: ``BOOLEAN_COLUMNS_KEY``);
any other INT feature refuses a boolean (``true`` for ``year`` is a client's mistake, not 1), except in
a model that has no record (trained from TFRecords, or before the record), where every INT feature takes
one. A FLOAT feature never came from a boolean column (ExampleGen never makes one a float): no boolean.

Missing values: a null for an INT or string feature the transform graph imputes reaches the model's
``serving_raw`` signature as that feature's *missing marker* (kubetfx_model.json's ``raw_features``
entry ``missing``, one of the values below); the signature drops it, so the graph imputes the
feature as it imputes a tf.Example without it (a float's marker is NaN).
"""

import numpy as np

# The fields ExampleGen's CSV reader reads as booleans (set explicitly there, pyarrow's defaults; no spaces);
# a column of only 1/0 is read as integers first.
TRUE_TEXT = ("True", "TRUE", "true")
FALSE_TEXT = ("False", "FALSE", "false")
CSV_TRUE_VALUES = ("1",) + TRUE_TEXT
CSV_FALSE_VALUES = ("0",) + FALSE_TEXT

# The fields that mean "missing" in a CSV's number column: ExampleGen's default (pandas' na_values), and what the
# predictor and the BulkInferrer read as null in a number feature's text, so a row scores as it was trained.
NUMBER_NULL_TEXT = ("", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "#N/A",
                    "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN")
# ... and in a CSV's text column: ExampleGen's default is only the empty field, so "NA" (North America) is a value.
STRING_NULL_TEXT = ("",)
# Where ExampleGen was given other tokens (its null_values / string_null_values) for the CSV a model was trained
# on, kubetfx_model.json records them under these keys, and scoring reads a CSV with them.
NULL_TEXT_KEYS = ("null_values", "string_null_values")


# kubetfx_model.json (and ExampleGen's reading record): the training data's columns ExampleGen read as booleans.
BOOLEAN_COLUMNS_KEY = "boolean_columns"
# Every fact of how ExampleGen read the training data that the model records (each a list of strings).
READING_KEYS = NULL_TEXT_KEYS + (BOOLEAN_COLUMNS_KEY,)


def reading_record(record: dict | None) -> dict:
    """The ``READING_KEYS`` of ``record`` (ExampleGen's reading record, a transform summary, kubetfx_model.json) that
    hold a list of strings, as recorded; the others left out."""
    record = record if isinstance(record, dict) else {}
    return {key: record[key] for key in READING_KEYS
            if isinstance(record.get(key), list) and all(isinstance(value, str) for value in record[key])}


def boolean_columns(info: dict | None) -> frozenset | None:
    """The columns a model's training data had as booleans (its INT features that take ``true``/``false``), as
    recorded; None when not recorded (every INT feature takes them, as before the record)."""
    recorded = reading_record(info).get(BOOLEAN_COLUMNS_KEY)
    return None if recorded is None else frozenset(recorded)


def null_text(info: dict | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(number, text) fields that mean "missing" in CSV data scored by a model: what ExampleGen read its training
    CSV with, as recorded (``NULL_TEXT_KEYS``), else ExampleGen's defaults."""
    recorded = reading_record(info)
    return tuple(tuple(recorded[key]) if key in recorded else default
                 for key, default in zip(NULL_TEXT_KEYS, (NUMBER_NULL_TEXT, STRING_NULL_TEXT)))

# What a missing INT/string value is sent to ``serving_raw`` as (the Trainer's export drops these in the graph).
# A request or a table that gives one of them as a value is refused: it would silently mean "missing".
MISSING_INT64 = -(2 ** 63)
MISSING_STRING = "\x00kubetfx:missing"  # no trailing NUL: numpy's str dtype would drop it
MISSING_KEY = "missing"  # kubetfx_model.json raw_features[i]: the feature's marker
MARKERS = {"int64": MISSING_INT64, "string": MISSING_STRING}  # by the feature's dtype


def integral(value) -> int | None:
    """``value`` as an int when it is a JSON integer, an integral float (``181.0``) or a boolean (1/0, as
    ExampleGen stores a boolean column); else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is bool:
        return int(value)
    return None


def is_number(value) -> bool:
    """A JSON number (int or float; not a boolean, not a numeric string)."""
    return type(value) in (int, float)


def boolean_text(text) -> tuple[np.ndarray, np.ndarray]:
    """(is true, is false) masks of an Arrow text array: the fields ExampleGen reads as booleans (not 1/0)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def among(spellings):
        return pc.fill_null(pc.is_in(text, value_set=pa.array(spellings, pa.string())), False).to_numpy(
            zero_copy_only=False)

    return among(TRUE_TEXT), among(FALSE_TEXT)


def missing_marker(dtype: str, entry: dict):
    """The missing marker a ``raw_features`` entry declares for a feature of ``dtype`` ("int64"/"string"); None
    when it declares none (a model exported before markers, or a feature the graph does not impute)."""
    marker = entry.get(MISSING_KEY) if isinstance(entry, dict) else None
    expected = MARKERS.get(dtype)
    return marker if expected is not None and type(marker) is type(expected) and marker == expected else None


def is_missing(column) -> np.ndarray:
    """Where a request column (as given to the model: numpy, or Arrow text) holds a missing marker (NaN for floats)."""
    if not isinstance(column, np.ndarray):  # Arrow text (batch inference); a request's columns are numpy
        import pyarrow.compute as pc

        return pc.fill_null(pc.equal(column, MISSING_STRING), False).to_numpy(zero_copy_only=False)
    if column.dtype.kind == "f":
        return np.isnan(column)
    if column.dtype.kind in "iu":
        return column == MISSING_INT64 if column.dtype == np.int64 else np.zeros(len(column), dtype=bool)
    if column.dtype == object:
        return np.asarray(column == MISSING_STRING, dtype=bool).reshape(len(column))
    return np.zeros(len(column), dtype=bool)


def missing_as_null(column):
    """A request column (numpy, or Arrow text) as an Arrow array whose missing markers (NaN for floats) are null."""
    import pyarrow as pa

    missing = is_missing(column)
    if not isinstance(column, np.ndarray):
        import pyarrow.compute as pc

        return pc.if_else(pa.array(missing), pa.scalar(None, column.type), column) if missing.any() else column
    if column.dtype == object:
        return pa.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in column],
                        type=pa.string(), mask=missing)
    return pa.array(column, mask=missing if missing.any() else None)
