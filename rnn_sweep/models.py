"""Backends: explicit factory from ``ModelConfig`` to an implementation.

Every backend is *functional*: parameters live in a dict of tensors that the
trainer passes in, so one compiled training loop (``rnn_sweep.engine``) serves
all of them, whatever the truncation style. A backend provides

* ``init_params(seed)`` -> dict of NumPy arrays. Vanilla-RNN backends share the
  canonical article layout, so the same seed gives the same starting weights in
  every backend:  W [2+d, d] (rows: one-hot input, then previous state),
  b [d], U [d, 2], c [2]; Glorot-uniform weights, zero biases.
* ``zero_state(batch)`` -> tuple of state tensors (one for rnn/gru, two for lstm).
* ``unroll(params, x, state)`` with x float32 [B, T, 2] (one-hot inputs) ->
  (logits float32 [B, T, 2], final state tuple). Differentiable in params and x.

``scratch`` lives here; the Keras-cell backends ``static`` and ``dynamic`` (and
the GRU/LSTM parameter layouts) in :mod:`rnn_sweep.keras_backends`; ``keras``,
which additionally trains through ``model.fit`` (``make_epoch_fn``), in
:mod:`rnn_sweep.keras_fit`. Everything is checked against the NumPy oracle
(:mod:`rnn_sweep.oracle`) in tests/test_backends.py.
"""

from __future__ import annotations

import numpy as np

from rnn_sweep.config import ModelConfig

NUM_CLASSES = 2
INIT_STREAM = 2  # the rng stream used for weight initialisation (data uses 0 and 1)


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform, the default initializer of the article's tf.get_variable."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def vanilla_init(seed: int, state_size: int) -> dict[str, np.ndarray]:
    """The article's parameters, seeded: W, b (cell) and U, c (softmax layer)."""
    rng = np.random.default_rng([seed, INIT_STREAM])
    d = state_size
    return {
        "W": glorot_uniform(rng, NUM_CLASSES + d, d),
        "b": np.zeros(d, np.float32),
        "U": glorot_uniform(rng, d, NUM_CLASSES),
        "c": np.zeros(NUM_CLASSES, np.float32),
    }


class ScratchBackend:
    """The article's hand-written cell: S_t = tanh([X_t; S_{t-1}] W + b), P_t = softmax(S_t U + c).

    ``make_variables`` gives the explicit ``tf.Variable`` objects the article
    declares; training reads and writes them around each compiled epoch.
    """

    name = "scratch"
    cell = "rnn"

    def __init__(self, state_size: int):
        self.state_size = state_size

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        return vanilla_init(seed, self.state_size)

    def make_variables(self, seed: int) -> dict:
        import tensorflow as tf

        return {k: tf.Variable(v, name=k) for k, v in self.init_params(seed).items()}

    def zero_state(self, batch: int) -> tuple:
        import tensorflow as tf

        return (tf.zeros([batch, self.state_size], tf.float32),)

    def unroll(self, params: dict, x, state: tuple):
        import tensorflow as tf

        W, b, U, c = params["W"], params["b"], params["U"], params["c"]
        batch, steps = x.shape[0], x.shape[1]
        # [X_t; S_{t-1}] W == X_t W[:2] + S_{t-1} W[2:]; the input part is done for
        # all steps at once (one 2-D matmul instead of T), the recurrence step by step.
        # Plain 2-D matmuls with reshapes compile to fewer, cheaper XLA ops than
        # 3-D einsums (benchmarks/: ~15% faster epochs at the article's setting).
        xw = tf.reshape(tf.matmul(tf.reshape(x, [-1, NUM_CLASSES]), W[:NUM_CLASSES]), [batch, steps, -1]) + b
        w_s = W[NUM_CLASSES:]
        s = state[0]
        outs = []
        for t in range(steps):  # static unroll, as in the article
            s = tf.tanh(xw[:, t] + _small_matmul(s, w_s))
            outs.append(s)
        h = tf.reshape(tf.stack(outs, axis=1), [-1, self.state_size])
        logits = tf.reshape(tf.matmul(h, U) + c, [batch, steps, NUM_CLASSES])
        return logits, (s,)


def _small_matmul(s, w):
    """s [B, d] @ w [d, d]. For tiny d a broadcast multiply + sum fuses into the
    surrounding elementwise XLA kernel, which beats a separate dot call (~15% per
    epoch at d=4); from d ~ 16 on the dot is faster (benchmarks/, notes/perf.md)."""
    import tensorflow as tf

    if w.shape[0] is not None and w.shape[0] <= 8:
        return tf.reduce_sum(s[:, :, None] * w[None], axis=1)
    return tf.matmul(s, w)


def build_backend(model: ModelConfig, state_size: int):
    """Explicit factory: ModelConfig -> backend object (see module docstring).

    Backends (``model.backend``):

    * ``scratch`` -- the article's hand-written cell (:class:`ScratchBackend`), rnn only.
    * ``static`` -- a Keras cell stepped in a Python loop (``static_rnn`` counterpart).
    * ``dynamic`` -- ``keras.layers.RNN``'s symbolic loop (``dynamic_rnn`` counterpart).
    * ``keras`` -- a stateful Keras model trained by ``model.fit`` (:mod:`rnn_sweep.keras_fit`);
      functionally it is the dynamic backend, used for evaluation and tests.

    The Keras-based backends take ``model.cell`` = rnn | gru | lstm.
    """
    if model.backend == "scratch":
        if model.cell != "rnn":
            raise ValueError(f"model.cell={model.cell!r}: the scratch backend only has the vanilla 'rnn' cell")
        return ScratchBackend(state_size)
    if model.cell not in ("rnn", "gru", "lstm"):
        raise ValueError(f"model.cell={model.cell!r} is not available; allowed values are rnn, gru, lstm")
    if model.backend in ("static", "dynamic"):
        from rnn_sweep.keras_backends import DynamicBackend, StaticBackend

        return (StaticBackend if model.backend == "static" else DynamicBackend)(model.cell, state_size)
    if model.backend == "keras":
        from rnn_sweep.keras_fit import KerasFitBackend

        return KerasFitBackend(model.cell, state_size)
    raise ValueError(f"model.backend={model.backend!r} is not available; allowed values are scratch, static, "
                     "dynamic, keras")
