"""TFMA's slicing on raw features, vectorized over an Arrow batch (for the fast path).

Semantics follow TFMA 0.52's ``slicer_lib.SingleSliceSpec``: ``slicing_specs {}`` is
the Overall slice; ``feature_keys`` make one slice per combination of values
present (an example without a value for a key is in none of them);
``feature_values`` keep the examples holding that value. A slice key is
``((column, value), ...)`` sorted by column then value, string values as text and
integers as ints — the key TFMA writes (``bytes_value`` / ``int64_value``) and
names (``island:Biscoe``, ``island_X_sex:Biscoe_X_male``). The same key made by
two specs is one slice.

Only raw string and integer features with at most one value per example are
handled here; ``unsupported_reasons`` says why anything else goes to TFMA.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def to_type(value):
    """TFMA's ``_to_type``: strings holding ints or floats compare as numbers."""
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text


def spec_identity(spec) -> tuple:
    """What makes two SlicingSpecs the same slice spec for TFMA (``SingleSliceSpec.__eq__``)."""
    return (frozenset(spec.feature_keys),
            frozenset((key, to_type(value)) for key, value in spec.feature_values.items()))


def applies(spec, slice_key: tuple) -> bool:
    """TFMA's ``SingleSliceSpec.is_slice_applicable``: the slice is exactly what the spec describes."""
    columns = set(spec.feature_keys)
    features = {(key, to_type(value)) for key, value in spec.feature_values.items()}
    for column, value in slice_key:
        item = (column, to_type(value))
        if item in features:
            features.remove(item)
        elif column in columns:
            columns.remove(column)
        else:
            return False
    return not features and not columns


def _kind(column: pa.Array) -> str:
    value_type = column.type.value_type if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) \
        else column.type
    if pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type) or pa.types.is_string(value_type) \
            or pa.types.is_large_string(value_type):
        return "string"
    if pa.types.is_integer(value_type):
        return "int"
    return str(value_type)


def _values_per_example(column: pa.Array) -> np.ndarray:
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    return np.where(column.is_valid().to_numpy(zero_copy_only=False), 1, 0)


def _scalar_column(column: pa.Array) -> pa.Array:
    """One value (or null) per example from a list column with at most one value each."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return column
    counts = _values_per_example(column)
    flat = pc.list_flatten(column)
    positions = np.cumsum(counts) - 1
    taken = flat.take(pa.array(np.where(counts > 0, positions, 0)))
    return pc.if_else(pa.array(counts > 0), taken, pa.nulls(len(column), taken.type))


def unsupported_reasons(config, batch) -> list[str]:
    """Why the slicing specs need TFMA (empty: the fast path slices them exactly as TFMA does)."""
    reasons = []
    names = set(batch.schema.names)
    for spec in config.slicing_specs:
        if spec.slice_keys_sql:
            reasons.append("slicing_specs with slice_keys_sql")
        for feature in list(spec.feature_keys) + list(spec.feature_values):
            if feature not in names:
                reasons.append(f"slicing on '{feature}', which is not a raw feature of the examples "
                               "(a transformed feature)")
                continue
            column = batch.column(feature)
            kind = _kind(column)
            if kind not in ("string", "int"):
                reasons.append(f"slicing on '{feature}' of type {kind} (the fast path slices string and integer "
                               "features)")
            elif int(_values_per_example(column).max(initial=0)) > 1:
                reasons.append(f"slicing on '{feature}', which has several values in some examples")
            elif feature in spec.feature_values and \
                    type(to_type(spec.feature_values[feature])) is not {"string": str, "int": int}[kind]:
                reasons.append(f"slicing_specs feature_values {feature}: '{spec.feature_values[feature]}' for a {kind} "
                               "feature (TFMA converts number-like text and compares across types)")
        for feature in spec.feature_keys:
            if feature in spec.feature_values:
                reasons.append(f"slicing_specs name '{feature}' in both feature_keys and feature_values")
    return list(dict.fromkeys(reasons))


class _Column:
    """A slicing feature as per-example codes (-1: no value) and the value of each code."""

    def __init__(self, column: pa.Array):
        scalar = _scalar_column(column)
        if _kind(column) == "string":
            encoded = pc.dictionary_encode(scalar.cast(pa.large_binary()))
            self.values = [value.decode("utf-8") for value in encoded.dictionary.to_pylist()]
            self.codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            numbers = scalar.cast(pa.int64())
            valid = numbers.is_valid().to_numpy(zero_copy_only=False)
            unique, inverse = np.unique(numbers.fill_null(0).to_numpy(zero_copy_only=False), return_inverse=True)
            self.values = [int(v) for v in unique]
            self.codes = np.where(valid, inverse, -1).astype(np.int64)

    def code_of(self, value) -> int:
        """The code of a ``feature_values`` value (as TFMA matches it), or -1 when no example holds it."""
        wanted = to_type(value)
        return next((code for code, present in enumerate(self.values) if present == wanted), -1)


def slice_rows(config, batch) -> dict[tuple, np.ndarray]:
    """Slice key -> the (sorted) row indices of its examples, for every slicing spec of the config."""
    columns: dict[str, _Column] = {}

    def column(name: str) -> _Column:
        if name not in columns:
            columns[name] = _Column(batch.column(name))
        return columns[name]

    specs = list(config.slicing_specs) or [None]
    result: dict[tuple, np.ndarray] = {}
    for spec in specs:
        keys = sorted(spec.feature_keys) if spec is not None else []
        fixed = sorted(spec.feature_values.items()) if spec is not None else []
        mask = np.ones(batch.num_rows, dtype=bool)
        fixed_items = []
        for name, value in fixed:
            code = column(name).code_of(value)
            mask &= column(name).codes == code
            fixed_items.append((name, to_type(value)))
        if not keys:
            rows = np.flatnonzero(mask)
            if len(rows):
                result.setdefault(tuple(sorted(fixed_items)), rows)
            continue
        codes = [column(name).codes for name in keys]
        for code in codes:
            mask &= code >= 0
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        combined = np.zeros(len(rows), dtype=np.int64)
        for name, code in zip(keys, codes):
            combined = combined * len(column(name).values) + code[rows]
        groups, inverse = np.unique(combined, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(groups)))[:-1]
        for group, members in zip(groups, np.split(rows[order], bounds)):
            items = list(fixed_items)
            for name in reversed(keys):
                size = len(column(name).values)
                items.append((name, column(name).values[group % size]))
                group //= size
            result.setdefault(tuple(sorted(items)), members)
    return result
