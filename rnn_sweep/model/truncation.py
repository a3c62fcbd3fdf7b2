"""Truncation styles: how far each error is backpropagated, for a pack of K replicas.

Both styles are written as a *gradient step* ``grad_step(k, params, carry) ->
(losses [K], grads, carry)`` for update k of an epoch; :mod:`rnn_sweep.model.engine`
runs the steps in one compiled loop with the optimizer. Data come time-major
with the replica axis second: xs, ys int8 [C, K, B] (C = steps per row, B
rows), so the data's shape does not depend on n. The objective of a step is the
SUM over replicas of each replica's own mean loss: replica k's parameters only
reach its own term, so slice [k] of the gradient is exactly the gradient replica
k would get alone. ``carry = (state, scratch)``: the RNN state carried along the
rows plus whatever buffers a style keeps across updates.

**TensorFlow style**, BPTT(n, n) (:func:`tf_style_grad_steps`): the row is cut
into windows of n; the state entering a window is a constant (gradient
stopped), so the error at window position j flows back through j+1 cells only.
Written *step by step* with n a runtime tensor: a forward loop over the
window's n cells records the state entering each cell in a buffer; a backward
loop walks the cells in reverse, recomputes each cell from its recorded state
and takes its vector-Jacobian product (the cell's loss plus the gradient
arriving from the later cells). The compiled graph holds one cell forward and
one cell backward whatever n is, so ONE program serves every n up to the
buffer's size (:func:`buffer_steps`): a sweep over num_steps compiles once per
state size instead of once per (n, state size), and compiling does not grow
with n.

**True truncated BPTT(n, 1)** (:func:`start_states`, :func:`true_step_losses`):
EVERY error flows back exactly n cells: the loss at step t gets gradient through
cells t-n+1..t, starting from the gradient-stopped state S_{t-n}. One update
covers u = ``update_every`` consecutive steps t0..t0+u-1 (default u = n, so both
styles make the same number of updates, each averaging B*n losses). It is
computed without per-step weight copies or per-loss gradient calls (r2rt's
construction):

1. one forward pass WITHOUT gradient, step by step, gives the start states
   S_{t-n} of all u sub-sequences (its positions lag n behind the losses; its
   last state is carried to the next update);
2. the u sub-sequences x_{t-n+1..t} are batched into one [K, u*B, n] input and
   unrolled once under the gradient tape from those (stopped) states; the loss
   of sub-sequence t is taken at its last step.

Its program is built for one n (the sub-sequences are unrolled as [K, u*B, n]).
That is how the Keras cells are trained. The scratch cell takes a cheaper route to the
same gradient (:func:`true_block_grad_steps`): the u sub-sequences of an update all lie on
one trajectory, so it runs that trajectory forward once, recording its states, and goes
back n steps with the u sub-sequences as one block (per position ~2 forward cells and one
block step, where the unroll takes n forward and n backward cells; tests/test_truncation.py
checks the two against each other and against a NumPy BPTT written per loss).

Row start (the first n-1 positions of each row of an epoch): there is no history
before position 0, so a loss at t < n-1 gets gradient through the t+1 cells
0..t from the epoch's initial state (the zero state): its sub-sequence is
x_0..x_{n-1} and the loss is read at position t (by causality, cells after t do
not affect it). This is exactly what TF style does for the first window.

Works with any functional backend (``unroll(params, x, state)``, see
:mod:`rnn_sweep.model.backends`); the Keras ``model.fit`` backend cannot express true
BPTT and is rejected by ``config.validate``.
"""

from __future__ import annotations

import tensorflow as tf

from rnn_sweep.model.buffers import buffer_steps, block_rows  # noqa: F401 -- buffer sizes are part of a program's identity


def steps_to_rows(xs, n: int):
    """Time-major steps [C, K, B] -> rows [K, B, L], L = (C // n) * n (the positions training uses)."""
    used = (int(xs.shape[0]) // n) * n
    return tf.transpose(xs[:used], [1, 2, 0])


def subsequence_layout(t0, u: int, n: int):
    """Where the u sub-sequences of the update starting at step t0 lie.

    Returns:
        idx int32 [u, n]: row positions of each sub-sequence's inputs;
        offset int32 [u]: position inside the sub-sequence where its loss is read
        (n-1, or t for the first t < n-1 steps of a row; see module docstring).
    """
    t = t0 + tf.range(u)
    start = tf.maximum(t - (n - 1), 0)
    return start[:, None] + tf.range(n)[None, :], t - start


def start_states(backend, params, rows_1h, state, t0, u: int, n: int):
    """Forward pass without gradient over positions t0-n .. t0-n+u-1.

    ``rows_1h`` float32 [K, B, L, 2] are the one-hot rows; ``state`` [K, B, d] is
    the state after position t0-n-1 (before position 0 it is the epoch's initial
    state, kept unchanged while positions are negative).

    Returns:
        (starts, carry): starts is a tuple of state tensors [K, u*B, ...] where
        row block j is the state after position t0+j-n, i.e. the start state of
        the sub-sequence whose loss is at t0+j; carry is the state after t0+u-n-1.
    """
    # A symbolic loop, not a Python one: these steps need no gradient, so nothing is gained
    # by unrolling them, and the graph XLA compiles stays the same size for any u.
    def body(j, state, acc):
        p = t0 - n + j
        _, new = backend.unroll(params, rows_1h[:, :, tf.maximum(p, 0)][:, :, None, :], state)
        state = tuple(tf.where(p >= 0, s_new, s_old) for s_new, s_old in zip(new, state))
        return j + 1, state, tuple(ta.write(j, s) for ta, s in zip(acc, state))

    acc = tuple(tf.TensorArray(tf.float32, size=u, element_shape=s.shape) for s in state)
    _, state, acc = tf.while_loop(lambda j, *_: j < u, body, (tf.constant(0), tuple(state), acc))

    def blocks(ta):  # [u, K, B, ...] -> [K, u*B, ...], row block j = step j
        st = ta.stack()
        st = tf.transpose(st, [1, 0] + list(range(2, st.shape.rank)))
        return tf.reshape(st, [st.shape[0], -1] + st.shape.as_list()[3:])

    starts = tuple(tf.stop_gradient(blocks(ta)) for ta in acc)
    return starts, tuple(tf.stop_gradient(s) for s in state)


def true_step_losses(backend, params, rows_1h, rows_y, starts, t0, u: int, n: int):
    """Losses [K, u, B] of the steps t0..t0+u-1, each through exactly its n cells.

    Differentiable in ``params`` and in the one-hot rows ``rows_1h`` [K, B, L, 2]
    (the tests check which inputs each loss reaches); ``starts`` (from
    :func:`start_states`) are constants. ``rows_y`` int [K, B, L] are the targets.
    """
    k, b = rows_1h.shape[0], rows_1h.shape[1]
    idx, offset = subsequence_layout(t0, u, n)
    x_sub = tf.transpose(tf.gather(rows_1h, idx, axis=2), [0, 2, 1, 3, 4])  # [K, u, B, n, 2]
    logits, _ = backend.unroll(params, tf.reshape(x_sub, [k, u * b, n, 2]), starts)  # [K, u*B, n, 2]
    pick = tf.one_hot(offset, n, dtype=logits.dtype)[None, :, None, :, None]  # [1, u, 1, n, 1]
    last = tf.reduce_sum(tf.reshape(logits, [k, u, b, n, -1]) * pick, axis=3)  # [K, u, B, 2]
    y = tf.transpose(tf.cast(tf.gather(rows_y, t0 + tf.range(u), axis=2), tf.int32), [0, 2, 1])  # [K, u, B]
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=last)




def _x_at(xs, t):
    """The one-hot inputs [K, B, 2] at position t of xs: int [C, K, B] steps (one-hot per step, so
    no float copy of the epoch: 8 bytes per step per replica) or already one-hot [C, K, B, 2]."""
    x = tf.gather(xs, t)
    return x if xs.shape.rank == 4 else tf.one_hot(tf.cast(x, tf.int32), 2, dtype=tf.float32)


def _bits_at(xs, t):
    """The input bits, float [K, B], at position t of xs (as :func:`_x_at` takes it)."""
    x = tf.gather(xs, t)
    return x[..., 1] if xs.shape.rank == 4 else tf.cast(x, tf.float32)


def _y_at(ys, t):
    """The int32 targets [K, B] at position t of ys [C, K, B]."""
    return tf.cast(tf.gather(ys, t), tf.int32)


def cell_state(backend, state) -> tuple:
    """The row-layout state tuple ([K, B, d], ...) in the layout the backend steps cells in.

    A backend with a cell-by-cell path (``cell_step``; the scratch cell keeps the batch
    innermost, [K, d, B]) converts here; every other backend steps in the row layout."""
    return tuple(backend.cell_state(tuple(state))) if hasattr(backend, "cell_step") else tuple(state)


def row_state(backend, state) -> tuple:
    """The inverse of :func:`cell_state`."""
    return tuple(backend.row_state(tuple(state))) if hasattr(backend, "cell_step") else tuple(state)


def cell(backend, params, xs, t, state):
    """One cell at position t: (logits [K, B, 2], new state), the state in :func:`cell_state`'s
    layout; xs as :func:`_x_at` takes it."""
    if hasattr(backend, "cell_step"):
        return backend.cell_step(params, _bits_at(xs, t), state)
    logits, state = backend.unroll(params, _x_at(xs, t)[:, :, None], state)
    return logits[:, :, 0], state


def _window_forward(backend, params, xs, t0, n, state, buf):
    """Run cells t0..t0+n-1 from ``state``; buf[i] gets the state entering cell t0+i, and
    buf[n] the state the window ends with (so buf[i + 1] is cell t0+i's output)."""
    def body(i, state, buf):
        buf = tuple(tf.tensor_scatter_nd_update(b, [[i]], s[None]) for b, s in zip(buf, state))
        _, state = cell(backend, params, xs, t0 + i, state)
        return i + 1, state, buf

    _, state, buf = tf.while_loop(lambda i, *_: i < n, body, (tf.constant(0), tuple(state), buf))
    return state, tuple(tf.tensor_scatter_nd_update(b, [[n]], s[None]) for b, s in zip(buf, state))


def _window_backward(backend, params, xs, ys, t0, n, buf):
    """Gradient of the window's per-replica mean loss, cell by cell in reverse.

    Each cell is recomputed from its recorded entering state and differentiated
    once: its own loss plus the gradient ``ds`` arriving from the later cells (by
    the backend's ``cell_vjp`` when it has one, else by autodiff). The state
    entering the window gets no gradient (it is a constant in TF style).
    Returns (losses [K], cell losses [S, K] (row i: cell t0+i's mean over B; rows
    from n on are zero; S = the buffer size), grads).
    """
    k = params[next(iter(params))].shape[0]
    scale = 1.0 / tf.cast(n, tf.float32)

    def body(j, ds, grads, loss, cells):
        t = n - 1 - j
        s_prev = tuple(tf.gather(b, t) for b in buf)
        if hasattr(backend, "cell_vjp"):  # hand-derived (scratch): the same gradient, a smaller program,
            # and the cell's output is read from the buffer instead of computed again
            step, g_params, ds = backend.cell_vjp(params, _bits_at(xs, t0 + t), _y_at(ys, t0 + t), s_prev, ds, scale,
                                                  s_out=tuple(tf.gather(b, t + 1) for b in buf))
        else:
            with tf.GradientTape() as tape:
                tape.watch((params, s_prev))
                logits, s_new = cell(backend, params, xs, t0 + t, s_prev)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_y_at(ys, t0 + t), logits=logits)
                step = tf.reduce_mean(ce, axis=1)  # [K]: each replica's mean over its B rows
                total = tf.reduce_sum(step) * scale
            g_params, ds = tape.gradient([total, *s_new], (params, s_prev),
                                         output_gradients=[tf.ones_like(total), *ds],
                                         unconnected_gradients=tf.UnconnectedGradients.ZERO)
        cells = tf.tensor_scatter_nd_update(cells, [[t]], step[None])
        return j + 1, tuple(ds), {name: grads[name] + g_params[name] for name in grads}, loss + step, cells

    ds0 = tuple(tf.zeros_like(b[0]) for b in buf)
    grads0 = {name: tf.zeros_like(v) for name, v in params.items()}
    cells0 = tf.zeros([buf[0].shape[0] - 1, k])
    _, _, grads, loss, cells = tf.while_loop(lambda j, *_: j < n, body,
                                             (tf.constant(0), ds0, grads0, tf.zeros([k]), cells0))
    return loss * scale, cells, grads


def tf_style_window(backend, params, xs, ys, t0, n, state, buf) -> tuple:
    """BPTT(n, n) of the window at t0..t0+n-1 from the (constant) ``state``.

    xs int [C, K, B] steps (or float32 one-hot [C, K, B, 2]), ys int [C, K, B]; ``state`` in
    the backend's cell layout (:func:`cell_state`); ``buf`` a tuple of [max_steps + 1, *state
    shape] buffers (:func:`state_buffers`, reused across windows). Returns (losses [K] = each replica's mean loss
    over the window, per-step losses [max_steps, K] (the first n rows: each cell's mean
    loss over B), grads, (end state, buf)).
    """
    end, buf = _window_forward(backend, params, xs, t0, n, state, buf)
    losses, cells, grads = _window_backward(backend, params, xs, ys, t0, n, buf)
    return losses, cells, grads, (end, buf)


def state_buffers(state, max_steps: int) -> tuple:
    """Zero buffers [max_steps + 1, *shape] for the states (in the cells' layout) entering a window's
    cells and the state it ends with."""
    return tuple(tf.zeros([max_steps + 1, *s.shape.as_list()], s.dtype) for s in state)


def tf_style_grad_steps(backend, xs, ys, n, state, max_steps: int) -> tuple:
    """TF style over time-major steps xs, ys int8 [C, K, B], n an int32 tensor <= ``max_steps``.

    Returns (updates C // n, the largest possible count C, grad_step, carry0);
    ``grad_step`` gives per-step losses [max_steps, K], valid in their first n rows. The
    carried state is in the backend's cell layout (:func:`final_state` turns it back).
    """
    def grad_step(k, params, carry):  # the int8 steps go in as they are: each cell one-hots its own
        return tf_style_window(backend, params, xs, ys, k * n, n, *carry)

    state = cell_state(backend, state)
    return int(xs.shape[0]) // n, int(xs.shape[0]), grad_step, (state, state_buffers(state, max_steps))


def true_grad_steps(backend, xs, ys, n: int, state, update_every: int | None = None) -> tuple:
    """True BPTT(n, 1) over time-major steps xs, ys int8 [C, K, B] for a static n.

    u = update_every or n; U = L // u with L = (C // n) * n positions, as TF
    style trains on. The carried state is the forward pass's, lagging n behind the
    losses (training resets the state every epoch anyway). Returns (U, U,
    grad_step, carry0).
    """
    u = int(update_every or n)
    rows_y = steps_to_rows(ys, n)
    rows_1h = tf.one_hot(tf.cast(steps_to_rows(xs, n), tf.int32), 2, dtype=tf.float32)  # [K, B, L, 2]

    def grad_step(k, params, carry):
        state, _ = carry
        t0 = k * u
        starts, state = start_states(backend, params, rows_1h, state, t0, u, n)
        with tf.GradientTape() as tape:
            tape.watch(params)
            steps = tf.reduce_mean(true_step_losses(backend, params, rows_1h, rows_y, starts, t0, u, n), axis=2)
            losses = tf.reduce_mean(steps, axis=1)  # [K]: mean over the u steps of the update
            total = tf.reduce_sum(losses)
        return losses, tf.transpose(steps), tape.gradient(total, params), (state, ())

    updates = int(rows_y.shape[2]) // u
    return updates, updates, grad_step, (tuple(state), ())


def true_block_grad_steps(backend, xs, ys, n, state, block: int, update_every: int | None = None) -> tuple:
    """True BPTT(n, 1) for a backend with block methods (the scratch cell), without unrolling.

    The same gradient as :func:`true_grad_steps` (same start states, same losses, each
    through exactly its n cells). The u sub-sequences of one update all lie on ONE
    trajectory: the forward pass from the carried state S_{t0-n-1} over positions
    t0-n .. t0+u-1 with the update's parameters (the sub-sequences start at its states
    S_{t-n}, constants). So the update runs that trajectory forward once (u + n cells,
    recording every state), then goes back n steps with all u sub-sequences as one block:
    at step j sub-sequence i is at cell t0+i-j, whose states are read from the recording.
    The parameters' gradient is linear in each cell's pre-activation gradient, so those are
    summed per trajectory cell while going back and multiplied out once at the end. Per
    position: ~2 forward cells and 1 block step, against n forward and n backward cells
    unrolled.

    ``n`` is a runtime number <= ``block`` (:func:`rnn_sweep.model.buffers.block_rows`), so
    one program serves every n up to ``block``; blocks have ``block`` rows (u = n, rows
    from u on are padding) or u rows (``update_every``). Returns (updates, the most
    updates, grad_step, carry0), the carry in the backend's cell layout; grad_step's
    per-step losses have that many rows, valid in their first u.
    """
    n = tf.convert_to_tensor(n, tf.int32)
    columns = int(xs.shape[0])
    if update_every:
        u, rows, most = tf.constant(int(update_every)), int(update_every), columns // int(update_every)
    else:
        u, rows, most = n, block, columns
    updates = (columns // n) * n // u
    state = cell_state(backend, state)
    cells = rows + block  # recorded states: buf[j] enters position t0-n+j, j = 0 .. u+n
    buffers = tuple(tf.zeros([cells + 1, *s.shape.as_list()], s.dtype) for s in state)
    row = tf.range(rows)
    real = row < u  # padding rows (u < rows) carry no loss
    wpad = cells - 1  # trajectory cells with a gradient: positions t0-n+1 .. t0+u-1, padded

    def grad_step(k, params, carry):
        (state,), buf = carry[0], carry[1][0]
        t0 = k * u

        def forward(j, state, buf):
            buf = tf.tensor_scatter_nd_update(buf, [[j]], state[None])
            p = t0 - n + j
            _, (new,) = cell(backend, params, xs, tf.maximum(p, 0), (state,))
            return j + 1, tf.where(p >= 0, new, state), buf

        _, end, buf = tf.while_loop(lambda j, *_: j < u + n, forward, (tf.constant(0), state, buf))
        buf = tf.tensor_scatter_nd_update(buf, [[u + n]], end[None])
        carry_out = tf.gather(buf, u)  # the state after position t0-n+u-1, lagging n behind the losses

        # each sub-sequence's own loss, at its last cell t0+i (state S_t = buf[n+1+i])
        at = lambda idx: tf.gather(buf, tf.minimum(idx, cells))  # noqa: E731 -- padding rows read any state
        weight = tf.where(real, 1.0 / tf.cast(u, tf.float32), 0.0)[:, None, None, None]
        y = tf.cast(tf.gather(ys, tf.minimum(t0 + row, columns - 1)), tf.int32)
        step, ds, grads = backend.block_loss(params, at(n + 1 + row), y, weight)

        def back(j, ds, acc):  # sub-sequence i at cell p = t0+i-j: S_p = buf[n+1+i-j], trajectory cell n-1+i-j
            live = tf.cast(real & (t0 + row - j >= 0), tf.float32)[:, None, None, None]  # no cell before the row start
            da, ds = backend.block_back(params, ds, at(n + 1 + row - j))
            return j + 1, ds, tf.tensor_scatter_nd_add(acc, (n - 1 + row - j)[:, None], da * live)

        acc0 = tf.zeros([wpad, *state.shape.as_list()])
        _, _, acc = tf.while_loop(lambda j, *_: j < n, back, (tf.constant(0), ds, acc0))
        # trajectory cell c is position t0-n+1+c, entered with buf[c+1]
        x = tf.cast(tf.gather(xs, tf.clip_by_value(t0 - n + 1 + tf.range(wpad), 0, columns - 1)), tf.float32)
        x = x[..., 1] if xs.shape.rank == 4 else x
        grads.update(backend.block_weight_grads(x, buf[1:wpad + 1], acc))
        steps = step * tf.cast(real, tf.float32)[:, None]
        return tf.reduce_sum(steps, axis=0) / tf.cast(u, tf.float32), steps, grads, ((carry_out,), (buf,))

    return updates, most, grad_step, (state, buffers)


def final_state(backend, style: str, carry) -> tuple:
    """The row-layout state ([K, B, d], ...) a style's carry ends an epoch (or segment) with."""
    return row_state(backend, carry[0]) if style == "tf" or hasattr(backend, "block_back") else tuple(carry[0])


def grad_steps(backend, style: str, xs, ys, n, state, static_n: int, update_every: int | None = None) -> tuple:
    """The style's (updates, most updates, grad_step, carry0) for one epoch of steps xs, ys [C, K, B].

    ``n`` is the runtime window length (TF style, and true style on a backend with
    ``block_back``); ``static_n`` is the program's build-time number: the buffer size for
    TF style, the block rows (:func:`rnn_sweep.model.buffers.block_rows`) for true style by
    blocks, n itself for true style by unrolling.
    """
    if style == "true":
        if hasattr(backend, "block_back"):
            return true_block_grad_steps(backend, xs, ys, n, state, static_n, update_every)
        return true_grad_steps(backend, xs, ys, static_n, state, update_every)
    if style == "tf":
        return tf_style_grad_steps(backend, xs, ys, n, state, static_n)
    raise ValueError(f"truncation.style={style!r}: allowed values are tf, true")
