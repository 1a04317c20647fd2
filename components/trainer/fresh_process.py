"""The trainer (or the Tuner) in a fresh Python process: ``python -m kubetfx.components.trainer.fresh_process REQUEST``.

Started by ``keras_mode.run_in_subprocess`` (with ``TF_USE_LEGACY_KERAS`` set for the wanted Keras)
when the parent process already uses the other Keras. Reads the request (the executor's arguments
and where to answer), trains here, and writes the result or the error for the parent to re-raise.
"""

from __future__ import annotations

import json
import sys

from kubetfx.components.trainer import keras_mode


def _train(kwargs: dict, target: str = "") -> dict:
    """``target`` (``module:function``, a ``run_isolated``) or the trainer's, called with ``kwargs``."""
    import importlib

    module, _, function = (target or "kubetfx.components.trainer.executor:run_isolated").partition(":")
    return getattr(importlib.import_module(module), function)(**kwargs)


def _main(request_path: str) -> int:
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    answer = keras_mode.answer_for(lambda: _train(request["kwargs"], request.get("target", "")))
    with open(request["response"], "w", encoding="utf-8") as handle:
        json.dump(answer, handle)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
