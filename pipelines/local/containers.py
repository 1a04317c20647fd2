"""Run a compiled pipeline with every task in its own container: kfp.local's DockerRunner, made safe.

The containerised twin of the embedded default: the same KFP IR YAML a cluster runs, each
task in the component image (``images/images.env``) through a Docker API — Docker's, or
podman's (``podman system service``). Two things kfp 2.17.3's DockerRunner gets wrong are
fixed here:

* it starts task containers with ``auto_remove=True`` and reads the exit code afterwards;
  podman (and a fast Docker) has deleted the container by then, and kfp reports a FAILED
  task as SUCCESS. We keep each container until its exit code is read, then remove it.
* it pulls an image it does not find; with no registry that fails with a long API error.
  We say which image is missing and how to build it.

Only the pipeline root is bind-mounted by kfp; inputs and the model repository must be
mounted too (``mounts``) at the same paths. Our image runs as uid 1000, so the directories
tasks write to are made writable for it.
"""

import dataclasses
import os

from kubetfx.components.common.errors import ConfigError

CONTAINER_USER_WRITABLE = 0o777
CONTAINER_UID = 1000  # the image's USER (images/component/Dockerfile)


@dataclasses.dataclass
class TaskContainer:
    """One task container that ran: what it ran and how it ended."""

    image: str
    command: list
    exit_code: int
    container_id: str


# Every container this process ran, in order (the CLI summary and the end-to-end test read it).
CONTAINERS: list[TaskContainer] = []


def docker_client():
    """A Docker API client (``DOCKER_HOST`` or the default socket), or a one-line error saying how to get one."""
    try:
        import docker
    except ImportError:
        raise ConfigError("running tasks in containers needs the `docker` Python package: pip install docker") \
            from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as err:  # DockerException, connection refused, missing socket
        host = os.environ.get("DOCKER_HOST", "the default Docker socket")
        raise ConfigError(f"no Docker API at {host} ({type(err).__name__}): start Docker, or podman's API with "
                          "`podman system service --time=0 unix:///tmp/podman.sock &` and "
                          "DOCKER_HOST=unix:///tmp/podman.sock") from None
    return client


def run_task_container(client, image: str, command: list, volumes: dict, **container_run_args) -> int:
    """Run one task to completion and return its real exit code (replaces kfp's run_docker_container)."""
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ConfigError(f"image {image} is not on this machine: build it with `make image` "
                          "(or pull it) before running tasks in containers") from None
    container_run_args.pop("auto_remove", None)
    container = client.containers.run(image=image, command=command, detach=True, stdout=True, stderr=True,
                                      volumes=volumes, auto_remove=False, **container_run_args)
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        exit_code = int(container.wait()["StatusCode"])
    finally:
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass  # already gone: the exit code was read first, which is what matters
    CONTAINERS.append(TaskContainer(image, list(command), exit_code, container.id))
    return exit_code


def _install_fix() -> None:
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = run_task_container


def check_reachable(path: str) -> None:
    """The container's uid must be able to walk down to ``path``: say which directory stops it."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent):
        info = os.stat(parent)
        if info.st_uid != CONTAINER_UID and not info.st_mode & 0o001:
            raise ConfigError(f"the containers' user (uid {CONTAINER_UID}) cannot reach {path}: {parent} is mode "
                              f"{info.st_mode & 0o777:o}; use a directory others may enter (e.g. under the project), "
                              f"or chmod o+x {parent}")
        parent = os.path.dirname(parent)


def make_runner(mounts: list[str], writable: list[str]):
    """A kfp.local DockerRunner that also mounts ``mounts`` (same path inside) and can write to ``writable``."""
    from docker.types import Mount
    from kfp import local

    docker_client().close()
    _install_fix()
    for directory in writable:
        os.makedirs(directory, exist_ok=True)
        check_reachable(directory)
        os.chmod(directory, CONTAINER_USER_WRITABLE)
    bind_mounts = [Mount(target=path, source=path, type="bind") for path in sorted(set(map(os.path.abspath, mounts)))]
    return local.DockerRunner(mounts=bind_mounts)
