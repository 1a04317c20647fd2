"""``tfx.dsl`` for module files: only ``io.fileio``."""

from kubetfx.components.trainer.tfx_compat.dsl import io

__all__ = ["io"]
