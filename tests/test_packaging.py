"""The installed package matches the tree: every sub-package ships in a wheel/image build."""

import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_directory_is_listed_in_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        setuptools = tomllib.load(handle)["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, directory in setuptools["package-dir"].items():
        for base, dirs, files in os.walk(os.path.join(ROOT, directory)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                relative = os.path.relpath(base, os.path.join(ROOT, directory))
                found.add(package if relative == "." else f"{package}.{relative.replace(os.sep, '.')}")
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"


# Not pipeline steps: common/ and the libraries several components share (no component.py, no executor.py),
# and the predictor (a KServe server).
NOT_COMPONENTS = ("common", "data_validation", "transform_output", "tuning", "predictor", "__pycache__")


def test_components_follow_the_component_executor_split():
    components = os.path.join(ROOT, "components")
    for name in sorted(os.listdir(components)):
        path = os.path.join(components, name)
        if not os.path.isdir(path) or name in NOT_COMPONENTS:
            continue
        assert os.path.isfile(os.path.join(path, "component.py")), name
        assert os.path.isfile(os.path.join(path, "executor.py")), name
        with open(os.path.join(path, "component.py")) as handle:
            source = handle.read()
        assert "install_kfp_package=False" in source and "base_image=COMPONENT_IMAGE" in source, name
