"""Test suites that need more than `make test` has (containers, a cluster) run only when their make target asks."""

import os

import pytest


def skip_folder_unless(items, env: str, folder: str, target: str) -> None:
    """Skip every collected test under ``tests/<folder>/`` unless ``$env`` is 1 (``make <target>`` sets it)."""
    if os.environ.get(env) == "1":
        return
    skip = pytest.mark.skip(reason=f"run `make {target}` (sets {env}=1)")
    for item in items:
        if f"{os.sep}{folder}{os.sep}" in str(item.fspath):
            item.add_marker(skip)
