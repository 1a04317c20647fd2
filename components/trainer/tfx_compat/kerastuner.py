"""``kerastuner``/``keras_tuner`` for TFX module files.

Re-exports keras_tuner when it is installed. Otherwise provides a minimal
``HyperParameters`` (Choice/Int/Float/Boolean/Fixed, get, values,
get_config/from_config) — what a ``run_fn`` needs to read hyperparameters; the
tuners themselves need the real package.
"""

from __future__ import annotations

try:  # pragma: no cover - depends on the environment
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
