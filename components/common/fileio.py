"""Atomic writes: an artifact is either complete or absent, never half-written."""

import contextlib
import os
import shutil
import uuid


def _temp_sibling(path: str) -> str:
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")


def temp_sibling(path: str) -> str:
    """A hidden, unique name beside ``path`` to write to before renaming (streams written in pieces)."""
    return _temp_sibling(path)


@contextlib.contextmanager
def atomic_directory(final_path: str):
    """Yield a temporary directory that is renamed to ``final_path`` on success.

    On any exception the temporary directory is removed and ``final_path`` is
    left as it was. An existing *empty* ``final_path`` (KFP sometimes creates
    one) is replaced; a non-empty one is an error, so nothing is overwritten.
    """
    final_path = os.path.abspath(final_path)
    os.makedirs(os.path.dirname(final_path), exist_ok=True)
    temp_path = _temp_sibling(final_path)
    os.makedirs(temp_path)
    try:
        yield temp_path
        if os.path.isdir(final_path) and not os.listdir(final_path):
            os.rmdir(final_path)
        elif os.path.lexists(final_path):
            raise FileExistsError(f"{final_path} already exists and is not empty; refusing to overwrite it")
        os.rename(temp_path, final_path)
    except BaseException:
        shutil.rmtree(temp_path, ignore_errors=True)
        raise


def atomic_write(path: str, data: bytes | str) -> None:
    """Write a file via a temporary sibling and a rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    temp_path = _temp_sibling(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with open(temp_path, mode) as handle:
            handle.write(data)
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp_path)
        raise
