"""The source tree keeps its shape: no import cycles, no component reaching into another's executor, one place per fact.

Reads every module of components/ and pipelines/ (installed as ``kubetfx.components`` /
``kubetfx.pipelines``, pyproject.toml's package-dir) as an AST, without importing anything, and
builds the import graph from module-level and function-level imports alike.
"""

import ast
import os
import tomllib


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS = "kubetfx.components"
PIPELINES = "kubetfx.pipelines"
MAX_LINES = 500
# A longer module says why in the first paragraph of its docstring, on a line starting with this.
LONG_MARKER = "Over 500 lines:"
# The TFX Model artifact's subdirectory: spelled out in common/layout.py only.
SERVING_DIR_LITERAL = "Format-Serving"
LAYOUT_MODULE = f"{COMPONENTS}.common.layout"


def _package_dirs() -> dict[str, str]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]["package-dir"]


class Module:
    """One source file: its dotted name, path and parsed tree."""

    def __init__(self, name: str, path: str, is_package: bool):
        self.name, self.path, self.is_package = name, path, is_package
        with open(path, encoding="utf-8") as handle:
            self.source = handle.read()
        self.tree = ast.parse(self.source, filename=path)

    @property
    def relpath(self) -> str:
        return os.path.relpath(self.path, ROOT)

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _collect_modules() -> dict[str, Module]:
    modules = {}
    for package, directory in _package_dirs().items():
        base = os.path.join(ROOT, directory)
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and os.path.isfile(os.path.join(folder, d,
                                                                                                   "__init__.py")))
            relative = os.path.relpath(folder, base)
            prefix = package if relative == "." else f"{package}.{relative.replace(os.sep, '.')}"
            for file in sorted(files):
                if not file.endswith(".py"):
                    continue
                is_package = file == "__init__.py"
                name = prefix if is_package else f"{prefix}.{file[:-3]}"
                modules[name] = Module(name, os.path.join(folder, file), is_package)
    return modules


MODULES = _collect_modules()


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.package.split(".")
    base = ".".join(parts[:len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _imports(module: Module) -> set[str]:
    """The kubetfx modules ``module`` imports, anywhere in its body (a name imported from a package
    counts as its submodule when there is one, else as the package)."""
    found = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and target.startswith("kubetfx."):
                target = target.rpartition(".")[0]  # `import kubetfx.x.y.Name`-style: the module that exists
            if target in MODULES and target != module.name:
                found.add(target)
    return found


GRAPH = {name: _imports(module) for name, module in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per strongly connected component with more than one module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm, iterative so deep graphs cannot hit the recursion limit
        work = [(node, iter(sorted(graph[node])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[current] = min(low[current], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[current])
            if low[current] == index[current]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == current:
                        break
                if len(members) > 1:
                    components.append(set(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for members in components:
        start = min(members)
        path, seen = [start], {start}
        while True:  # follow edges inside the component until a module repeats
            following = sorted(graph[path[-1]] & members)
            back = start if start in following else next((m for m in following if m not in seen), following[0])
            if back in seen:
                cycles.append(path[path.index(back):] + [back])
                break
            path.append(back)
            seen.add(back)
    return cycles


def _component(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if name.startswith(COMPONENTS + ".") else None


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (of the module, a class or a function)."""
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                nodes.add(id(first.value))
    return nodes


def test_the_tree_is_read():
    assert f"{COMPONENTS}.common.layout" in MODULES and f"{PIPELINES}.config" in MODULES
    assert len(MODULES) > 100


def test_the_import_graph_sees_function_level_imports():
    # pipelines/cli/main.py imports the local runner inside a function only.
    assert f"{PIPELINES}.local.runner" in GRAPH[f"{PIPELINES}.cli.main"]


def test_cycle_finder_reports_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles (break each with a small module for what both sides need):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles)


def test_no_module_imports_another_components_executor():
    offending = []
    for name, targets in sorted(GRAPH.items()):
        for target in sorted(targets):
            if target.endswith(".executor") and _component(target) and _component(target) != _component(name):
                if name.startswith(COMPONENTS + "."):
                    offending.append(f"{MODULES[name].relpath} imports {target}")
    assert not offending, ("an executor is one component's entry point; shared code goes to a library next to "
                           "components/common/:\n" + "\n".join(offending))


def test_components_do_not_import_the_pipelines_layer():
    offending = [f"{MODULES[name].relpath} imports {target}" for name, targets in sorted(GRAPH.items())
                 if name.startswith(COMPONENTS) for target in sorted(targets) if target.startswith(PIPELINES)]
    assert not offending, "\n".join(offending)


def test_serving_dir_name_is_defined_in_one_place():
    offending = []
    for name, module in sorted(MODULES.items()):
        if name == LAYOUT_MODULE:
            continue
        docstrings = _docstring_nodes(module.tree)
        for node in ast.walk(module.tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and SERVING_DIR_LITERAL in node.value):
                offending.append(f"{module.relpath}:{node.lineno}")
    assert not offending, (f"'{SERVING_DIR_LITERAL}' spelled out outside common/layout.py (use "
                           f"layout.SERVING_MODEL_DIR): " + ", ".join(offending))
    layout = MODULES[LAYOUT_MODULE]
    assert SERVING_DIR_LITERAL in layout.source


def _first_paragraph(module: Module) -> str:
    return (ast.get_docstring(module.tree) or "").split("\n\n")[0]


def _line_count(module: Module) -> int:
    return len(module.source.splitlines())


def test_no_source_file_over_500_lines_without_a_reason():
    offending = [f"{m.relpath}: {_line_count(m)} lines" for name, m in sorted(MODULES.items())
                 if _line_count(m) > MAX_LINES
                 and not any(line.startswith(LONG_MARKER) for line in _first_paragraph(m).splitlines())]
    assert not offending, (f"split these along their seams, or say why not in the docstring's first paragraph "
                           f"(a line starting '{LONG_MARKER}'):\n" + "\n".join(offending))


def test_no_test_module_imports_another():
    """Shared test code lives in tests/helpers/ (plain modules) or tests/conftest.py (fixtures)."""
    tests = os.path.join(ROOT, "tests")
    offending = []
    for folder, dirs, files in os.walk(tests):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "data")]
        for file in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, file)
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), filename=path)
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                offending += [f"{os.path.relpath(path, ROOT)}:{node.lineno} imports {name}" for name in names
                              if name.split(".")[-1].startswith("test_") or name.split(".")[-1] == "conftest"]
    assert not offending, "move what is shared to tests/helpers/ or tests/conftest.py:\n" + "\n".join(offending)


def test_every_module_starts_with_a_one_line_summary():
    offending = []
    for name, module in sorted(MODULES.items()):
        docstring = ast.get_docstring(module.tree)
        if not docstring or not docstring.splitlines()[0].strip():
            offending.append(f"{module.relpath}: no docstring" if not docstring else
                             f"{module.relpath}: the docstring's first line is empty")
    assert not offending, "\n".join(offending)
