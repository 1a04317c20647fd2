"""Just enough of TFX's API for TFX module files to run unchanged, their ``tfx`` imports included.

Where TFX is not installed, kubetfx serves ``tfx``, ``tfx.v1`` and the TFX module paths that module
files import from here while it loads a module file (alias.py lists them: ``PROVIDED``)::

    from tfx import v1 as tfx                                         # tfx.components.FnArgs, ...
    from tfx.components.trainer.fn_args_utils import FnArgs, DataAccessor
    from tfx.components.tuner.component import TunerFnResult
    from tfx.dsl.io import fileio

The same objects can be imported from kubetfx directly:

    from kubetfx.components.trainer import tfx_compat as tfx         # tfx.components.FnArgs, ...
    from kubetfx.components.trainer.tfx_compat import kerastuner     # keras_tuner, bound to tf_keras

Importing this package imports neither TensorFlow nor keras_tuner (``kerastuner`` loads on first use).
"""

from kubetfx.components.trainer.tfx_compat import components, dsl

__all__ = ["components", "dsl", "kerastuner"]


def __getattr__(name: str):
    if name == "kerastuner":  # keras_tuner imports Keras: only when asked for
        import importlib

        return importlib.import_module(f"{__name__}.kerastuner")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
