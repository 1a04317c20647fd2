"""``python -m kubetfx.pipelines`` / ``kubetfx``: run pipelines locally or compile them for Kubeflow."""

import argparse
import json
import os
import sys

from kubetfx.components.common.errors import KubetfxError
from kubetfx.pipelines.registry import PIPELINES


def _compile(name: str, output: str, image: str | None, config_path: str | None, cpu_only: bool) -> int:
    if image:  # must be set before the component modules are imported
        from kubetfx.components.common.image import set_component_image
        set_component_image(image)
    from kfp import compiler

    from kubetfx.pipelines import config as pipeline_config

    config = pipeline_config.load(config_path)
    if cpu_only:
        config = config.cpu_only()
    pipeline_func = PIPELINES[name].make(config)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    compiler.Compiler().compile(pipeline_func, package_path=output)
    print(f"Compiled the {name} pipeline to {output}")
    return 0


def _parse_value(text: str):
    """--set values: JSON when they parse (numbers, true/false, {...} for dict parameters), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kubetfx", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline")
    run.add_argument("pipeline", nargs="?", default="penguin", choices=sorted(PIPELINES))
    run.add_argument("--local", action="store_true", required=True,
                     help="run on the embedded default (kfp.local); cluster runs: compile and submit the YAML")
    run.add_argument("--root", default="kubetfx-local", help="local directory for data, pipeline root and logs")
    run.add_argument("--verbose", action="store_true", help="show kfp.local's full task logs")
    run.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                     help="override a pipeline parameter (JSON values are parsed), e.g. "
                          "--set fail_on_anomalies=false --set 'hyperparameters={\"epochs\": 5}'")

    comp = commands.add_parser("compile", help="compile a pipeline to KFP IR YAML")
    comp.add_argument("pipeline", nargs="?", default="penguin", choices=sorted(PIPELINES))
    comp.add_argument("--output", "-o", default=None, help="YAML path (default: build/<pipeline>.yaml)")
    comp.add_argument("--image", default=None, help="component image (default: $KUBETFX_IMAGE or the built-in)")
    comp.add_argument("--config", default=None,
                      help="pipeline config YAML: Trainer GPU pool (count, node selector, tolerations), resources")
    comp.add_argument("--cpu-only", action="store_true", help="compile the Trainer without GPU requests")

    args = parser.parse_args(argv)
    if args.command == "compile":
        try:
            return _compile(args.pipeline, args.output or os.path.join("build", f"{args.pipeline}.yaml"),
                            args.image, args.config, args.cpu_only)
        except KubetfxError as err:
            print(f"kubetfx: {err}", file=sys.stderr)
            return 2
    from kubetfx.pipelines import local_runner

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes PARAM=VALUE, got '{item}'")
        overrides[key] = _parse_value(value)
    return local_runner.run(PIPELINES[args.pipeline], root=args.root, verbose=args.verbose, overrides=overrides)


if __name__ == "__main__":
    sys.exit(main())
