"""Load a user module (by import path or file path) and a function from it.

``module_file`` is either a Python import path (``my_pkg.my_module``) or a path to
a local ``.py`` file (``/path/module.py``). Every
problem becomes a ``ConfigError`` that names the module, the function and the
parameter that pointed at it, instead of a bare ImportError/AttributeError.
Nothing here imports TensorFlow; the user module may.

While a module loads, its ``tfx`` imports resolve to kubetfx's stand-ins when TFX is
not installed (trainer/tfx_compat/alias.py). A module that sets, at import, a
variable TensorFlow reads only once (``ONCE_READ_ENV``) after this process imported
TensorFlow (a warm task process, a notebook) fails in one line instead of being
silently ignored; ``TF_USE_LEGACY_KERAS`` only when it contradicts the Keras that
``tf.keras`` already is.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from types import ModuleType

from kubetfx.components.common.errors import ConfigError

_FILE_MODULE_PREFIX = "kubetfx_user_module_"
# Variables TensorFlow (or Keras, for KERAS_BACKEND) reads once, on import or when it first builds its runtime.
# TF_CPP_MIN_LOG_LEVEL and the like are left out: ignoring them changes only logging.
KERAS_ENV = "TF_USE_LEGACY_KERAS"
ONCE_READ_ENV = (KERAS_ENV, "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH",
                 "TF_GPU_ALLOCATOR", "TF_XLA_FLAGS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS",
                 "OMP_NUM_THREADS", "KERAS_BACKEND")


def is_file_path(module_file: str) -> bool:
    """A file path (``x.py``, ``./x``, ``/a/b``) rather than a dotted import path."""
    return module_file.endswith(".py") or os.sep in module_file or module_file.startswith(".")


def where(err: BaseException, path: str | None = None) -> str:
    """``file:line`` of the innermost frame inside the user's file (or the last frame)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno}" + (f":{err.offset}" if err.offset else "")
    frames = traceback.extract_tb(err.__traceback__)
    inside = [f for f in frames if path and os.path.abspath(f.filename) == path] or frames[-1:]
    return f"{inside[-1].filename}:{inside[-1].lineno}" if inside else "?"


def last_line(err: BaseException) -> str:
    """The last non-empty line of an exception's message (library errors can be pages long)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1]}" if lines else type(err).__name__


def _env_line(path: str | None, variable: str) -> str:
    """``path:line`` of the first line of the module's source naming ``variable`` (``path`` if none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, 1):
                if variable in text and not text.lstrip().startswith("#"):
                    return f"{path}:{number}"
    except (OSError, TypeError):
        pass
    return str(path)


def _check_once_read_env(before: dict, readers: set, path: str | None, parameter: str) -> None:
    """The module changed a variable whose reader (TensorFlow, Keras) was imported before it loaded: say so."""
    for variable in ONCE_READ_ENV:
        value = os.environ.get(variable)
        reader = "keras" if variable == "KERAS_BACKEND" else "tensorflow"
        if value == before.get(variable) or reader not in readers:
            continue
        where = _env_line(path, variable)
        if variable == KERAS_ENV:
            from kubetfx.components.trainer import keras_mode

            current = keras_mode.current_legacy()
            if current is None or current == keras_mode._env_legacy():
                continue  # tf.keras is not chosen yet (it follows the variable), or is what the module asks for
            raise ConfigError(
                f"{parameter} {where} sets {variable}={value!r} at import, but tf.keras in this process is already "
                f"{'tf_keras (Keras 2)' if current else 'Keras 3'} (TensorFlow reads the variable once), so the module "
                "would silently get the other Keras; choose it with the Trainer's keras parameter instead "
                "(keras=keras3 or keras=legacy: it trains in a fresh process when it must)")
        raise ConfigError(
            f"{parameter} {where} sets {variable}={value!r} at import, but this process imported "
            f"{'Keras' if reader == 'keras' else 'TensorFlow'} before the module (a warm task process, a notebook, a "
            f"test), and it reads {variable} only once, so the setting would be silently ignored; set {variable} in "
            "the environment kubetfx runs in instead")


@contextlib.contextmanager
def _user_module_scope(path: str | None, parameter: str):
    """While a user module loads: TFX's imports served by kubetfx (when TFX is not installed); afterwards, the
    once-read variables checked."""
    from kubetfx.components.trainer.tfx_compat import alias

    readers = {name for name in ("tensorflow", "keras") if name in sys.modules}
    before = {variable: os.environ.get(variable) for variable in ONCE_READ_ENV}
    with alias.installed():
        yield
    _check_once_read_env(before, readers, path, parameter)


def _import_failure(err: BaseException, path: str | None, name: str, parameter: str) -> ConfigError:
    """One line for a module that failed to load: a TFX part kubetfx lacks, a syntax error, or any other error."""
    from kubetfx.components.trainer.tfx_compat import alias

    if isinstance(err, alias.NotProvided):
        return ConfigError(f"{parameter} {where(err, path)}: {err}")
    kind = "has a syntax error" if isinstance(err, SyntaxError) else "failed to import"
    return ConfigError(f"{parameter}: {name} {kind} at {where(err, path)}: {last_line(err)}")


def _load_file(path: str, parameter: str) -> ModuleType:
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{parameter}: module file '{path}' not found")
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"{_FILE_MODULE_PREFIX}{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{parameter}: '{path}' cannot be loaded as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    # Sibling modules of the file (helpers next to it) are importable while it loads.
    directory = os.path.dirname(path)
    sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        with _user_module_scope(path, parameter):
            spec.loader.exec_module(module)
    except BaseException as err:
        sys.modules.pop(name, None)
        if isinstance(err, (KeyboardInterrupt, SystemExit, ConfigError)):
            raise
        raise _import_failure(err, path, f"module file '{path}'", parameter) from err
    finally:
        if directory in sys.path:
            sys.path.remove(directory)
    return module


def _load_import_path(module_name: str, parameter: str) -> ModuleType:
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as err:  # a parent package is missing or the name is malformed
        found, cause = None, err
    else:
        cause = None
    if found is None:
        detail = f" ({last_line(cause)})" if cause else ""
        raise ConfigError(f"{parameter}: module '{module_name}' not found on the Python path{detail}; "
                          "give an importable module name or a path to a .py file")
    origin = found.origin if found.origin and os.path.isfile(found.origin) else None
    try:
        with _user_module_scope(origin, parameter):
            return importlib.import_module(module_name)
    except BaseException as err:
        if isinstance(err, (KeyboardInterrupt, SystemExit, ConfigError)):
            raise
        raise _import_failure(err, origin, f"module '{module_name}'", parameter) from err


def load_module(module_file: str, parameter: str = "module_file") -> ModuleType:
    """Import ``module_file`` (import path or file path); ConfigError on any failure."""
    module_file = (module_file or "").strip()
    if not module_file:
        raise ConfigError(f"{parameter} is empty: give an import path or a path to a .py file")
    if is_file_path(module_file):
        return _load_file(module_file, parameter)
    return _load_import_path(module_file, parameter)


def load_function(module_file: str, function_name: str, parameter: str = "module_file",
                  function_parameter: str = "function"):
    """The callable ``function_name`` of the module ``module_file``.

    ``parameter``/``function_parameter`` name the component parameters in errors.
    """
    if not function_name or not function_name.isidentifier():
        raise ConfigError(f"{function_parameter} must be a Python identifier, got {function_name!r}")
    module = load_module(module_file, parameter)
    function = getattr(module, function_name, None)
    if function is None:
        defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        raise ConfigError(f"{parameter}: module '{module_file}' has no function '{function_name}' "
                          f"({function_parameter}); it defines: {', '.join(defined) or 'no public functions'}")
    if not callable(function):
        raise ConfigError(f"{parameter}: '{function_name}' in module '{module_file}' is a "
                          f"{type(function).__name__}, not a function ({function_parameter})")
    return function


def source_file(function) -> str | None:
    """The file a function was defined in, if known."""
    code = getattr(function, "__code__", None)
    return os.path.abspath(code.co_filename) if code is not None else None


def source_path(module_file: str, parameter: str = "module_file") -> str:
    """The .py file of ``module_file`` (file path or import path), found without importing it."""
    if is_file_path(module_file):
        path = os.path.abspath(module_file)
        if not os.path.isfile(path):
            raise ConfigError(f"{parameter}: '{module_file}' not found")
        return path
    try:
        spec = importlib.util.find_spec(module_file)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise ConfigError(f"{parameter}: '{module_file}' is neither a .py file nor an importable module")
    return spec.origin


def parse_source(path: str, parameter: str = "module_file"):
    """(the module's source, its syntax tree); a syntax error is one line naming the file and line."""
    import ast

    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    try:
        return source, ast.parse(source, filename=path)
    except SyntaxError as err:
        raise ConfigError(f"{parameter} {path}:{err.lineno}: syntax error: {err.msg}") from None


def top_level_functions(module_file: str, parameter: str = "module_file") -> set[str]:
    """The names of the functions the module defines at top level, read from its source (nothing runs)."""
    import ast

    _, tree = parse_source(source_path(module_file, parameter), parameter)
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
