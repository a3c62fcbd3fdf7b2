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
        # [X_t; S_{t-1}] W == X_t W[:2] + S_{t-1} W[2:]; the input part is done for
        # all steps at once (one matmul instead of T), the recurrence step by step.
        xw = tf.einsum("btk,kd->btd", x, W[:NUM_CLASSES]) + b
        w_s = W[NUM_CLASSES:]
        s = state[0]
        outs = []
        for t in range(x.shape[1]):  # static unroll, as in the article
            s = tf.tanh(xw[:, t] + tf.matmul(s, w_s))
            outs.append(s)
        h = tf.stack(outs, axis=1)
        logits = tf.einsum("btd,dk->btk", h, U) + c
        return logits, (s,)


def build_backend(model: ModelConfig, state_size: int):
    """Explicit factory: ModelConfig -> backend object (see module docstring)."""
    if model.backend == "scratch":
        if model.cell != "rnn":
            raise ValueError(f"model.cell={model.cell!r}: the scratch backend only has the vanilla 'rnn' cell")
        return ScratchBackend(state_size)
    raise ValueError(f"model.backend={model.backend!r} is not available; allowed values are scratch")
