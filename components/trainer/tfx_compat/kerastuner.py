"""``kerastuner``/``keras_tuner`` for TFX module files.

Re-exports keras_tuner (a kubetfx dependency). TFX module files are Keras 2 code: in a process
whose ``tf.keras`` is tf_keras (``TF_USE_LEGACY_KERAS=1``, how the Trainer and Tuner run module
files) keras_tuner is imported against tf_keras too, so the module's tf_keras models are the
"Keras models" its tuners expect (keras_tuner picks its Keras from ``import keras`` once, on
import). Without keras_tuner, a minimal ``HyperParameters`` (Choice/Int/Float/Boolean/Fixed, get,
values, get_config/from_config) is what a ``run_fn`` needs to read hyperparameters.
"""

from __future__ import annotations

import sys


def _legacy_keras_process() -> bool:
    """tf.keras is (or will be) tf_keras here, and keras_tuner is not imported yet."""
    if "keras_tuner" in sys.modules:
        return False
    from kubetfx.components.trainer import keras_mode

    return keras_mode.effective_legacy()


def _import_keras_tuner():
    """keras_tuner, bound to tf_keras in a legacy-Keras process (its ``import keras`` sees tf_keras once)."""
    if not _legacy_keras_process():
        import keras_tuner

        return keras_tuner
    import tf_keras

    previous = sys.modules.get("keras")
    sys.modules["keras"] = tf_keras
    try:
        import keras_tuner
    finally:  # anything else importing keras later gets the real package
        if previous is None:
            del sys.modules["keras"]
        else:
            sys.modules["keras"] = previous
    return keras_tuner


def uses_tf_keras() -> bool | None:
    """Whether the imported keras_tuner builds on tf_keras (None: not imported yet)."""
    if "keras_tuner" not in sys.modules:
        return None
    from keras_tuner.src.backend import config

    return not config.multi_backend()


try:  # pragma: no cover - depends on the environment
    _import_keras_tuner()
    from keras_tuner import *  # noqa: F401,F403
    from keras_tuner import HyperParameters  # noqa: F401

    AVAILABLE = True
except ImportError:
    AVAILABLE = False

    class HyperParameters:
        """A flat name -> value store with keras_tuner's declaration methods (defaults become values)."""

        def __init__(self):
            self.values: dict = {}
            self._space: list[dict] = []

        def _declare(self, kind: str, name: str, default, config: dict):
            self._space.append({"class_name": kind, "config": {"name": name, "default": default, **config}})
            self.values.setdefault(name, default)
            return self.values[name]

        def Choice(self, name, values, default=None, **kwargs):  # noqa: N802 - keras_tuner's API
            return self._declare("Choice", name, values[0] if default is None else default, {"values": list(values)})

        def Int(self, name, min_value, max_value, step=1, default=None, **kwargs):  # noqa: N802
            return self._declare("Int", name, min_value if default is None else default,
                                 {"min_value": min_value, "max_value": max_value, "step": step})

        def Float(self, name, min_value, max_value, step=None, default=None, **kwargs):  # noqa: N802
            return self._declare("Float", name, min_value if default is None else default,
                                 {"min_value": min_value, "max_value": max_value, "step": step})

        def Boolean(self, name, default=False, **kwargs):  # noqa: N802
            return self._declare("Boolean", name, default, {})

        def Fixed(self, name, value, **kwargs):  # noqa: N802
            return self._declare("Fixed", name, value, {"value": value})

        def get(self, name):
            if name not in self.values:
                raise KeyError(f"{name} does not exist.")
            return self.values[name]

        def __getitem__(self, name):
            return self.get(name)

        def __contains__(self, name):
            return name in self.values

        def get_config(self) -> dict:
            return {"space": list(self._space), "values": dict(self.values)}

        @classmethod
        def from_config(cls, config: dict) -> "HyperParameters":
            """keras_tuner's config ({"space", "values"}) or a flat {name: value} dict."""
            hp = cls()
            if isinstance(config, dict) and "values" in config and isinstance(config["values"], dict):
                hp._space = list(config.get("space", []))
                hp.values = dict(config["values"])
            else:
                hp.values = dict(config or {})
            return hp

    def _unavailable(*args, **kwargs):
        raise NotImplementedError("keras_tuner is not installed; kubetfx has no Tuner component. "
                                  "Install keras-tuner to use tuners in a module file.")

    RandomSearch = BayesianOptimization = Hyperband = Objective = _unavailable
