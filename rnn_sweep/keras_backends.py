"""The article's library-cell backends in TF2: Keras cells driven functionally.

* ``static``  -- a Keras cell stepped in a Python loop over the window, the TF2
  counterpart of ``tf.contrib.rnn.static_rnn`` (the graph grows with num_steps).
* ``dynamic`` -- ``keras.layers.RNN(cell, return_sequences=True, return_state=True)``,
  whose TensorFlow implementation is a symbolic ``tf.while_loop`` over time: the
  counterpart of ``tf.nn.dynamic_rnn``.

Both stay *functional* (params dict in, logits out) like the scratch backend, so
they run inside the one compiled epoch loop of :mod:`rnn_sweep.engine` and under
any truncation style. The Keras layers own no trainable state here: they are
called with ``Layer.stateless_call(trainable_values, non_trainable_values, ...)``,
Keras 3's documented way of running a layer on given weights without side
effects. Inside it, the layer's variable reads resolve to the given tensors, so
gradients flow to our params dict and the traced graph is exactly the cell's
math (the Python-level Keras overhead is paid once, at trace time).

Parameter layouts (NumPy arrays from ``init_params(seed)``):

* cell ``rnn``: the canonical article layout ``W [2+d, d], b [d], U [d, 2], c [2]``
  shared with ``scratch`` (same seed -> same weights); the SimpleRNNCell gets
  ``kernel = W[:2]``, ``recurrent_kernel = W[2:]``, ``bias = b``.
* cells ``gru`` / ``lstm``: Keras' own layouts ``kernel [2, k*d]``,
  ``recurrent_kernel [d, k*d]`` (k = 3 for GRU, 4 for LSTM), ``bias`` (GRU with
  ``reset_after=True``: [2, 3d]; LSTM: [4d]), plus the softmax layer ``U, c``.
  Initialised as Keras does, but seeded from NumPy: Glorot-uniform kernel,
  orthogonal recurrent kernel, zero bias (LSTM: forget-gate bias 1).
"""

from __future__ import annotations

import numpy as np

from rnn_sweep.models import INIT_STREAM, NUM_CLASSES, glorot_uniform, vanilla_init

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
CELL_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Keras' Orthogonal initializer (gain 1) for a [rows, cols] matrix, in NumPy."""
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the decomposition unique, as Keras does
    return (q.T if rows < cols else q).astype(np.float32)


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
    """Initial parameters for any cell: the article's layout for rnn, Keras' for gru/lstm."""
    return vanilla_init(seed, state_size) if cell == "rnn" else gated_init(cell, seed, state_size)


def cell_weights(cell: str, params: dict) -> dict:
    """The Keras cell's weights (kernel, recurrent_kernel, bias) from a params dict."""
    if cell == "rnn":
        W = params["W"]
        return {"kernel": W[:NUM_CLASSES], "recurrent_kernel": W[NUM_CLASSES:], "bias": params["b"]}
    return {k: params[k] for k in CELL_WEIGHTS}


def make_cell(cell: str, state_size: int):
    """A fresh, unbuilt Keras cell of the given kind (no dropout, Keras defaults otherwise)."""
    import keras

    cls = {"rnn": keras.layers.SimpleRNNCell, "gru": keras.layers.GRUCell, "lstm": keras.layers.LSTMCell}[cell]
    return cls(state_size)


class KerasCellBackend:
    """Shared machinery of the static and dynamic backends (functional Keras layers)."""

    name = "keras-cell"

    def __init__(self, cell: str, state_size: int):
        self.cell = cell
        self.state_size = state_size
        self._layer = None

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        return cell_init(self.cell, seed, self.state_size)

    def zero_state(self, batch: int) -> tuple:
        import tensorflow as tf

        n = 2 if self.cell == "lstm" else 1  # LSTM carries (h, c)
        return tuple(tf.zeros([batch, self.state_size], tf.float32) for _ in range(n))

    def _build_layer(self):
        raise NotImplementedError  # each subclass builds its own Keras layer

    @property
    def layer(self):
        """The built Keras layer (created on first use, after TensorFlow is imported)."""
        if self._layer is None:
            import tensorflow as tf

            # Often first used while tracing a tf.function: create the variables eagerly.
            with tf.init_scope():
                layer = self._build_layer()
                # Snapshot the non-trainable state (the cell's dropout seed; unused without dropout).
                self._non_trainable = [np.asarray(v.numpy()) for v in layer.non_trainable_variables]
            self._layer = layer
        return self._layer

    def _stateless(self, params: dict, *args, **kwargs):
        """Call the layer on our weights: values matched to its variables by name."""
        layer = self.layer
        weights = cell_weights(self.cell, params)
        trainable = [weights[v.name] for v in layer.trainable_variables]
        outputs, _ = layer.stateless_call(trainable, list(self._non_trainable), *args, **kwargs)
        return outputs

    def _logits(self, params: dict, h):
        import tensorflow as tf

        return tf.einsum("btd,dk->btk", h, params["U"]) + params["c"]


class StaticBackend(KerasCellBackend):
    """A Keras cell stepped in a Python loop (``static_rnn``): one cell call per time step."""

    name = "static"

    def _build_layer(self):
        cell = make_cell(self.cell, self.state_size)
        cell.build((None, NUM_CLASSES))
        return cell

    def unroll(self, params: dict, x, state: tuple):
        import tensorflow as tf

        states = list(state)
        outs = []
        for t in range(x.shape[1]):  # the graph grows with num_steps, as with static_rnn
            out, states = self._stateless(params, x[:, t], states)
            outs.append(out)
        return self._logits(params, tf.stack(outs, axis=1)), tuple(states)


class DynamicBackend(KerasCellBackend):
    """``keras.layers.RNN`` over the window (``dynamic_rnn``): a symbolic loop over time."""

    name = "dynamic"

    def _build_layer(self):
        import keras

        layer = keras.layers.RNN(make_cell(self.cell, self.state_size), return_sequences=True, return_state=True)
        layer.build((None, None, NUM_CLASSES))
        return layer

    def unroll(self, params: dict, x, state: tuple):
        h, *states = self._stateless(params, x, initial_state=list(state))
        return self._logits(params, h), tuple(states)
