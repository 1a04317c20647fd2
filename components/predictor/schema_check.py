"""Validate a request against the training schema and turn it into one numpy column per feature.

The rules come from the model's ``serving_raw`` signature (feature names and dtypes) plus, when
present, ``schema.pbtxt`` beside ``kubetfx_model.json`` (string domains, ``float_domain.disallow_nan``
/ ``disallow_inf``, the label's ``not_in_environment: SERVING``) and per-feature ``domain`` /
``allow_nan`` keys in kubetfx_model.json's ``raw_features``:

* every feature present, no unknown feature (the label is named as such);
* the right JSON type: numbers for float features, integers for int features (integral floats such
  as ``3750.0`` are accepted), strings for string features; no booleans;
* strings inside the training domain when one is known;
* no NaN/±Inf in float features (JSON ``null`` in a float feature means NaN), unless the predictor
  runs with ``allow_nan`` and the schema does not set ``disallow_nan``/``disallow_inf``.

A violation raises :class:`RequestError` (kserve ``InvalidInput``: HTTP 400, gRPC INVALID_ARGUMENT)
whose message names the instance index and the feature. No TensorFlow import.
"""

from __future__ import annotations

import math
import os

import numpy as np
from kserve.errors import InvalidInput

from kubetfx.components.predictor.signature import Feature

_FLOAT_V2 = ("FP32", "FP64", "FP16")
_INT_V2 = ("INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8")
_ACCEPTED_V2 = {"float32": _FLOAT_V2, "int64": _INT_V2, "string": ("BYTES",)}
_NP_DTYPES = {"float32": np.float32, "int64": np.int64, "string": object}
_JSON_KIND = {"float32": "a number", "int64": "an integer", "string": "a string"}
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_SHOWN = 10


class RequestError(InvalidInput):
    """The request does not match the model's inputs (HTTP 400 / gRPC INVALID_ARGUMENT)."""


def _show(values) -> str:
    values = sorted(values)
    shown = ", ".join(values[:_MAX_SHOWN])
    return shown + (f", ... ({len(values)} in all)" if len(values) > _MAX_SHOWN else "")


class _Rule:
    """How one feature is checked and converted."""

    __slots__ = ("name", "dtype", "np_dtype", "domain", "domain_bytes", "allow_nan", "allow_inf")

    def __init__(self, feature: Feature, domain=None, allow_nan: bool = False, allow_inf: bool = False):
        self.name = feature.name
        self.dtype = feature.dtype
        self.np_dtype = _NP_DTYPES[feature.dtype]
        self.domain = frozenset(domain) if domain else None
        self.domain_bytes = frozenset(v.encode() for v in domain) if domain else None
        self.allow_nan = allow_nan
        self.allow_inf = allow_inf


class RequestSchema:
    """Checks requests for one model version; built by :func:`build`."""

    def __init__(self, rules: list[_Rule], label: str = "", source: str = "signature"):
        self.rules = rules
        self.names = frozenset(r.name for r in rules)
        self.label = label
        self.source = source  # what the rules came from, for logs/metadata

    # ------------------------------------------------------------------ errors
    def _key_error(self, index: int, instance) -> RequestError:
        if not isinstance(instance, dict):
            return RequestError(f"instance {index}: expected a JSON object of features, got "
                                f"{type(instance).__name__}")
        missing = sorted(self.names - instance.keys())
        extra = sorted(set(instance) - self.names)
        parts = []
        if missing:
            parts.append("missing feature" + ("s " if len(missing) > 1 else " ") + ", ".join(f"'{m}'" for m in missing))
        if extra:
            parts.append(self._unknown(extra))
        return RequestError(f"instance {index}: " + "; ".join(parts))

    def _unknown(self, extra) -> str:
        text = "unknown feature" + ("s " if len(extra) > 1 else " ") + ", ".join(f"'{e}'" for e in extra)
        if self.label and self.label in extra:
            text += f" ('{self.label}' is the label: leave it out of requests)"
        return text + f" (the model takes: {_show(self.names)})"

    @staticmethod
    def _value_error(index: int, rule: _Rule, value, why: str) -> RequestError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return RequestError(f"instance {index}: feature '{rule.name}': {why} (got {shown})")

    # ------------------------------------------------------------------ V1
    def from_instances(self, instances) -> tuple[dict, int]:
        """V1 ``instances`` (a list of {feature: value}) -> ({feature: np.ndarray}, n)."""
        if not isinstance(instances, list):
            raise RequestError(f"'instances' must be a list of objects (one per example), got "
                               f"{type(instances).__name__}")
        if not instances:
            raise RequestError("'instances' is empty: send at least one instance")
        names = self.names
        for index, instance in enumerate(instances):
            if type(instance) is not dict or instance.keys() != names:
                raise self._key_error(index, instance)
        columns = {}
        for rule in self.rules:
            name = rule.name
            values = [instance[name] for instance in instances]
            columns[name] = self._column(rule, values)
        return columns, len(instances)

    def _column(self, rule: _Rule, values: list) -> np.ndarray:
        kinds = set(map(type, values))
        if rule.dtype == "string":
            if kinds != {str}:
                index = next(i for i, v in enumerate(values) if type(v) is not str)
                raise self._value_error(index, rule, values[index], "expected a string")
            if rule.domain is not None and not rule.domain.issuperset(values):
                index = next(i for i, v in enumerate(values) if v not in rule.domain)
                raise self._value_error(index, rule, values[index],
                                        f"value not in the training domain ({_show(rule.domain)})")
            column = np.empty(len(values), dtype=object)
            column[:] = values
            return column
        if rule.dtype == "int64":
            if kinds != {int}:
                for index, value in enumerate(values):
                    if type(value) is int:
                        continue
                    if type(value) is float and value.is_integer():
                        values[index] = int(value)
                        continue
                    raise self._value_error(index, rule, value, "expected an integer")
            try:
                return np.array(values, dtype=np.int64)
            except OverflowError:
                index = next(i for i, v in enumerate(values) if not _INT64_MIN <= v <= _INT64_MAX)
                raise self._value_error(index, rule, values[index], "integer out of the int64 range") from None
        # float32
        if not kinds <= {float, int}:
            for index, value in enumerate(values):
                if value is None:
                    if rule.allow_nan:
                        values[index] = math.nan
                        continue
                    raise self._value_error(index, rule, value, "null (NaN) is not allowed for this feature")
                if type(value) not in (float, int):
                    raise self._value_error(index, rule, value, "expected a number")
        column = np.array(values, dtype=np.float64)  # exact, then checked before narrowing
        self._check_finite(rule, column, values)
        return column.astype(np.float32)

    def _check_finite(self, rule: _Rule, column: np.ndarray, values) -> None:
        """``column``: float64 (or float32) values; beyond the float32 range counts as infinite."""
        if rule.allow_nan and rule.allow_inf:
            return
        magnitude = np.abs(column)
        if magnitude.max() <= _FLOAT32_MAX:  # NaN compares False: handled below
            return
        for index in np.flatnonzero(~(magnitude <= _FLOAT32_MAX)):
            value = column[index]
            if np.isnan(value):
                if not rule.allow_nan:
                    raise self._value_error(int(index), rule, values[index], "NaN is not allowed for this feature")
            elif not rule.allow_inf:
                raise self._value_error(int(index), rule, values[index],
                                        "infinite (or beyond the float32 range) is not allowed for this feature")

    # ------------------------------------------------------------------ V2 (REST and gRPC)
    def from_infer_request(self, request) -> tuple[dict, int]:
        """A kserve ``InferRequest`` (one input per feature, shape [N] or [N, 1]) -> (columns, n)."""
        inputs = request.inputs or []
        seen = {}
        for infer_input in inputs:
            if infer_input.name in seen:
                raise RequestError(f"input '{infer_input.name}' is given twice")
            seen[infer_input.name] = infer_input
        extra = sorted(set(seen) - self.names)
        if extra:
            raise RequestError(self._unknown(extra))
        missing = sorted(self.names - seen.keys())
        if missing:
            raise RequestError("missing input" + ("s " if len(missing) > 1 else " ")
                               + ", ".join(f"'{m}'" for m in missing)
                               + f" (one input per feature, shape [N]; the model takes: {_show(self.names)})")
        columns, n = {}, None
        for rule in self.rules:
            column = self._v2_column(rule, seen[rule.name])
            if n is None:
                n = len(column)
            elif len(column) != n:
                raise RequestError(f"input '{rule.name}' has {len(column)} elements but "
                                   f"'{self.rules[0].name}' has {n}: every input needs one value per instance")
            columns[rule.name] = column
        if not n:
            raise RequestError("the inputs are empty: send at least one instance")
        return columns, n

    def _v2_column(self, rule: _Rule, infer_input) -> np.ndarray:
        datatype = (infer_input.datatype or "").upper()
        accepted = _ACCEPTED_V2[rule.dtype]
        if datatype not in accepted:
            raise RequestError(f"input '{rule.name}': datatype {datatype or '(none)'} does not match the feature "
                               f"type {rule.dtype}; use {' or '.join(accepted)}")
        shape = list(infer_input.shape or [])
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise RequestError(f"input '{rule.name}': shape {shape} is not supported; use [N] (or [N, 1]), "
                               "one value per instance")
        try:
            array = infer_input.as_numpy()
        except (ValueError, TypeError, OverflowError) as err:
            raise RequestError(f"input '{rule.name}': data does not match datatype {datatype} "
                               f"and shape {shape}: {err}") from None
        array = array.reshape(-1)
        if rule.dtype == "string":
            if rule.domain is not None:
                for index, value in enumerate(array.tolist()):
                    if value not in rule.domain and value not in rule.domain_bytes:
                        raise self._value_error(index, rule, value,
                                                f"value not in the training domain ({_show(rule.domain)})")
            return array.astype(object, copy=False)
        if rule.dtype == "int64":
            return array.astype(np.int64, copy=False)
        self._check_finite(rule, array, array)
        return array.astype(np.float32, copy=False)


# ---------------------------------------------------------------------- building the rules


def _schema_rules(schema_path: str) -> tuple[dict, dict, str]:
    """From schema.pbtxt: ({feature: domain values}, {feature: (disallow_nan, disallow_inf)}, serving-excluded label)."""
    from kubetfx.components.common import tfmd

    schema = tfmd.read_schema(schema_path)
    named = {d.name: list(d.value) for d in schema.string_domain}
    domains, nan_rules, label = {}, {}, ""
    for feature in schema.feature:
        if feature.HasField("string_domain"):
            domains[feature.name] = list(feature.string_domain.value)
        elif feature.domain and feature.domain in named:
            domains[feature.name] = named[feature.domain]
        if feature.HasField("float_domain"):
            nan_rules[feature.name] = (feature.float_domain.disallow_nan, feature.float_domain.disallow_inf)
        if "SERVING" in feature.not_in_environment:
            label = feature.name
    return domains, nan_rules, label


def build(features: list[Feature], info: dict | None = None, schema_path: str | None = None,
          allow_nan: bool = False) -> RequestSchema:
    """The request rules for a model: its signature features + kubetfx_model.json + optional schema.pbtxt."""
    info = info or {}
    domains, nan_rules, label = ({}, {}, "")
    source = "signature"
    if schema_path and os.path.isfile(schema_path):
        domains, nan_rules, label = _schema_rules(schema_path)
        source = f"signature + {schema_path}"
    declared = {str(f.get("name")): f for f in info.get("raw_features") or [] if isinstance(f, dict)}
    rules = []
    for feature in features:
        extra = declared.get(feature.name, {})
        domain = extra.get("domain") if isinstance(extra.get("domain"), list) else domains.get(feature.name)
        if feature.dtype != "string":
            domain = None
        disallow_nan, disallow_inf = nan_rules.get(feature.name, (False, False))
        feature_allow = bool(extra.get("allow_nan", allow_nan))
        rules.append(_Rule(feature, [str(v) for v in domain] if domain else None,
                           allow_nan=feature_allow and not disallow_nan,
                           allow_inf=feature_allow and not disallow_inf))
    return RequestSchema(rules, label=str(info.get("label") or label), source=source)
