"""The predictor's request checks applied to a whole table at once: for batch inference over files.

Same rules as a request (``schema_check.RequestSchema``: the feature's type, the training domain
of strings, no NaN/±Inf unless allowed), the same words in the reasons, but per row and
vectorized: a bad row is set aside with its reason instead of failing the batch. Columns may
arrive as text (CSV read as strings: numbers are parsed here, and for an INT feature that was a
boolean column in training the true/false spellings ExampleGen reads as one, as 1/0), typed (Parquet;
a boolean column for such a feature is 1/0) or as one-value lists (decoded tf.Examples). A feature missing
from the table makes every row bad. A null (a blank cell, a missing-value token, an absent
tf.Example feature; for text also ExampleGen's string_null_values, by default the empty field) in an int or string
feature the model imputes (a ``missing`` marker in ``raw_features``) is sent as that marker, so the
model imputes it as in training; in any other int or string feature it makes the row bad.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetfx.components.common import feature_values
from kubetfx.components.predictor.schema_check import RequestSchema, value_problem

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)\s*$"


def scalar(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A one-value-per-row array from a list column (decoded tf.Examples) or a dictionary one (a pandas category
    in Parquet: its values); rows with more values are bad."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return column, np.zeros(len(column), dtype=bool)
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    many = lengths > 1
    first = pc.list_element(pc.if_else(pa.array(lengths >= 1), column, pa.nulls(len(column), column.type)), 0) \
        if len(column) else pa.array([], column.type.value_type)
    return first, many


def _all_numbers(text: pa.Array) -> np.ndarray | None:
    """float64 values of a text column whose every value Arrow parses as a number, none of them NaN (the
    common case, without the regex); None when any is not, so the per-row rules below decide."""
    if text.null_count:
        return None
    try:
        values = text.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None if np.isnan(values).any() else values


@functools.lru_cache(maxsize=8)
def _number_like(tokens: tuple) -> pa.Array | None:
    """The tokens Arrow reads as a number that is not NaN (``-999``): a column of numbers may still hold them."""
    numbers = []
    for token in tokens:
        try:
            value = pa.array([token]).cast(pa.float64())[0].as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if value == value:
            numbers.append(token)
    return pa.array(numbers, pa.string()) if numbers else None


def _numbers(column: pa.Array, booleans: bool = False,
             null_text: tuple = feature_values.NUMBER_NULL_TEXT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 values, null mask, not-a-number mask) of a text or numeric column (in text, ``null_text`` is null).
    With ``booleans`` (an INT feature) ExampleGen's true/false spellings and a typed boolean column are 1/0
    (``feature_values``)."""
    n = len(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_binary(column.type):
        text = column.cast(pa.string())
        values = _all_numbers(text)
        numeric_tokens = _number_like(null_text)  # e.g. -999: parsed as a number above, yet missing
        if values is not None and numeric_tokens and pc.any(pc.is_in(text, value_set=numeric_tokens)).as_py():
            values = None
        if values is not None:
            return values, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        is_null = pc.or_(pc.is_null(text), pc.is_in(text, value_set=pa.array(null_text, pa.string()))).to_numpy(
            zero_copy_only=False)
        bad = ~is_null & ~pc.fill_null(pc.match_substring_regex(text, _NUMBER, ignore_case=True), False).to_numpy(
            zero_copy_only=False)
        true = false = np.zeros(n, dtype=bool)
        if booleans and bad.any():
            true, false = feature_values.boolean_text(text)
            bad &= ~(true | false)
        clean = pc.if_else(pa.array(is_null | bad | true | false), pa.scalar(None, pa.string()),
                           pc.utf8_trim_whitespace(text))
        values = clean.cast(pa.float64()).to_numpy(zero_copy_only=False)
        if booleans:
            values = np.where(true, 1.0, np.where(false, 0.0, values))
        return values, is_null, bad
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
        is_null = column.is_null().to_numpy(zero_copy_only=False)
        bad = ~is_null if pa.types.is_boolean(column.type) and not booleans else np.zeros(n, dtype=bool)
        values = column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        return values, is_null, bad
    return np.full(n, np.nan), column.is_null().to_numpy(zero_copy_only=False), ~column.is_null().to_numpy(
        zero_copy_only=False)


def check(rules: RequestSchema, batch: pa.RecordBatch) -> tuple[dict, np.ndarray, dict]:
    """(model input columns of the good rows, the good-row mask, {row in batch: reason}) of ``batch``: numbers
    as numpy arrays, text as Arrow string arrays (``Servable.run`` takes both)."""
    n = batch.num_rows
    reasons: dict[int, str] = {}
    bad = np.zeros(n, dtype=bool)
    converted = {}

    def mark(mask: np.ndarray, rule_name: str, shown, why: str) -> None:
        fresh = np.flatnonzero(mask & ~bad)
        for index in fresh.tolist():
            reasons[index] = f"feature '{rule_name}': {why}" if shown is None else \
                value_problem(rule_name, shown(index), why)
        bad[fresh] = True

    names = set(batch.schema.names)
    for rule in rules.rules:
        if rule.name not in names:
            mark(np.ones(n, dtype=bool), rule.name, None, "missing (no such column)")
            converted[rule.name] = None
            continue
        column, many = scalar(batch.column(rule.name))
        shown = (lambda c: (lambda i: c[i].as_py()))(column)  # a bad value, read only for its reason
        mark(many, rule.name, shown, "expected one value")
        if rule.dtype == "string":
            textual = pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or \
                pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)
            if not textual:
                mark(np.ones(n, dtype=bool), rule.name, shown, "expected a string")
                converted[rule.name] = None
                continue
            text = column.cast(pa.string())
            is_null = text.is_null().to_numpy(zero_copy_only=False)
            if rule.missing is not None:  # imputed by the model: a null or a missing-value field is sent as missing
                is_null |= pc.fill_null(pc.is_in(text, value_set=pa.array(rules.string_null_text, pa.string())),
                                        False).to_numpy(zero_copy_only=False)
                mark(pc.fill_null(pc.equal(text, rule.missing), False).to_numpy(zero_copy_only=False), rule.name,
                     shown, "reserved for a missing value; send null")
            else:
                mark(is_null, rule.name, shown, "expected a string")
            if rule.domain is not None:
                inside = pc.is_in(text, value_set=pa.array(sorted(rule.domain))).to_numpy(zero_copy_only=False)
                mark(~inside & ~is_null, rule.name, shown, "value not in the training domain")
            text = text.fill_null("")  # stays Arrow: no Python string per row
            converted[rule.name] = text if rule.missing is None else \
                pc.if_else(pa.array(is_null), pa.scalar(rule.missing, pa.string()), text)
            continue
        values, is_null, not_number = _numbers(column, booleans=rule.booleans, null_text=rules.number_null_text)
        if rule.dtype == "int64":
            imputed = is_null if rule.missing is not None else np.zeros(n, dtype=bool)  # sent as missing
            mark(not_number | (is_null & ~imputed), rule.name, shown, "expected an integer")
            integral = np.isfinite(values) & (np.mod(np.where(np.isfinite(values), values, 0), 1) == 0)
            mark(~integral & ~imputed, rule.name, shown, "expected an integer")
            in_range = np.abs(np.where(np.isfinite(values), values, 0)) < 2.0 ** 63
            mark(~in_range, rule.name, shown, "integer out of the int64 range")  # also the marker, -2**63
            ints = np.where(bad, 0, np.nan_to_num(values)).astype(np.int64)
            converted[rule.name] = np.where(imputed, rule.missing, ints) if rule.missing is not None else ints
            continue
        mark(not_number, rule.name, shown, "expected a number")
        if not rule.allow_nan:
            mark(is_null, rule.name, shown, "null (NaN) is not allowed for this feature")
            mark(np.isnan(values) & ~is_null, rule.name, shown, "NaN is not allowed for this feature")
        if not rule.allow_inf:
            mark(np.isfinite(values) & (np.abs(values) > _FLOAT32_MAX) | np.isinf(values), rule.name, shown,
                 "infinite (or beyond the float32 range) is not allowed for this feature")
        converted[rule.name] = values.astype(np.float32)
    good = ~bad
    every = not bad.any()  # the common case: no copy
    kept = None if every else pa.array(good)
    columns = {name: values if every else values.filter(kept) if isinstance(values, pa.Array) else values[good]
               for name, values in converted.items() if values is not None}
    return columns, good, reasons
