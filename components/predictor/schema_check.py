"""Validate a request against the training schema and turn it into one numpy column per feature.

The rules come from the model's ``serving_raw`` signature (feature names and dtypes) plus, when
present, ``schema.pbtxt`` beside ``kubetfx_model.json`` (string domains, ``float_domain.disallow_nan``
/ ``disallow_inf``, the label's ``not_in_environment: SERVING``) and per-feature ``domain`` /
``allow_nan`` keys in kubetfx_model.json's ``raw_features``:

* every feature present, no unknown feature (the label is named as such);
* the right JSON type: numbers for float features, integers for int features (integral floats such
  as ``3750.0`` are accepted, and ``true``/``false`` as 1/0 for a feature that was a boolean column in
  training: ExampleGen stores one as an INT feature, ``common.feature_values``), strings for string
  features; no booleans for float features;
* strings inside the training domain when one is known;
* no NaN/±Inf in float features (JSON ``null`` in a float feature means NaN), unless the predictor
  runs with ``allow_nan`` and the schema does not set ``disallow_nan``/``disallow_inf``; a feature
  whose ``raw_features`` entry says ``allow_nan`` (the Trainer writes it for a float feature the
  transform graph imputes) takes NaN/null, which the model imputes, but not ±Inf;
* no null in int and string features, unless their ``raw_features`` entry names a ``missing``
  marker (the Trainer writes it for an int/string feature the transform graph imputes): a null is
  then sent as the marker, which the signature turns into "missing", so the model imputes it as in
  training; the marker itself is refused as a value (``common.feature_values``).

V1 instances and V2 JSON inputs (:meth:`RequestSchema.from_v2_json`) get the same value checks and
messages; V2 tensors that arrive typed (gRPC, binary REST) are checked as numpy arrays. A violation
raises :class:`RequestError` (kserve ``InvalidInput``: HTTP 400, gRPC INVALID_ARGUMENT) whose message
names the instance index and the feature; names a client sent are clipped and lists of them cut
short, so a message stays short whatever the request holds. No TensorFlow import.
"""

from __future__ import annotations

import math
import os

import numpy as np
from kserve.errors import InvalidInput

from kubetfx.components.common import feature_values
from kubetfx.components.predictor.signature import Feature

_FLOAT_V2 = ("FP32", "FP64", "FP16")
_INT_V2 = ("INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8")
_ACCEPTED_V2 = {"float32": _FLOAT_V2, "int64": _INT_V2 + ("BOOL",), "string": ("BYTES",)}  # BOOL: 1/0
_NP_DTYPES = {"float32": np.float32, "int64": np.int64, "string": object}
_JSON_KIND = {"float32": "a number", "int64": "an integer", "string": "a string"}
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_SHOWN = 10
_MAX_NAME_CHARS = 60


class RequestError(InvalidInput):
    """The request does not match the model's inputs (HTTP 400 / gRPC INVALID_ARGUMENT)."""


def _show(values) -> str:
    values = sorted(values)
    shown = ", ".join(values[:_MAX_SHOWN])
    return shown + (f", ... ({len(values)} in all)" if len(values) > _MAX_SHOWN else "")


def _quoted(name) -> str:
    """A client-supplied name for a message: quoted and clipped (messages stay short whatever is sent)."""
    text = str(name)
    return f"'{text}'" if len(text) <= _MAX_NAME_CHARS else f"'{text[:_MAX_NAME_CHARS - 3]}...'"


def _quoted_list(names) -> str:
    names = sorted(map(str, names))
    shown = ", ".join(_quoted(n) for n in names[:_MAX_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_SHOWN else "")


def value_problem(feature: str, value, why: str) -> str:
    """``feature 'x': why (got value)``: what is wrong with one value (requests and bulk inference alike)."""
    shown = "null" if value is None else ("true" if value else "false") if type(value) is bool else repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"feature '{feature}': {why} (got {shown})"


def json_kind(value) -> str:
    """What a parsed JSON value is, in JSON's words."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _body_keys(body: dict) -> str:
    return f" (got keys: {_quoted_list(body)})" if body else " (got an empty object)"


class V2JsonRequest:
    """A V2 REST request body as parsed JSON, checked by :meth:`RequestSchema.from_v2_json`.

    The REST fast path hands this to the model instead of kserve's ``InferRequest``: it skips
    kserve's pydantic model, and its values get the same checks (and messages) as V1 instances.
    """

    __slots__ = ("body",)

    def __init__(self, body):
        self.body = body

    @property
    def id(self) -> str | None:
        request_id = self.body.get("id") if type(self.body) is dict else None
        return request_id if type(request_id) is str else None


class _JsonTensor:
    """One entry of a V2 JSON ``inputs`` list, its structure checked (not yet its values)."""

    __slots__ = ("name", "datatype", "shape", "data")

    def __init__(self, index: int, entry):
        if type(entry) is not dict:
            raise RequestError(f"inputs[{index}] must be an object with name, datatype, shape and data, "
                               f"got {json_kind(entry)}")
        name, datatype, shape, data = (entry.get("name"), entry.get("datatype"), entry.get("shape"),
                                       entry.get("data"))
        if type(name) is not str:
            raise RequestError(f"inputs[{index}]: 'name' must be a string (the feature name), got {json_kind(name)}")
        if type(datatype) is not str:
            raise RequestError(f"input {_quoted(name)}: 'datatype' must be a string such as FP32, INT64 or BYTES, "
                               f"got {json_kind(datatype)}")
        if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
            raise RequestError(f"input {_quoted(name)}: 'shape' must be a list of non-negative integers, e.g. [N]")
        if type(data) is not list:
            binary = isinstance(entry.get("parameters"), dict) and "binary_data_size" in entry["parameters"]
            raise RequestError(f"input {_quoted(name)}: " + (
                "binary data needs the Inference-Header-Content-Length header" if binary and data is None else
                "'data' is missing" if data is None else f"'data' must be a list, got {json_kind(data)}"))
        self.name, self.datatype, self.shape, self.data = name, datatype, shape, data

    def values(self) -> list:
        """The data as one flat list of N values (``[[v], [v], ...]`` is accepted for shape [N, 1])."""
        data, rows = self.data, self.shape[0]
        if len(self.shape) == 2 and data and type(data[0]) is list:
            if not all(type(row) is list and len(row) == 1 for row in data):
                raise RequestError(f"input {_quoted(self.name)}: data for shape {self.shape} must be {rows} values "
                                   f"or {rows} one-element lists")
            data = [row[0] for row in data]
        if len(data) != rows:
            raise RequestError(f"input {_quoted(self.name)}: shape {self.shape} needs {rows} values but 'data' has "
                               f"{len(data)}")
        return data


class _Rule:
    """How one feature is checked and converted."""

    __slots__ = ("name", "dtype", "np_dtype", "domain", "domain_bytes", "allow_nan", "allow_inf", "missing",
                 "booleans")

    def __init__(self, feature: Feature, domain=None, allow_nan: bool = False, allow_inf: bool = False,
                 missing=None, booleans: bool = True):
        self.name = feature.name
        self.dtype = feature.dtype
        self.np_dtype = _NP_DTYPES[feature.dtype]
        self.domain = frozenset(domain) if domain else None
        self.domain_bytes = frozenset(v.encode() for v in domain) if domain else None
        self.allow_nan = allow_nan
        self.allow_inf = allow_inf
        self.missing = missing  # int/string: what a null is sent as (the model imputes it); None: null refused
        self.booleans = booleans and feature.dtype == "int64"  # true/false taken as 1/0 (a boolean column's feature)


class RequestSchema:
    """Checks requests for one model version; built by :func:`build`."""

    def __init__(self, rules: list[_Rule], label: str = "", source: str = "signature",
                 null_text: tuple = (feature_values.NUMBER_NULL_TEXT, feature_values.STRING_NULL_TEXT)):
        self.rules = rules
        self.names = frozenset(r.name for r in rules)
        self.label = label
        self.source = source  # what the rules came from, for logs/metadata
        # The fields that mean missing in a CSV's (number, text) columns, as in the training CSV: batch inference
        # reads text with them (``table_check``); a request's JSON has null for missing.
        self.number_null_text, self.string_null_text = null_text

    # ------------------------------------------------------------------ errors
    def _key_error(self, index: int, instance) -> RequestError:
        if not isinstance(instance, dict):
            return RequestError(f"instance {index}: expected a JSON object of features, got {json_kind(instance)}")
        missing = sorted(self.names - instance.keys())
        extra = set(instance) - self.names
        parts = []
        if missing:
            parts.append("missing feature" + ("s " if len(missing) > 1 else " ") + _quoted_list(missing))
        if extra:
            parts.append(self._unknown(extra))
        return RequestError(f"instance {index}: " + "; ".join(parts))

    def _unknown(self, extra) -> str:
        text = "unknown feature" + ("s " if len(extra) > 1 else " ") + _quoted_list(extra)
        if self.label and self.label in extra:
            text += f" ('{self.label}' is the label: leave it out of requests)"
        return text + f" (the model takes: {_show(self.names)})"

    @staticmethod
    def _value_error(index: int, rule: _Rule, value, why: str) -> RequestError:
        return RequestError(f"instance {index}: {value_problem(rule.name, value, why)}")

    # ------------------------------------------------------------------ V1
    def from_v1_json(self, body, model_name: str = "<model>") -> tuple[dict, int]:
        """A V1 body as parsed JSON (``{"instances": [...]}``) -> (columns, n)."""
        if type(body) is not dict:
            raise RequestError('expected a V1 request, a JSON object {"instances": [{feature: value, ...}, ...]}, '
                               f"got {json_kind(body)}")
        if "instances" not in body:
            hint = f"; that is a V2 body: POST it to /v2/models/{model_name}/infer" if "inputs" in body else ""
            raise RequestError('expected a JSON object {"instances": [{feature: value, ...}, ...]}' + _body_keys(body)
                               + hint)
        return self.from_instances(body["instances"])

    def from_instances(self, instances) -> tuple[dict, int]:
        """V1 ``instances`` (a list of {feature: value}) -> ({feature: np.ndarray}, n)."""
        if not isinstance(instances, list):
            raise RequestError(f"'instances' must be a list of objects (one per example), got "
                               f"{json_kind(instances)}")
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
        if not values:
            return np.empty(0, dtype=rule.np_dtype)
        kinds = set(map(type, values))
        nulls = None
        if rule.missing is not None and type(None) in kinds:  # nulls the model imputes: sent as the marker
            nulls = np.array([v is None for v in values])
            values = [rule.missing if v is None else v for v in values]  # a copy: the request's own data is logged
            kinds = set(map(type, values))
        if rule.dtype == "string":
            if kinds != {str}:
                index = next(i for i, v in enumerate(values) if type(v) is not str)
                raise self._value_error(index, rule, values[index], "expected a string")
            if rule.domain is not None and not rule.domain.issuperset(values):
                outside = next((i for i, v in enumerate(values) if v not in rule.domain
                                and not (nulls is not None and nulls[i])), None)
                if outside is not None:
                    raise self._value_error(outside, rule, values[outside],
                                            f"value not in the training domain ({_show(rule.domain)})")
            column = np.empty(len(values), dtype=object)
            column[:] = values
            self._check_marker(rule, column, nulls)
            return column
        if rule.dtype == "int64":
            if kinds != {int}:
                for index, value in enumerate(values):
                    whole = feature_values.integral(value) if rule.booleans or type(value) is not bool else None
                    if whole is None:
                        raise self._value_error(index, rule, value, "expected an integer")
                    values[index] = whole
            try:
                column = np.array(values, dtype=np.int64)
            except OverflowError:
                index = next(i for i, v in enumerate(values) if not _INT64_MIN <= v <= _INT64_MAX)
                raise self._value_error(index, rule, values[index], "integer out of the int64 range") from None
            self._check_marker(rule, column, nulls)
            return column
        # float32
        if not kinds <= {float, int}:
            for index, value in enumerate(values):
                if value is None:
                    if rule.allow_nan:
                        values[index] = math.nan
                        continue
                    raise self._value_error(index, rule, value, "null (NaN) is not allowed for this feature")
                if not feature_values.is_number(value):
                    raise self._value_error(index, rule, value, "expected a number")
        column = np.array(values, dtype=np.float64)  # exact, then checked before narrowing
        self._check_finite(rule, column, values)
        return column.astype(np.float32)

    def _check_marker(self, rule: _Rule, column: np.ndarray, nulls: np.ndarray | None = None) -> None:
        """A value that is the feature's missing marker would silently mean "missing": refused (send null).
        ``nulls``: where the request had null (sent as the marker)."""
        if rule.missing is not None:
            hits = feature_values.is_missing(column)
            hits = np.flatnonzero(hits if nulls is None else hits & ~nulls)
            if hits.size:
                raise self._value_error(int(hits[0]), rule, column[hits[0]].item() if rule.dtype == "int64"
                                        else column[hits[0]], "reserved for a missing value; send null")

    def _check_finite(self, rule: _Rule, column: np.ndarray, values) -> None:
        """``column``: float64 (or float32) values; beyond the float32 range counts as infinite."""
        if (rule.allow_nan and rule.allow_inf) or not column.size:
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
    def from_v2_json(self, body, model_name: str = "<model>") -> tuple[dict, int]:
        """A V2 REST body as parsed JSON (``{"inputs": [...]}``) -> (columns, n); values checked as in V1."""
        if type(body) is not dict:
            raise RequestError('expected a V2 inference request, a JSON object {"inputs": [...]}, got '
                               + json_kind(body))
        inputs = body.get("inputs")
        if type(inputs) is not list:
            if "inputs" in body:
                raise RequestError(f"'inputs' must be a list of input objects, got {json_kind(inputs)}")
            hint = (f"; that is a V1 body: POST it to /v1/models/{model_name}:predict" if "instances" in body else "")
            raise RequestError('expected a V2 inference request {"inputs": [{"name": ..., "datatype": ..., '
                               '"shape": [N], "data": [...]}, ...]}' + _body_keys(body) + hint)
        if "id" in body and type(body["id"]) is not str:
            raise RequestError(f"'id' must be a string, got {json_kind(body['id'])}")
        return self._from_tensors([_JsonTensor(index, entry) for index, entry in enumerate(inputs)])

    def from_infer_request(self, request) -> tuple[dict, int]:
        """A kserve ``InferRequest`` (one input per feature, shape [N] or [N, 1]) -> (columns, n)."""
        return self._from_tensors(request.inputs or [])

    def _from_tensors(self, inputs: list) -> tuple[dict, int]:
        """V2 inputs (kserve ``InferInput`` or :class:`_JsonTensor`), one per feature -> (columns, n)."""
        seen = {}
        for infer_input in inputs:
            if infer_input.name in seen:
                raise RequestError(f"input {_quoted(infer_input.name)} is given twice")
            seen[infer_input.name] = infer_input
        extra = set(seen) - self.names
        if extra:
            raise RequestError(self._unknown(extra))
        missing = sorted(self.names - seen.keys())
        if missing:
            raise RequestError("missing input" + ("s " if len(missing) > 1 else " ") + _quoted_list(missing)
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
        accepted = _INT_V2 if rule.dtype == "int64" and not rule.booleans else _ACCEPTED_V2[rule.dtype]
        if datatype not in accepted:
            raise RequestError(f"input '{rule.name}': datatype {_quoted(datatype) if datatype else '(none)'} does "
                               f"not match the feature type {rule.dtype}; use {' or '.join(accepted)}")
        shape = list(infer_input.shape or [])
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise RequestError(f"input '{rule.name}': shape {str(shape)[:40]} is not supported; use [N] (or [N, 1]), "
                               "one value per instance")
        if isinstance(infer_input, _JsonTensor):  # JSON values: the same checks and messages as V1 instances
            return self._column(rule, infer_input.values())
        try:
            array = infer_input.as_numpy()
        except Exception as err:  # numpy, struct (BYTES framing) and kserve errors alike: the data is bad
            raise RequestError(f"input '{rule.name}': data does not match datatype {datatype} "
                               f"and shape {shape}: {str(err)[:200]}") from None
        array = array.reshape(-1)
        if rule.dtype == "string":
            for index, value in enumerate(array.tolist()):
                if type(value) not in (str, bytes):
                    raise self._value_error(index, rule, value, "expected a string")
                if rule.domain is not None and value not in rule.domain and value not in rule.domain_bytes:
                    raise self._value_error(index, rule, value,
                                            f"value not in the training domain ({_show(rule.domain)})")
                if rule.missing is not None and value in (rule.missing, rule.missing.encode()):
                    raise self._value_error(index, rule, value, "reserved for a missing value; send null")
            return array.astype(object, copy=False)
        if rule.dtype == "int64":
            column = array.astype(np.int64, copy=False)
            self._check_marker(rule, column)
            return column
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
    booleans = feature_values.boolean_columns(info)  # None: not recorded, every INT feature takes them
    rules = []
    for feature in features:
        extra = declared.get(feature.name, {})
        domain = extra.get("domain") if isinstance(extra.get("domain"), list) else domains.get(feature.name)
        if feature.dtype != "string":
            domain = None
        disallow_nan, disallow_inf = nan_rules.get(feature.name, (False, False))
        rules.append(_Rule(feature, [str(v) for v in domain] if domain else None,
                           allow_nan=bool(extra.get("allow_nan", allow_nan)) and not disallow_nan,
                           allow_inf=allow_nan and not disallow_inf,
                           missing=feature_values.missing_marker(feature.dtype, extra),
                           booleans=booleans is None or feature.name in booleans))
    return RequestSchema(rules, label=str(info.get("label") or label), source=source,
                         null_text=feature_values.null_text(info))
