"""Pipeline configuration: what differs between the embedded default and a cluster.

Loaded from YAML (``kubetfx compile --config cluster.yaml``); every field has a
default that works locally. Validation errors name the field.
"""

import dataclasses
import os
import re

import yaml

from kubetfx.components.common.errors import ConfigError

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


@dataclasses.dataclass
class Resources:
    """CPU/memory requests and limits of one task (Kubernetes quantities, e.g. "500m", "2Gi")."""

    cpu_request: str = ""
    cpu_limit: str = ""
    memory_request: str = ""
    memory_limit: str = ""


@dataclasses.dataclass
class Toleration:
    key: str = "nvidia.com/gpu"
    operator: str = "Exists"
    value: str = ""
    effect: str = "NoSchedule"


@dataclasses.dataclass
class GpuPool:
    """Where and how the Trainer gets GPUs on a cluster. ``count: 0`` compiles a CPU-only Trainer."""

    count: int = 1
    accelerator_type: str = "nvidia.com/gpu"
    node_selector: dict = dataclasses.field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list = dataclasses.field(default_factory=lambda: [Toleration()])


@dataclasses.dataclass
class PipelineConfig:
    trainer_gpu: GpuPool = dataclasses.field(default_factory=GpuPool)
    resources: dict = dataclasses.field(default_factory=dict)  # task name ("trainer", ...) -> Resources

    def cpu_only(self) -> "PipelineConfig":
        return dataclasses.replace(self, trainer_gpu=dataclasses.replace(self.trainer_gpu, count=0))


def _build(cls, data, where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    return cls(**data)


def from_dict(data: dict, source: str = "config") -> PipelineConfig:
    config = _build(PipelineConfig, data, source)
    gpu = _build(GpuPool, data.get("trainer_gpu") if isinstance(data, dict) else None, f"{source}: trainer_gpu")
    if not isinstance(gpu.count, int) or gpu.count < 0:
        raise ConfigError(f"{source}: trainer_gpu.count must be an integer >= 0, got {gpu.count!r}")
    if not isinstance(gpu.node_selector, dict) or not all(isinstance(v, str) for v in gpu.node_selector.values()):
        raise ConfigError(f"{source}: trainer_gpu.node_selector must map label keys to string values")
    gpu.tolerations = [t if isinstance(t, Toleration) else _build(Toleration, t, f"{source}: trainer_gpu.tolerations[{i}]")
                       for i, t in enumerate(gpu.tolerations or [])]
    for i, toleration in enumerate(gpu.tolerations):
        if toleration.operator not in ("Exists", "Equal"):
            raise ConfigError(f"{source}: trainer_gpu.tolerations[{i}].operator must be Exists or Equal")
        if toleration.effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute", ""):
            raise ConfigError(f"{source}: trainer_gpu.tolerations[{i}].effect must be NoSchedule, "
                              "PreferNoSchedule or NoExecute")
    resources = {}
    for task, values in (config.resources or {}).items():
        resources[task] = _build(Resources, values, f"{source}: resources.{task}")
        for name, quantity in dataclasses.asdict(resources[task]).items():
            if quantity and not _QUANTITY.match(str(quantity)):
                raise ConfigError(f"{source}: resources.{task}.{name} '{quantity}' is not a Kubernetes quantity "
                                  "(examples: 500m, 2, 4Gi)")
    config.trainer_gpu, config.resources = gpu, resources
    return config


def load(path: str | None) -> PipelineConfig:
    if not path:
        return PipelineConfig()
    if not os.path.isfile(path):
        raise ConfigError(f"pipeline config not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return from_dict(data, source=path)
