"""The ``keras`` backend: the idiomatic TF2 way, a stateful Keras model and ``model.fit``.

The model is ``Input(batch_shape=(B, n, 2)) -> RNN(cell, stateful=True,
return_sequences=True) -> Dense(2)`` (logits), compiled with a sparse softmax
cross-entropy and an optimizer with the same update rule as
:mod:`rnn_sweep.model.optimizers`. One of our epochs is one ``model.fit(epochs=1,
shuffle=False)`` over that epoch's windows in order: batch i is window i, so
row j of batch i+1 continues row j of batch i. The stateful layer carries its
final state into the next batch as a variable (not differentiated through), which
is exactly TensorFlow-style truncation BPTT(n, n); the state is reset before each
epoch.

Keras reports ``loss`` as a running mean over the epoch. The true per-window loss
comes from :class:`WindowLosses`, a metric that records each batch's mean
cross-entropy at each of its positions into a buffer (so it works with any
``steps_per_execution``; the window's loss is their mean), and
:class:`CollectWindowLosses`, a callback that reads the buffer at the end of fit.

Optimizer semantics match the functional backends: ``keras.optimizers.Adagrad``
updates ``acc += g^2; var -= lr * g / sqrt(acc + epsilon)``, so with
``initial_accumulator_value=0.1, epsilon=0`` it *is* TF1 Adagrad; Keras' SGD and
Adam are TF1's rules (Adam's epsilon outside the square root, bias-corrected step).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rnn_sweep.task.config import OptimizerConfig, RunConfig
from rnn_sweep.task.data import to_windows
from rnn_sweep.model.inits import NUM_CLASSES
from rnn_sweep.model.keras_cells import DynamicBackend, cell_weights, make_cell

# Windows per compiled call inside model.fit (Keras' steps_per_execution). Per-window
# losses come from the WindowLosses buffer, so batching steps loses nothing; it cuts
# the per-step Python dispatch (measured ~3x faster warm epochs than 1; 1000 ~ 50).
STEPS_PER_EXECUTION = 50


def keras_optimizer(cfg: OptimizerConfig):
    """The Keras optimizer whose update rule equals :func:`rnn_sweep.model.optimizers.apply`'s."""
    import keras

    if cfg.name == "adagrad":
        # epsilon=0: TF1 Adagrad has none (Keras adds it inside the square root).
        return keras.optimizers.Adagrad(cfg.lr, initial_accumulator_value=cfg.initial_accumulator, epsilon=0.0)
    if cfg.name == "sgd":
        return keras.optimizers.SGD(cfg.lr)
    if cfg.name == "adam":
        return keras.optimizers.Adam(cfg.lr, beta_1=cfg.beta1, beta_2=cfg.beta2, epsilon=cfg.epsilon)
    raise ValueError(f"train.optimizer.name={cfg.name!r}: allowed values are adagrad, sgd, adam")


def _window_losses_metric(capacity: int, num_steps: int):
    import keras

    class WindowLosses(keras.metrics.Metric):
        """Records each batch's mean cross-entropy at each of its n positions, in order
        (their mean is the window's training loss)."""

        def __init__(self, capacity: int, num_steps: int, name: str = "window_loss"):
            super().__init__(name=name)
            self.capacity = capacity
            self.values = self.add_variable(shape=(capacity, num_steps), initializer="zeros", name="values")
            self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None):
            ops = keras.ops
            ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)  # [B, n]
            steps = ops.cast(ops.mean(ce, axis=0), "float32")
            self.values.assign(ops.scatter_update(self.values, ops.reshape(self.count, (1, 1)), steps[None]))
            self.count.assign(self.count + 1)

        def result(self):
            return keras.ops.mean(self.values[keras.ops.maximum(self.count - 1, 0)])  # the latest window's loss

    return WindowLosses(capacity, num_steps)


def _collector(metric):
    import keras

    class CollectWindowLosses(keras.callbacks.Callback):
        """Copies the per-window losses out of the metric when fit ends (before any reset)."""

        losses = np.zeros(0, np.float32)

        def on_epoch_end(self, epoch, logs=None):
            self.losses = metric.values.numpy()[: int(metric.count.numpy())].copy()

    return CollectWindowLosses()


class KerasFit:
    """One run's stateful Keras model; calling it trains one epoch with ``model.fit``.

    The call has the engine's epoch signature for a pack of one, so training treats
    it like :func:`rnn_sweep.model.engine.epoch_fn`'s result: f(params [1, ...],
    opt_state, hp, xs[C,1,B], ys[C,1,B], state) -> (params, opt_state,
    losses[W, 1], final_state), W = C // num_steps windows. ``params`` are written into the model before
    fitting and read back after; ``opt_state`` and ``hp`` are passed through
    unused (the Keras optimizer keeps its own slots across epochs, built from the
    run's OptimizerConfig). One model trains one run: a pack of this backend is
    trained member by member.
    """

    def __init__(self, backend: "KerasFitBackend", cfg: RunConfig):
        self.backend, self.cfg = backend, cfg
        self.model = None

    def _build(self, batch: int, num_steps: int, windows: int) -> None:
        import keras

        be = self.backend
        inputs = keras.Input(batch_shape=(batch, num_steps, NUM_CLASSES))
        self.rnn = keras.layers.RNN(make_cell(be.cell, be.state_size), stateful=True, return_sequences=True)
        self.rnn.trainable = self.cfg.model.train_recurrent  # false: the reservoir control (output layer only)
        self.dense = keras.layers.Dense(NUM_CLASSES)
        self.model = keras.Model(inputs, self.dense(self.rnn(inputs)))
        self.metric = _window_losses_metric(windows, num_steps)
        self.model.compile(optimizer=keras_optimizer(self.cfg.train.optimizer),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           # "auto": Keras' own choice. It declines XLA while TF op determinism is on
                           # (rnn_sweep.run.runtime turns it on), and forcing it stalls this stateful model.
                           metrics=[self.metric], jit_compile="auto" if self.cfg.train.xla else False,
                           steps_per_execution=min(STEPS_PER_EXECUTION, windows))

    def set_params(self, params: dict) -> None:
        """Write a params dict (the backend's layout) into the Keras model."""
        weights = cell_weights(self.backend.cell, params)
        for v in self.rnn.cell.weights:  # trainable or, in the reservoir control, frozen
            v.assign(np.asarray(weights[v.name]))
        self.dense.kernel.assign(np.asarray(params["U"]))
        self.dense.bias.assign(np.asarray(params["c"]))

    def get_params(self) -> dict[str, np.ndarray]:
        """The model's weights as a params dict in the backend's layout."""
        w = {v.name: v.numpy() for v in self.rnn.cell.weights}
        out = ({"W": np.concatenate([w["kernel"], w["recurrent_kernel"]]), "b": w["bias"]}
               if self.backend.cell == "rnn" else w)
        return {**out, "U": self.dense.kernel.numpy(), "c": self.dense.bias.numpy()}

    def __call__(self, params, opt_state, hp, xs, ys, state):
        params, opt_state, losses, _, final = self.with_step_losses(params, opt_state, hp, xs, ys, state)
        return params, opt_state, losses, final

    def updates(self, columns: int) -> int:
        """Windows (updates) in an epoch of ``columns`` steps per row."""
        return columns // self.cfg.num_steps

    def with_step_losses(self, params, opt_state, hp, xs, ys, state, first: int = 0, stop: int | None = None):
        """As the call, plus the step losses [W * n, 1] (see :func:`rnn_sweep.model.engine.epoch_fn`);
        ``first``/``stop``: only windows first..stop-1, the stateful layer carrying its state
        from the previous segment (``state`` is not used: the layer keeps its own)."""
        import tensorflow as tf

        if xs.shape[1] != 1:
            raise ValueError(f"model.fit trains one run at a time, got a pack of {xs.shape[1]}")
        params = {k: np.asarray(v)[0] for k, v in params.items()}
        n = self.cfg.num_steps
        xs, ys = (to_windows(np.asarray(a)[:, 0].T, n) for a in (xs, ys))  # [W, B, n]
        if self.model is None:
            self._build(xs.shape[1], xs.shape[2], xs.shape[0])
        elif xs.shape[0] > self.metric.capacity:
            raise ValueError(f"{xs.shape[0]} windows in this epoch, more than the first epoch's "
                             f"{self.metric.capacity}")
        xs, ys = xs[first:stop], ys[first:stop]
        windows, batch, num_steps = xs.shape
        self.set_params(params)
        if first == 0:
            self.rnn.reset_state()  # state reset per epoch, as in the article
        # Window-major rows: batch i of fit is window i (shuffle=False keeps the order).
        x = np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(xs, np.int64).reshape(windows * batch, num_steps)]
        y = np.asarray(ys, np.int32).reshape(windows * batch, num_steps)
        collect = _collector(self.metric)
        self.model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[collect])
        new = {k: tf.constant(v[None]) for k, v in self.get_params().items()}
        final = tuple(tf.constant(s.numpy()[None]) for s in self.rnn.states)
        steps = collect.losses  # [W, n]
        losses = tf.constant(steps.mean(axis=1, dtype=np.float32)[:, None])
        return new, opt_state, losses, tf.constant(steps.reshape(-1, 1)), final


class KerasFitBackend(DynamicBackend):
    """``model.backend=keras``: trains with ``model.fit``; functionally the dynamic backend.

    ``unroll``/``init_params``/``zero_state`` are the dynamic backend's (same
    layout, same cell), used for evaluation; :meth:`make_epoch_fn` gives the
    ``model.fit`` training path that ``train()`` dispatches to.
    """

    name = "keras"

    def make_epoch_fn(self, cfg: RunConfig) -> Callable:
        """A fresh :class:`KerasFit` for one run (its own model and optimizer)."""
        return KerasFit(self, cfg)
