"""What counts as a value of a feature's type when scoring: one rule for the predictor, the BulkInferrer and the monitor.

The predictor accepts ``3750.0`` for an INT feature (pandas writes integer columns with a missing
value as floats) and ``39`` for a FLOAT one; the monitor reads the logged requests with the same
rule, so a value the predictor accepted as an INT is an INT to the monitor too.

Booleans: ExampleGen's CSV reader reads a column of ``True``/``False`` (pyarrow's spellings below,
case-sensitive) as a boolean column, and a boolean column (CSV or Parquet) is stored in the
tf.Examples as int64 1/0 (``common.examples``): its feature is an INT. So an INT feature takes
JSON ``true``/``false``, those spellings in text and a typed boolean column, as 1/0. A FLOAT feature
never came from a boolean column (ExampleGen never makes one a float): it takes no boolean.
"""

import numpy as np

# The fields ExampleGen's CSV reader reads as booleans (set explicitly there, pyarrow's defaults; no spaces);
# a column of only 1/0 is read as integers first.
TRUE_TEXT = ("True", "TRUE", "true")
FALSE_TEXT = ("False", "FALSE", "false")
CSV_TRUE_VALUES = ("1",) + TRUE_TEXT
CSV_FALSE_VALUES = ("0",) + FALSE_TEXT


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

