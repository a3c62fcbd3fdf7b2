"""Functional optimizers: pure update rules on dicts of replica-stacked tensors.

Written out (rather than Keras optimizers) so that the whole epoch can be one
compiled loop with the optimizer state as loop variables, and so the rules are
exactly the article's: TF1 Adagrad (accumulator starts at 0.1, no epsilon),
plain SGD, and TF1 Adam (epsilon outside the square root, bias-corrected lr).

Every parameter has a leading replica axis [K, ...] and every hyper-parameter is
a [K] tensor (replica k's value at [k]); the rules are elementwise, so replica k
is updated exactly as it would be alone.
"""

from __future__ import annotations

from typing import Sequence

from rnn_sweep.task.config import OptimizerConfig

HYPERPARAMS = ("lr", "initial_accumulator", "beta1", "beta2", "epsilon")


def hyperparams(cfg: OptimizerConfig) -> dict[str, float]:
    """The numeric hyper-parameters of one run."""
    return {name: getattr(cfg, name) for name in HYPERPARAMS}


def stacked_hyperparams(cfgs: Sequence[OptimizerConfig]) -> dict:
    """Per-replica hyper-parameters as float32 [K] tensors (tensors, so no retrace per value)."""
    import tensorflow as tf

    return {name: tf.constant([getattr(c, name) for c in cfgs], tf.float32) for name in HYPERPARAMS}


def _per_replica(h, like):
    """[K] hyper-parameter -> shape [K, 1, ...] broadcasting against a [K, ...] tensor."""
    import tensorflow as tf

    return tf.reshape(tf.cast(h, like.dtype), [-1] + [1] * (like.shape.rank - 1))


def init_state(name: str, params: dict, hp: dict) -> dict:
    """Optimizer slots for ``params`` (a dict of [K, ...] tensors)."""
    import tensorflow as tf

    if name == "sgd":
        return {}
    if name == "adagrad":
        return {"acc": {k: tf.ones_like(v) * _per_replica(hp["initial_accumulator"], v) for k, v in params.items()}}
    if name == "adam":
        return {"m": {k: tf.zeros_like(v) for k, v in params.items()},
                "v": {k: tf.zeros_like(v) for k, v in params.items()},
                "t": tf.constant(0.0, tf.float32)}  # every replica makes the same number of steps
    raise ValueError(f"train.optimizer.name={name!r}: allowed values are adagrad, sgd, adam")


def apply(name: str, params: dict, grads: dict, state: dict, hp: dict) -> tuple[dict, dict]:
    """One update; returns (new_params, new_state). Shapes and dtypes are preserved."""
    import tensorflow as tf

    def h(key, like):
        return _per_replica(hp[key], like)

    if name == "sgd":
        return {k: params[k] - h("lr", params[k]) * grads[k] for k in params}, state
    if name == "adagrad":
        acc = {k: state["acc"][k] + tf.square(grads[k]) for k in params}
        new = {k: params[k] - h("lr", params[k]) * grads[k] * tf.math.rsqrt(acc[k]) for k in params}
        return new, {"acc": acc}
    if name == "adam":
        t = state["t"] + 1.0
        m, v, new = {}, {}, {}
        for k, p in params.items():
            b1, b2, eps = h("beta1", p), h("beta2", p), h("epsilon", p)
            lr_t = h("lr", p) * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
            m[k] = b1 * state["m"][k] + (1.0 - b1) * grads[k]
            v[k] = b2 * state["v"][k] + (1.0 - b2) * tf.square(grads[k])
            new[k] = p - lr_t * m[k] / (tf.sqrt(v[k]) + eps)
        return new, {"m": m, "v": v, "t": t}
    raise ValueError(f"train.optimizer.name={name!r}: allowed values are adagrad, sgd, adam")
