"""Run the tasks of a pipeline concurrently on the embedded default, as far as the DAG allows.

kfp.local runs a pipeline's tasks one after the other, in a topological order (kfp 2.17's
``enhanced_dag_orchestrator.run_enhanced_dag``), although the compiled pipeline says which tasks
depend on which: on a cluster, the Evaluator and the InfraValidator (both need only the Trainer's
model) run side by side. :func:`concurrent_tasks` makes the local run do the same: a task starts
as soon as every task it depends on (``dependent_tasks``, what Argo waits for on a cluster) has
finished, up to ``parallelism`` at a time. Nothing else changes: the same task executor, the same
conditions (``dsl.If``), the same skipping of tasks whose upstream failed, exit handlers last, and
a failing task still fails the run (after the tasks already running have finished).

kfp.local's logging helpers swap global state per task (``builtins.print`` for indentation, the root
logger's handlers); two tasks at once would leave them swapped. While the scheduler is installed
they are replaced with versions safe for threads. Each task runs on a thread named after it, so a
line it prints can be told apart from another task's (``current_task``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sys
import threading

from kfp.local import logging_utils, status
from kfp.local.orchestrator import dag_orchestrator
from kfp.local.orchestrator import enhanced_dag_orchestrator as kfp_dag
from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
from kfp.pipeline_spec import pipeline_spec_pb2

_ALL_UPSTREAM_COMPLETED = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
_THREAD_PREFIX = "kubetfx-task:"


def default_parallelism() -> int:
    """As many tasks at once as there are CPUs, at most 4 (each TensorFlow task holds ~1 GB)."""
    return max(1, min(os.cpu_count() or 1, 4))


def current_task() -> str | None:
    """The pipeline task the calling thread runs, when it runs one under the scheduler."""
    name = threading.current_thread().name
    return name[len(_THREAD_PREFIX):] if name.startswith(_THREAD_PREFIX) else None


@contextlib.contextmanager
def concurrent_tasks(parallelism: int | None = None):
    """Within this context, kfp.local runs independent tasks concurrently (``parallelism`` >= 2)."""
    parallelism = parallelism or default_parallelism()
    if parallelism < 2:
        yield
        return

    def run_dag(**kwargs):
        return _run_dag(parallelism=parallelism, **kwargs)

    saved = (kfp_dag.run_enhanced_dag, dag_orchestrator.run_dag, logging_utils.local_logger_context,
             logging_utils.indented_print)
    kfp_dag.run_enhanced_dag = run_dag  # execute_task looks it up here too: nested DAGs (dsl.If) included
    dag_orchestrator.run_dag = run_dag  # pipelines without control flow
    logging_utils.local_logger_context = _shared_logger_context
    logging_utils.indented_print = _no_indent
    try:
        yield
    finally:
        (kfp_dag.run_enhanced_dag, dag_orchestrator.run_dag, logging_utils.local_logger_context,
         logging_utils.indented_print) = saved


def _run_dag(pipeline_resource_name, dag_component_spec, executors, components, dag_arguments, pipeline_root,
             runner, unique_pipeline_id, fail_stack, parent_io_store=None, parallelism=2):
    """kfp.local's ``run_enhanced_dag`` with the body's tasks started as their dependencies finish."""
    from kfp.local import io

    io_store = io.IOStore(parent=parent_io_store)
    arguments = OrchestratorUtils.join_user_inputs_and_defaults(dag_arguments=dag_arguments,
                                                                dag_inputs_spec=dag_component_spec.input_definitions)
    for key, value in arguments.items():
        io_store.put_parent_input(key, value)
    common = dict(pipeline_resource_name=pipeline_resource_name, components=components, executors=executors,
                  io_store=io_store, pipeline_root=pipeline_root, runner=runner,
                  unique_pipeline_id=unique_pipeline_id, fail_stack=fail_stack)

    exit_tasks, body = [], {}
    for name, spec in dag_component_spec.dag.tasks.items():
        if spec.trigger_policy.strategy == _ALL_UPSTREAM_COMPLETED and kfp_dag._has_task_final_status_input(spec):
            exit_tasks.append((name, spec))
        else:
            body[name] = spec
    body_failed = _run_body(body, common, parallelism)

    exit_failed = False
    for name, spec in exit_tasks:  # after the body, whatever its outcome (dsl.ExitHandler)
        exit_failed |= not _record(name, *kfp_dag.execute_task(task_name=name, task_spec=spec, **common), common)
    if body_failed or exit_failed:
        return {}, status.Status.FAILURE
    return OrchestratorUtils.get_dag_outputs(dag_outputs_spec=dag_component_spec.dag.outputs,
                                             io_store=io_store), status.Status.SUCCESS


def _run_body(body: dict, common: dict, parallelism: int) -> bool:
    """Run ``body``'s tasks, each once its dependencies are done; True when one failed (or was skipped for it)."""
    io_store = common["io_store"]
    pending, finished, failed = dict(body), set(), set()
    running: dict[concurrent.futures.Future, str] = {}
    error: BaseException | None = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallelism) as pool:
        while pending or running:
            progress = True
            while progress and error is None:  # a skipped task may make others ready (or skipped) at once
                progress = False
                for name in sorted(pending):
                    spec = pending[name]
                    upstream = set(spec.dependent_tasks) & set(body)
                    if not upstream <= finished:
                        continue
                    del pending[name]
                    progress = True
                    if upstream & failed and spec.trigger_policy.strategy != _ALL_UPSTREAM_COMPLETED:
                        logging.info(f"Skipping task {name}: upstream task(s) {sorted(upstream & failed)} failed.")
                        io_store.put_task_status(name, "FAILED")
                        failed.add(name)
                        finished.add(name)
                    elif spec.trigger_policy.condition and not kfp_dag.ConditionEvaluator().evaluate_condition(
                            spec.trigger_policy.condition, io_store):
                        logging.info(f"Skipping conditional task {name} (condition evaluated to False)")
                        finished.add(name)
                    else:
                        running[pool.submit(_run_task, name, spec, common)] = name
            if error is not None:
                pending.clear()
            if not running:
                if pending:  # nothing runs and nothing can start: a cycle kfp's compiler would not emit
                    raise RuntimeError(f"tasks {sorted(pending)} wait on each other")
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                finished.add(name)
                try:
                    succeeded = future.result()
                except BaseException as err:  # noqa: BLE001 - raise_on_error: re-raised once the others finish
                    error = error or err
                    succeeded = False
                if not succeeded:
                    failed.add(name)
    if error is not None:
        raise error
    return bool(failed)


def _run_task(name: str, spec, common: dict) -> bool:
    thread = threading.current_thread()
    thread.name = _THREAD_PREFIX + name
    try:
        if spec.WhichOneof("iterator") and kfp_dag._has_valid_iterator(spec):
            failed = kfp_dag._run_parallel_for_task(task_name=name, task_spec=spec,
                                                    parallel_executor=kfp_dag.ParallelExecutor(), **common)
            return not failed
        return _record(name, *kfp_dag.execute_task(task_name=name, task_spec=spec, **common), common)
    finally:
        thread.name = "kubetfx-idle"


def _record(name: str, outputs: dict, task_status, common: dict) -> bool:
    """Store a finished task's status and outputs as kfp.local does; True when it succeeded."""
    io_store = common["io_store"]
    succeeded = task_status == status.Status.SUCCESS
    io_store.put_task_status(name, "SUCCEEDED" if succeeded else "FAILED")
    if not succeeded:
        common["fail_stack"].append(name)
        return False
    for key, output in outputs.items():
        io_store.put_task_output(name, key, output)
    return True


_LOGGER_LOCK = threading.Lock()
_LOGGER_USERS = 0
_LOGGER_SAVED: tuple | None = None


@contextlib.contextmanager
def _shared_logger_context():
    """kfp's ``local_logger_context`` (root logger -> stdout, INFO, kfp's format), entered by several
    tasks at once: the first one in installs it, the last one out restores what was there."""
    global _LOGGER_USERS, _LOGGER_SAVED
    logger = logging.getLogger()
    with _LOGGER_LOCK:
        if _LOGGER_USERS == 0:
            _LOGGER_SAVED = (logger.level, logger.handlers[:])
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging_utils.MillisecondFormatter(fmt="%(asctime)s - %(levelname)s - %(message)s",
                                                                    datefmt="%H:%M:%S.%f"))
            logger.handlers.clear()
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        _LOGGER_USERS += 1
    try:
        yield
    finally:
        with _LOGGER_LOCK:
            _LOGGER_USERS -= 1
            if _LOGGER_USERS == 0:
                level, handlers = _LOGGER_SAVED
                logger.setLevel(level)
                logger.handlers[:] = handlers


@contextlib.contextmanager
def _no_indent(num_spaces: int = 4):
    """kfp indents a task's streamed log by swapping ``builtins.print``; with tasks side by side it would stay
    swapped, so the log is not indented."""
    yield
