"""TFMA's protobuf modules (EvalConfig, MetricsForSlice, ValidationResult) without importing TFMA.

``import tensorflow_model_analysis.proto.config_pb2`` runs the package's ``__init__``,
which imports all of TFMA and Apache Beam (~1.3 s on top of TensorFlow, measured
here). The ``*_pb2.py`` files themselves only need protobuf, so they are loaded from
their files under their real module names: a later ``import tensorflow_model_analysis``
finds them in ``sys.modules`` and uses the very same modules (one set of message
classes, one registration in the descriptor pool).
"""

from __future__ import annotations

import importlib.util
import os
import sys

_PACKAGE = "tensorflow_model_analysis"
# config first: metrics_for_slice and validation_result depend on it (the generated files do not import
# their dependencies; TFMA's package __init__ happens to load them in this order).
_ORDER = ("config", "metrics_for_slice", "validation_result")


def _proto_dir() -> str:
    spec = importlib.util.find_spec(_PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{_PACKAGE} is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "proto")


def _load(name: str):
    full_name = f"{_PACKAGE}.proto.{name}_pb2"
    module = sys.modules.get(full_name)
    if module is not None:
        return module
    import google.protobuf.wrappers_pb2  # noqa: F401 - config.proto depends on google/protobuf/wrappers.proto

    for dependency in _ORDER[:_ORDER.index(name)]:
        _load(dependency)
    spec = importlib.util.spec_from_file_location(full_name, os.path.join(_proto_dir(), f"{name}_pb2.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full_name]
        raise
    return module


def config_pb2():
    return _load("config")


def metrics_for_slice_pb2():
    return _load("metrics_for_slice")


def validation_result_pb2():
    return _load("validation_result")
