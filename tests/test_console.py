"""A quiet console: TensorFlow's native start-up lines are hidden unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOISE = ("absl::InitializeLog", "oneDNN custom operations")
SNIPPET = "from rnn_sweep.run.runtime import import_tf; import_tf(); print('imported')"


def _run(env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "RNN_SWEEP_VERBOSE")}
    return subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True,
                          env={**env, **env_extra}, timeout=120)


@pytest.mark.slow
def test_tensorflow_banner_hidden_by_default_and_back_with_verbose():
    quiet = _run({})
    assert quiet.returncode == 0 and "imported" in quiet.stdout, quiet.stderr
    assert not any(n in quiet.stderr for n in NOISE), quiet.stderr
    loud = _run({"RNN_SWEEP_VERBOSE": "1"})
    assert loud.returncode == 0
    # Proves the check above can fail: the same import does print the banner when verbose.
    assert any(n in loud.stderr for n in NOISE), loud.stderr


def test_failed_import_replays_what_was_hidden(tmp_path):
    # A 'tensorflow' that prints to fd 2 and then fails: its words must reach the user.
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\nos.write(2, b'native loader: libfoo.so missing\\n')\nraise ImportError('broken tf')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("RNN_SWEEP_VERBOSE", None)
    out = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "libfoo.so missing" in out.stderr and "broken tf" in out.stderr


@pytest.mark.slow
def test_a_single_run_prints_no_native_noise_and_times_the_tensorflow_import(tmp_path):
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "RNN_SWEEP_VERBOSE")}
    out = subprocess.run([str(Path(sys.executable).parent / "rnn-sweep"), "data=small", "train.progress=false",
                          "data.length=20000", "data.eval_length=20000", f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not any(n in out.stderr + out.stdout for n in NOISE), out.stderr
    assert "WARNING" not in out.stderr, out.stderr
    timings = json.loads((tmp_path / "run" / "summary.json").read_text())["timings"]
    # The TensorFlow import happens before train() starts its clock; it must still be counted.
    assert timings["tf_import_s"] > 0.5
    assert timings["process_s"] >= timings["tf_import_s"] + timings["total_s"] * 0.5


@pytest.mark.slow
def test_tensorflow_loads_without_keras_and_keras_still_imports_later():
    """``import tensorflow`` eagerly loads all of Keras 3 (~0.7 s); rnn-sweep's import skips
    that one eager load (rnn_sweep.run.runtime), so a scratch run never pays for Keras, and
    ``import keras`` / ``tf.keras`` work as usual afterwards. A plain ``import tensorflow``
    in the same interpreter does load Keras: the first check can fail."""
    code = ("import sys; from rnn_sweep.run.runtime import import_tf; tf = import_tf(); "
            "print('keras' in sys.modules, 'keras.src.optimizers' in sys.modules); "
            "import keras; print(type(keras.optimizers.Adam()).__name__, tf.keras.layers.Dense(2).units)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "Adam", "2"]
    plain = subprocess.run([sys.executable, "-c", "import sys, tensorflow; print('keras' in sys.modules)"],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and plain.stdout.split()[-1] == "True", plain.stderr[-2000:]


def test_collector_paused_restores_the_collector_and_freezes_what_loaded():
    """The collector is off inside, back to its previous state after (also on an error), and
    the objects made inside end up in the permanent generation. Checked against gc's own
    counters, which the helper does not compute."""
    import gc

    from rnn_sweep.run.runtime import collector_paused

    assert gc.isenabled()
    frozen_before = gc.get_freeze_count()
    with collector_paused():
        assert not gc.isenabled()
        made = [[i] for i in range(5000)]  # 5001 new tracked objects
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(made)
    with pytest.raises(ZeroDivisionError):
        with collector_paused():
            1 / 0
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a collector the caller turned off stays off
    finally:
        gc.enable()


@pytest.mark.slow
def test_tensorflow_imports_with_the_collector_paused_and_its_objects_frozen():
    """A fresh process: after import_tf the collector is on again and TensorFlow's objects
    (hundreds of thousands) are frozen; a plain ``import tensorflow`` freezes nothing, so the
    count is the helper's doing."""
    code = ("import gc; from rnn_sweep.run.runtime import import_tf; import_tf(); "
            "print(gc.isenabled(), gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    enabled, frozen = out.stdout.split()
    assert enabled == "True" and int(frozen) > 100_000
    plain = subprocess.run([sys.executable, "-c", "import gc, tensorflow; print(gc.get_freeze_count())"],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and plain.stdout.split()[-1] == "0", plain.stderr[-2000:]
