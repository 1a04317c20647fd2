"""Compile a pipeline for an environment: its Kubernetes settings, and its values as parameter defaults.

What an environment config says ends up in the KFP IR YAML (the command line's ``--data`` over its
``input_uri``), so the same file can be
uploaded in the KFP UI or submitted by ``kubetfx submit`` and run with no further input:
parameter defaults (``parameters``, ``push_destination`` from the model repository, the
Pusher's ``deploy`` settings read from the environment's manifests), images, the
Trainer's GPU pool, the model repository's volume or credentials.
"""

import dataclasses
import os

from kubetfx.components.common.errors import ConfigError
from kubetfx.pipelines import config as pipeline_config
from kubetfx.pipelines.cluster.compiled import Compiled
from kubetfx.pipelines.registry import PipelineEntry


def environment_defaults(entry: PipelineEntry, config: pipeline_config.PipelineConfig, inputs: dict) -> dict:
    """The parameter defaults an environment bakes in, checked against the pipeline's parameters."""
    from kubetfx.pipelines.cluster import kustomize
    from kubetfx.pipelines.cluster import serving_template
    from kubetfx.pipelines.registry import MONITOR

    defaults = {**config.parameters, **entry.parameters} if entry.kind != MONITOR else {}
    unknown = sorted(set(defaults) - set(inputs))
    if unknown:
        raise ConfigError(f"{config.source or config.name}: parameters: unknown pipeline parameter(s) "
                          f"{', '.join(unknown)}; the {entry.name} pipeline takes: {', '.join(sorted(inputs))}")
    repository = config.model_repository
    if entry.kind == MONITOR:  # the training pipeline's parameters are not the monitor's
        for name, value in (("model_repository", repository.uri), ("prediction_log", config.prediction_log.path),
                            ("experiment", config.kfp.experiment)):
            if value:
                defaults[name] = value
        defaults["canary"] = dataclasses.asdict(config.canary_settings())
    elif repository.uri:
        defaults.setdefault("push_destination", repository.uri)
    template = config.serving_template_path()
    if template and os.path.isfile(os.path.join(template, "kustomization.yaml")):
        model_name = defaults.get("model_name") or inputs["model_name"].default
        defaults.setdefault("deploy", serving_template.deploy_settings(
            kustomize.render(template), model_name=model_name,
            storage_uri_base=repository.storage_uri_base(), apply=config.deploy,
            where=f"{config.source or config.name}: serving template {os.path.relpath(template)}"))
    return defaults


def compile_pipeline(entry: PipelineEntry, config: pipeline_config.PipelineConfig, output: str) -> Compiled:
    from kfp import compiler

    from kubetfx.pipelines import preflight

    pipeline_func = entry.make(config)
    inputs = pipeline_func.component_spec.inputs or {}
    defaults = preflight.check(inputs, environment_defaults(entry, config, inputs),
                               flag=f"{config.source or config.name}: parameters", require_all=False)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    compiler.Compiler().compile(pipeline_func, package_path=output, pipeline_parameters=defaults or None)
    required = sorted(name for name, spec in inputs.items() if spec.default is None and name not in defaults)
    return Compiled(output, pipeline_func.name, sorted(inputs), dict(inputs), defaults, required)


def default_output(pipeline: str, environment: str | None) -> str:
    return os.path.join("build", f"{pipeline}-{environment}.yaml" if environment else f"{pipeline}.yaml")
