"""``tfx``, ``tfx.v1`` and the TFX module paths module files import, served by tfx_compat while a module loads.

TFX does not install next to kubetfx (Python 3.11, protobuf 6). So that TFX module files run with
their imports unchanged (``from tfx import v1 as tfx``, ``from tfx.components.trainer.fn_args_utils
import FnArgs``, ...), :func:`installed` puts an import finder at the end of ``sys.meta_path`` while
kubetfx loads a user module (components/common/module_loader.py), and only when no real ``tfx`` is
importable: where TFX is installed, its own modules are used. The finder answers for the paths in
:data:`PROVIDED` only, with module objects built once per process; the user module keeps them
after loading, and ``sys.modules`` forgets them, so nothing else in the process sees a ``tfx``.

A path or attribute outside :data:`PROVIDED` (``tfx.components.Trainer``, ``tfx.types``) raises
:class:`NotProvided`, one line naming it; module_loader adds the module file's line.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

ROOT = "tfx"
_COMPONENTS = "kubetfx.components.trainer.fn_args"
_TUNER = "kubetfx.components.trainer.tfx_compat.components"
_FILEIO = "kubetfx.components.trainer.tfx_compat.fileio"
_FILEIO_NAMES = ("copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove", "rename",
                 "rmtree", "stat", "walk")
_FN_ARGS = {"FnArgs": (_COMPONENTS, "FnArgs"), "DataAccessor": (_COMPONENTS, "DataAccessor")}
_TUNER_RESULT = {"TunerFnResult": (_TUNER, "TunerFnResult")}
_FILE_FUNCTIONS = {name: (_FILEIO, name) for name in _FILEIO_NAMES}

# Module path -> its attributes that are not submodules: name -> (kubetfx module, attribute).
# Submodules are the paths one level below (tfx.v1 -> tfx.v1.components, tfx.v1.dsl).
PROVIDED: dict[str, dict[str, tuple[str, str]]] = {
    "tfx": {},
    "tfx.v1": {},
    "tfx.v1.components": {**_FN_ARGS, **_TUNER_RESULT},
    "tfx.v1.dsl": {},
    "tfx.v1.dsl.io": {},
    "tfx.v1.dsl.io.fileio": _FILE_FUNCTIONS,
    "tfx.components": {**_FN_ARGS, **_TUNER_RESULT},
    "tfx.components.trainer": {},
    "tfx.components.trainer.fn_args_utils": _FN_ARGS,
    "tfx.components.trainer.executor": {"TrainerFnArgs": (_COMPONENTS, "FnArgs")},  # TFX's older name of FnArgs
    "tfx.components.tuner": {},
    "tfx.components.tuner.component": _TUNER_RESULT,
    "tfx.dsl": {},
    "tfx.dsl.io": {},
    "tfx.dsl.io.fileio": _FILE_FUNCTIONS,
}
_MARK = "__kubetfx_tfx_alias__"


class NotProvided(Exception):
    """A ``tfx`` module path or attribute that kubetfx does not provide (TFX itself is not installed)."""

    def __init__(self, dotted: str):
        self.dotted = dotted
        super().__init__(f"'{dotted}' is not provided: TFX is not installed here, and kubetfx gives TFX module files "
                         f"only {summary()} (docs/components.md, 'Bringing a TFX module file')")


class AttributeNotProvided(NotProvided, AttributeError):
    """``tfx.<...>.<name>`` for a name the alias module lacks (an AttributeError: ``hasattr`` still works)."""


class ModuleNotProvided(NotProvided, ImportError):
    """``import tfx.<path>`` for a path outside PROVIDED (an ImportError, but not ModuleNotFoundError, so
    ``from tfx.components import Trainer`` reports this rather than a vaguer "cannot import name")."""


def summary() -> str:
    """What is provided, in one line: each module path with its attributes (fileio's functions counted)."""
    parts = []
    for path, attributes in PROVIDED.items():
        if attributes is _FILE_FUNCTIONS:
            parts.append(f"{path} (its {len(attributes)} functions)")
        elif attributes:
            parts.append(f"{path}.{{{', '.join(sorted(attributes))}}}")
    return "; ".join(parts)


class _AliasModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("_"):  # introspection (__file__, __wrapped__, ...) sees a plain module
            raise AttributeError(f"module '{self.__name__}' has no attribute '{name}'")
        raise AttributeNotProvided(f"{self.__name__}.{name}")


_modules: dict[str, types.ModuleType] = {}
_lock = threading.RLock()


def _build() -> dict[str, types.ModuleType]:
    """The alias modules, built once per process (so ``tfx.components.FnArgs`` is always the same class)."""
    if _modules:
        return _modules
    import importlib

    built = {}
    for path in PROVIDED:
        module = _AliasModule(path, f"kubetfx's stand-in for TFX's {path} (kubetfx.components.trainer.tfx_compat)")
        module.__path__ = []  # a package: `from tfx.components import Trainer` asks the finder, which says why
        module.__package__ = path
        setattr(module, _MARK, True)
        for name, (source, attribute) in PROVIDED[path].items():
            setattr(module, name, getattr(importlib.import_module(source), attribute))
        built[path] = module
    for path, module in built.items():
        parent, _, name = path.rpartition(".")
        if parent:
            setattr(built[parent], name, module)
    _modules.update(built)
    return _modules


def is_alias(module) -> bool:
    return bool(getattr(module, "__dict__", {}).get(_MARK))


def real_tfx_installed() -> bool:
    """Whether a real ``tfx`` package is importable (then it is used, and nothing here is)."""
    loaded = sys.modules.get(ROOT)
    if loaded is not None:
        return not is_alias(loaded)
    with _lock:
        finders = [f for f in sys.meta_path if isinstance(f, _Finder)]
        for finder in finders:
            sys.meta_path.remove(finder)
        try:
            return importlib.util.find_spec(ROOT) is not None
        except (ImportError, ValueError):
            return False
        finally:
            sys.meta_path.extend(finders)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``tfx`` and ``tfx.*`` in PROVIDED (last on sys.meta_path, so a real tfx would come first)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != ROOT and not fullname.startswith(ROOT + "."):
            return None
        if fullname not in PROVIDED:
            raise ModuleNotProvided(fullname)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        return _build()[spec.name]

    def exec_module(self, module):
        pass


_depth = 0


@contextlib.contextmanager
def installed():
    """While this lasts, ``import tfx...`` gives the PROVIDED stand-ins, unless a real tfx is importable."""
    global _depth
    if real_tfx_installed():
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _build()
            sys.meta_path.append(_Finder())
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
                for name in [n for n, m in sys.modules.items() if (n == ROOT or n.startswith(ROOT + "."))
                             and is_alias(m)]:
                    del sys.modules[name]


def resolve(dotted: str) -> str | None:
    """None if ``dotted`` (``tfx.components.FnArgs``, ``tfx.dsl.io``) is provided, else the first part that is
    not (read from PROVIDED; nothing is imported)."""
    parts = dotted.split(".")
    if parts[0] != ROOT:
        return dotted
    for index in range(1, len(parts)):
        path, name = ".".join(parts[:index]), parts[index]
        if f"{path}.{name}" in PROVIDED:
            continue
        if name in PROVIDED.get(path, {}):
            return None  # an object (FnArgs, fileio.exists): its own attributes are not checked
        return ".".join(parts[:index + 1])
    return None
