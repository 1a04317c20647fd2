"""Run a pipeline on the embedded default: kfp.local's SubprocessRunner and a local root.

KFP's local runner is chatty (it prints every task's full executor input); we
keep the whole log in a file and show a person the task statuses, our error
messages and a summary of where each artifact landed.
"""

import contextlib
import io
import json
import os
import re
import sys
import threading
import time
import warnings

from kubetfx.components.common.errors import user_message
from kubetfx.pipelines.local import scheduler as local_scheduler

# Exit codes: what happened, for a scheduler or CI (the CLI adds 2: a usage/config error before any task ran).
EXIT_PUSHED, EXIT_FAILED, EXIT_NOT_PUSHED = 0, 1, 3

_SHOW = re.compile(r"finished with status")
_ERROR_LINE = re.compile(r"^\s*(kubetfx: .+|[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*)$")
_KFP_LOG_LINE = re.compile(r"^\s*\d\d:\d\d:\d\d\.\d+ - |^\s*\[KFP Executor")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _FilteredStdout(io.TextIOBase):
    """Send everything to the log file, and only the interesting lines to the terminal.

    Tasks may run side by side (local_scheduler): lines are assembled per thread, written whole
    under a lock, and each task's error lines are kept apart (``task_errors``: task -> lines).
    """

    def __init__(self, terminal, log):
        self._terminal, self._log = terminal, log
        self._lock = threading.Lock()
        self._state = threading.local()  # pending: a partial line; in_error: inside a "kubetfx: ..." message
        self.task_errors: dict[str, list[str]] = {}

    def write(self, text: str) -> int:
        state = self._state
        pending = getattr(state, "pending", "") + text
        *lines, state.pending = pending.split("\n")
        if not lines:
            return len(text)
        task = local_scheduler.current_task()
        with self._lock:
            for line in lines:
                self._log.write(line + "\n")
                line = _ANSI.sub("", line)
                in_error = getattr(state, "in_error", False)
                if in_error and (_KFP_LOG_LINE.search(line) or not line.strip()):
                    in_error = False
                errors = self.task_errors.setdefault(task, []) if task else []
                if in_error and line.startswith("  ") and errors:  # a message's details, after its first line
                    errors[-1] += "\n" + line.strip()
                elif task and _ERROR_LINE.match(line):
                    errors.append(line.strip())
                state.in_error = in_error or "kubetfx: " in line
                if _SHOW.search(line):  # task statuses; error messages are printed once, on stderr, at the end
                    self._terminal.write(line.strip() + "\n")
            self._terminal.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._log.flush()
            self._terminal.flush()


def _task_outputs(run_dir: str) -> dict[str, dict]:
    """Task name -> {output name: {"uri", "metadata"}} from kfp.local's executor_output.json files."""
    tasks = {}
    output_files = [(os.path.join(run_dir, task, "executor_output.json"), task) for task in os.listdir(run_dir)]
    for output_file, task in sorted((f for f in output_files if os.path.isfile(f[0])), key=lambda f: os.path.getmtime(f[0])):
        with open(output_file) as handle:
            artifacts = json.load(handle).get("artifacts", {})
        tasks[task] = {name: entry["artifacts"][0] for name, entry in artifacts.items() if entry.get("artifacts")}
    return tasks


def run(entry, root: str = "kubetfx-local", verbose: bool = False, overrides: dict | None = None,
        containers: bool = False, config=None, parallelism: int | None = None) -> int:
    """Run ``entry`` locally under ``root``; print a summary; return an exit code (EXIT_*).

    ``containers``: compile the pipeline (for ``config``) and run that KFP IR YAML with every
    task in its own container from the component image (kfp.local DockerRunner).
    ``parallelism``: tasks at once where the DAG allows (default: local_scheduler's; 1: one at a time).
    """
    from kfp import local

    from kubetfx.pipelines import preflight

    root = os.path.abspath(root)
    pipeline_root = os.path.join(root, "pipeline-root")
    logs_dir = os.path.join(root, "logs")
    arguments = entry.local_arguments(root)
    arguments.update(overrides or {})

    # kfp.local warns that our image and display names are not used locally: expected, not news.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    if containers:
        from kfp import components

        from kubetfx.pipelines.cluster import compiler
        from kubetfx.pipelines.local import containers as container_runner
        from kubetfx.pipelines.config import PipelineConfig

        compiled = compiler.compile_pipeline(entry, config or PipelineConfig(), os.path.join(root, f"{entry.name}.yaml"))
        pipeline_func = components.load_component_from_file(compiled.path)
        arguments = preflight.check(pipeline_func.component_spec.inputs, arguments)
        mounts, writable = _host_paths(arguments)
        runner, runner_name = container_runner.make_runner(mounts, writable + [pipeline_root]), "DockerRunner"
        print(f"Compiled to {_display(compiled.path)}; every task runs in a container")
    else:
        pipeline_func, runner, runner_name = entry.make(), local.SubprocessRunner(use_venv=False), "SubprocessRunner"
        arguments = preflight.check(pipeline_func.component_spec.inputs, arguments)
    os.makedirs(pipeline_root, exist_ok=True)  # only now: a usage or data error leaves nothing behind
    os.makedirs(logs_dir, exist_ok=True)
    local.init(runner=runner, pipeline_root=pipeline_root, raise_on_error=True)
    before = set(os.listdir(pipeline_root))
    log_path = os.path.join(logs_dir, f"{entry.name}-{time.strftime('%Y%m%d-%H%M%S')}.log")
    parallelism = parallelism or local_scheduler.default_parallelism()
    print(f"Running the {entry.name} pipeline locally (kfp.local {runner_name}, "
          f"{'up to ' + str(parallelism) + ' tasks at once' if parallelism > 1 else 'one task at a time'})")
    print(f"  pipeline root: {pipeline_root}")
    print(f"  full log:      {log_path}")
    started = time.time()
    failed = None
    task_errors: dict[str, list[str]] = {}
    with open(log_path, "w") as log:
        real_stdout = sys.stdout
        if not verbose:
            sys.stdout = _FilteredStdout(real_stdout, log)
            task_errors = sys.stdout.task_errors
        try:
            with local_scheduler.concurrent_tasks(parallelism), \
                    _warm_tasks(pipeline_func, containers, parallelism, _local_input_bytes(arguments)):
                pipeline_func(**arguments)
        except RuntimeError as err:  # kfp.local: "Pipeline ... finished with status FAILURE"
            failed = _ANSI.sub("", str(err))
        finally:
            sys.stdout = real_stdout
    elapsed = time.time() - started
    new_runs = sorted(set(os.listdir(pipeline_root)) - before)
    run_dir = os.path.join(pipeline_root, new_runs[-1]) if new_runs else None
    if failed:
        print(f"\nFAILED after {elapsed:.1f} s", flush=True)
        for task, message in _task_errors(log_path, failed, task_errors) or [("the run", failed)]:
            print(user_message(message.removeprefix("kubetfx: "), f"kubetfx: {task} failed: "), file=sys.stderr)
        print(f"  full log: {log_path}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print(f"\nPipeline {entry.name} succeeded in {elapsed:.1f} s. Run directory: {_display(run_dir or pipeline_root)}")
    if containers:
        _print_containers()
    if not run_dir:
        return EXIT_NOT_PUSHED
    tasks = _task_outputs(run_dir)
    print_summary(tasks)
    return EXIT_PUSHED if print_outcome(tasks) else EXIT_NOT_PUSHED


@contextlib.contextmanager
def _warm_tasks(pipeline_func, containers: bool, parallelism: int, input_bytes: int | None):
    """TensorFlow tasks run in processes that imported it while earlier tasks ran, several tasks in turn
    (warm_tasks); KUBETFX_WARM_TASKS=0: every task in a fresh process of its own, as kfp.local runs them."""
    if containers or os.environ.get("KUBETFX_WARM_TASKS", "1") == "0":
        yield
        return
    from kfp.local import subprocess_task_handler

    from kubetfx.pipelines.local import warm_tasks

    executors = pipeline_func.pipeline_spec.deployment_spec["executors"].values()
    functions = [warm_tasks.function_of(list(executor["container"]["args"])) for executor in executors]
    original = subprocess_task_handler.run_local_subprocess
    if original.__module__ == subprocess_task_handler.__name__:  # not wrapped already (e.g. by bench_e2e)
        subprocess_task_handler.run_local_subprocess = warm_tasks.run_local_subprocess
    try:
        with warm_tasks.warm_pool(functions, size=warm_tasks.pool_size(parallelism, input_bytes)):
            yield
    finally:
        subprocess_task_handler.run_local_subprocess = original


def _local_input_bytes(arguments: dict) -> int | None:
    """Bytes of the run's input files on local disk (``input_uri``: file, directory, glob or {SPAN}
    pattern); None when remote, absent or not resolvable (ExampleGen then says why)."""
    from kubetfx.components.common import storage
    from kubetfx.components.common.errors import KubetfxError

    uri = arguments.get("input_uri")
    if not isinstance(uri, str) or "://" in uri:
        return None
    try:
        files, _ = storage.resolve_input(uri)
        return sum(os.path.getsize(path) for path in files)
    except (KubetfxError, OSError):
        return None


def _task_errors(log_path: str, failure: str, errors: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(task, its last error message: first line and details) for each task the failure names: from what
    each task printed (``errors``), else from the task's section of the full log."""
    tasks = re.findall(r"Inner task failed: '([^']+)'", failure) or re.findall(r"Task '([^']+)'", failure)
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            log = _ANSI.sub("", handle.read())
    except OSError:
        log = ""
    found = []
    for task in tasks:
        lines = errors.get(task)
        if not lines:
            start = log.rfind(f"Executing task '{task}'")
            end = log.find(f"Task '{task}' finished with status", start)
            section = log[start: end if end >= 0 else len(log)] if start >= 0 else ""
            lines, previous = [], ""
            for raw in section.splitlines():
                if raw.startswith("  ") and raw.strip() and previous.startswith(("kubetfx: ", "  ")) and lines:
                    lines[-1] += "\n" + raw.strip()
                elif (match := _ERROR_LINE.match(raw)):
                    lines.append(match.group(1).strip())
                previous = raw
        kubetfx = [e for e in lines if e.startswith("kubetfx: ")]
        found.append((task, (kubetfx or lines or ["no error message in its log (see the full log)"])[-1]))
    return found


def _print_containers() -> None:
    from kubetfx.pipelines.local.containers import CONTAINERS

    images = sorted({container.image for container in CONTAINERS})
    print(f"{len(CONTAINERS)} tasks ran in containers from {', '.join(images)}")


def _host_paths(arguments: dict) -> tuple[list[str], list[str]]:
    """Host directories a containerised run must mount: those the path-like arguments name.

    Each absolute path argument is mounted at its nearest existing directory (a ``{SPAN}``
    or glob pattern at the directory above it); ``push_destination`` is created and made
    writable for the image's non-root user.
    """
    mounts, writable = [], []
    for name, value in arguments.items():
        if not isinstance(value, str) or not value.startswith("/"):
            continue
        if name == "push_destination":
            os.makedirs(value, exist_ok=True)
            writable.append(value)
        path = value
        while path != "/" and not os.path.isdir(path):
            path = os.path.dirname(path)
        if path != "/":
            mounts.append(path)
    return mounts, writable


def print_summary(tasks: dict[str, dict]) -> None:
    for task, outputs in tasks.items():
        print(f"\n  {task}")
        for name, artifact in sorted(outputs.items()):
            print(f"    {name:<20} {_display(artifact['uri'])}")
            summary = _one_line(artifact.get("metadata", {}))
            if summary:
                print(f"    {'':<20} {summary}")


def print_outcome(tasks: dict[str, dict]) -> bool:
    """The one thing a person wants to know last: was a model pushed, and why (not). True when pushed."""
    blessings = [(task, outputs["blessing"].get("metadata", {})) for task, outputs in tasks.items()
                 if "blessing" in outputs]
    for task, metadata in blessings:
        verdict = "BLESSED" if metadata.get("blessed") else "NOT BLESSED"
        print(f"\n{task}: {verdict}")
        for reason in metadata.get("reasons") or [metadata.get("reason", "")]:
            if reason:
                print(f"  - {reason}")
    pushed = next((outputs["pushed_model"].get("metadata", {}) for outputs in tasks.values()
                   if "pushed_model" in outputs), None)
    if pushed and pushed.get("pushed"):
        print(f"\nPushed model version {int(pushed['version'])}: {pushed['destination']}")
        return True
    reason = (pushed or {}).get("reason") or "a blessing was negative, so the Pusher did not run"
    print(f"\nNo model pushed: {reason}")
    return False


def _display(path: str) -> str:
    """Relative to the working directory when inside it (shorter), else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _one_line(metadata: dict) -> str:
    """The few metadata facts a person looks for first."""
    parts = []
    if "row_counts" in metadata:
        parts.append("rows " + ", ".join(f"{k}={int(v)}" for k, v in metadata["row_counts"].items()))
    if "features" in metadata:
        parts.append(f"{int(metadata['features'])} features")
    if "anomalies_found" in metadata:
        counts = metadata.get("anomaly_counts", {})
        parts.append(f"anomalies found: {int(metadata['anomalies_found'])}"
                     + (" (" + ", ".join(f"{k}={int(v)}" for k, v in counts.items()) + ")" if counts else ""))
    if metadata.get("tuned") and isinstance(metadata.get("best_values"), dict):
        parts.append("best trial " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in metadata["best_values"].items()))
    if "scored" in metadata and "rows" in metadata:
        parts.append(f"scored {int(metadata['scored'])} of {int(metadata['rows'])} rows"
                     + (f", {int(metadata['rejected'])} rejected" if metadata.get("rejected") else ""))
    if isinstance(metadata.get("metrics"), dict):
        parts.append(", ".join(f"{k}={v:.4g}" for k, v in metadata["metrics"].items() if isinstance(v, (int, float))))
    return "; ".join(parts)
