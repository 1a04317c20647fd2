"""The containerised end-to-end check (`make e2e`): skipped by `make test`, which runs no containers.

It needs the component image (`make image` builds it) and a Docker API: a Docker engine,
DOCKER_HOST, or podman, whose API service it starts on a private socket for the session.
"""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from helpers.opt_in import skip_unless

E2E_ENV = "KUBETFX_E2E"


def pytest_collection_modifyitems(config, items):
    skip_unless(items, E2E_ENV, "e2e", "containerised end-to-end check: run `make e2e` (sets KUBETFX_E2E=1)")


def _docker_api_answers() -> bool:
    import docker

    try:
        client = docker.from_env()
        client.ping()
        client.close()
        return True
    except Exception:  # DockerException: no socket, refused, bad DOCKER_HOST
        return False


@pytest.fixture(scope="session")
def docker_api():
    """DOCKER_HOST of a Docker API that answers; podman's, started here, when nothing else does."""
    if _docker_api_answers():
        yield os.environ.get("DOCKER_HOST", "default")
        return
    podman = shutil.which("podman")
    if not podman:
        pytest.fail("no Docker API answers and podman is not installed (apt-get install -y podman buildah runc)")
    socket_dir = tempfile.mkdtemp(prefix="kubetfx-podman-")
    socket = f"unix://{socket_dir}/podman.sock"
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", os.path.join(os.path.dirname(__file__), "..", "..", "images", "podman",
                                                   "containers.conf"))
    os.environ["CONTAINERS_CONF"] = env["CONTAINERS_CONF"]
    service = subprocess.Popen([podman, "system", "service", "--time=0", socket], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DOCKER_HOST"] = socket
    deadline = time.time() + 30
    while not _docker_api_answers():
        if service.poll() is not None or time.time() > deadline:
            service.kill()
            pytest.fail(f"podman system service did not start on {socket}")
        time.sleep(0.2)
    yield socket
    service.terminate()  # its own PID, not a wrapper shell's
    try:
        service.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.kill()
    shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def component_image(docker_api) -> str:
    """The image `make image` built (images/images.env names it)."""
    import docker

    from kubetfx.components.common.image import component_image as configured_image

    name = configured_image()
    try:
        docker.from_env().images.get(name)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {name} is not built: run `make image` (make e2e does it first)")
    return name
