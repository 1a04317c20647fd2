"""The built-in search space (width, depth, learning rate, dropout) in each form it is used in; no TensorFlow.

One definition, written out for KerasTuner (TFX's ``best_hyperparameters.txt`` holds a
``HyperParameters.get_config()``), Optuna (``trial.suggest_*``), Katib (``spec.parameters``)
and the built-in trainer (``hidden_units`` = ``depth`` layers of ``width`` units).
"""

from __future__ import annotations

import dataclasses

from kubetfx.components.common.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    kind: str            # "int" | "float"
    low: float
    high: float
    log: bool = False
    default: float = 0.0  # the built-in trainer's default (hyperparameters.DEFAULTS)

    def describe(self) -> str:
        return f"{self.name}: {self.kind} in [{self.low:g}, {self.high:g}]{' (log scale)' if self.log else ''}"


# Defaults match hyperparameters.DEFAULTS (hidden_units [16, 8] is 2 layers; width 16 is the first).
BUILTIN = (
    Parameter("width", "int", 8, 256, log=True, default=16),
    Parameter("depth", "int", 1, 4, default=2),
    Parameter("learning_rate", "float", 1e-4, 0.1, log=True, default=0.01),
    Parameter("dropout", "float", 0.0, 0.5, default=0.0),
)
NAMES = tuple(p.name for p in BUILTIN)


def describe() -> list[str]:
    return [p.describe() for p in BUILTIN]


def to_builtin(values: dict) -> dict:
    """The built-in trainer's hyperparameters for one point of the space."""
    missing = [name for name in NAMES if name not in values]
    if missing:
        raise ConfigError(f"hyperparameters: the tuned values lack {', '.join(missing)} (have: "
                          f"{', '.join(sorted(values)) or 'none'}); they come from another search space")
    return {"hidden_units": [int(values["width"])] * int(values["depth"]),
            "learning_rate": float(values["learning_rate"]), "dropout": float(values["dropout"])}


def suggest(trial) -> dict:
    """One point of the space from an Optuna trial."""
    values = {}
    for p in BUILTIN:
        suggest_fn = trial.suggest_int if p.kind == "int" else trial.suggest_float
        values[p.name] = suggest_fn(p.name, p.low, p.high, log=p.log)
    return values


def kerastuner_config(values: dict) -> dict:
    """``keras_tuner.HyperParameters.get_config()`` of the space with ``values`` chosen (TFX's file format)."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for p in BUILTIN:
        sampling = "log" if p.log else "linear"
        if p.kind == "int":
            hp.Int(p.name, int(p.low), int(p.high), sampling=sampling, default=int(p.default))
        else:
            hp.Float(p.name, float(p.low), float(p.high), sampling=sampling, default=float(p.default))
    for name, value in values.items():
        hp.values[name] = value
    return hp.get_config()


def katib_parameters() -> list[dict]:
    """Katib ``spec.parameters`` (feasible space values are strings in Katib's API)."""
    result = []
    for p in BUILTIN:
        space = {"min": str(int(p.low) if p.kind == "int" else p.low),
                 "max": str(int(p.high) if p.kind == "int" else p.high)}
        if p.log:
            space["distribution"] = "logUniform"
        result.append({"name": p.name, "parameterType": "int" if p.kind == "int" else "double",
                       "feasibleSpace": space})
    return result


def parse_assignment(values: dict) -> dict:
    """Katib's string assignments (``{"width": "37"}``) as typed values, checked against the space."""
    typed = {}
    for p in BUILTIN:
        if p.name not in values:
            raise ConfigError(f"trial: no value for '{p.name}' (the built-in space needs {', '.join(NAMES)})")
        try:
            value = int(float(values[p.name])) if p.kind == "int" else float(values[p.name])
        except (TypeError, ValueError):
            raise ConfigError(f"trial: '{p.name}' must be a {p.kind}, got {values[p.name]!r}") from None
        if not p.low <= value <= p.high:
            raise ConfigError(f"trial: '{p.name}' = {value} is outside [{p.low:g}, {p.high:g}]")
        typed[p.name] = value
    return typed
