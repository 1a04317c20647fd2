"""Read the analyzer results TFT baked into ``transform_fn/saved_model.pb``.

TFT (TF2 mode) saves each analyzer output as a graph constant that is passed
into the transform function as a captured input. The function's argument takes
its name from the consuming op's scope: ``scale_to_z_score`` under scope ``S``
receives the mean as ``S_sub_y`` and the variance as ``S_sqrt_x``; the built-in
imputation value under scope ``S`` (a ``tf.identity`` named ``value``) arrives as
``S_value_input``. TF lowercases argument names, so look-ups use ``S.lower()``. This module
follows the ``serving_default`` call from the top-level graph through the
signature wrapper into the transform function and returns argument name ->
constant value, by parsing the protobuf (no graph is loaded or run).
Best effort: an unexpected graph layout gives an empty result, never an error.
"""

from __future__ import annotations

import os

import numpy as np

from kubetfx.components.common import layout


def _call_node(nodes, function_prefix: str = "") -> object | None:
    for node in nodes:
        if node.op in ("StatefulPartitionedCall", "PartitionedCall") and \
                node.attr["f"].func.name.startswith(function_prefix):
            return node
    return None


def _input_name(ref: str) -> str:
    """Node/arg name of an input reference ('x', 'x:0', 'x:output:0')."""
    return ref.split(":")[0]


def read(transform_fn_dir: str) -> dict[str, np.ndarray]:
    """Captured constant inputs of the transform function: argument name -> value."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import tensor_util

    try:
        saved = saved_model_pb2.SavedModel()
        with open(os.path.join(transform_fn_dir, layout.SAVED_MODEL_FILE), "rb") as handle:
            saved.ParseFromString(handle.read())
        graph = saved.meta_graphs[0]
        signature = graph.signature_def["serving_default"]
        top_name = _input_name(next(iter(signature.outputs.values())).name)
        top = next(n for n in graph.graph_def.node if n.name == top_name)
        functions = {f.signature.name: f for f in graph.graph_def.library.function}
        constants = {n.name: n for n in graph.graph_def.node if n.op == "Const"}
        # Top-level call inputs bind, by position, to the wrapper's arguments.
        wrapper = functions[top.attr["f"].func.name]
        binding = {arg.name: _input_name(ref) for arg, ref in zip(wrapper.signature.input_arg, top.input)}
        # The wrapper calls the transform function, passing its arguments through.
        inner = _call_node(wrapper.node_def)
        if inner is not None and inner.attr["f"].func.name in functions:
            callee = functions[inner.attr["f"].func.name]
            binding = {arg.name: binding.get(_input_name(ref), _input_name(ref))
                       for arg, ref in zip(callee.signature.input_arg, inner.input) if not ref.startswith("^")}
        values = {}
        for arg_name, node_name in binding.items():
            node = constants.get(node_name)
            if node is not None:
                values[arg_name] = tensor_util.MakeNdarray(node.attr["value"].tensor)
        return values
    except Exception:  # noqa: BLE001 - best effort, only used for the report
        return {}


def z_score_parameters(constants: dict[str, np.ndarray], scope: str) -> tuple[float, float] | None:
    """(mean, variance) of the scale_to_z_score under name scope ``scope``, if found."""
    mean, var = constants.get(f"{scope}_sub_y".lower()), constants.get(f"{scope}_sqrt_x".lower())
    if mean is None or var is None or mean.size != 1 or var.size != 1:
        return None
    return float(mean.reshape(())), float(var.reshape(()))


def z_score_scopes(constants: dict[str, np.ndarray]) -> list[str]:
    """Scopes that look like scale_to_z_score (both a ``_sub_y`` and a ``_sqrt_x`` argument)."""
    return sorted(name[: -len("_sub_y")] for name in constants
                  if name.endswith("_sub_y") and f"{name[: -len('_sub_y')]}_sqrt_x" in constants)


def imputation_value(constants: dict[str, np.ndarray], scope: str) -> float | None:
    """The value the built-in preprocessing_fn fills in under name scope ``scope``, if found."""
    value = constants.get(f"{scope}_value_input".lower())
    if value is None or value.size != 1:
        return None
    return float(value.reshape(()))
