"""Beam pipeline flags (``beam_pipeline_args``) as Transform and the Evaluator's TFMA path take them.

Parsing and checking only: importing this module does not import Beam.
"""

from __future__ import annotations

import shlex

from kubetfx.components.common import params
from kubetfx.components.common.errors import ConfigError

# What the DirectRunner runs batch pipelines on, without its attempt to download Prism first.
DEFAULT_BEAM_ARGS = ["--runner=FnApiRunner", "--direct_num_workers=1"]


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def parse_beam_args(beam_pipeline_args) -> list[str]:
    """A list of flags; also accepts a JSON list or a shell-style string.

    Without a ``--runner`` the local defaults (``DEFAULT_BEAM_ARGS``) apply to the flags the user
    did not give; with one, the user's flags are used as they are.
    """
    parsed = params.string_list(beam_pipeline_args, "beam_pipeline_args", shlex.split, "['--runner=FlinkRunner']")
    if parsed is None:
        return list(DEFAULT_BEAM_ARGS)
    given = {_flag_name(arg) for arg in parsed}
    if "--runner" in given:
        _check_runner(parsed)
        return parsed
    return [arg for arg in DEFAULT_BEAM_ARGS if _flag_name(arg) not in given] + parsed


def runner_name(args: list[str]) -> str:
    """The ``--runner`` of Beam flags (empty: none given)."""
    for i, arg in enumerate(args):
        if arg.startswith("--runner="):
            return arg.split("=", 1)[1]
        if arg == "--runner" and i + 1 < len(args):
            return args[i + 1]
    return ""


def _check_runner(args: list[str]) -> None:
    """Refuse Beam's DaskRunner up front: it fails or loses output on these pipelines (docs/components.md, Beyond one machine)."""
    if runner_name(args).rsplit(".", 1)[-1] == "DaskRunner":
        raise ConfigError(
            "beam_pipeline_args: Beam's DaskRunner cannot run the Transform or TFMA pipelines (checked with "
            "apache-beam 2.77): it computes only the last branch of the pipeline graph, so of several outputs "
            "(transform graph, transformed splits; TFMA's metrics, plots, validation) all but one are silently "
            "not written, and it sends every tagged output of a multi-output ParDo to every consumer (tf.Transform's "
            "combiners then fail with 'too many values to unpack'). Use FlinkRunner, SparkRunner, DataflowRunner or "
            "a PortableRunner job server (docs/components.md, Beyond one machine).")
