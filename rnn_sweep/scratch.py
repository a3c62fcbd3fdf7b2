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

from rnn_sweep.inits import NUM_CLASSES, stacked

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
        """Replica k starts from :func:`rnn_sweep.inits.vanilla_init` (seeds[k])."""
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


def _project(a, w):
    """Batched a [K, M, i] @ w [K, i, o]. With a small inner size i, a broadcast multiply +
    sum fuses into the surrounding elementwise XLA kernels, where a batched dot call is a
    separate, slower kernel (K=8, n=5, d=4: warm epoch 0.72 s -> see benchmarks/bench_pack.py);
    from i ~ 16 on the dot is faster (benchmarks/bench_backends.py)."""
    import tensorflow as tf

    if w.shape[1] <= FUSED_MATMUL_MAX_D:
        return tf.reduce_sum(a[:, :, :, None] * w[:, None], axis=2)
    return tf.matmul(a, w)
