"""Test folders that run only when asked (``make e2e``, ``make test-engines``): skipped by ``make test``."""

import os

import pytest


def skip_unless(items, env_var: str, folder: str, reason: str) -> None:
    """Mark the collected tests under ``tests/<folder>/`` skipped unless ``env_var`` is "1"."""
    if os.environ.get(env_var) == "1":
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if os.sep + folder + os.sep in str(item.fspath):
            item.add_marker(marker)
