"""``tfx.dsl.io.fileio`` for module files: TFX's file functions over ``tf.io.gfile`` (local paths, gs://, s3://).

Same names and arguments as TFX's ``fileio`` module; TensorFlow is imported on the first call, not here.
"""

from __future__ import annotations


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def open(path, mode: str = "r"):  # noqa: A001 - TFX's name
    """A file object for ``path`` (``tf.io.gfile.GFile``)."""
    return _gfile().GFile(path, mode)


def copy(src, dst, overwrite: bool = False) -> None:
    _gfile().copy(src, dst, overwrite=overwrite)


def exists(path) -> bool:
    return _gfile().exists(path)


def glob(pattern) -> list:
    return _gfile().glob(pattern)


def isdir(path) -> bool:
    return _gfile().isdir(path)


def listdir(path) -> list:
    return _gfile().listdir(path)


def makedirs(path) -> None:
    _gfile().makedirs(path)


def mkdir(path) -> None:
    _gfile().mkdir(path)


def remove(path) -> None:
    _gfile().remove(path)


def rename(src, dst, overwrite: bool = False) -> None:
    _gfile().rename(src, dst, overwrite=overwrite)


def rmtree(path) -> None:
    _gfile().rmtree(path)


def stat(path):
    return _gfile().stat(path)


def walk(top, topdown: bool = True, onerror=None):
    return _gfile().walk(top, topdown=topdown, onerror=onerror)


__all__ = ["copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove", "rename", "rmtree",
           "stat", "walk"]
