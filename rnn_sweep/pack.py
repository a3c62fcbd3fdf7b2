"""A pack: K compatible runs trained as one compiled program (no files; see train.py for records).

Runs are compatible when they share everything that shapes the compiled program
and the data: they may differ only in ``seed`` and the optimizer's numeric
hyper-parameters (plus execution-only settings). Replica k of a pack is exactly
the run ``cfgs[k]`` alone: its weights are ``init_params([seed_k])``, its data
``rng_for(seed_k, ...)``, its hyper-parameters slice [k] of [K] tensors, and no
operation mixes replicas (see :mod:`rnn_sweep.truncation` for why the gradients
stay each replica's own).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from rnn_sweep import data as data_mod
from rnn_sweep import probe
from rnn_sweep.config import RunConfig
from rnn_sweep.packing import PER_REPLICA, shared_settings

# Keys that may differ inside a pack: they enter the compiled program as tensors
# (seed through the data and initial weights) or do not touch the results at all.
def check_packable(cfgs: Sequence[RunConfig]) -> None:
    """Raise ValueError naming the first key in which two runs of a would-be pack differ."""
    if not cfgs:
        raise ValueError("a pack needs at least one run configuration")
    if any(c.train.replicas != 1 for c in cfgs):
        raise ValueError("train.replicas must be 1 for every member of a pack (each member is one run)")
    first = shared_settings(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], start=1):
        for key, value in shared_settings(cfg).items():
            if first.get(key) != value:
                raise ValueError(f"runs 0 and {i} cannot share a pack: they differ in {key} "
                                 f"({first.get(key)} vs {value}); only {', '.join(PER_REPLICA)} may differ")


class Pack:
    """The compiled training state of K runs: stacked parameters, optimizer slots, epoch function.

    Args:
        cfgs: the members' validated configurations (see :func:`check_packable`).
    """

    def __init__(self, cfgs: Sequence[RunConfig]):
        import tensorflow as tf

        from rnn_sweep import engine, optim
        from rnn_sweep.models import build_backend

        self.cfgs = list(cfgs)
        cfg = self.cfgs[0]
        self.seeds = [c.seed for c in self.cfgs]
        self.backend = build_backend(cfg.model, cfg.state_size)
        self.params = {k: tf.constant(v) for k, v in self.backend.init_params(self.seeds).items()}
        self.hp = optim.stacked_hyperparams([c.train.optimizer for c in self.cfgs])
        self.opt_state = optim.init_state(cfg.train.optimizer.name, self.params, self.hp)
        if hasattr(self.backend, "make_epoch_fn"):  # model.backend=keras trains with model.fit, same signature
            self.fn = self.backend.make_epoch_fn(cfg)
        else:
            self.fn = engine.epoch_fn(self.backend, cfg.train.optimizer.name, cfg.truncation.style, cfg.train.xla,
                                      cfg.num_steps, update_every=cfg.truncation.update_every)

    @property
    def size(self) -> int:
        """K, the number of replicas."""
        return len(self.cfgs)

    def train_epoch(self, epoch: int) -> tuple[np.ndarray, float, float]:
        """One epoch of every replica; returns (losses float32 [U, K], data seconds, train seconds)."""
        cfg = self.cfgs[0]
        t0 = time.perf_counter()
        xs, ys = data_mod.pack_epoch_steps(cfg.data, cfg.data.length, cfg.train.batch_size, self.seeds, epoch)
        t1 = time.perf_counter()
        state = self.backend.zero_state(self.size, cfg.train.batch_size)
        self.params, self.opt_state, losses, _ = self.fn(self.params, self.opt_state, self.hp, xs, ys, state)
        losses = np.asarray(losses)
        return losses, t1 - t0, time.perf_counter() - t1

    def heldout_predictions(self) -> list[tuple[np.ndarray, tuple]]:
        """Every replica's predictions on its own fresh held-out data, in ONE compiled pass.

        Returns per replica (p_rows float32 [B, C] = P(Y=1) along its held-out rows,
        its data ``generate_full(...)`` tuple); pass them to :func:`heldout_metrics`.
        A replica whose parameters are not finite gets NaNs; it cannot disturb the others.
        """
        from rnn_sweep import engine

        cfg = self.cfgs[0]
        b = cfg.train.batch_size
        drawn = {s: data_mod.generate_full(cfg.data, cfg.data.eval_length, data_mod.rng_for(s, data_mod.EVAL_STREAM))
                 for s in dict.fromkeys(self.seeds)}
        full = [drawn[s] for s in self.seeds]
        xs = data_mod.steps_major([data_mod.to_rows(f[0], b) for f in full])  # [C, K, B]
        # Compiled with XLA when training is: the program does not depend on n, so a sweep
        # compiles it once per state size (and pack size), and it then runs in milliseconds.
        predict = engine.predict_fn(self.backend, xla=cfg.train.xla)
        p = np.asarray(predict(self.params, xs, self.backend.zero_state(self.size, b)))
        return [(p[:, k].T, f) for k, f in enumerate(full)]


def heldout_metrics(cfg: RunConfig, p_rows: np.ndarray, full: tuple) -> dict:
    """One run's held-out numbers from its predictions p_rows [B, C] on its data ``full``.

    Scored on the positions training's windows of n cover (the first (C // n) * n
    of each row), as the article evaluates.

    Returns heldout_loss and heldout_optimal_loss (nats), learned_fraction {str(lag): fraction or
    None}, learned_fraction_note {str(lag): why that fraction is None}.
    """
    _, y, p_true, lagged = full
    b = cfg.train.batch_size
    used = (p_rows.shape[1] // cfg.num_steps) * cfg.num_steps

    def rows(a):  # sequence -> the [B, used] positions the windows cover, flattened
        return data_mod.to_rows(a, b)[:, :used].reshape(-1)

    p_model = p_rows[:, :used].reshape(-1)
    truth, inputs, lags = rows(p_true), [rows(xl) for xl in lagged], [d.lag for d in cfg.data.dependencies]
    undefined = probe.undefined_fractions(truth, inputs, lags)
    return {
        "heldout_loss": probe.cross_entropy(p_model, rows(y)),
        "heldout_optimal_loss": probe.cross_entropy(truth, rows(y)),
        "learned_fraction": probe.learned_fractions(p_model, truth, inputs, lags, undefined),
        # Why a fraction is null (a dependency with no effect has nothing to learn).
        "learned_fraction_note": undefined,
    }
