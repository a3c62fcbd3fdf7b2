"""Functional optimizers: pure update rules on dicts of tensors.

Written out (rather than Keras optimizers) so that the whole epoch can be one
compiled loop with the optimizer state as loop variables, and so the rules are
exactly the article's: TF1 Adagrad (accumulator starts at 0.1, no epsilon),
plain SGD, and TF1 Adam (epsilon outside the square root, bias-corrected lr).
"""

from __future__ import annotations

from rnn_sweep.config import OptimizerConfig


def hyperparams(cfg: OptimizerConfig) -> dict[str, float]:
    """The numeric hyper-parameters, passed to compiled code as tensors (no retrace)."""
    return {"lr": cfg.lr, "initial_accumulator": cfg.initial_accumulator,
            "beta1": cfg.beta1, "beta2": cfg.beta2, "epsilon": cfg.epsilon}


def init_state(name: str, params: dict, hp: dict) -> dict:
    """Optimizer slots for ``params`` (a dict of tensors)."""
    import tensorflow as tf

    if name == "sgd":
        return {}
    if name == "adagrad":
        return {"acc": {k: tf.ones_like(v) * tf.cast(hp["initial_accumulator"], v.dtype) for k, v in params.items()}}
    if name == "adam":
        return {"m": {k: tf.zeros_like(v) for k, v in params.items()},
                "v": {k: tf.zeros_like(v) for k, v in params.items()},
                "t": tf.constant(0.0, tf.float32)}
    raise ValueError(f"train.optimizer.name={name!r}: allowed values are adagrad, sgd, adam")


def apply(name: str, params: dict, grads: dict, state: dict, hp: dict) -> tuple[dict, dict]:
    """One update; returns (new_params, new_state). Shapes and dtypes are preserved."""
    import tensorflow as tf

    lr = tf.cast(hp["lr"], tf.float32)
    if name == "sgd":
        return {k: params[k] - lr * grads[k] for k in params}, state
    if name == "adagrad":
        acc = {k: state["acc"][k] + tf.square(grads[k]) for k in params}
        new = {k: params[k] - lr * grads[k] * tf.math.rsqrt(acc[k]) for k in params}
        return new, {"acc": acc}
    if name == "adam":
        b1, b2 = tf.cast(hp["beta1"], tf.float32), tf.cast(hp["beta2"], tf.float32)
        eps = tf.cast(hp["epsilon"], tf.float32)
        t = state["t"] + 1.0
        lr_t = lr * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
        m = {k: b1 * state["m"][k] + (1.0 - b1) * grads[k] for k in params}
        v = {k: b2 * state["v"][k] + (1.0 - b2) * tf.square(grads[k]) for k in params}
        new = {k: params[k] - lr_t * m[k] / (tf.sqrt(v[k]) + eps) for k in params}
        return new, {"m": m, "v": v, "t": t}
    raise ValueError(f"train.optimizer.name={name!r}: allowed values are adagrad, sgd, adam")
