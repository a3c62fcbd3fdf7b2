"""Compiled training and evaluation of a pack of K replicas (TensorFlow).

An epoch is ONE compiled computation: a ``tf.while_loop`` over the updates whose
loop variables are the stacked parameters [K, ...], the optimizer slots and the
carried RNN state; the truncation style (:mod:`rnn_sweep.model.truncation`) supplies
each update's losses and gradients. Data enter time-major, int8 [C, K, B], and
the window length n as a tensor, so compiled functions are cached by their
static structure only (backend, cell, state size, optimizer, style, XLA, and
for TF style the buffer size that bounds n, for true style the scratch cell's loss
block rows that bound n; true style on a Keras cell is built per n).
Hyper-parameters enter as [K] tensors, so a pack of any seeds and learning
rates, the next pack of the same shapes in this process, and -- in TF style, and
true style on the scratch cell -- every other num_steps up to the bound, reuse the
compiled program instead of tracing and compiling again (tests/test_compile_reuse.py).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from rnn_sweep.model import optimizers as optim
from rnn_sweep.model import truncation

_CACHE: dict[tuple, Callable] = {}


OUTPUT_PARAMS = ("U", "c")  # the output layer of every backend's params (rnn_sweep.model.inits)


def frozen_params(train_recurrent: bool) -> tuple[str, ...]:
    """Parameters an update must leave unchanged: none, or (the reservoir control,
    ``model.train_recurrent=false``) everything but the output layer."""
    return () if train_recurrent else ("*",)


def update_loop(first, stop, max_updates: int, opt_name: str, hp, params, opt_state, carry, grad_step,
                frozen: tuple[str, ...] = (), *, per_update, capacity: int):
    """Optimizer updates ``first`` .. ``stop - 1`` (``stop`` <= ``max_updates``) as one ``tf.while_loop``.

    ``grad_step(k, params, carry) -> (losses [K], step losses [S, K], grads,
    carry)`` computes update k, whose first ``per_update`` step-loss rows are the losses
    at positions k * per_update ... of the rows. Returns (params, opt_state, losses
    [max_updates, K], position losses [capacity, K], carry): row p of the position
    losses is position p's loss for the updates made (others zero) -- only the positions,
    not an [S, K] block per update, so a segment call hands back C x K numbers.
    ``frozen`` non-empty (:func:`frozen_params`): only the output layer is updated.
    """
    losses = tf.TensorArray(tf.float32, size=max_updates)
    k_size = params[next(iter(params))].shape[0]
    positions = tf.zeros([capacity, k_size])

    def body(k, params, opt_state, carry, losses, positions):
        loss, step_losses, grads, carry = grad_step(k, params, carry)
        if frozen:  # a zero gradient leaves a parameter exactly where it is under adagrad, sgd and adam
            grads = {name: g if name in OUTPUT_PARAMS else tf.zeros_like(g) for name, g in grads.items()}
        params, opt_state = optim.apply(opt_name, params, grads, opt_state, hp)
        # Rows past per_update are zeros that the next updates' rows overwrite (updates go in order).
        rows = k * per_update + tf.range(step_losses.shape[0])
        positions = tf.tensor_scatter_nd_update(positions, rows[:, None], step_losses)
        return k + 1, params, opt_state, carry, losses.write(k, loss), positions

    _, params, opt_state, carry, losses, positions = tf.while_loop(
        lambda k, *_: k < stop, body, (first, params, opt_state, carry, losses, positions))
    return params, opt_state, losses.stack(), positions, carry


def _key(kind: str, backend, *rest) -> tuple:
    return (kind, backend.name, backend.cell, backend.state_size, *rest)


def _compiled_epoch(backend, opt_name: str, style: str, xla: bool, static_n: int, update_every: int | None,
                    frozen: tuple[str, ...] = ()):
    key = _key("epoch", backend, opt_name, style, xla, static_n, update_every, frozen)
    if key not in _CACHE:
        def run_epoch(params, opt_state, hp, xs, ys, n, state, first, stop):
            updates, most, grad_step, carry = truncation.grad_steps(backend, style, xs, ys, n, state, static_n,
                                                                    update_every)
            # positions one update trains, and the most step-loss rows it hands back (the window
            # buffer in TF style, u in true style)
            if style == "tf" or (hasattr(backend, "block_back") and not update_every):
                per, rows = n, static_n  # n is a runtime number: static_n rows, the first n valid
            else:
                per, rows = (int(update_every or static_n),) * 2
            params, opt_state, losses, steps, carry = update_loop(
                first, tf.minimum(stop, updates), most, opt_name, hp, params, opt_state, carry, grad_step, frozen,
                per_update=per, capacity=int(xs.shape[0]) + rows)
            return params, opt_state, losses, steps, updates, truncation.final_state(backend, style, carry)

        # autograph=False: the loops are explicit tf.while_loops, so autograph's source
        # conversion would only add tracing time (true style, n=10: first epoch 10.7 s
        # instead of 13.9 s with it).
        _CACHE[key] = tf.function(run_epoch, jit_compile=xla, autograph=False)
    return _CACHE[key]


def epoch_fn(backend, opt_name: str, style: str, xla: bool, num_steps: int,
             update_every: int | None = None, frozen: tuple[str, ...] = ()) -> Callable:
    """The pack epoch for a backend/optimizer/style and window length n = ``num_steps``.

    Returns f(params [K,...], opt_state, hp {name: [K]}, xs [C,K,B] int8, ys
    [C,K,B] int8, state [K,B,d]...) -> (params, opt_state, losses [U, K],
    final_state). TF style: U = C // n windows; true style: U = L // u with L =
    (C // n) * n and u = update_every or n. ``f.with_step_losses`` takes the same
    arguments and returns (params, opt_state, losses [U, K], step losses [P, K],
    final_state): the mean loss over the B rows at each of the P positions the
    updates trained, in order along the rows (P = U * n, or U * u). With
    ``first=a, stop=b`` it makes only updates a..b-1 of the epoch (losses [b-a, K],
    step losses [(b-a) * n or u, K]) from ``state``, the state that updates 0..a-1
    ended with (their returned final state): an epoch made in segments equals the
    epoch made at once. ``f.updates(C)`` is U for C steps per row. The compiled
    program behind them (``f.program``) is built once per process and shared: in
    TF style by every n up to :func:`rnn_sweep.model.truncation.buffer_steps` (n). ``frozen``
    (:func:`frozen_params`): the reservoir control, which trains the output layer only.
    """
    if style == "tf":
        static_n = truncation.buffer_steps(num_steps)
    else:
        static_n = truncation.block_rows(num_steps) if hasattr(backend, "block_back") else int(num_steps)
    program = _compiled_epoch(backend, opt_name, style, xla, static_n, update_every, tuple(frozen))
    n = tf.constant(int(num_steps), tf.int32)
    per_update = int(num_steps) if style == "tf" else int(update_every or num_steps)

    def updates(columns: int) -> int:
        return columns // int(num_steps) if style == "tf" else (columns // int(num_steps)) * int(num_steps) // per_update

    def with_step_losses(params, opt_state, hp, xs, ys, state, first: int = 0, stop: int | None = None):
        total = updates(int(xs.shape[0]))
        stop = total if stop is None else min(int(stop), total)
        params, opt_state, losses, steps, _, state = program(params, opt_state, hp, xs, ys, n, state,
                                                             tf.constant(int(first)), tf.constant(stop))
        return params, opt_state, losses[first:stop], steps[first * per_update:stop * per_update], state

    def run(params, opt_state, hp, xs, ys, state):
        params, opt_state, losses, _, state = with_step_losses(params, opt_state, hp, xs, ys, state)
        return params, opt_state, losses, state

    run.program, run.with_step_losses, run.updates = program, with_step_losses, updates
    return run


PREDICT_CHUNK = 100  # held-out columns per compiled call (the default checkpoint data: 20k steps / batch 200)


def predict_fn(backend, xla: bool = False) -> Callable:
    """Compiled forward pass along the rows with carried state (no gradients), for a pack.

    Returns f(params [K,...], xs [C,K,B] int8, state) -> P(Y=1) float32 [C, K, B].
    The state is carried across every step (as across windows: prediction does
    not depend on n), so one program serves every n. The program takes
    :data:`PREDICT_CHUNK` columns at a time and hands the state on, so one program also
    serves every held-out length (the checkpoints' and the final evaluation's; the last
    chunk is padded and its padding discarded): one XLA compile per state size and pack
    size instead of one per length. ``f.program`` is the compiled chunk.
    """
    key = _key("predict", backend, xla)
    if key not in _CACHE:
        def chunk(params, xs, state):
            out = tf.TensorArray(tf.float32, size=PREDICT_CHUNK)

            def body(t, state, out):  # one cell per step from the int8 data: no float copy of the held-out data
                logits, state = truncation.cell(backend, params, xs, t, state)
                return t + 1, state, out.write(t, tf.nn.softmax(logits)[..., 1])

            state = truncation.cell_state(backend, state)
            _, state, out = tf.while_loop(lambda t, *_: t < PREDICT_CHUNK, body, (tf.constant(0), state, out))
            return out.stack(), truncation.row_state(backend, state)

        _CACHE[key] = tf.function(chunk, jit_compile=xla, autograph=False)  # explicit loop, see epoch_fn
    program = _CACHE[key]

    def predict(params, xs, state):
        xs = np.asarray(xs)
        columns, out = xs.shape[0], []
        for start in range(0, columns, PREDICT_CHUNK):
            block = xs[start:start + PREDICT_CHUNK]
            used = block.shape[0]
            if used < PREDICT_CHUNK:
                block = np.concatenate([block, np.zeros((PREDICT_CHUNK - used, *block.shape[1:]), block.dtype)])
            p, state = program(params, block, tuple(state))
            out.append(p.numpy()[:used])
        return np.concatenate(out) if out else np.zeros((0, *xs.shape[1:]), np.float32)

    predict.program = program
    return predict
