"""One loaded model version: its signature, request rules and micro-batcher.

The signature is ``serving_raw`` (one tensor per feature; the Trainer's export), or, for a model
that has only TFX's ``serving_default`` (a module file's ``run_fn``), that one: each request is
then encoded as serialized tf.Examples, named and typed as in the training data.

Loading checks the model end to end before it may serve: the SavedModel loads, has the
``serving_raw`` signature, its inputs match kubetfx_model.json, and one warm-up call on a synthetic
instance gives outputs of the expected shapes. Anything that fails raises :class:`LoadError`
(the repository watcher logs it and keeps the old version).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from kubetfx.components.common.errors import KubetfxError
from kubetfx.components.predictor import batching, schema_check, signature

logger = logging.getLogger("kubetfx.predictor")

_TF_CONFIGURED = False
_TF_LOCK = threading.Lock()


class LoadError(KubetfxError):
    """A model version could not be loaded or failed its warm-up call."""


def configure_tensorflow(intra_op_threads: int = 0, inter_op_threads: int = 0):
    """Import TensorFlow once, with the thread pools set before it initializes (0: TF's default)."""
    global _TF_CONFIGURED
    import tensorflow as tf

    with _TF_LOCK:
        if not _TF_CONFIGURED:
            try:
                if intra_op_threads:
                    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
                if inter_op_threads:
                    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
            except RuntimeError:  # TF already initialized in this process: keep its pools
                pass
            _TF_CONFIGURED = True
    return tf


class CodedStrings:
    """A string output as its distinct values and, per element, the index of its value (``codes``, the output's
    shape): what batch inference encodes, without a Python object per element."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: np.ndarray):
        self.codes, self.values = codes, values

    @classmethod
    def of(cls, tensor) -> "CodedStrings":
        import tensorflow as tf

        values, codes = tf.unique(tf.reshape(tensor, [-1]), out_idx=tf.int64)
        return cls(codes.numpy().reshape(tuple(tensor.shape)), values.numpy())

    @classmethod
    def concatenate(cls, parts: list) -> "CodedStrings":
        """Parts along the first axis, their distinct values merged (each value once)."""
        values, inverse = np.unique(np.concatenate([part.values for part in parts]), return_inverse=True)
        offsets = np.cumsum([0] + [len(part.values) for part in parts])
        return cls(np.concatenate([inverse[offset:][part.codes] for offset, part in zip(offsets, parts)]),
                   values.astype(object))

    @property
    def shape(self) -> tuple:
        return self.codes.shape

    def __len__(self) -> int:
        return len(self.codes)

    def decoded(self) -> np.ndarray:
        """The output as numpy gives it (an object array of bytes)."""
        return self.values[self.codes]


def _input_tensor(column):
    """A request column for the signature: a numpy array as it is; an Arrow text column as a tf.string tensor
    gathered from its distinct values (no Python string per row)."""
    if isinstance(column, np.ndarray):  # a request's columns: as they are
        return column
    import pyarrow.compute as pc
    import tensorflow as tf

    encoded = pc.dictionary_encode(column)
    if 2 * len(encoded.dictionary) > len(column) or encoded.null_count:
        return tf.constant(column.to_numpy(zero_copy_only=False).astype(object), dtype=tf.string)
    return tf.gather(tf.constant(encoded.dictionary.to_numpy(zero_copy_only=False).astype(object), dtype=tf.string),
                     encoded.indices.to_numpy(zero_copy_only=False))


def _spec_dtype_name(spec) -> str:
    return spec.dtype.name


class Servable:
    """A loaded version. ``run(columns)`` calls the signature directly; ``batcher`` coalesces calls."""

    def __init__(self, location: signature.ModelLocation, spec: signature.ModelSpec,
                 rules: schema_check.RequestSchema, function, load_seconds: float,
                 max_batch_size: int, max_batch_wait_us: int, examples_argument: str | None = None):
        self.location = location
        self._arguments = {f.name: f.argument for f in spec.features}  # request name -> signature argument
        self._examples_argument = examples_argument
        self.version = location.version
        self.spec = spec
        self.rules = rules
        self._function = function
        self.load_seconds = load_seconds
        self._output_names = [o.name for o in spec.outputs]
        self.class_names = list(spec.class_names)
        self.batcher = batching.MicroBatcher(self.run, max_batch_size=max_batch_size,
                                             max_wait_us=max_batch_wait_us, name=f"v{self.version}")

    # The signature call: numpy columns (by request name) in, numpy outputs out.
    def run(self, columns: dict, coded_strings: bool = False) -> dict:
        """Outputs as numpy arrays; text columns may also come as Arrow arrays. With ``coded_strings`` a string
        output comes as :class:`CodedStrings` (for batch inference: no Python object per element)."""
        if self._examples_argument:
            outputs = self._function(**{self._examples_argument: _serialized_examples(columns)})
        else:
            outputs = self._function(**{self._arguments[name]: _input_tensor(column)
                                        for name, column in columns.items()})
        if coded_strings:
            return {name: CodedStrings.of(outputs[name]) if outputs[name].dtype.name == "string"
                    else outputs[name].numpy() for name in self._output_names}
        return {name: outputs[name].numpy() for name in self._output_names}

    def close(self) -> None:
        self.batcher.close()

    def describe(self) -> dict:
        return {"version": self.version, "path": self.location.saved_model_dir, "problem_type": self.spec.problem_type,
                "features": [f.name for f in self.spec.features], "validation": self.rules.source,
                "load_seconds": round(self.load_seconds, 3)}


def _serialized_examples(columns: dict):
    """Request columns (numpy, or Arrow text) -> a tf.string tensor of serialized tf.Examples (a NaN number or a
    missing marker, ``feature_values``: the feature absent)."""
    import pyarrow as pa
    import tensorflow as tf

    from kubetfx.components.common import examples, feature_values

    arrays = {name: feature_values.missing_as_null(column) for name, column in columns.items()}
    return tf.constant(examples.encode_examples(pa.table(arrays)), dtype=tf.string)


def _examples_argument(function) -> str | None:
    """The one tf.string argument of a ``serving_default`` that takes serialized tf.Examples, else None."""
    _, kwargs = function.structured_input_signature
    if len(kwargs) == 1:
        (name, spec), = kwargs.items()
        if spec.dtype.name == "string":
            return name
    return None


def _synthetic_columns(rules: schema_check.RequestSchema) -> dict:
    columns = {}
    for rule in rules.rules:
        if rule.dtype == "string":
            value = sorted(rule.domain)[0] if rule.domain else ""
            columns[rule.name] = np.array([value], dtype=object)
        else:
            columns[rule.name] = np.zeros(1, dtype=rule.np_dtype)
    return columns


def load(location: signature.ModelLocation, *, allow_nan: bool = False, max_batch_size: int = 64,
         max_batch_wait_us: int = 0, intra_op_threads: int = 0, inter_op_threads: int = 0) -> Servable:
    """Load and warm up one version; :class:`LoadError` saying what is wrong otherwise."""
    start = time.perf_counter()
    where = location.saved_model_dir
    try:
        info = signature.read_info(location)
    except KubetfxError as err:
        raise LoadError(str(err)) from None
    tf = configure_tensorflow(intra_op_threads, inter_op_threads)
    try:
        loaded = tf.saved_model.load(where)
    except Exception as err:  # TF raises many types (OSError, ValueError, DecodeError, ...)
        raise LoadError(f"{where}: the SavedModel does not load: {type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}") from None
    function = loaded.signatures.get(signature.RAW_SIGNATURE)
    examples_argument = None
    if function is None:
        function = loaded.signatures.get(signature.EXAMPLES_SIGNATURE)
        examples_argument = _examples_argument(function) if function is not None else None
        if examples_argument is None:
            raise LoadError(f"{where}: the SavedModel has neither a '{signature.RAW_SIGNATURE}' signature nor a "
                            f"'{signature.EXAMPLES_SIGNATURE}' taking serialized tf.Examples (it has: "
                            f"{', '.join(sorted(loaded.signatures)) or 'none'})")
    _, kwargs = function.structured_input_signature
    inputs = {name: _spec_dtype_name(spec) for name, spec in kwargs.items()}
    outputs = {name: (spec.dtype.name, tuple(-1 if d is None else int(d) for d in spec.shape[1:]))
               for name, spec in function.structured_outputs.items()}
    try:
        features = signature.example_features(info, location.schema_path, where) if examples_argument else None
        spec = signature.build_spec(info, inputs, outputs, where, features)
        rules = schema_check.build(spec.features, info, location.schema_path, allow_nan=allow_nan)
    except KubetfxError as err:
        raise LoadError(str(err)) from None
    servable = Servable(location, spec, rules, function, 0.0, max_batch_size, max_batch_wait_us, examples_argument)
    servable._owner = loaded  # the signature's variables belong to the loaded object: keep it alive
    try:
        warm = servable.run(_synthetic_columns(rules))
    except Exception as err:
        raise LoadError(f"{where}: the warm-up prediction failed: {type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}") from None
    for name, array in warm.items():
        if array.shape[:1] != (1,):
            raise LoadError(f"{where}: output '{name}' has shape {array.shape} for one instance")
    if spec.problem_type == signature.CLASSIFICATION and not spec.class_names and "class_names" in warm:
        spec.class_names = [v.decode() if isinstance(v, bytes) else str(v) for v in warm["class_names"][0]]
        servable.class_names = list(spec.class_names)
    if spec.is_classification:
        k = warm["probabilities"].shape[-1]
        if k != len(spec.class_names):
            raise LoadError(f"{where}: the model gives {k} probabilities but kubetfx_model.json lists "
                            f"{len(spec.class_names)} class names")
    # First calls with a new batch size are slow (TF/oneDNN set-up: ~30 ms for the first multi-row
    # call): pay that now (every batch size up to 64, powers of two beyond), not on the first requests
    # under load.
    synthetic = _synthetic_columns(rules)
    sizes = set(range(2, min(max_batch_size, 64) + 1)) | {2 ** k for k in range(7, 16) if 2 ** k <= max_batch_size}
    for size in sorted(sizes | {max_batch_size} - {1}):
        servable.run({name: np.repeat(column, size) for name, column in synthetic.items()})
    servable.load_seconds = time.perf_counter() - start
    return servable
