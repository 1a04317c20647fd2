"""What counts as a value of a feature's type in a JSON request: one rule for the predictor and the monitor.

The predictor accepts ``3750.0`` for an INT feature (pandas writes integer columns with a missing
value as floats) and ``39`` for a FLOAT one; the monitor reads the logged requests with the same
rule, so a value the predictor accepted as an INT is an INT to the monitor too.
"""


def integral(value) -> int | None:
    """``value`` as an int when it is a JSON integer or an integral float (``181.0``); else None (booleans too)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def is_number(value) -> bool:
    """A JSON number (int or float; not a boolean, not a numeric string)."""
    return type(value) in (int, float)
