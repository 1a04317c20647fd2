"""What the built-in trainer learns: classification or regression, the classes, the model inputs.

Decided from the raw schema, the transform output and the training labels:

* a string raw label that Transform turned into a vocabulary index -> classification
  over the vocabulary (class names = the vocabulary file, in order);
* an integer (or string) transformed label with at most ``MAX_INT_CLASSES``
  distinct training values -> classification over the sorted distinct values;
* a float label, or an integer one with more values -> regression (the target is
  standardized for training and de-standardized in the exported model).

``problem_type`` overrides the guess: ``classification`` for integer (or integral float)
class ids with more than ``MAX_INT_CLASSES`` values, ``regression`` for a small-integer target.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from kubetfx.components.common.errors import ConfigError, InputDataError

MAX_INT_CLASSES = 20
MAX_STRING_CLASSES = 1000
CLASSIFICATION, REGRESSION = "classification", "regression"
AUTO = "auto"
PROBLEM_TYPES = (AUTO, CLASSIFICATION, REGRESSION)


@dataclasses.dataclass
class Problem:
    kind: str
    label: str                       # raw label name
    label_key: str                   # transformed label name
    class_names: list[str]           # classification: index -> name
    label_values: list | None        # transformed label value per class index (None: the value is the index)
    label_mean: float = 0.0          # regression: target standardization
    label_std: float = 1.0


@dataclasses.dataclass
class ModelInput:
    name: str
    kind: str                        # "numeric" | "categorical"
    dtype: str                       # transformed dtype: float32 | int64
    width: int                       # values per example
    num_tokens: int = 0              # categorical: one-hot width (last index = out of range)


def _is_fixed(spec) -> bool:
    import tensorflow as tf

    return isinstance(spec, tf.io.FixedLenFeature)


def transformed_label_key(label: str, transformed_spec: dict) -> str:
    """The transformed name of the label: the same name, or TFX's ``<label>_xf``."""
    for key in (label, f"{label}_xf"):
        if key in transformed_spec:
            return key
    raise ConfigError(f"label_column '{label}' is not among the transformed features "
                      f"({', '.join(sorted(transformed_spec))}); the preprocessing_fn must output it "
                      f"as '{label}' or '{label}_xf'")


def _vocabulary(tfo, name: str | None) -> list[str] | None:
    if not name:
        return None
    path = os.path.join(tfo.transform_savedmodel_dir, "assets", name)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        return [line.rstrip(b"\n").decode("utf-8", "replace") for line in handle]


def check_problem_type(problem_type: str) -> str:
    if problem_type not in PROBLEM_TYPES:
        raise ConfigError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, got {problem_type!r}")
    return problem_type


def _classes_from_numbers(label: str, key: str, train_labels: np.ndarray, limit: int) -> Problem | None:
    """Classification over the distinct (integral) values, or None when they are not few integral numbers."""
    values = np.unique(train_labels)
    if len(values) > limit or not np.all(np.equal(np.mod(values, 1), 0)):
        return None
    values = values.astype(np.int64)
    if np.array_equal(values, np.arange(len(values))):
        return Problem(CLASSIFICATION, label, key, [str(v) for v in values], None)
    return Problem(CLASSIFICATION, label, key, [str(v) for v in values], [int(v) for v in values])


def decide(tfo, label: str, train_labels: np.ndarray, label_vocabulary: str | None,
           problem_type: str = AUTO) -> Problem:
    """The Problem for ``label`` given the TFTransformOutput and the training label values."""
    check_problem_type(problem_type)
    transformed_spec = tfo.transformed_feature_spec()
    key = transformed_label_key(label, transformed_spec)
    spec = transformed_spec[key]
    if not _is_fixed(spec) or int(np.prod(spec.shape or [1])) != 1:
        raise ConfigError(f"the transformed label '{key}' must have one value per example, got {spec}")
    raw_dtype = tfo.raw_feature_spec()[label].dtype.name if label in tfo.raw_feature_spec() else None
    dtype = spec.dtype.name
    if train_labels.size == 0:
        raise InputDataError("the training split has no examples")
    if (dtype == "string" or raw_dtype == "string") and problem_type == REGRESSION:
        raise ConfigError(f"problem_type is regression but label '{label}' holds strings; a regression needs a "
                          "numeric label (or use problem_type=classification)")
    if dtype == "int64" and raw_dtype == "string":
        vocab = _vocabulary(tfo, label_vocabulary or "label_vocabulary")
        if vocab is None:
            raise ConfigError(f"label '{label}' is a string turned into an integer by the preprocessing_fn, but "
                              f"no vocabulary file '{label_vocabulary or 'label_vocabulary'}' is in the transform "
                              "graph; name the label vocabulary 'label_vocabulary' (vocab_filename)")
        return Problem(CLASSIFICATION, label, key, vocab, None)
    if dtype == "string":
        values, counts = np.unique(train_labels, return_counts=True)
        if len(values) > MAX_STRING_CLASSES:
            raise ConfigError(f"label '{label}' has {len(values)} distinct string values in training, more than "
                              f"{MAX_STRING_CLASSES}; vocabulary-encode it in the preprocessing_fn")
        ordered = [value for value, _ in sorted(zip(values.tolist(), counts.tolist()), key=lambda vc: (-vc[1], vc[0]))]
        names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in ordered]
        return Problem(CLASSIFICATION, label, key, names, list(ordered))
    if problem_type == CLASSIFICATION:
        problem = _classes_from_numbers(label, key, train_labels, MAX_STRING_CLASSES)
        if problem is None:
            raise ConfigError(f"problem_type is classification but label '{label}' has non-integral values or more "
                              f"than {MAX_STRING_CLASSES} distinct ones in training; use problem_type=regression")
        return problem
    if dtype == "int64" and problem_type == AUTO:
        problem = _classes_from_numbers(label, key, train_labels, MAX_INT_CLASSES)
        if problem is not None:
            return problem
    values = train_labels.astype(np.float64)
    std = float(values.std())
    return Problem(REGRESSION, label, key, [], None, float(values.mean()), std if std > 0 else 1.0)


def model_inputs(tfo, label_key: str) -> list[ModelInput]:
    """The transformed features the built-in model takes, in name order."""
    spec = tfo.transformed_feature_spec()
    domains = {f.name: f.int_domain for f in tfo.transformed_metadata.schema.feature if f.HasField("int_domain")}
    inputs = []
    for name in sorted(spec):
        if name == label_key:
            continue
        feature = spec[name]
        if not _is_fixed(feature):
            raise ConfigError(f"transformed feature '{name}' is {type(feature).__name__}; the built-in trainer "
                              "needs dense features (one value per example): densify it in the preprocessing_fn")
        width = int(np.prod(feature.shape)) if feature.shape else 1
        dtype = feature.dtype.name
        if dtype == "string":
            raise ConfigError(f"transformed feature '{name}' is a string; the built-in trainer needs numbers: "
                              "vocabulary-encode it in the preprocessing_fn (tft.compute_and_apply_vocabulary)")
        domain = domains.get(name)
        if dtype == "int64" and domain is not None and domain.HasField("max") and domain.max < 100_000:
            inputs.append(ModelInput(name, "categorical", dtype, width, int(domain.max) + 2))
        else:
            inputs.append(ModelInput(name, "numeric", dtype, width))
    if not inputs:
        raise ConfigError("the transform output has no features besides the label")
    return inputs
