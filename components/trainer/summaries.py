"""Scalar TensorBoard summaries without the ``tensorboard`` package.

TensorFlow 2.21 no longer depends on ``tensorboard``; without it
``tf.summary.scalar`` raises TBNotInstalledError, which breaks
``keras.callbacks.TensorBoard`` (Keras 3 and tf_keras alike) on its first epoch.
The event-file writer lives in TensorFlow itself, so a scalar is just
``tf.summary.write`` with the "scalars" plugin metadata — exactly what
tensorboard's own implementation writes. ``ensure_scalar_summaries()`` installs
that as ``tf.summary.scalar`` only when tensorboard is missing; with tensorboard
installed it changes nothing.
"""

from __future__ import annotations

import importlib.util

_INSTALLED = False


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def scalar(name, data, step=None, description=None):
    """Drop-in for ``tf.summary.scalar`` (same event format as tensorboard's summary_v2)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars", content=b""))
    if description:
        metadata.summary_description = description
    with tf.summary.experimental.summary_scope(name, "scalar_summary", values=[data, step]) as (tag, _):
        return tf.summary.write(tag=tag, tensor=tf.cast(data, tf.float32), step=step, metadata=metadata)


def ensure_scalar_summaries() -> bool:
    """Make ``tf.summary.scalar`` work; returns True when the fallback was installed."""
    global _INSTALLED
    if _INSTALLED or tensorboard_available():
        return _INSTALLED
    import sys

    import tensorflow  # noqa: F401 - the namespaces below exist once TensorFlow is imported
    from tensorflow.python.summary import tb_summary

    # The tf.summary namespaces re-export tb_summary.scalar; `import tensorflow.summary` can
    # create a fresh namespace module later, so patch the source and every namespace.
    tb_summary.scalar = scalar
    for name in ("tensorflow.summary", "tensorflow.compat.v2.summary"):
        __import__(name)
    for name, module in list(sys.modules.items()):
        if name.startswith("tensorflow") and name.endswith(".summary") and \
                getattr(module, "scalar", None) is not None and module is not tb_summary:
            module.scalar = scalar
    tensorflow.summary.scalar = scalar
    _INSTALLED = True
    return True
