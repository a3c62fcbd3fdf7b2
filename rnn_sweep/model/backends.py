"""Backends: the protocol, and the explicit factory from ``ModelConfig`` to an implementation.

Every functional backend trains a *pack* of K replicas at once: parameters live
in a dict of tensors with a leading replica axis, passed in by the trainer, so
one compiled training loop (:mod:`rnn_sweep.model.engine`) serves all of them,
whatever the truncation style. A backend provides

* ``init_params(seeds)`` -> dict of NumPy arrays [K, ...]; slice k is the seeded
  start of replica k (layouts in :mod:`rnn_sweep.model.inits`; the vanilla-RNN
  backends share the article's layout, so one seed gives every one of them the
  same starting weights).
* ``zero_state(replicas, batch)`` -> tuple of state tensors [K, B, d] (one for
  rnn/gru, two for lstm).
* ``unroll(params, x, state)`` with x float32 [K, B, T, 2] (one-hot inputs) ->
  (logits float32 [K, B, T, 2], final state tuple). Differentiable in params
  and x; slice k of every output depends on slice k of the inputs only.
* optionally a cell-by-cell path: ``cell_step(params, x, state)`` (x float [K, B], the
  input bits -> (logits [K, B, 2], state)), ``cell_vjp(params, x, y, s_prev, ds, scale,
  s_out=None)`` (one cell's losses and exact gradient derived by hand) and
  ``cell_state``/``row_state``, which convert the state between the row layout above
  and the layout the cells step in. TF-style truncation and prediction then step cells
  with these instead of ``unroll`` and autodiff (a smaller program: faster to trace,
  compile and run). Only ``scratch`` has one (batch innermost, [K, d, B]); it is tested
  against autodiff.

``scratch`` lives in :mod:`rnn_sweep.model.scratch`; the Keras-cell backends
``static`` and ``dynamic`` in :mod:`rnn_sweep.model.keras_cells`; ``keras``, which
additionally trains through ``model.fit`` (``make_epoch_fn``), in
:mod:`rnn_sweep.model.keras_fit`. Everything is checked against the NumPy oracle
(:mod:`oracle`) in tests/test_backends.py and tests/test_oracle.py.
"""

from __future__ import annotations

from rnn_sweep.task.config import ModelConfig
from rnn_sweep.model.keras_cells import DynamicBackend, StaticBackend
from rnn_sweep.model.keras_fit import KerasFitBackend
from rnn_sweep.model.scratch import ScratchBackend

__all__ = ["ScratchBackend", "StaticBackend", "DynamicBackend", "KerasFitBackend", "build_backend"]


def build_backend(model: ModelConfig, state_size: int):
    """Explicit factory: ModelConfig -> backend object (see module docstring).

    Backends (``model.backend``):

    * ``scratch`` -- the article's hand-written cell (:class:`ScratchBackend`), rnn only.
    * ``static`` -- a Keras cell stepped in a Python loop (``static_rnn`` counterpart).
    * ``dynamic`` -- ``keras.layers.RNN``'s symbolic loop (``dynamic_rnn`` counterpart).
    * ``keras`` -- a stateful Keras model trained by ``model.fit`` (:mod:`rnn_sweep.model.keras_fit`);
      functionally it is the dynamic backend, used for evaluation and tests.

    The Keras-based backends take ``model.cell`` = rnn | gru | lstm.
    """
    if model.backend == "scratch":
        if model.cell != "rnn":
            raise ValueError(f"model.cell={model.cell!r}: the scratch backend only has the vanilla 'rnn' cell")
        return ScratchBackend(state_size)
    if model.cell not in ("rnn", "gru", "lstm"):
        raise ValueError(f"model.cell={model.cell!r} is not available; allowed values are rnn, gru, lstm")
    factories = {"static": StaticBackend, "dynamic": DynamicBackend, "keras": KerasFitBackend}
    if model.backend not in factories:
        raise ValueError(f"model.backend={model.backend!r} is not available; allowed values are scratch, static, "
                         "dynamic, keras")
    return factories[model.backend](model.cell, state_size)
