"""Seeded initial parameters, in NumPy, for every cell (no TensorFlow, no Keras).

One seed gives one replica's weights; :func:`stacked` puts several replicas on a
leading axis, the layout every functional backend trains on. Layouts:

* cell ``rnn``: the article's ``W [2+d, d]`` (rows: one-hot input, then previous
  state), ``b [d]``, ``U [d, 2]``, ``c [2]``; Glorot-uniform weights, zero biases
  (the article's ``tf.get_variable`` defaults). Shared by every backend, so one
  seed starts every vanilla backend from the same weights.
* cells ``gru`` / ``lstm``: Keras' own layouts ``kernel [2, k*d]``,
  ``recurrent_kernel [d, k*d]`` (k = 3 for GRU, 4 for LSTM), ``bias`` (GRU with
  ``reset_after=True``: [2, 3d]; LSTM: [4d]), plus ``U, c``. Initialised as Keras
  does: Glorot-uniform kernel, orthogonal recurrent kernel, zero bias (LSTM:
  forget-gate bias 1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NUM_CLASSES = 2
INIT_STREAM = 2  # the rng stream used for weight initialisation (data uses 0 and 1)
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform, the default initializer of the article's tf.get_variable."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Keras' Orthogonal initializer (gain 1) for a [rows, cols] matrix, in NumPy."""
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the decomposition unique, as Keras does
    return (q.T if rows < cols else q).astype(np.float32)


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


def gated_init(cell: str, seed: int, state_size: int) -> dict[str, np.ndarray]:
    """Seeded GRU/LSTM parameters in Keras' layout (see module docstring)."""
    rng = np.random.default_rng([seed, INIT_STREAM])
    d, k = state_size, GATES[cell]
    if cell == "gru":
        bias = np.zeros((2, k * d), np.float32)  # reset_after=True: input and recurrent biases
    else:
        bias = np.zeros(k * d, np.float32)
        bias[d:2 * d] = 1.0  # unit_forget_bias=True (gate order i, f, c, o)
    return {
        "kernel": glorot_uniform(rng, NUM_CLASSES, k * d),
        "recurrent_kernel": orthogonal(rng, d, k * d),
        "bias": bias,
        "U": glorot_uniform(rng, d, NUM_CLASSES),
        "c": np.zeros(NUM_CLASSES, np.float32),
    }


def cell_init(cell: str, seed: int, state_size: int) -> dict[str, np.ndarray]:
    """One replica's initial parameters: the article's layout for rnn, Keras' for gru/lstm."""
    return vanilla_init(seed, state_size) if cell == "rnn" else gated_init(cell, seed, state_size)


def stacked(cell: str, seeds: Sequence[int], state_size: int) -> dict[str, np.ndarray]:
    """Replica k's :func:`cell_init` (seed ``seeds[k]``) as slice [k] of each array [K, ...]."""
    inits = [cell_init(cell, s, state_size) for s in seeds]
    return {k: np.stack([p[k] for p in inits]) for k in inits[0]}
