"""Importing and configuring TensorFlow once per process."""

from __future__ import annotations

import os
import platform
import sys


def import_tf(threads: int = 0):
    """Import TensorFlow quietly, deterministic, with ``threads`` intra-op threads (0 = default).

    Thread settings only take effect before TensorFlow's runtime starts; a
    process that already ran TensorFlow keeps its first setting.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        except RuntimeError:
            pass  # runtime already initialised in this process (e.g. a reused worker)
    tf.config.experimental.enable_op_determinism()
    return tf


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the numerical packages, for run records."""
    import numpy

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": numpy.__version__}
    for mod in ("tensorflow", "keras", "pandas"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        out[mod] = getattr(m, "__version__", "?")
    try:
        from rnn_sweep import __version__

        out["rnn_sweep"] = __version__
    except ImportError:
        pass
    return out
