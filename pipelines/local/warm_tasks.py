"""Task processes with TensorFlow already imported: the local run's answer to "every task pays
``import tensorflow`` again" (~3 s of CPU each on this project's machines).

A KFP task is a fresh process, locally too (kfp.local's SubprocessRunner): a ``sh -ec`` script that
writes the component's source to a file and runs ``python -m kfp.dsl.executor_main``. For the tasks
that import TensorFlow (``TENSORFLOW_TASKS``), a :class:`WarmPool` starts that Python process ahead
of time, while earlier tasks run: it imports TensorFlow, then waits for its task on stdin and does
what the script would (the same source file, arguments and environment, ``executor_main`` as
``__main__``). Each task still gets a process of its own, used once; only the import is paid
before the task is due. Anything else (another command shape, ``pip install``, an environment
that differs in what TensorFlow reads at import) starts cold, exactly as kfp.local would.

The pool keeps at most ``size`` processes waiting and never more than the TensorFlow tasks still
to come, so no import is paid for nothing.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
import threading

TENSORFLOW_TASKS = frozenset({"transform", "trainer", "evaluator", "infra_validator", "bulk_inferrer"})
PRELOAD = ("tensorflow",)
TASK_STARTS = "kubetfx-warm-task: starts"  # printed by a warm process when its task begins
_FUNCTION_FLAG = "--function_to_execute"
# Variables read at import time (by TensorFlow, CUDA, Python): a task whose environment differs in one
# of them from the waiting process's starts cold.
_IMPORT_TIME_ENV = ("TF_", "CUDA", "XLA_", "KERAS", "PYTHON", "LD_", "OMP_", "MKL_")

_POOL: "WarmPool | None" = None


def function_of(full_command: list[str]) -> str | None:
    """The component function a kfp lightweight-component command runs."""
    if _FUNCTION_FLAG in full_command[:-1]:
        return full_command[full_command.index(_FUNCTION_FLAG) + 1]
    return None


def _warm_command(full_command: list[str]) -> tuple[str, list[str]] | None:
    """(component source, executor_main arguments) when the command is kfp's lightweight-component script."""
    if len(full_command) < 4 or full_command[:2] != ["sh", "-ec"]:
        return None
    script = full_command[2]
    if "kfp.dsl.executor_main" not in script or "ephemeral_component.py" not in script or "pip" in script:
        return None
    return full_command[3], full_command[4:]


def _import_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_TIME_ENV)}


class WarmPool:
    """Processes with TensorFlow imported, waiting for the TensorFlow tasks still to come."""

    def __init__(self, expected: collections.Counter, size: int = 2):
        self._remaining = sum(count for name, count in expected.items() if name in TENSORFLOW_TASKS)
        self._size = size
        self._idle: list[tuple[subprocess.Popen, dict]] = []
        self._lock = threading.Lock()
        self.warm_starts = 0
        self._top_up()

    def _top_up(self) -> None:
        while len(self._idle) < min(self._size, self._remaining):
            env = dict(os.environ)
            process = subprocess.Popen([sys.executable, "-m", "kubetfx.pipelines.local.warm_tasks"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
            self._idle.append((process, _import_env(env)))

    def take(self, function: str | None, env: dict) -> subprocess.Popen | None:
        """A waiting process for ``function``'s task, or None (start it cold)."""
        if function not in TENSORFLOW_TASKS:
            return None
        with self._lock:
            self._remaining -= 1
            wanted = _import_env(env)
            index = next((i for i, (p, e) in enumerate(self._idle) if e == wanted and p.poll() is None), None)
            process = self._idle.pop(index)[0] if index is not None else None
            self._top_up()
        if process is not None:
            self.warm_starts += 1
        return process

    def close(self) -> None:
        with self._lock:
            self._remaining = 0
            idle, self._idle = self._idle, []
        for process, _ in idle:
            process.kill()
            process.communicate()


@contextlib.contextmanager
def warm_pool(expected_functions, size: int = 2):
    """Within this context, TensorFlow tasks (of ``expected_functions``, the run's task functions)
    start in processes that imported TensorFlow ahead of time."""
    global _POOL
    previous, _POOL = _POOL, WarmPool(collections.Counter(expected_functions), size) if size > 0 else None
    try:
        yield _POOL
    finally:
        pool, _POOL = _POOL, previous
        if pool is not None:
            pool.close()


def start(full_command: list[str], env_vars: dict | None = None) -> tuple[subprocess.Popen, bool]:
    """Start a task's process: (the process, its output on ``stdout`` with stderr; whether it was warm)."""
    env = {**os.environ, **(env_vars or {})}
    warm = _warm_command(full_command)
    process = _POOL.take(function_of(full_command), env) if (_POOL is not None and warm) else None
    if process is None:
        return subprocess.Popen(full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, env=env), False
    source, arguments = warm
    process.stdin.write(json.dumps({"source": source, "arguments": arguments, "env": env}) + "\n")
    process.stdin.close()
    return process, True


def run_local_subprocess(full_command: list[str], env_vars: dict | None = None) -> int:
    """kfp.local's ``subprocess_task_handler.run_local_subprocess``, starting TensorFlow tasks warm."""
    process, _ = start(full_command, env_vars)
    for line in iter(process.stdout.readline, ""):
        print(line, end="")
    print("\n")
    return process.wait()


def _serve_one_task() -> None:
    """The waiting process: import, read the task, run it as ``sh -ec`` + ``python -m executor_main`` would."""
    import importlib
    import runpy
    import tempfile

    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the task imports it again and reports the error itself
            pass
    line = sys.stdin.readline()
    if not line:
        return  # the pool closed without a task for us
    task = json.loads(line)
    os.environ.clear()
    os.environ.update(task["env"])
    os.environ["_KFP_RUNTIME"] = "true"
    program = os.path.join(tempfile.mkdtemp(), "ephemeral_component.py")
    with open(program, "w") as handle:
        handle.write(task["source"])
    print(TASK_STARTS, flush=True)
    sys.argv = ["executor_main", "--component_module_path", program, *task["arguments"]]
    try:
        runpy.run_module("kfp.dsl.executor_main", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise
    _exit_done()


def _exit_done() -> None:
    """The task succeeded and its outputs are written (and closed): exit without Python's teardown of
    TensorFlow, Beam and their threads, which took 0.4–1.7 s a task after the executor output was written."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _serve_one_task()
