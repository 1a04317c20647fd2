"""Check a pipeline's arguments before any task runs: a mistake costs a second, not a training run.

`kubetfx run`, `compile` (an environment's baked values) and `submit` call :func:`check`:
names (with a did-you-mean), types (``--set fail_on_anomalies=False`` is a boolean, not the
string "False"), and every value a component would otherwise reject only when its turn
comes — splits, hyperparameters, the module file (parsed, its imports resolved, its
functions present; never executed), the EvalConfig, the problem type, the deploy settings,
the label against a local input's header. Each problem is one ConfigError line naming the
parameter.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import itertools
import json
import os

from kubetfx.components.common import module_loader
from kubetfx.components.common.errors import ConfigError, KubetfxError

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _coerce(name: str, kind: str, value, flag: str):
    """``value`` as the parameter's KFP type, or a ConfigError saying what was expected."""
    def fail(expected: str):
        raise ConfigError(f"{flag} {name}: expected {expected}, got {type(value).__name__} {value!r}")

    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        fail("true or false")
    if kind == "Integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        fail("an integer")
    if kind in ("Float", "Double"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        fail("a number")
    if kind in ("Dict", "Struct"):
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                fail("a JSON object, e.g. '{\"epochs\": 5}'")
        if isinstance(value, dict):
            return value
        fail("a JSON object")
    if kind == "String":
        if isinstance(value, (dict, list)):
            fail("a string")
        return value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)
    return value


def coerce_arguments(inputs: dict, arguments: dict, flag: str = "--set") -> dict:
    """Known names only (with a did-you-mean), each value as its parameter's type."""
    result = {}
    for name, value in arguments.items():
        if name not in inputs:
            close = difflib.get_close_matches(name, list(inputs), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{flag} {name}: the pipeline has no parameter '{name}'{hint} "
                              f"(`kubetfx params` lists them: {', '.join(inputs)})")
        result[name] = _coerce(name, inputs[name].type, value, flag)
    return result


# ----------------------------------------------------------------------------- module files


def _module_path(module_file: str) -> str:
    if module_loader.is_file_path(module_file):
        path = os.path.abspath(module_file)
        if not os.path.isfile(path):
            raise ConfigError(f"module_file: '{module_file}' not found")
        return path
    spec = importlib.util.find_spec(module_file) if module_file.replace(".", "").replace("_", "").isalnum() else None
    if spec is None or not spec.origin:
        raise ConfigError(f"module_file: '{module_file}' is neither a .py file nor an importable module")
    return spec.origin


def _check_tfx_uses(path: str, tree) -> None:
    """Where TFX is not installed, the module's ``tfx`` imports and ``tfx.<...>`` attribute chains must be ones
    kubetfx provides (tfx_compat/alias.py): else one line naming the first that is not, and its line."""
    from kubetfx.components.trainer.tfx_compat import alias

    bound, uses = {}, []  # name in the module -> the tfx path it stands for; (line, dotted path) used
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for item in node.names:
                if item.name.split(".")[0] == alias.ROOT:
                    uses.append((node.lineno, item.name))
                    bound[item.asname or alias.ROOT] = item.name if item.asname else alias.ROOT
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module \
                and node.module.split(".")[0] == alias.ROOT:
            for item in node.names:
                uses.append((node.lineno, f"{node.module}.{item.name}" if item.name != "*" else node.module))
                bound[item.asname or item.name] = f"{node.module}.{item.name}"
    for node in ast.walk(tree):
        chain, inner = [], node
        while isinstance(inner, ast.Attribute):
            chain.insert(0, inner.attr)
            inner = inner.value
        if chain and isinstance(inner, ast.Name) and inner.id in bound:
            uses.append((node.lineno, ".".join([bound[inner.id], *chain])))
    for line, dotted in sorted(uses):
        missing = alias.resolve(dotted)
        if missing is not None:
            raise ConfigError(f"module_file {path}:{line}: {alias.NotProvided(missing)}")


def check_module_file(module_file: str, eval_steps: int, train_steps: int) -> None:
    """Parse the module (not run it): syntax, resolvable imports (TFX's: those kubetfx provides), preprocessing_fn
    and run_fn, step counts."""
    from kubetfx.components.trainer.tfx_compat import alias

    path = _module_path(module_file)
    source, tree = module_loader.parse_source(path)
    tfx_alias = not alias.real_tfx_installed()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [(alias_.name, node.lineno) for alias_ in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [(node.module, node.lineno)]
        else:
            continue
        for module, line in modules:
            top = module.split(".")[0]
            beside = os.path.join(os.path.dirname(path), top)  # siblings import while the module loads
            if os.path.isfile(beside + ".py") or os.path.isfile(os.path.join(beside, "__init__.py")):
                continue
            if top == alias.ROOT and tfx_alias:
                continue  # kubetfx serves it: checked below, with what the module uses of it
            if importlib.util.find_spec(top) is None:
                raise ConfigError(f"module_file {path}:{line} imports '{module}', which is not installed here")
    if tfx_alias:
        _check_tfx_uses(path, tree)
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    missing = [name for name in ("preprocessing_fn", "run_fn") if name not in functions]
    if missing:
        raise ConfigError(f"module_file {path} defines no {' and no '.join(missing)}: Transform calls "
                          "preprocessing_fn(inputs) and Trainer calls run_fn(fn_args), as in TFX")
    repeats = ".repeat(" in source
    if repeats and not train_steps:
        raise ConfigError(f"module_file {path} builds datasets that repeat forever (.repeat()), so it needs "
                          "train_steps (TFX TrainArgs.num_steps), e.g. --set train_steps=100")
    if repeats and not eval_steps:
        raise ConfigError(f"module_file {path} builds datasets that repeat forever (.repeat()), so it needs "
                          "eval_steps (TFX EvalArgs.num_steps), e.g. --set eval_steps=5")


# ----------------------------------------------------------------------------- the label vs the data


def _csv_head(path: str) -> tuple[list[str], bool]:
    """(the header's columns, whether a data row follows) of a local CSV/TSV file, reading two records."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter="\t" if path.lower().endswith(".tsv") else ",")
        columns = next(reader, [])
        return columns, any(any(field.strip() for field in row) for row in itertools.islice(reader, 100))


def check_label_in_local_input(input_uri: str, label: str) -> None:
    """For a local CSV/Parquet input, read only its header: the label must be one of its columns, and a CSV
    input must hold a data row (a header-only file is a data error before anything runs)."""
    from kubetfx.components.common import storage
    from kubetfx.components.common.errors import InputDataError

    if not input_uri or "://" in input_uri:
        return
    try:
        files, _ = storage.resolve_input(input_uri)
    except KubetfxError:
        raise
    except Exception:  # noqa: BLE001 - leave odd inputs to ExampleGen, which reports them precisely
        return
    first = files[0]
    if first.lower().endswith((".csv", ".tsv")):
        columns, has_rows = _csv_head(first)
        csv_files = [f for f in files[:100] if f.lower().endswith((".csv", ".tsv"))]
        if not has_rows and len(csv_files) == len(files) and not any(_csv_head(f)[1] for f in csv_files[1:]):
            where = first if len(files) == 1 else f"{len(files)} files under {input_uri}"
            raise InputDataError(f"{where}: no data rows (only a header): nothing to train on")
    elif first.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        columns = pq.read_schema(first).names
    else:
        return
    if label and label not in columns:
        close = difflib.get_close_matches(label, columns, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"label_column '{label}' is not a column of {first}{hint} (columns: {', '.join(columns)})")


def _label_is_text(input_uri: str, label: str) -> bool:
    """Whether a local CSV/Parquet input's label column holds text (its header and first rows only)."""
    from kubetfx.components.common import storage

    if not input_uri or "://" in input_uri or not label:
        return False
    try:
        files, _ = storage.resolve_input(input_uri)
    except Exception:  # noqa: BLE001 - ExampleGen reports odd inputs precisely
        return False
    first = files[0]
    if first.lower().endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(first)
        return label in schema.names and pa.types.is_string(schema.field(label).type)
    if not first.lower().endswith((".csv", ".tsv")):
        return False
    import csv
    import itertools

    with open(first, newline="", encoding="utf-8", errors="replace") as handle:
        rows = csv.DictReader(handle, delimiter="\t" if first.lower().endswith(".tsv") else ",")
        for row in itertools.islice(rows, 1000):
            value = (row.get(label) or "").strip()
            try:
                float(value)
            except ValueError:
                if value:
                    return True
    return False


def _passes_label_through(module_file: str, label: str) -> bool:
    """Whether the module's preprocessing_fn copies ``inputs[<label>]`` unchanged into an output (read, not run)."""
    _, tree = module_loader.parse_source(module_loader.source_path(module_file))
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) for target in node.targets if isinstance(target, ast.Name)}
    function = next((node for node in tree.body if isinstance(node, ast.FunctionDef)
                     and node.name == "preprocessing_fn" and node.args.args), None)
    if function is None:
        return False
    inputs_name = function.args.args[0].arg
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == inputs_name:
            key = node.value.slice
            value = key.value if isinstance(key, ast.Constant) else constants.get(getattr(key, "id", None))
            if value == label:
                return True
    return False


def check_module_label(values: dict) -> None:
    """A module file, no eval_config, a text label that preprocessing_fn passes through unchanged: the
    Evaluator could not derive an EvalConfig (nothing maps the label to the model's classes), so say it now."""
    module_file, label = values.get("module_file"), values.get("label_column")
    if not module_file or values.get("eval_config") or not label:
        return
    if _label_is_text(values.get("input_uri"), label) and _passes_label_through(module_file, label):
        from kubetfx.components.evaluator.eval_config import example_config

        raise ConfigError(f"eval_config: module_file {module_file} passes the text label '{label}' through "
                          "preprocessing_fn unchanged, so no EvalConfig can be derived (map it to class ids with "
                          f"tft.compute_and_apply_vocabulary, or give one: --set eval_config='"
                          f"{example_config(label)}')")


# ----------------------------------------------------------------------------- everything


def check(inputs: dict, arguments: dict, flag: str = "--set", require_all: bool = True) -> dict:
    """Coerced arguments, after checking every value that can be checked without running a task.

    ``inputs``: the pipeline's parameter specs; ``arguments``: what the run will pass (unset
    parameters take their defaults, which are checked too). ``require_all=False`` (compiling)
    lets parameters without a value wait for run time.
    """
    from kubetfx.components.common import model_repository
    from kubetfx.components.example_gen.reading import (DEFAULT_NULL_VALUES, DEFAULT_STRING_NULL_VALUES,
                                                        parse_null_values)
    from kubetfx.components.example_gen.splitting import parse_splits
    from kubetfx.components.transform.default_preprocessing import check_numeric_imputation
    from kubetfx.components.pusher import deploy_settings
    from kubetfx.components.trainer import hyperparameters as hp_lib
    from kubetfx.components.trainer.problem import check_problem_type

    arguments = coerce_arguments(inputs, arguments, flag)
    values = {name: spec.default for name, spec in inputs.items() if spec.default is not None}
    values.update(arguments)

    missing = [name for name, spec in inputs.items() if spec.default is None and name not in arguments]
    if missing and require_all:
        raise ConfigError(f"no value for {', '.join(missing)} (give it with {flag} {missing[0]}=...)")
    checks = {
        "model_name": model_repository.check_model_name,
        "problem_type": check_problem_type,
        "splits": parse_splits,
        "null_values": lambda v: parse_null_values(v, "null_values", DEFAULT_NULL_VALUES),
        "string_null_values": lambda v: parse_null_values(v, "string_null_values", DEFAULT_STRING_NULL_VALUES),
        "numeric_imputation": check_numeric_imputation,
        "train_steps": lambda v: _non_negative("train_steps", v, flag),
        "eval_steps": lambda v: _non_negative("eval_steps", v, flag),
        "last_n": lambda v: _non_negative("last_n", v, flag),
        "max_trials": lambda v: _positive("max_trials", v, flag),
        "parallel_trials": lambda v: _positive("parallel_trials", v, flag),
        "deploy": lambda v: v and deploy_settings.parse_settings(v, values.get("model_name", "model")),
        "schema_file": lambda v: _existing_local_file("schema_file", v, flag),
        "labels": lambda v: _existing_local_file("labels", v, flag),
        "eval_config": _check_eval_config,
    }
    for name, check in checks.items():
        if name in values:
            check(values[name])
    if "module_file" in values or "hyperparameters" in values:
        if values.get("module_file"):
            check_module_file(values["module_file"], values.get("eval_steps", 0), values.get("train_steps", 0))
        elif "hyperparameters" in values:
            hp_lib.parse(values["hyperparameters"])
    if values.get("tune") and values.get("module_file"):
        if "tuner_fn" not in module_loader.top_level_functions(values["module_file"]):
            raise ConfigError(f"{flag} tune=true, but module_file {values['module_file']} defines no tuner_fn(fn_args): "
                              "the built-in search space tunes the built-in trainer only; add a tuner_fn (TFX's "
                              "Tuner) or drop the module_file")
    check_label_in_local_input(values.get("input_uri"), values.get("label_column"))
    check_module_label(values)
    return arguments


def _non_negative(name: str, value: int, flag: str) -> None:
    if value < 0:
        raise ConfigError(f"{flag} {name}: must be 0 or more, got {value}")


def _positive(name: str, value: int, flag: str) -> None:
    if value < 1:
        raise ConfigError(f"{flag} {name}: must be 1 or more, got {value}")


def _existing_local_file(name: str, value: str, flag: str) -> None:
    if value and "://" not in value and not os.path.isfile(value):
        raise ConfigError(f"{flag} {name}: '{value}' not found")


def _check_eval_config(value: str) -> None:
    if value:
        from kubetfx.components.evaluator import config_checks, eval_config as config_lib

        config_checks.validate_thresholds(config_lib.load(value))
