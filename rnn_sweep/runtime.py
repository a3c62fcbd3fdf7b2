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
    """Versions of Python, the platform and the numerical packages, for run records.

    Read from the installed distributions' metadata: importing pandas just to
    ask its version would cost a single run ~0.35 s.
    """
    from importlib import metadata

    from rnn_sweep import __version__

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "rnn_sweep": __version__}
    for name, dists in (("numpy", ("numpy",)), ("tensorflow", ("tensorflow-cpu", "tensorflow")),
                        ("keras", ("keras",)), ("pandas", ("pandas",))):
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out
