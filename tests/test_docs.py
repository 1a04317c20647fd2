"""Every command shown in README.md and docs/ still works, so the docs cannot rot.

Each command line of a ```bash block is checked by what it is: a `make` target must exist and
dry-run (`make -n`); a `kubetfx` command line must parse with the CLI's own parser (the docs'
`[optional]` parts with and without), and the cheap ones run for real (`params`, `compile`,
`manifests`); `python -m MODULE` must name an importable module whose `--help` lists every flag
used; a `curl` to the predictor is sent for real to a predictor serving a trained penguin model;
an `engines/engines.sh` subcommand must be one the script's usage documents.
A command no checker knows fails the test: add a checker with the command.
"""

import glob
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from kubetfx.pipelines.cli import main as cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
CHEAP_KUBETFX = ("params", "compile", "manifests")


def _commands(path: str) -> list[str]:
    """The command lines of a Markdown file's bash blocks: continuations joined, comments dropped."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        text = handle.read()
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.strip().startswith("#")):
                continue
            pending = f"{pending} {line.strip()}".strip()
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # an open quote: the command goes on
                continue
            commands.append(pending)
            pending = ""
        assert not pending, f"{path}: unterminated command {pending[:80]!r}"
    return commands


COMMANDS = [(path, command) for path in DOCS for command in _commands(path)]


def _words(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # leading VAR=value assignments
        words = words[1:]
    return [w for w in words if w != "&"]


def _variants(words: list[str]) -> list[list[str]]:
    """The docs' `[--flag value]` notation: the command without the optional parts, and with all of them."""
    bare, full, optional = [], [], False
    for word in words:
        opens, closes = word.startswith("["), word.endswith("]")
        word = word[1 if opens else 0:len(word) - (1 if closes else 0)]
        optional = optional or opens
        full.append(word)
        if not optional:
            bare.append(word)
        optional = optional and not closes
    return [bare, full] if bare != full else [bare]


def _check_make(words: list[str]) -> None:
    targets = [w for w in words[1:] if "=" not in w]
    assert targets, "make without a target"
    result = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"make -n {' '.join(words[1:])}: {result.stderr.strip()[-300:]}"


def _check_kubetfx(words: list[str], tmp_path) -> None:
    for argv in _variants(words[1:]):
        try:
            cli.build_parser().parse_args(argv)
        except SystemExit as exit_:
            raise AssertionError(f"kubetfx {' '.join(argv)} does not parse (exit {exit_.code})") from None
    argv = _variants(words[1:])[0]
    if argv[0] in CHEAP_KUBETFX:
        extra = ["--output", str(tmp_path / "compiled.yaml")] if argv[0] == "compile" else \
            ["--output-dir", str(tmp_path)] if argv[0] == "manifests" else []
        result = subprocess.run([sys.executable, "-m", "kubetfx.pipelines", *argv, *extra], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"kubetfx {' '.join(argv)}: {result.stderr.strip()[-400:]}"


def _check_python_module(words: list[str]) -> None:
    module = words[words.index("-m") + 1]
    assert importlib.util.find_spec(module) is not None, f"python -m {module}: no such module"
    flags = {w.split("=")[0].strip("[]") for w in words if w.lstrip("[").startswith("--")}
    if module.startswith("kubetfx."):
        result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-300:]
        missing = sorted(flag for flag in flags if flag not in result.stdout)
        assert not missing, f"python -m {module} has no {', '.join(missing)}"


def _check_engines_script(words: list[str]) -> None:
    script = os.path.join(ROOT, words[0])
    assert os.access(script, os.X_OK), f"{words[0]} is not an executable script"
    with open(script, encoding="utf-8") as handle:
        usage = handle.read().split("\nset ", 1)[0]
    assert f"engines/engines.sh {words[1]}" in usage, f"{words[0]} does not document `{words[1]}`"


ROUTES = re.compile(r"^/(v1/models/[\w-]+:predict|v2/models/[\w-]+/infer|v2/models/[\w-]+(/ready)?|v2/health/"
                    r"(live|ready)|metrics)$")


def _check_curl(words: list[str], served) -> None:
    url = next(w for w in words if "localhost:" in w or w.startswith("http"))
    path = "/" + url.split("/", 1)[1] if "://" not in url else "/" + url.split("://", 1)[1].split("/", 1)[1]
    assert ROUTES.match(path), f"curl {url}: not a route the predictor serves"
    body = words[words.index("-d") + 1] if "-d" in words else None
    status, answer = served.request("POST" if body else "GET", path, json.loads(body) if body else None)
    assert status == 200, f"curl {url}: HTTP {status} {answer}"


@pytest.fixture(scope="module")
def served(tmp_path_factory, penguin_model, penguin_pipeline_artifacts):
    """The predictor on a repository holding the trained penguin model, for the docs' curl commands."""
    from helpers.predictor import Server, push_model

    root = tmp_path_factory.mktemp("docs-predictor")
    repository = str(root / "repository")
    push_model(penguin_model["model"], repository, schema=os.path.join(penguin_pipeline_artifacts["schema"], "schema.pbtxt"))
    server = Server(["--model_repository", repository, "--model_name", "penguin"], str(root / "predictor.log"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 20 and {path for path, _ in COMMANDS} >= {"README.md", "docs/cluster.md"}


@pytest.mark.parametrize("path, command", COMMANDS, ids=[f"{p}:{c[:50]}" for p, c in COMMANDS])
def test_every_documented_command_still_works(path, command, tmp_path, request):
    words = _words(command)
    program = os.path.basename(words[0])
    if program == "make":
        _check_make(words)
    elif program == "kubetfx":
        _check_kubetfx(words, tmp_path)
    elif program.startswith("python") and "-m" in words:
        _check_python_module(words)
    elif program == "curl":
        _check_curl(words, request.getfixturevalue("served"))
    elif program == "engines.sh":
        _check_engines_script(words)
    else:
        raise AssertionError(f"{path}: no check knows `{program}` ({command[:80]}): add one to tests/test_docs.py")
