"""The image recipe and the one place that names images (no container engine needed; `make e2e` builds and runs it)."""

import os
import re
import shutil
import stat
import subprocess
import tempfile
import tomllib

import pytest

from kubetfx.components.common import image
from kubetfx.pipelines.local import containers as container_runner
from kubetfx.pipelines.local import runner as local_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, "images", "component", "Dockerfile")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) per Dockerfile instruction, continuation lines joined."""
    with open(DOCKERFILE) as handle:
        text = re.sub(r"\\\n", " ", handle.read())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def stages() -> list[list[tuple[str, str]]]:
    """The instructions per build stage (each from its FROM); what comes before the first FROM is left out."""
    found = []
    for op, rest in instructions():
        if op == "FROM":
            found.append([])
        if found:
            found[-1].append((op, rest))
    return found


def index_of(predicate, steps=None) -> int:
    return next(i for i, step in enumerate(instructions() if steps is None else steps) if predicate(*step))


def test_image_tags_follow_the_package_version():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    names = image._read_env_file(image.IMAGES_ENV)
    assert names[image.CPU].endswith(f":{version}") and names[image.GPU].endswith(f":{version}-gpu")


def test_the_image_names_come_from_images_env_and_the_environment_overrides(monkeypatch):
    names = image._read_env_file(image.IMAGES_ENV)
    monkeypatch.delenv(image.CPU, raising=False)
    monkeypatch.delenv(image.GPU, raising=False)
    assert image.component_image() == names[image.CPU] and image.component_image(gpu=True) == names[image.GPU]
    monkeypatch.setenv(image.CPU, "registry.example.com/kubetfx:mine")
    assert image.component_image() == "registry.example.com/kubetfx:mine"


def test_dependencies_are_a_layer_of_their_own_before_the_source():
    steps = stages()[-1]  # the image itself (the stage before compiles kubetfx's C into a wheel)
    install_deps = index_of(lambda op, rest: op == "RUN" and "-r /tmp/requirements.txt" in rest, steps)
    copy_source = index_of(lambda op, rest: op == "COPY" and rest.startswith("--from=native"), steps)
    assert install_deps < copy_source
    copied_before = " ".join(rest for op, rest in steps[:install_deps] if op == "COPY")
    assert "components" not in copied_before and "pipelines" not in copied_before and "--from" not in copied_before
    # Build arguments that change per build (revision, image name) come after the 3 GB layer: an ARG busts
    # the cache of every RUN after it.
    for argument in ("REVISION", "IMAGE", "VERSION"):
        declared = index_of(lambda op, rest, a=argument: op == "ARG" and rest.split("=")[0] == a, steps)
        assert declared > install_deps, f"ARG {argument} before the dependency layer"


def test_the_c_fill_is_compiled_in_a_stage_of_its_own_and_the_image_installs_its_wheel():
    native, image_steps = stages()
    assert native[0] == ("FROM", "${BASE} AS native")
    assert any(op == "RUN" and "apt-get install" in rest and "gcc" in rest for op, rest in native)
    assert any(op == "RUN" and "pip wheel --no-deps" in rest for op, rest in native)
    runs = " ".join(rest for op, rest in image_steps if op == "RUN")
    assert "gcc" not in runs and "apt-get" not in runs  # no compiler in the image
    assert "pip install --no-deps /tmp/wheels/*.whl" in runs


def test_the_image_runs_as_a_non_root_user_from_a_configurable_base():
    steps = instructions()
    assert steps[0] == ("ARG", "BASE=python:3.11-slim") and stages()[-1][0] == ("FROM", "${BASE}")
    users = [rest for op, rest in steps if op == "USER"]
    assert users and users[-1] == str(container_runner.CONTAINER_UID)
    labels = " ".join(rest for op, rest in steps if op == "LABEL")
    assert "org.opencontainers.image.source" in labels and "org.opencontainers.image.version" in labels


def test_the_build_context_excludes_the_virtualenv_and_local_runs():
    with open(os.path.join(ROOT, ".dockerignore")) as handle:
        rules = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # everything is excluded unless listed
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "components", "pipelines", "images/component/requirements.py"}
    copied = {part for op, rest in instructions() if op == "COPY" and not rest.startswith("--from=")
              for part in rest.split()[:-1]}
    assert copied <= allowed, f"the Dockerfile copies what .dockerignore excludes: {copied - allowed}"


def test_the_gpu_variant_installs_tensorflow_with_cuda():
    import importlib.util

    spec = importlib.util.spec_from_file_location("requirements", os.path.join(ROOT, "images", "component",
                                                                                "requirements.py"))
    requirements = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(requirements)
    pyproject = os.path.join(ROOT, "pyproject.toml")
    cpu, gpu = requirements.requirements(pyproject), requirements.requirements(pyproject, "and-cuda")
    (tensorflow,) = [r for r in cpu if r.startswith("tensorflow==")]
    assert f"tensorflow[and-cuda]=={tensorflow.split('==')[1]}" in gpu
    assert [r for r in gpu if "and-cuda" not in r] == [r for r in cpu if r != tensorflow]  # nothing else changes


def test_make_image_says_why_when_no_engine_works(tmp_path):
    """No docker, podman or buildah on PATH: one clear message per engine, exit 1."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname",):
        os.symlink(subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True)
                   .stdout.strip(), tools / tool)
    result = subprocess.run(["/bin/bash", os.path.join(ROOT, "images", "build.sh")], capture_output=True, text=True,
                            env={"PATH": str(tools)})
    assert result.returncode == 1
    assert "no container engine works here" in result.stderr
    assert "docker: not installed" in result.stderr and "podman: not installed" in result.stderr
    assert "apt-get install -y podman buildah runc debootstrap" in result.stderr


def test_containerised_runs_mount_what_the_arguments_name(tmp_path):
    data = tmp_path / "data" / "penguins"
    data.mkdir(parents=True)
    arguments = {"input_uri": f"{data}/span-{{SPAN}}/*.csv", "push_destination": str(tmp_path / "repo"),
                 "model_name": "penguin", "module_file": "", "hyperparameters": {}}
    mounts, writable = local_runner._host_paths(arguments)
    assert mounts == [str(data), str(tmp_path / "repo")] and writable == [str(tmp_path / "repo")]
    assert (tmp_path / "repo").is_dir()


def test_a_directory_the_container_user_cannot_reach_is_named():
    base = tempfile.mkdtemp()  # under /tmp (pytest's own tmp dirs are 700 themselves)
    try:
        os.chmod(base, 0o755)
        private = os.path.join(base, "private")
        os.makedirs(os.path.join(private, "root"))
        os.chmod(private, stat.S_IRWXU)  # 700, owned by this user, not the container's uid
        with pytest.raises(container_runner.ConfigError, match=f"{private} is mode 700"):
            container_runner.check_reachable(os.path.join(private, "root"))
        os.chmod(private, 0o755)
        container_runner.check_reachable(os.path.join(private, "root"))
    finally:
        shutil.rmtree(base)
