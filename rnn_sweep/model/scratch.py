"""The article's hand-written cell as a backend, K replicas at once.

S_t = tanh([X_t; S_{t-1}] W + b), P_t = softmax(S_t U + c), written with a
leading replica axis: replica k's parameters are slice [k] of W [K, 2+d, d],
b [K, d], U [K, d, 2], c [K, 2]; its inputs x[k] [B, T, 2] and state [K, B, d].
Every product is a batched one over k, so replicas never mix (slice k of any
output depends on slice k of the inputs only) and K replicas cost little more
than one: at this model size an epoch is dominated by per-operation overhead,
not arithmetic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rnn_sweep.model.inits import NUM_CLASSES, stacked

# Up to this state size the recurrent product is a broadcast multiply + sum, which
# XLA fuses into the surrounding elementwise kernel; a separate dot call is slower
# there (~15% per epoch at d=4) and faster from d ~ 16 on (benchmarks/bench_backends.py).
FUSED_MATMUL_MAX_D = 8


class ScratchBackend:
    """The article's hand-written vanilla cell (explicit W, b, U, c), replica-stacked."""

    name = "scratch"
    cell = "rnn"

    def __init__(self, state_size: int):
        self.state_size = state_size

    def init_params(self, seeds: Sequence[int]) -> dict[str, np.ndarray]:
        """Replica k starts from :func:`rnn_sweep.model.inits.vanilla_init` (seeds[k])."""
        return stacked("rnn", seeds, self.state_size)

    def zero_state(self, replicas: int, batch: int) -> tuple:
        """(S_{-1},) = zeros [K, B, d]."""
        import tensorflow as tf

        return (tf.zeros([replicas, batch, self.state_size], tf.float32),)

    def unroll(self, params: dict, x, state: tuple):
        """x [K, B, T, 2] one-hot -> (logits [K, B, T, 2], (S_{T-1} [K, B, d],))."""
        import tensorflow as tf

        W, b, U, c = params["W"], params["b"], params["U"], params["c"]
        k, batch, steps = x.shape[0], x.shape[1], x.shape[2]
        d = self.state_size
        # [X_t; S_{t-1}] W == X_t W[:2] + S_{t-1} W[2:]; the input part is done for all
        # steps at once, the recurrence step by step.
        xw = _project(tf.reshape(x, [k, batch * steps, NUM_CLASSES]), W[:, :NUM_CLASSES])
        xw = tf.reshape(xw, [k, batch, steps, d]) + b[:, None, None, :]
        w_s = W[:, NUM_CLASSES:]
        s = state[0]
        outs = []
        for t in range(steps):  # static unroll, as in the article
            s = tf.tanh(xw[:, :, t] + _project(s, w_s))
            outs.append(s)
        h = tf.reshape(tf.stack(outs, axis=2), [k, batch * steps, d])
        logits = tf.reshape(_project(h, U) + c[:, None, :], [k, batch, steps, NUM_CLASSES])
        return logits, (s,)

    def cell_vjp(self, params: dict, x, y, s_prev: tuple, ds: tuple, scale):
        """One cell's loss and its exact gradient, derived by hand (no autodiff).

        x [K, B, 2] one-hot, y int [K, B] targets, s_prev ([K, B, d],) the state entering
        the cell, ds ([K, B, d],) the gradient arriving at its output state from later
        cells; the cell's loss is ``scale`` x the mean over B of its cross-entropy, summed
        over replicas. Returns (per-replica mean cross-entropy [K], {W, b, U, c}
        gradients, (gradient w.r.t. s_prev,)). Equal to TensorFlow's autodiff through
        :meth:`unroll` (tests/test_truncation.py).
        """
        import tensorflow as tf

        W, b, U, c = params["W"], params["b"], params["U"], params["c"]
        (s0,), (g,) = s_prev, ds
        w_s = W[:, NUM_CLASSES:]
        s1 = tf.tanh(_project(x, W[:, :NUM_CLASSES]) + _project(s0, w_s) + b[:, None, :])
        logp = tf.nn.log_softmax(_project(s1, U) + c[:, None, :])
        target = tf.one_hot(y, NUM_CLASSES, dtype=logp.dtype)
        dlogits = (tf.exp(logp) - target) * (scale / float(x.shape[1]))
        da = (g + _project(dlogits, tf.transpose(U, [0, 2, 1]))) * (1.0 - tf.square(s1))
        grads = {"W": tf.concat([_batch_outer(x, da), _batch_outer(s0, da)], axis=1), "b": tf.reduce_sum(da, axis=1),
                 "U": _batch_outer(s1, dlogits), "c": tf.reduce_sum(dlogits, axis=1)}
        step = -tf.reduce_mean(tf.reduce_sum(target * logp, axis=-1), axis=1)
        return step, grads, (_project(da, tf.transpose(w_s, [0, 2, 1])),)


def _batch_outer(a, b):
    """Sum over the batch of outer products: a [K, B, i], b [K, B, o] -> [K, i, o] (a^T b)."""
    import tensorflow as tf

    if a.shape[-1] * b.shape[-1] <= FUSED_MATMUL_MAX_D * NUM_CLASSES:
        return tf.reduce_sum(a[:, :, :, None] * b[:, :, None, :], axis=1)
    return tf.matmul(a, b, transpose_a=True)


def _project(a, w):
    """Batched a [K, M, i] @ w [K, i, o]. With a small inner size i, a broadcast multiply +
    sum fuses into the surrounding elementwise XLA kernels, where a batched dot call is a
    separate, slower kernel (K=8, n=5, d=4: warm epoch 0.72 s -> see benchmarks/bench_pack.py);
    from i ~ 16 on the dot is faster (benchmarks/bench_backends.py)."""
    import tensorflow as tf

    if w.shape[1] <= FUSED_MATMUL_MAX_D:
        return tf.reduce_sum(a[:, :, :, None] * w[:, None], axis=2)
    return tf.matmul(a, w)
