"""What compiling a pipeline produced: the KFP IR file and its parameters (shared by compile, submit, schedule)."""

import dataclasses


@dataclasses.dataclass
class Compiled:
    path: str
    pipeline_name: str
    parameters: list  # every pipeline parameter
    inputs: dict  # parameter -> KFP InputSpec (type, default)
    defaults: dict  # parameter -> default baked into the YAML by the environment
    required: list  # parameters without a default (they must be given at run time)
