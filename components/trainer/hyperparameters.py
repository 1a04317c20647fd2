"""Hyperparameters of the built-in trainer: defaults and type validation (no TensorFlow).

``DEFAULTS`` are the small-data values; scaling.py scales batch_size, epochs and early stopping to
the data for the values the user did not give.

Every problem raises a ConfigError naming the parameter, the expected type and
what was given, e.g. ``hyperparameters.learning_rate: expected a number (float),
got str 'fast'``.
"""

from __future__ import annotations

import json

from kubetfx.components.common.errors import ConfigError

DEFAULTS = {
    "hidden_units": [16, 8],
    "learning_rate": 0.01,
    "batch_size": 32,
    "epochs": 40,
    "dropout": 0.0,
    "early_stopping_patience": 8,
}

_DESCRIPTIONS = {
    "hidden_units": "list[int] (units per hidden layer, each > 0)",
    "learning_rate": "float > 0",
    "batch_size": "int > 0",
    "epochs": "int > 0",
    "dropout": "float in [0, 1)",
    "early_stopping_patience": "int >= 0 (0 disables early stopping)",
}


def _type_name(value) -> str:
    return type(value).__name__


def _fail(name: str, value, expected: str | None = None):
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ConfigError(f"hyperparameters.{name}: expected {expected or _DESCRIPTIONS[name]}, "
                      f"got {_type_name(value)} {shown}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(name: str, value, minimum: int):
    # JSON round trips can turn 16 into 16.0; accept integral floats.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value) or value < minimum:
        _fail(name, value)
    return value


def parse(hyperparameters) -> dict:
    """Defaults overlaid with ``hyperparameters`` (a dict or a JSON object string), validated."""
    return {**DEFAULTS, **given(hyperparameters)}


def given(hyperparameters) -> dict:
    """Only the values ``hyperparameters`` (a dict or a JSON object string) sets, validated; scaling.py
    scales the defaults of the others to the data."""
    if hyperparameters is None or hyperparameters == "":
        values = {}
    elif isinstance(hyperparameters, str):
        try:
            values = json.loads(hyperparameters)
        except json.JSONDecodeError as err:
            raise ConfigError(f"hyperparameters: not a valid JSON object ({err})") from None
    else:
        values = hyperparameters
    if not isinstance(values, dict):
        raise ConfigError(f"hyperparameters: expected a dict (JSON object), got {_type_name(values)}")
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"hyperparameters: unknown parameter(s) {', '.join(unknown)}; "
                          f"the built-in trainer takes: {', '.join(DEFAULTS)}")
    result = {}
    for name, value in values.items():
        if name == "hidden_units":
            if not isinstance(value, (list, tuple)) or not value or \
                    not all(_is_number(v) and float(v).is_integer() and v >= 1 for v in value):
                _fail(name, value)
            result[name] = [int(v) for v in value]
        elif name in ("learning_rate", "dropout"):
            if not _is_number(value):
                _fail(name, value, "a number (float)")
            value = float(value)
            if (name == "learning_rate" and not value > 0) or (name == "dropout" and not 0 <= value < 1):
                _fail(name, value)
            result[name] = value
        elif name == "early_stopping_patience":
            result[name] = _int(name, value, 0)
        else:
            result[name] = _int(name, value, 1)
    return result
