"""The candidate and baseline SavedModels: where they are and what they offer, read without loading them.

The candidate is a Trainer ``Model`` artifact: ``<model_dir>/Format-Serving`` (the
SavedModel) and ``<model_dir>/kubetfx_model.json``. A directory that holds
``saved_model.pb`` directly is accepted too (a pushed model, a TFX export).

The baseline is the newest version in the model repository
(``<repository>/<model_name>/<version>/``: the SavedModel files directly, plus
``kubetfx_model.json``). ``model_repository.latest_version(strict=True)`` refuses a
corrupt newest version instead of silently comparing with an older one; an empty
or missing repository means "no baseline" (the first model is rubber-stamped).

Signatures are read from ``saved_model.pb`` (a protobuf parse, no graph loading), so
a corrupt or truncated model is reported here, naming its path, before TFMA runs.
"""

from __future__ import annotations

import dataclasses
import json
import os

from kubetfx.components.common import layout, model_repository
from kubetfx.components.common.errors import ConfigError, InputDataError

CANDIDATE, BASELINE = "candidate", "baseline"


@dataclasses.dataclass
class ModelRef:
    role: str                        # CANDIDATE | BASELINE
    saved_model_dir: str             # the directory holding saved_model.pb (local path or URI)
    info: dict                       # kubetfx_model.json ({} if absent)
    signatures: dict                 # name -> {"inputs": [names], "outputs": [names]}
    version: int | None = None       # baseline: the repository version

    @property
    def label(self) -> str:
        return self.info.get("label") or ""

    @property
    def problem_type(self) -> str:
        return self.info.get("problem_type") or ""

    @property
    def class_names(self) -> list[str]:
        return list(self.info.get("class_names") or [])

    def describe(self) -> str:
        if self.role == BASELINE:
            return f"baseline version {self.version} ({self.saved_model_dir})"
        return f"candidate ({self.saved_model_dir})"


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _exists(path: str, what: str) -> bool:
    try:
        return _gfile().exists(path)
    except Exception as err:  # tf.errors.OpError, e.g. a gs:// path without TensorFlow's GCS filesystem
        detail = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise ConfigError(f"{what}: cannot read {path}: {detail}") from None


def _read_info(directory: str, what: str) -> dict:
    gfile = _gfile()
    name = layout.MODEL_INFO_FILE
    path = f"{directory.rstrip('/')}/{name}" if "://" in directory else os.path.join(directory, name)
    if not _exists(path, what):
        return {}
    try:
        with gfile.GFile(path, "r") as handle:
            info = json.loads(handle.read())
    except Exception as err:  # OSError, ValueError, tf.errors.OpError
        raise ConfigError(f"{what}: {path} is not valid JSON ({err}); it should be the Trainer's model description")
    if not isinstance(info, dict):
        raise ConfigError(f"{what}: {path} is not a JSON object; it should be the Trainer's model description")
    return info


def read_signatures(saved_model_dir: str, what: str) -> dict:
    """Signature name -> {"inputs": [...], "outputs": [...]} from ``saved_model.pb``.

    ConfigError naming the path when the file is missing, not a SavedModel proto,
    has no signatures, or its variables are missing.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    gfile = _gfile()
    join = (lambda *p: "/".join([saved_model_dir.rstrip("/"), *p])) if "://" in saved_model_dir \
        else (lambda *p: os.path.join(saved_model_dir, *p))
    path = join(layout.SAVED_MODEL_FILE)
    if not _exists(path, what):
        raise ConfigError(f"{what}: {saved_model_dir} is not a SavedModel directory "
                          f"({layout.SAVED_MODEL_FILE} not found)")
    saved = saved_model_pb2.SavedModel()
    try:
        with gfile.GFile(path, "rb") as handle:
            saved.ParseFromString(handle.read())
    except Exception as err:  # DecodeError, OSError, tf.errors.OpError (unreadable / unsupported scheme)
        raise ConfigError(f"{what}: {path} cannot be loaded: not a valid SavedModel ({err or type(err).__name__}); "
                          "the model is corrupt or was not written completely") from None
    if not saved.meta_graphs:
        raise ConfigError(f"{what}: {path} cannot be loaded: it contains no MetaGraph (corrupt SavedModel)")
    graph = saved.meta_graphs[0]
    has_variables = any(node.HasField("variable") for node in graph.object_graph_def.nodes)
    if has_variables and not _exists(join("variables", "variables.index"), what):
        raise ConfigError(f"{what}: {saved_model_dir} cannot be loaded: its variables "
                          f"({join('variables', 'variables.index')}) are missing")
    signatures = {name: {"inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs)}
                  for name, sig in graph.signature_def.items() if not name.startswith("__")}
    if not signatures:
        raise ConfigError(f"{what}: {path} has no serving signatures; export it with signatures "
                          "(the Trainer writes serving_default and transform_features)")
    return signatures


def resolve_candidate(model_dir: str) -> ModelRef:
    """The candidate SavedModel of a Model artifact directory; ConfigError/InputDataError naming the path."""
    if not model_dir:
        raise ConfigError("no model directory given")
    if "://" not in model_dir and not os.path.isdir(model_dir):
        raise InputDataError(f"model {model_dir} does not exist (expected the Trainer's Model artifact)")
    gfile = _gfile()
    serving = f"{model_dir.rstrip('/')}/{layout.SERVING_MODEL_DIR}" if "://" in model_dir \
        else os.path.join(model_dir, layout.SERVING_MODEL_DIR)
    if _exists(serving, "candidate model") and gfile.isdir(serving):
        saved_model_dir = serving
    elif _exists(os.path.join(model_dir, layout.SAVED_MODEL_FILE) if "://" not in model_dir
                 else f"{model_dir.rstrip('/')}/{layout.SAVED_MODEL_FILE}", "candidate model"):
        saved_model_dir = model_dir
    else:
        raise InputDataError(f"model {model_dir} has no {layout.SERVING_MODEL_DIR}/ directory and no "
                             f"{layout.SAVED_MODEL_FILE}: it is not a Trainer Model artifact")
    signatures = read_signatures(saved_model_dir, "candidate model")
    return ModelRef(CANDIDATE, saved_model_dir, _read_info(model_dir, "candidate model"), signatures)


def resolve_baseline(repository: str, model_name: str) -> ModelRef | None:
    """The newest version in ``<repository>/<model_name>``; None when there is none (rubber stamp)."""
    version = model_repository.latest_version(repository, model_name, strict=True)
    if version is None:
        return None
    path = model_repository.version_path(repository, model_name, version)
    what = f"baseline model (version {version} of '{model_name}' in {repository})"
    signatures = read_signatures(path, what)
    return ModelRef(BASELINE, path, _read_info(path, what), signatures, version)


def error_line(err: BaseException) -> str:
    """The telling line of a TensorFlow/TFMA error message (they run to pages)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    interesting = [line for line in lines if not line.startswith(("File ", "Traceback", "[while running"))]
    text = (interesting or lines or [type(err).__name__])[-1]
    return text[:500]


def load_error(saved_model_dir: str) -> str | None:
    """Why ``saved_model_dir`` cannot be loaded by TensorFlow, or None if it loads."""
    import tensorflow as tf

    try:
        tf.saved_model.load(saved_model_dir)
    except Exception as err:  # noqa: BLE001 - any load failure is the answer
        return error_line(err)
    return None


def cannot_load(model: ModelRef, problem: str) -> ConfigError:
    """The error for a model that TensorFlow cannot load or run; a broken baseline is never skipped."""
    advice = f"; repair or delete {model.saved_model_dir}" if model.role == BASELINE else ""
    return ConfigError(f"{model.describe()} cannot be loaded or evaluated: {problem}{advice}")
