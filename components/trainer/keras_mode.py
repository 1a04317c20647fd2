"""Which Keras a user module gets, and running the trainer in a fresh process when needed.

TensorFlow resolves ``tf.keras`` once per process, on first use, from
``TF_USE_LEGACY_KERAS``: ``1`` gives the Keras 2 package ``tf_keras`` (what TFX
module files are written for), anything else Keras 3. Importing
tensorflow_transform sets the variable to ``1`` when it is unset and resolves
``tf.keras`` on the spot, so a Keras 3 module file needs ``TF_USE_LEGACY_KERAS=0``
set before that. A KFP task is a fresh process: the executor sets the variable
before TensorFlow is imported. When TensorFlow is already imported with the
other Keras (a notebook, a test process), the trainer runs in a child process
instead: :func:`run_in_subprocess` starts ``fresh_process.py`` and reads its answer. The
built-in trainer imports ``keras`` (Keras 3) directly and runs in either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback

from kubetfx.components.common import errors
from kubetfx.components.common.errors import ConfigError

ENV_VAR = "TF_USE_LEGACY_KERAS"
MODES = ("auto", "legacy", "keras3")
# The child process's module: ``python -m CHILD_MODULE REQUEST`` runs the trainer and writes the answer.
CHILD_MODULE = "kubetfx.components.trainer.fresh_process"


def wanted_legacy(keras: str, module_file: str) -> bool | None:
    """True: tf_keras, False: Keras 3, None: either (the built-in trainer imports keras 3 directly)."""
    if keras not in MODES:
        raise ConfigError(f"keras must be one of {', '.join(MODES)}, got {keras!r}")
    if keras == "legacy":
        return True
    if keras == "keras3":
        return False
    return True if module_file else None


def _env_legacy(env=os.environ) -> bool:
    return env.get(ENV_VAR, "") in ("true", "True", "1")


def current_legacy() -> bool | None:
    """Whether ``tf.keras`` in this process is tf_keras; None while TF is not imported or
    ``tf.keras`` not yet resolved (TensorFlow resolves it on first use, reading the variable)."""
    if "tensorflow" not in sys.modules:
        return None
    tf_module = sys.modules["tensorflow"]
    keras_attr = tf_module.__dict__.get("keras")
    if keras_attr is None:
        return None
    if type(keras_attr).__name__ == "KerasLazyLoader":
        state = keras_attr.__dict__
        if not state.get("_tfll_initialized"):
            return None
        return state.get("_tfll_keras_version") == "tf_keras"
    return getattr(keras_attr, "__name__", "").startswith("tf_keras")


def effective_legacy() -> bool:
    """Whether ``tf.keras`` is (or, once resolved, will be) tf_keras in this process."""
    current = current_legacy()
    return _env_legacy() if current is None else current


def prepare(legacy: bool | None) -> bool:
    """Make this process use the wanted Keras; False if it cannot (then use a subprocess).

    The variable is only changed before TensorFlow is imported, so a process that
    already uses TensorFlow (a test run, a notebook) is never switched under its feet.
    """
    if legacy is None:
        return True
    if "tensorflow" not in sys.modules:
        os.environ[ENV_VAR] = "1" if legacy else "0"
        return True
    current = current_legacy()
    if current is None:  # not resolved yet: it will follow the variable as it is now
        return _env_legacy() == legacy
    return current == legacy


def answer_for(call) -> dict:
    """The child's answer to the parent: ``{"result": call()}``, or the error :func:`run_in_subprocess` re-raises."""
    try:
        return {"result": call()}
    except errors.KubetfxError as err:
        return {"error": {"type": type(err).__name__, "message": str(err)}}
    except BaseException as err:  # noqa: BLE001 - reported to the parent process
        return {"error": {"type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()}}


def run_in_subprocess(kwargs: dict, legacy: bool, target: str = "") -> dict:
    """Run the trainer (``executor.run(**kwargs)``), or ``target`` (``module:function``, e.g. the Tuner's), in a
    fresh Python with the wanted Keras; re-raise its error."""
    env = dict(os.environ, **{ENV_VAR: "1" if legacy else "0"})
    with tempfile.TemporaryDirectory(prefix="kubetfx-trainer-") as temp:
        request, response = os.path.join(temp, "request.json"), os.path.join(temp, "response.json")
        with open(request, "w", encoding="utf-8") as handle:
            json.dump({"kwargs": kwargs, "response": response, "target": target}, handle)
        completed = subprocess.run([sys.executable, "-m", CHILD_MODULE, request], env=env, check=False)
        if not os.path.isfile(response):
            raise RuntimeError(f"the trainer subprocess exited with code {completed.returncode} without a result")
        with open(response, encoding="utf-8") as handle:
            answer = json.load(handle)
    if "result" in answer:
        return answer["result"]
    error = answer["error"]
    error_class = getattr(errors, error["type"], None)
    if isinstance(error_class, type) and issubclass(error_class, errors.KubetfxError):
        raise error_class(error["message"])
    raise RuntimeError(f"the trainer subprocess failed:\n{error['traceback']}")
