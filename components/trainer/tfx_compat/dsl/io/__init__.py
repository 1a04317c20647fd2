"""``tfx.dsl.io`` for module files: only ``fileio``."""

from kubetfx.components.trainer.tfx_compat import fileio

__all__ = ["fileio"]
