"""What the Trainer and the Tuner both read: parameters, the transform summary, the examples to train from.

The examples are Transform's transformed examples or, when Transform ran with
``materialize=False``, the raw examples (``raw_examples_dir``, else the directory the
marker names); ``examples_dir`` may also be ExampleGen's output itself (TFX's wiring).
"""

from __future__ import annotations

import importlib.util
import json
import os

from kubetfx.components.common import examples, layout, module_loader
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.transform_output import reader as transform_output

TRAIN_SPLIT, EVAL_SPLIT = "train", "eval"


def non_negative_int(name: str, value) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{name}: expected an int >= 0, got {type(value).__name__} {value!r}")
    return value


def json_dict(name: str, value) -> dict | None:
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{name}: not a valid JSON object ({err})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a dict (JSON object), got {type(value).__name__}")
    return value


def check_module_exists(module_file: str) -> None:
    """Fail fast (before any process or TensorFlow start) on a module that cannot be found."""
    if module_loader.is_file_path(module_file):
        if not os.path.isfile(os.path.abspath(module_file)):
            raise ConfigError(f"module_file: module file '{os.path.abspath(module_file)}' not found")
        return
    try:
        found = importlib.util.find_spec(module_file)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(f"module_file: module '{module_file}' not found on the Python path; "
                          "give an importable module name or a path to a .py file")


def split_pattern(examples_dir: str, split: str) -> str:
    examples.split_files(examples_dir, split)  # raises InputDataError naming the splits present
    return os.path.join(layout.split_dir(examples_dir, split), "*")


def training_examples(examples_dir: str, raw_examples_dir: str, summary: dict) -> tuple[str, bool]:
    """(the Examples directory to train from, whether its examples are transformed)."""
    marker = transform_output.read_not_materialized_marker(examples_dir) if os.path.isdir(examples_dir) else None
    if marker is None:
        # Transformed examples, or (TFX's wiring) ExampleGen's: after materialize=False, or the very
        # examples the graph was analyzed on.
        analyzed = summary.get("raw_examples")
        raw = summary.get("materialized") is False or bool(
            analyzed and os.path.realpath(examples_dir) == os.path.realpath(analyzed))
        return examples_dir, not raw
    for candidate in (raw_examples_dir, marker.get("raw_examples")):
        if candidate and layout.list_splits(candidate):
            return candidate, False
    raise ConfigError(f"examples: {examples_dir} holds no transformed examples (Transform ran with materialize=False) "
                      f"and the raw examples it analyzed ({marker.get('raw_examples')}) are not readable here; give "
                      "the Trainer the raw examples (ExampleGen's output) as raw_examples, or run Transform with "
                      "materialize=True")


def transform_summary(transform_graph_dir: str) -> dict:
    transform_output.check_transform_graph(transform_graph_dir)
    return transform_output.read_summary(transform_graph_dir)


def split_patterns(train_dir: str) -> dict:
    """{train: pattern, eval: pattern} of an Examples directory (InputDataError naming the splits present)."""
    return {split: split_pattern(train_dir, split) for split in (TRAIN_SPLIT, EVAL_SPLIT)}


def make_fn_args(working_dir: str, patterns: dict, transformed: bool, transform_graph_dir: str, schema_file: str,
                 train_steps: int, eval_steps: int, hyperparameters, custom_config, label: str, seed: int,
                 serving_model_dir: str | None = None, model_run_dir: str | None = None):
    """TFX's FnArgs over the examples to train from (raw ones are transformed by the data accessor)."""
    from kubetfx.components.trainer.fn_args import FnArgs, make_data_accessor

    return FnArgs(
        working_dir=working_dir, train_files=[patterns[TRAIN_SPLIT]], eval_files=[patterns[EVAL_SPLIT]],
        train_steps=train_steps or None, eval_steps=eval_steps or None, schema_path=schema_file,
        schema_file=schema_file, transform_graph_path=transform_graph_dir, transform_output=transform_graph_dir,
        data_accessor=make_data_accessor(None if transformed else transform_graph_dir),
        serving_model_dir=serving_model_dir, model_run_dir=model_run_dir, hyperparameters=hyperparameters,
        custom_config=custom_config, label_column=label or None, seed=seed)
