"""Warm task processes: TensorFlow imported ahead of time, several TensorFlow tasks run one after another.

Every task importing TensorFlow again costs ~3-4 s of CPU on this project's 2-core machines, where
CPU, not waiting, is what a local run is short of (measured: docs/benchmarks.md).

A KFP task is a fresh process, locally too (kfp.local's SubprocessRunner): a ``sh -ec`` script that
writes the component's source to a file and runs ``python -m kfp.dsl.executor_main``. For the tasks
that import TensorFlow (``TENSORFLOW_TASKS``), a :class:`WarmPool` starts that Python process ahead
of time, while earlier tasks run: it imports TensorFlow, then waits for a task on stdin and does
what the script would (the same source file, arguments and environment, ``executor_main`` as
``__main__``). When the task succeeds the process prints ``TASK_ENDS``, resets what a task leaves
behind in TensorFlow and Keras (op determinism, global seeds, Keras's session) and goes back to the
pool for the next TensorFlow task: on the penguins all five (Transform, Trainer, Evaluator,
InfraValidator, BulkInferrer) run in one process (TensorFlow, TFT, Beam, Keras and kserve imported
once) and write bitwise the same outputs as in fresh processes (tests/test_warm_process_reuse.py).
A failed task ends its process, as it would end the script. The light tasks (``LIGHT_TASKS``: the
data tasks, Tuner, Pusher) share one warm process of their own the same way (kfp's executor and
pyarrow imported ahead; one due while it is busy starts cold). Anything else (another command shape,
``pip install``, an environment that differs in what TensorFlow reads at import, a task whose module
file sets such a variable itself: ``module_loader.ONCE_READ_ENV`` but for ``TF_USE_LEGACY_KERAS``, which the
Trainer handles) starts cold, exactly as kfp.local would.

The pool keeps at most ``size`` processes (waiting or running a task) and never more than the
TensorFlow tasks still to come, and starts one at a time: the next only when the previous one has
imported TensorFlow, so the first TensorFlow task does not wait for two imports sharing the CPUs.
When all ``size`` processes are busy, a TensorFlow task waits for the first to come back.
``pool_size``: one process for small input (``SMALL_INPUT_BYTES``: the Evaluator and InfraValidator
then take turns, ~1 s each on the penguins, instead of paying a second import), two otherwise.
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
# Input below this size: each TensorFlow task's own work is shorter than a TensorFlow import, so one process
# serves them all in turn (tasks the DAG allows side by side take turns) rather than a second one importing.
SMALL_INPUT_BYTES = 16 * 2**20
PRELOAD = ("tensorflow",)
# The data tasks (and the other light ones) share a warm process of their own, with what they all import.
LIGHT_TASKS = frozenset({"example_gen", "statistics_gen", "schema_gen", "example_validator", "tuner", "pusher"})
LIGHT_PRELOAD = ("kfp.dsl.executor", "pyarrow")
TASK_STARTS = "kubetfx-warm-task: starts"  # printed by a warm process when its task begins
TASK_ENDS = "kubetfx-warm-task: ends"  # printed by a warm process when its task succeeded; it waits for the next
_READY_FD = "KUBETFX_WARM_READY_FD"  # the pipe a starting process closes once it has imported PRELOAD
_FUNCTION_FLAG = "--function_to_execute"
# Variables read at import time (by TensorFlow, CUDA, Python): a task whose environment differs in one
# of them from the waiting process's starts cold.
_IMPORT_TIME_ENV = ("TF_", "CUDA", "XLA_", "KERAS", "PYTHON", "LD_", "OMP_", "MKL_")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_POOLS: "list[WarmPool]" = []


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


def _module_sets_once_read_env(arguments: list[str]) -> bool:
    """Whether the task's local module_file names a variable TensorFlow reads only once (a warm process has read
    it already, so the module's setting would not count)."""
    from kubetfx.components.common.module_loader import KERAS_ENV, ONCE_READ_ENV, is_file_path

    if "--executor_input" not in arguments[:-1]:
        return False
    try:
        executor_input = json.loads(arguments[arguments.index("--executor_input") + 1])
        module_file = executor_input["inputs"]["parameterValues"].get("module_file") or ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if not isinstance(module_file, str) or not is_file_path(module_file) or not os.path.isfile(module_file):
        return False
    with open(module_file, encoding="utf-8", errors="replace") as handle:
        source = handle.read()
    return any(variable in source for variable in ONCE_READ_ENV if variable != KERAS_ENV)


def _import_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_TIME_ENV)}


def _cpu_and_peak_rss(pid: int) -> tuple[float, float] | None:
    """(user + system CPU seconds, peak RSS in MB) of a running process, from /proc; None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as handle:
            peak_kb = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, peak_kb / 1024


class TaskRun:
    """One task's process as its caller sees it: ``lines()`` (stdout and stderr), then ``wait()``.

    ``warm``: it ran in a pool process (``reused``: one that had run an earlier task). After ``wait``,
    ``cpu_s`` and ``peak_rss_mb``: the process's CPU during the task (a fresh warm process's import
    ahead of it included) and its peak RSS so far.
    """

    def __init__(self, process: subprocess.Popen, warm: bool = False, reused: bool = False,
                 function: str | None = None, pool: "WarmPool | None" = None, cpu_before: float = 0.0):
        self.process, self.warm, self.reused = process, warm, reused
        self._function, self._pool, self._cpu_before = function, pool, cpu_before
        self._succeeded_warm = self._output_ended = False
        self.returncode: int | None = None
        self.cpu_s = self.peak_rss_mb = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self):
        """The task's output lines, until its process exits or (warm) says the task ended."""
        if self._output_ended:
            return
        for line in iter(self.process.stdout.readline, ""):
            if self.warm and line.startswith(TASK_ENDS):
                self._succeeded_warm = True
                break
            yield line
        self._output_ended = True

    def wait(self) -> int:
        """The task's exit status; a warm process whose task succeeded goes back to the pool."""
        if self.returncode is not None:
            return self.returncode
        for _ in self.lines():  # output nobody read
            pass
        if self._succeeded_warm:
            usage = _cpu_and_peak_rss(self.process.pid)
            if usage is not None:
                self.cpu_s, self.peak_rss_mb = usage[0] - self._cpu_before, usage[1]
            self.returncode = 0
            self._pool.release(self.process, self._function)
            return 0
        _, status, usage = os.wait4(self.process.pid, 0)
        self.returncode = self.process.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime - self._cpu_before
        self.peak_rss_mb = usage.ru_maxrss / 1024
        if self.warm and self._pool is not None:
            self._pool.forget(self.process)
        return self.returncode


class WarmPool:
    """Processes with ``preload`` imported (default TensorFlow), serving the ``tasks`` still to come.

    ``wait_when_full``: a task finding every process busy waits for one to come back (else it starts cold).
    """

    def __init__(self, expected: collections.Counter, size: int = 2, tasks=TENSORFLOW_TASKS, preload=PRELOAD,
                 wait_when_full: bool = True):
        self._tasks, self._preload, self._wait_when_full = frozenset(tasks), tuple(preload), wait_when_full
        self._remaining = sum(count for name, count in expected.items() if name in self._tasks)
        self._size = size
        self._idle: list[tuple[subprocess.Popen, dict]] = []  # most recently used first
        self._busy: set[subprocess.Popen] = set()  # running a task they come back from
        self._import_envs: dict[subprocess.Popen, dict] = {}
        self._importing = False
        self._closed = False
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)  # a busy process came back or ended
        self.warm_starts = 0
        self.processes_started = 0
        with self._lock:
            self._top_up()

    def _top_up(self) -> None:
        """Start one more process when fewer than wanted are alive and none is importing (lock held)."""
        if self._closed or self._importing or len(self._idle) + len(self._busy) >= min(self._size, self._remaining):
            return
        env = dict(os.environ)
        ready_read, ready_write = os.pipe()
        env[_READY_FD] = str(ready_write)
        process = subprocess.Popen([sys.executable, "-m", "kubetfx.pipelines.local.warm_tasks", *self._preload],
                                   stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
                                   pass_fds=(ready_write,))
        os.close(ready_write)
        del env[_READY_FD]
        self._import_envs[process] = _import_env(env)
        self._idle.append((process, self._import_envs[process]))
        self._importing = True
        self.processes_started += 1
        threading.Thread(target=self._await_import, args=(ready_read,), daemon=True).start()

    def _await_import(self, ready_read: int) -> None:
        try:
            os.read(ready_read, 1)  # returns when the process closed its end: imported, or dead
        finally:
            os.close(ready_read)
            with self._lock:
                self._importing = False
                self._top_up()

    def take(self, function: str | None, env: dict) -> tuple[subprocess.Popen, bool] | None:
        """(a waiting process for ``function``'s task, whether it ran a task before), or None (start it cold)."""
        if function not in self._tasks:
            return None
        wanted = _import_env(env)
        with self._lock:
            while True:  # this task stays in _remaining while it waits: a process that comes back is kept for it
                index = next((i for i, (p, e) in enumerate(self._idle) if e == wanted and p.poll() is None), None)
                full = len(self._idle) + len(self._busy) >= self._size
                if index is not None or not (full and self._busy and self._wait_when_full) or self._closed:
                    break
                self._returned.wait()  # the pool is full and busy: take the first process that comes back
            self._remaining -= 1
            process = self._idle.pop(index)[0] if index is not None else None
            if process is not None:
                self._busy.add(process)
            self._top_up()
        if process is None:
            return None
        self.warm_starts += 1
        return process, getattr(process, "_kubetfx_tasks", 0) > 0

    def passed_over(self, function: str | None) -> None:
        """``function``'s task starts cold after all: no process is kept waiting for it."""
        if function in self._tasks:
            with self._lock:
                self._remaining -= 1

    def release(self, process: subprocess.Popen, function: str | None) -> None:
        """``process`` finished ``function``'s task: wait for the next, or end it when none is due for it."""
        with self._lock:
            self._busy.discard(process)
            process._kubetfx_tasks = getattr(process, "_kubetfx_tasks", 0) + 1
            keep = not self._closed and len(self._idle) < self._remaining
            if keep:
                self._idle.insert(0, (process, self._import_envs[process]))
            else:
                self._import_envs.pop(process, None)
            self._returned.notify_all()
        if not keep:
            _end(process)

    def forget(self, process: subprocess.Popen) -> None:
        """``process`` ended (its task failed): start another if one is still wanted."""
        with self._lock:
            self._busy.discard(process)
            self._import_envs.pop(process, None)
            self._top_up()
            self._returned.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed, self._remaining = True, 0
            idle, self._idle = self._idle, []
            self._returned.notify_all()
        for process, _ in idle:
            process.kill()
            process.communicate()


def _end(process: subprocess.Popen) -> None:
    """Tell a waiting process that no task comes (it exits at once) and reap it."""
    with contextlib.suppress(OSError):
        process.stdin.close()
    for _ in iter(process.stdout.readline, ""):  # anything it still prints
        pass
    process.wait()


def pool_size(parallelism: int, input_bytes: int | None) -> int:
    """Warm processes for a run: one for input under SMALL_INPUT_BYTES, else up to two side by side
    (``input_bytes`` None: unknown, e.g. remote input)."""
    if input_bytes is not None and input_bytes < SMALL_INPUT_BYTES:
        return 1
    return min(parallelism, 2)


@contextlib.contextmanager
def warm_pool(expected_functions, size: int = 2):
    """Within this context, TensorFlow tasks (of ``expected_functions``, the run's task functions)
    run in up to ``size`` processes that imported TensorFlow ahead of time, the light tasks in one
    process of their own."""
    global _POOLS
    expected = collections.Counter(expected_functions)
    pools = [WarmPool(expected, size), WarmPool(expected, 1, LIGHT_TASKS, LIGHT_PRELOAD, wait_when_full=False)] \
        if size > 0 else []
    previous, _POOLS = _POOLS, pools
    try:
        yield pools
    finally:
        _POOLS = previous
        for pool in pools:
            pool.close()


def start(full_command: list[str], env_vars: dict | None = None) -> TaskRun:
    """Start a task: in a warm process of the pool where it can, else as kfp.local would."""
    env = {**os.environ, **(env_vars or {})}
    warm = _warm_command(full_command)
    function = function_of(full_command)
    pool, taken = None, None
    if warm and _module_sets_once_read_env(warm[1]):
        for pool in _POOLS:
            pool.passed_over(function)
        warm = None
    for pool in _POOLS if warm else ():
        taken = pool.take(function, env)
        if taken is not None:
            break
    if taken is None:
        return TaskRun(subprocess.Popen(full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        bufsize=1, env=env))
    process, reused = taken
    usage = _cpu_and_peak_rss(process.pid) if reused else None
    source, arguments = warm
    process.stdin.write(json.dumps({"source": source, "arguments": arguments, "env": env}) + "\n")
    process.stdin.flush()
    return TaskRun(process, warm=True, reused=reused, function=function, pool=pool,
                   cpu_before=usage[0] if usage else 0.0)


def run_local_subprocess(full_command: list[str], env_vars: dict | None = None) -> int:
    """kfp.local's ``subprocess_task_handler.run_local_subprocess``, TensorFlow tasks in warm processes."""
    task = start(full_command, env_vars)
    for line in task.lines():
        print(line, end="")
    print("\n")
    return task.wait()


def _serve_tasks() -> None:
    """The pool's process: import, say so, then run tasks from stdin one after another as ``sh -ec`` +
    ``python -m executor_main`` would, until stdin ends or a task fails."""
    import importlib

    for module in sys.argv[1:]:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the task imports it again and reports the error itself
            pass
    ready = os.environ.pop(_READY_FD, None)
    if ready is not None:
        os.close(int(ready))
    working_dir, module_path = os.getcwd(), list(sys.path)
    for line in iter(sys.stdin.readline, ""):
        _run_task(json.loads(line))
        os.chdir(working_dir)
        sys.path[:] = module_path  # executor_main puts the component's directory first
        try:
            _reset_tensorflow_state()
        except Exception as err:  # noqa: BLE001 - the task succeeded; only this process is not reused
            print(f"kubetfx-warm-task: not reused ({type(err).__name__}: {err})", flush=True)
            break
        _flush_output()
        print(TASK_ENDS, flush=True)
    _exit_done()


def _run_task(task: dict) -> None:
    import runpy
    import tempfile

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


def _reset_tensorflow_state() -> None:
    """Leave TensorFlow and Keras as a fresh process has them for the next task: the Trainer enables op
    determinism (which changes the Evaluator's float sums in their last bits), TensorFlow's global seed,
    and Keras's global seed and name counters."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf
        from tensorflow.python.framework import config  # disable_op_determinism: not in tf.config's API

        config.disable_op_determinism()
        tf.random.set_seed(None)
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session(free_memory=False)


def _flush_output() -> None:
    import logging

    for handler in logging.root.handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()


def _exit_done() -> None:
    """No more tasks: exit without Python's teardown of TensorFlow, Beam and their threads, which took
    0.4–1.7 s after a task's executor output was written."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _serve_tasks()
