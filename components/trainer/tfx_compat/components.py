"""``tfx.components`` names that module files use: FnArgs, DataAccessor, TunerFnResult."""

from typing import Any, NamedTuple

from kubetfx.components.trainer.fn_args import DataAccessor, FnArgs


class TunerFnResult(NamedTuple):
    """What a TFX ``tuner_fn`` returns: a KerasTuner tuner and the keyword arguments of its ``search``."""

    tuner: Any
    fit_kwargs: dict


__all__ = ["DataAccessor", "FnArgs", "TunerFnResult"]
