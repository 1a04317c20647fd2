"""Where a servable model lives and what its request/response tensors are. No TensorFlow import.

Two layouts are served:

* a **repository version**: ``<repository>/<model_name>/<version>/`` holding the SavedModel files
  directly plus ``kubetfx_model.json`` (what the Pusher writes; KServe copies it to ``/mnt/models``);
* a **Trainer model dir** (``Format-Serving/`` + ``kubetfx_model.json`` beside it): the candidate the
  InfraValidator serves before it is pushed.

An optional ``schema.pbtxt`` beside ``kubetfx_model.json`` adds string domains and NaN rules to the
request validation (see ``schema_check.py``).

The request features are the ``serving_raw`` signature's inputs (one [None] tensor per raw feature
except the label), named as in the data: ``kubetfx_model.json`` maps each feature's name to its
signature argument (``raw_features[].input``, the column's ``feature_names.safe_name``: a request
says ``"sepal length (cm)"``, the signature ``sepal_length_cm``) and adds the problem type, label
and class names. A model with only TFX's usual ``serving_default`` (serialized tf.Examples, what a
module file's ``run_fn`` exports) is served too: its features come from ``raw_features`` or the
schema's SERVING features, and the predictor encodes each request as tf.Examples.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from kubetfx.components.common import layout, model_repository
from kubetfx.components.common.errors import ConfigError

RAW_SIGNATURE = "serving_raw"
EXAMPLES_SIGNATURE = "serving_default"  # TFX's: serialized tf.Examples in
_SCHEMA_DTYPES = {"INT": "int64", "FLOAT": "float32", "BYTES": "string"}

# TF dtype name -> V2 (Open Inference Protocol) datatype.
V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "string": "BYTES",
                "bool": "BOOL"}
FEATURE_DTYPES = ("float32", "int64", "string")  # what a tf.Example can hold

CLASSIFICATION = "classification"
REGRESSION = "regression"
CLASSIFICATION_OUTPUTS = ("probabilities", "class_ids", "classes")
REGRESSION_OUTPUT = "predictions"


@dataclass(frozen=True)
class ModelLocation:
    """A loadable model: the SavedModel dir, its kubetfx_model.json / schema.pbtxt (if any), its version."""

    saved_model_dir: str
    info_path: str | None
    schema_path: str | None
    version: str


def _optional(path: str) -> str | None:
    return path if os.path.isfile(path) else None


def locate_model_dir(model_dir: str, version: str | None = None) -> ModelLocation:
    """A Trainer model dir (``Format-Serving/``), a repository version dir or a bare SavedModel dir.

    ``version``: the label to report (default: the dir's name when numeric, else "1").
    """
    if not model_dir or not os.path.isdir(model_dir):
        raise ConfigError(f"model dir {model_dir!r} does not exist (expected a Trainer model dir with "
                          f"{layout.SERVING_MODEL_DIR}/ or a SavedModel dir holding {layout.SAVED_MODEL_FILE})")
    model_dir = os.path.abspath(model_dir)
    serving = os.path.join(model_dir, layout.SERVING_MODEL_DIR)
    if os.path.isfile(os.path.join(serving, layout.SAVED_MODEL_FILE)):
        saved, meta_dir = serving, model_dir
    elif os.path.isfile(os.path.join(model_dir, layout.SAVED_MODEL_FILE)):
        saved = model_dir
        # A Format-Serving dir given directly keeps its metadata one level up.
        has_info = _optional(os.path.join(model_dir, layout.MODEL_INFO_FILE))
        meta_dir = model_dir if has_info else os.path.dirname(model_dir)
    else:
        raise ConfigError(f"{model_dir} holds no SavedModel: neither {layout.SERVING_MODEL_DIR}/"
                          f"{layout.SAVED_MODEL_FILE} nor {layout.SAVED_MODEL_FILE} found")
    if version is None:
        name = os.path.basename(model_dir)
        version = name if name.isdigit() else "1"
    return ModelLocation(saved, _optional(os.path.join(meta_dir, layout.MODEL_INFO_FILE)),
                         _optional(os.path.join(meta_dir, layout.SCHEMA_FILE)), str(version))


def locate_version(repository: str, model_name: str, version: int) -> ModelLocation:
    """``<repository>/<model_name>/<version>/`` (local or mounted repositories)."""
    path = model_repository.version_path(repository, model_name, int(version))
    if "://" in path:
        raise ConfigError(f"the predictor reads a local or mounted model repository, not {path}; on KServe the "
                          "storage initializer copies the version to /mnt/models (use --model_dir)")
    return ModelLocation(path, _optional(os.path.join(path, layout.MODEL_INFO_FILE)),
                         _optional(os.path.join(path, layout.SCHEMA_FILE)), str(int(version)))


def read_info(location: ModelLocation) -> dict:
    """``kubetfx_model.json`` as a dict ({} when the model has none)."""
    if not location.info_path:
        return {}
    try:
        with open(location.info_path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{location.info_path}: cannot read the model metadata: {err}") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{location.info_path}: expected a JSON object")
    return info


@dataclass(frozen=True)
class Feature:
    """One request feature: its name (as in the data), TF dtype name (float32 / int64 / string) and
    the signature argument it feeds (its safe name; empty: the name itself)."""

    name: str
    dtype: str
    input: str = ""

    @property
    def argument(self) -> str:
        return self.input or self.name

    @property
    def datatype(self) -> str:
        return V2_DATATYPES[self.dtype]


@dataclass(frozen=True)
class Output:
    name: str
    dtype: str
    shape: tuple  # without the batch dim; -1 for unknown

    @property
    def datatype(self) -> str:
        return V2_DATATYPES.get(self.dtype, "BYTES")


@dataclass
class ModelSpec:
    """What the served model takes and gives, from its signature plus kubetfx_model.json."""

    features: list[Feature]
    outputs: list[Output]
    problem_type: str = ""
    label: str = ""
    class_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def is_classification(self) -> bool:
        names = {o.name for o in self.outputs}
        return self.problem_type == CLASSIFICATION and set(CLASSIFICATION_OUTPUTS) <= names and bool(self.class_names)

    @property
    def is_regression(self) -> bool:
        return self.problem_type == REGRESSION and REGRESSION_OUTPUT in {o.name for o in self.outputs}

    def v2_outputs(self) -> list[Output]:
        """The outputs a V2 response carries (``class_names`` is per-model, not per-instance: left out)."""
        if self.is_classification:
            by_name = {o.name: o for o in self.outputs}
            return [by_name[name] for name in CLASSIFICATION_OUTPUTS]
        if self.is_regression:
            return [o for o in self.outputs if o.name == REGRESSION_OUTPUT]
        return list(self.outputs)

    def input_types(self) -> list[dict]:
        return [{"name": f.name, "datatype": f.datatype, "shape": [-1]} for f in self.features]

    def output_types(self) -> list[dict]:
        return [{"name": o.name, "datatype": o.datatype, "shape": [-1, *o.shape]} for o in self.v2_outputs()]


def build_spec(info: dict, inputs: dict[str, str], outputs: dict[str, tuple[str, tuple]], where: str,
               features: list[Feature] | None = None) -> ModelSpec:
    """Combine the signature (``inputs``: argument -> dtype; ``outputs``: name -> (dtype, shape)) with ``info``.

    The signature is the truth for names and dtypes; a ``raw_features`` list in kubetfx_model.json
    that disagrees with it is an error (the metadata belongs to another model). ``features`` given:
    a ``serving_default``-only model, whose features are not signature arguments.
    """
    if features is not None:
        return _spec(features, info, outputs)
    for name, dtype in inputs.items():
        if dtype not in FEATURE_DTYPES:
            raise ConfigError(f"{where}: signature '{RAW_SIGNATURE}' input '{name}' has dtype {dtype}; "
                              f"expected one of {', '.join(FEATURE_DTYPES)}")
    declared = [f for f in info.get("raw_features") or [] if isinstance(f, dict)]
    if declared:
        features = [Feature(str(f.get("name")), str(f.get("dtype")), str(f.get("input") or f.get("name")))
                    for f in declared]
        expected = {f.argument: f.dtype for f in features}
        if expected != inputs:
            raise ConfigError(f"{where}: kubetfx_model.json raw_features {sorted(expected.items())} do not match "
                              f"the '{RAW_SIGNATURE}' signature inputs {sorted(inputs.items())}")
        features.sort(key=lambda f: f.name)
    else:
        features = [Feature(name, inputs[name]) for name in sorted(inputs)]
    return _spec(features, info, outputs)


def _spec(features: list[Feature], info: dict, outputs: dict) -> ModelSpec:
    outs = [Output(name, dtype, tuple(shape)) for name, (dtype, shape) in sorted(outputs.items())]
    class_names = [str(c) for c in info.get("class_names") or []]
    problem = str(info.get("problem_type") or "")
    if problem not in (CLASSIFICATION, REGRESSION):  # no metadata or a custom run_fn: recognise the output names
        names = {o.name for o in outs}
        problem = CLASSIFICATION if set(CLASSIFICATION_OUTPUTS) <= names else (
            REGRESSION if REGRESSION_OUTPUT in names else "")
    return ModelSpec(features, outs, problem, str(info.get("label") or ""), class_names, info)


def example_features(info: dict, schema_path: str | None, where: str) -> list[Feature]:
    """The request features of a ``serving_default``-only model: ``raw_features``, else the schema's SERVING features."""
    declared = [f for f in info.get("raw_features") or [] if isinstance(f, dict)]
    if declared:
        return sorted((Feature(str(f["name"]), str(f["dtype"])) for f in declared), key=lambda f: f.name)
    if not schema_path:
        raise ConfigError(f"{where}: a '{EXAMPLES_SIGNATURE}'-only model needs its features: kubetfx_model.json "
                          "raw_features or a schema.pbtxt beside it")
    from kubetfx.components.common import tfmd
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = tfmd.read_schema(schema_path)
    return sorted((Feature(f.name, _SCHEMA_DTYPES[schema_pb2.FeatureType.Name(f.type)]) for f in schema.feature
                   if "SERVING" not in f.not_in_environment and schema_pb2.FeatureType.Name(f.type) in _SCHEMA_DTYPES),
                  key=lambda f: f.name)
