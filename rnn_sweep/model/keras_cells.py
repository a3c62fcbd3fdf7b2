"""The article's library-cell backends in TF2: Keras cells driven functionally.

* ``static``  -- a Keras cell stepped in a Python loop over the window, the TF2
  counterpart of ``tf.contrib.rnn.static_rnn`` (the graph grows with num_steps).
* ``dynamic`` -- ``keras.layers.RNN(cell, return_sequences=True, return_state=True)``,
  whose TensorFlow implementation is a symbolic ``tf.while_loop`` over time: the
  counterpart of ``tf.nn.dynamic_rnn``.

Both stay *functional* (params dict in, logits out) like the scratch backend, so
they run inside the one compiled epoch loop of :mod:`rnn_sweep.model.engine` and under
any truncation style. The Keras layers own no trainable state here: they are
called with ``Layer.stateless_call(trainable_values, non_trainable_values, ...)``,
Keras 3's documented way of running a layer on given weights without side
effects. Inside it, the layer's variable reads resolve to the given tensors, so
gradients flow to our params dict and the traced graph is exactly the cell's
math (the Python-level Keras overhead is paid once, at trace time).

Replica axis: parameters are stacked [K, ...] (layouts in :mod:`rnn_sweep.model.inits`),
inputs x [K, B, T, 2], states [K, B, d]. A Keras cell has no replica axis, so
``unroll`` calls the cell once per replica on its own slice (K cell calls per
step): exact and isolated by construction, though the graph grows with K.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rnn_sweep.model.inits import NUM_CLASSES, stacked

CELL_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


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

    def init_params(self, seeds: Sequence[int]) -> dict[str, np.ndarray]:
        """Replica k starts from :func:`rnn_sweep.model.inits.cell_init` (seeds[k]), stacked [K, ...]."""
        return stacked(self.cell, seeds, self.state_size)

    def zero_state(self, replicas: int, batch: int) -> tuple:
        """Zeros [K, B, d]: one tensor for rnn/gru, two (h, c) for lstm."""
        import tensorflow as tf

        n = 2 if self.cell == "lstm" else 1
        return tuple(tf.zeros([replicas, batch, self.state_size], tf.float32) for _ in range(n))

    def unroll(self, params: dict, x, state: tuple):
        """x [K, B, T, 2] -> (logits [K, B, T, 2], state tuple [K, B, d]); replica by replica."""
        import tensorflow as tf

        outs = [self.unroll_one({k: v[r] for k, v in params.items()}, x[r], tuple(s[r] for s in state))
                for r in range(x.shape[0])]
        logits = tf.stack([o[0] for o in outs])
        return logits, tuple(tf.stack([o[1][i] for o in outs]) for i in range(len(state)))

    def unroll_one(self, params: dict, x, state: tuple):
        """One replica: x [B, T, 2] -> (logits [B, T, 2], state tuple [B, d])."""
        raise NotImplementedError  # StaticBackend and DynamicBackend each drive their Keras layer

    def _build_layer(self):
        raise NotImplementedError  # StaticBackend and DynamicBackend each build their Keras layer

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

    def unroll_one(self, params: dict, x, state: tuple):
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

    def unroll_one(self, params: dict, x, state: tuple):
        h, *states = self._stateless(params, x, initial_state=list(state))
        return self._logits(params, h), tuple(states)
