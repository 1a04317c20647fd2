"""TFX's HyperParameters artifact: ``best_hyperparameters.txt`` (a KerasTuner config as JSON) and kubetfx's record.

TFX's Tuner writes ``json.dumps(tuner.get_best_hyperparameters()[0].get_config())`` and its
Trainer passes that dict to ``run_fn`` as ``fn_args.hyperparameters``; the same here.
Beside it ``kubetfx_tuning.json`` records how the values were found (space, seed, library,
trials, the best trial), which the Trainer copies into ``kubetfx_model.json``. A Tuner that did
not search (``tune=false`` and no ``tuner_fn``) writes only the record, ``"tuned": false``.
"""

from __future__ import annotations

import json
import os

from kubetfx.components.common import fileio, layout
from kubetfx.components.common.errors import ConfigError


def write(directory: str, config: dict | None, record: dict) -> None:
    """Into an (atomic, empty) artifact directory: the config when there is one, and the record."""
    if config is not None:
        fileio.atomic_write(os.path.join(directory, layout.BEST_HYPERPARAMETERS_FILE), json.dumps(config))
    fileio.atomic_write(os.path.join(directory, layout.TUNING_FILE),
                        json.dumps({**record, "tuned": config is not None}, indent=2, sort_keys=True))


def read(directory: str) -> tuple[dict | None, dict]:
    """(the KerasTuner config or None when nothing was tuned, the record) of a HyperParameters artifact."""
    if not directory:
        return None, {}
    if not os.path.isdir(directory):
        raise ConfigError(f"best_hyperparameters: {directory} does not exist (expected the Tuner's output)")
    path = os.path.join(directory, layout.BEST_HYPERPARAMETERS_FILE)
    record_path = os.path.join(directory, layout.TUNING_FILE)
    record = {}
    if os.path.isfile(record_path):
        record = _json(record_path)
    if not os.path.isfile(path):
        if record.get("tuned") is False:
            return None, record
        raise ConfigError(f"best_hyperparameters: {directory} has no {layout.BEST_HYPERPARAMETERS_FILE}")
    config = _json(path)
    if not isinstance(config, dict) or not isinstance(config.get("values"), dict):
        raise ConfigError(f"best_hyperparameters: {path} is not a KerasTuner HyperParameters config "
                          "(a JSON object with 'space' and 'values')")
    return config, record


def _json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise ConfigError(f"best_hyperparameters: {path} is not valid JSON ({err})") from None
