"""Just enough of TFX's API for TFX module files to run unchanged except for their imports.

    from kubetfx.components.trainer import tfx_compat as tfx       # instead of: from tfx import v1 as tfx
    tfx.components.FnArgs, tfx.components.DataAccessor, tfx.components.TunerFnResult

    from kubetfx.components.trainer.tfx_compat.components import FnArgs, DataAccessor
    # instead of: from tfx.components.trainer.fn_args_utils import FnArgs, DataAccessor

    from kubetfx.components.trainer.tfx_compat import kerastuner   # instead of: import kerastuner
"""

from kubetfx.components.trainer.tfx_compat import components, kerastuner

__all__ = ["components", "kerastuner"]
