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

    # -- one cell at a time, batch innermost ------------------------------------------------
    # TF-style windows, true BPTT's trajectories and prediction step one cell at a time.
    # There the state is kept as [K, d, B] (the batch, 200 wide, innermost) instead of
    # [K, B, d]: with d innermost, the elementwise kernels work on vectors d long. Measured
    # on a warm TF-style epoch (K = 60, n = 5, the same process): 2.1-2.8x faster at d = 2,
    # ~1.1x at d = 8, unchanged at d = 4 and d >= 16 (where the products dominate).
    # ``cell_state``/``row_state`` convert at a loop's ends.

    @staticmethod
    def cell_state(state: tuple) -> tuple:
        """Row layout ([K, B, d],) -> the cells' layout ([K, d, B],)."""
        import tensorflow as tf

        return tuple(tf.transpose(s, [0, 2, 1]) for s in state)

    row_state = cell_state  # the same transpose back: ([K, d, B],) -> ([K, B, d],)

    def cell_step(self, params: dict, x, state: tuple):
        """One cell: x float [K, B] (the input bit), state ([K, d, B],) -> (logits [K, B, 2], (S_t [K, d, B],))."""
        s1 = self._cell_forward(params, x, state[0])
        return self._logits(params, s1), (s1,)

    def _cell_forward(self, params, x, s0):
        import tensorflow as tf

        W = params["W"]
        w_in = tf.transpose(W[:, :NUM_CLASSES], [0, 2, 1])  # [K, d, 2]: column j = the weights of input j
        # one-hot [1-x, x] times W[:2], as a select between its two rows
        a = w_in[:, :, :1] + (w_in[:, :, 1:] - w_in[:, :, :1]) * x[:, None, :]
        return tf.tanh(a + _project_t(tf.transpose(W[:, NUM_CLASSES:], [0, 2, 1]), s0) + params["b"][:, :, None])

    @staticmethod
    def _logits(params, s1):
        """S_t [K, d, B] -> logits [K, B, 2]."""
        import tensorflow as tf

        z = _project_t(tf.transpose(params["U"], [0, 2, 1]), s1) + params["c"][:, :, None]  # [K, 2, B]
        return tf.transpose(z, [0, 2, 1])

    def cell_vjp(self, params: dict, x, y, s_prev: tuple, ds: tuple, scale, s_out: tuple | None = None):
        """One cell's loss and its exact gradient, derived by hand (no autodiff), in the cells' layout.

        x float [K, B] the input bits, y int [K, B] targets, s_prev ([K, d, B],) the state
        entering the cell, ds ([K, d, B],) the gradient arriving at its output state from
        later cells; the cell's loss is ``scale`` x the mean over B of its cross-entropy,
        summed over replicas. Returns (per-replica mean cross-entropy [K], {W, b, U, c}
        gradients, (gradient w.r.t. s_prev [K, d, B],)). Equal to TensorFlow's autodiff
        through :meth:`unroll` (tests/test_truncation.py). ``s_out``: the cell's output state
        when the caller has it (a TF-style window records it), saving the forward product.
        """
        import tensorflow as tf

        W, U = params["W"], params["U"]
        (s0,), (g,) = s_prev, ds
        s1 = self._cell_forward(params, x, s0) if s_out is None else s_out[0]
        step, dz = self._output_grad(params, s1, y, scale)
        da = (g + _project_t(U, dz)) * (1.0 - tf.square(s1))  # [K, d, B]
        return step, self._param_grads(x, s0, s1, da, dz), (_project_t(W[:, NUM_CLASSES:], da),)

    @staticmethod
    def _output_grad(params, s1, y, scale):
        """The cell's loss from S_t [K, d, B]: (mean cross-entropy over B [K], the gradient of
        ``scale`` x that mean w.r.t. the logits [K, 2, B])."""
        import tensorflow as tf

        z = _project_t(tf.transpose(params["U"], [0, 2, 1]), s1) + params["c"][:, :, None]  # [K, 2, B]
        return _cross_entropy_grad(z, y, scale, axis=1)

    @staticmethod
    def _param_grads(x, s0, s1, da, dz) -> dict:
        """{W, b, U, c} gradients of one cell from its pre-activation gradient da [K, d, B] and
        logit gradient dz [K, 2, B]; x [K, B] the input bits, s0/s1 the states entering/leaving."""
        import tensorflow as tf

        x1h = tf.stack([1.0 - x, x], axis=1)  # [K, 2, B]: the one-hot input
        return {"W": tf.concat([_outer_t(x1h, da), _outer_t(s0, da)], axis=1), "b": tf.reduce_sum(da, axis=2),
                "U": _outer_t(s1, dz), "c": tf.reduce_sum(dz, axis=2)}

    # -- true BPTT on blocks of sub-sequences (:func:`rnn_sweep.model.truncation.true_block_grad_steps`)
    # A block holds one cell of each of the u sub-sequences of an update: [u, K, d, B].

    def block_loss(self, params: dict, s_out, y, scale):
        """The sub-sequences' own losses, each at its last cell: s_out [u, K, d, B] = S_t,
        y int [u, K, B], ``scale`` [u, 1, 1, 1] (each loss's weight: 1/u, 0 for padding rows).
        Returns (mean cross-entropy over B [u, K], the gradient arriving at S_t [u, K, d, B],
        {U, c} gradients)."""
        import tensorflow as tf

        U = params["U"]
        z = _project_b(tf.transpose(U, [0, 2, 1]), s_out) + params["c"][None, :, :, None]  # [u, K, 2, B]
        step, dz = _cross_entropy_grad(z, y, scale, axis=2)
        return step, _project_b(U, dz), {"U": _outer_b(s_out, dz), "c": tf.reduce_sum(dz, axis=[0, 3])}

    def block_back(self, params: dict, ds, s_out):
        """One cell back for every sub-sequence: ds [u, K, d, B] the gradient at S_p, s_out
        [u, K, d, B] = S_p. Returns (the pre-activation gradient da, the gradient at S_{p-1})."""
        da = ds * (1.0 - s_out * s_out)
        return da, _project_b(params["W"][:, NUM_CLASSES:], da)

    @staticmethod
    def block_weight_grads(x, s_prev, da) -> dict:
        """{W, b} gradients summed over cells: x [c, K, B] input bits, s_prev [c, K, d, B] the
        states entering them, da [c, K, d, B] their summed pre-activation gradients."""
        import tensorflow as tf

        x1h = tf.stack([1.0 - x, x], axis=2)  # [c, K, 2, B]
        return {"W": tf.concat([_outer_b(x1h, da), _outer_b(s_prev, da)], axis=1), "b": tf.reduce_sum(da, axis=[0, 3])}


def _cross_entropy_grad(z, y, scale, axis: int):
    """Logits z (classes on ``axis``, the batch last) and int targets y (z without that axis) ->
    (mean cross-entropy over the batch, the gradient of ``scale`` x that mean w.r.t. z)."""
    import tensorflow as tf

    logp = tf.nn.log_softmax(z, axis=axis)
    target = tf.one_hot(y, NUM_CLASSES, axis=axis, dtype=logp.dtype)
    step = -tf.reduce_mean(tf.reduce_sum(target * logp, axis=axis), axis=-1)
    return step, (tf.exp(logp) - target) * (scale / float(z.shape[-1]))


def _project_b(w, a):
    """w [K, o, i] @ a [u, K, i, B] -> [u, K, o, B], for every row of the block (see :func:`_project_t`)."""
    import tensorflow as tf

    if w.shape[2] <= FUSED_MATMUL_MAX_D:
        return tf.reduce_sum(w[None, :, :, :, None] * a[:, :, None, :, :], axis=3)
    return tf.einsum("koi,ukib->ukob", w, a)


def _outer_b(a, b):
    """Sum over the block's rows and the batch of outer products: a [u, K, i, B], b [u, K, o, B] -> [K, i, o]."""
    import tensorflow as tf

    return tf.einsum("ukib,ukob->kio", a, b)


def _project_t(w, a):
    """Batched w [K, o, i] @ a [K, i, B] -> [K, o, B] (the batch innermost). With a small
    inner size i, a broadcast multiply + sum that XLA fuses into the elementwise kernels
    around it; from i ~ 16 on a dot (see FUSED_MATMUL_MAX_D)."""
    import tensorflow as tf

    if w.shape[2] <= FUSED_MATMUL_MAX_D:
        return tf.reduce_sum(w[:, :, :, None] * a[:, None], axis=2)
    return tf.matmul(w, a)


def _outer_t(a, b):
    """Sum over the batch of outer products: a [K, i, B], b [K, o, B] -> [K, i, o] (a b^T)."""
    import tensorflow as tf

    if a.shape[1] * b.shape[1] <= FUSED_MATMUL_MAX_D * NUM_CLASSES:
        return tf.reduce_sum(a[:, :, None, :] * b[:, None, :, :], axis=3)
    return tf.matmul(a, b, transpose_b=True)


def _project(a, w):
    """Batched a [K, M, i] @ w [K, i, o]. With a small inner size i, a broadcast multiply +
    sum fuses into the surrounding elementwise XLA kernels, where a batched dot call is a
    separate, slower kernel (K=8, n=5, d=4: warm epoch 0.72 s -> see benchmarks/bench_pack.py);
    from i ~ 16 on the dot is faster (benchmarks/bench_backends.py)."""
    import tensorflow as tf

    if w.shape[1] <= FUSED_MATMUL_MAX_D:
        return tf.reduce_sum(a[:, :, :, None] * w[:, None], axis=2)
    return tf.matmul(a, w)
