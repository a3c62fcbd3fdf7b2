"""Importing and configuring TensorFlow once per process, quietly (and other large imports)."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import platform
import sys
import tempfile
import time

# Set this (or run with hydra.verbose=true) to see TensorFlow's own start-up lines.
VERBOSE_ENV = "RNN_SWEEP_VERBOSE"
IMPORT_SECONDS: dict[str, float] = {}  # {"tensorflow": s} once this process imported it here


def verbose() -> bool:
    """Whether the user asked for TensorFlow's native log lines (RNN_SWEEP_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _import_tensorflow_quietly():
    """``import tensorflow`` with the C++ start-up banner hidden, unless verbose.

    TensorFlow's native code prints "All log messages before absl::InitializeLog()"
    and the oneDNN notice straight to file descriptor 2 while it loads, before
    TF_CPP_MIN_LOG_LEVEL is read, so the variable cannot hide them. We point fd 2
    at a temporary file for the import only; if the import fails, what it wrote is
    replayed to the real stderr so no error is lost (not when it was interrupted:
    Ctrl-C during the import prints the command's one line, nothing else).
    """
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    if verbose():
        return _import_tensorflow_without_keras()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            tf = _import_tensorflow_without_keras()
        except Exception:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        # (Interrupted -- KeyboardInterrupt, SystemExit -- the start-up lines are not an error:
        # they stay hidden, and the command prints its one line.)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector paused while a large library imports; what it loaded is frozen.

    Importing TensorFlow creates ~390k objects the collector tracks (modules,
    functions, classes), nearly all alive until the process ends. With the
    collector on, that growing heap triggers full collections again and again
    during the import: 1.57 s, or 1.26 s with it paused (2-core dev VM). ``gc.freeze()``
    afterwards moves those objects to the permanent generation, so the full
    collections that later run while a program traces skip them (first epoch +
    evaluation of a single run: 1.34 s -> 1.19 s). The import leaves ~1.3k
    objects of cyclic garbage, which the freeze keeps (well under 1 MB). The
    collector's previous state (on or off) is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


# ``import tensorflow`` ends with ``importlib.import_module("keras.src.optimizers")``
# inside ``try/except ImportError`` ("so that registration of optimizers in the
# SavedModel registry" happens at load time). That loads all of Keras 3, and
# through keras.src.visualization matplotlib: 0.65-0.7 s of the 2.2 s import on
# the 2-core dev VM, paid by every process and worker, although the scratch
# backend never touches Keras and rnn-sweep saves no SavedModel.
_EAGER_KERAS = "keras.src.optimizers"


def _import_tensorflow_without_keras():
    """``import tensorflow`` without its eager Keras load; Keras still imports on first use.

    A ``None`` in ``sys.modules`` makes that one import raise ImportError before any
    parent package loads, which TensorFlow's ``except`` swallows; the entry is removed
    right after, so ``import keras`` (the keras backends, ``tf.keras``) works as usual.
    When Keras is already loaded nothing is blocked.
    """
    block = "keras" not in sys.modules and _EAGER_KERAS not in sys.modules
    if block:
        sys.modules[_EAGER_KERAS] = None
    try:
        with collector_paused():
            import tensorflow as tf
    finally:
        if block and sys.modules.get(_EAGER_KERAS, 0) is None:
            del sys.modules[_EAGER_KERAS]
    return tf


AUTO_THREADS = 1  # intra-op threads for threads=0 (see import_tf)

# XLA's CPU backend optimisation level (LLVM). Level 1 compiles each program ~25% faster than
# the default (d=16: TF-style 0.75 -> 0.54 s, true BPTT 0.82 -> 0.71 s) and its programs run as
# fast or faster (warm TF-style epoch, K=60, 1 thread, d=2/8/32: 0.22/0.70/1.97 s vs
# 0.25/0.75/2.11 s; benchmarks/compile_cost.py, 2026-12-06). A sweep compiles a program per
# state size and style, so compiling is a real share of it. A level the user sets in XLA_FLAGS wins.
XLA_OPT_FLAG = "--xla_backend_optimization_level"
XLA_OPT_LEVEL = 1


def _xla_flags() -> None:
    """Add :data:`XLA_OPT_FLAG` = :data:`XLA_OPT_LEVEL` to XLA_FLAGS unless the user set it
    (XLA reads the variable when it first compiles, so this must run before that)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if XLA_OPT_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_OPT_FLAG}={XLA_OPT_LEVEL}".strip()


def import_tf(threads: int = 0):
    """Import TensorFlow quietly, deterministic, with ``threads`` intra-op threads.

    ``threads=0`` means automatic: ``AUTO_THREADS`` = 1. At this project's model
    sizes XLA's CPU kernels are too small to gain from a thread pool and lose to
    its synchronisation: warm 1M-step epoch, 2-core machine, 1 vs 2 threads: d=4 K=3
    0.18 vs 0.32 s, d=32 K=3 1.17 vs 1.51 s, d=128 2.28 vs 2.87 s, d=256 6.59 vs
    6.45 s, true BPTT n=10 d=16 2.26 vs 2.19 s. Cores are better used by running
    packs in parallel (``hydra/launcher=cores``). Thread settings only take effect
    before TensorFlow's runtime starts; a process that already ran TensorFlow
    keeps its first setting.
    """
    threads = threads or AUTO_THREADS
    _xla_flags()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose() else "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    t0 = time.perf_counter()
    first = "tensorflow" not in sys.modules
    tf = _import_tensorflow_quietly()
    if first:
        IMPORT_SECONDS["tensorflow"] = time.perf_counter() - t0
    if not verbose():
        tf.get_logger().setLevel("ERROR")  # retracing and AutoGraph warnings (Python logger)

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        pass  # runtime already initialised in this process (e.g. a reused worker)
    tf.config.experimental.enable_op_determinism()
    return tf


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), None where that cannot be read.

    Lets a run record the whole-process cost (interpreter, Hydra, TensorFlow import,
    compile, training) that a clock started inside ``train()`` cannot see.
    """
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the numerical packages, for run records.

    Read from the installed distributions' metadata: importing pandas just to
    ask its version would cost a single run ~0.35 s. Looked up once per process
    (a sweep records them for every run: ~2 ms each time otherwise).
    """
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
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
    return tuple(out.items())
