"""``train.replicas=K``: K seeds of one configuration trained as ONE vectorised computation.

Replica k is the run with seed ``cfg.seed + k``: its weights are
``init_params(seed + k)`` and it sees exactly the data that run would see
(``rng_for(seed + k, ...)``). The K parameter sets are stacked along a leading
axis ([K, ...]) and every matrix product becomes a batched one, so one compiled
epoch (:func:`rnn_sweep.engine.epoch_fn`) trains all of them at little more than
the cost of one: at this model size an epoch is dominated by per-operation
overhead, not arithmetic.

Why the gradients stay independent: the objective is the SUM over replicas of
each replica's own mean window loss. Replica k's parameters only influence its
own term, so the slice [k] of the gradient is exactly replica k's gradient, and
the elementwise optimizers of :mod:`rnn_sweep.optim` update each slice as the
single run would.

Each replica writes its own complete run record (``losses.csv``,
``summary.json``) into ``<run_dir>/seed=<seed>/``; the run directory itself
gets no summary, so the aggregator, which finds runs by their summary.json,
sees K ordinary runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np

from rnn_sweep import data as data_mod
from rnn_sweep.config import RunConfig, validate

NUM_CLASSES = 2


def replica_seeds(cfg: RunConfig) -> list[int]:
    """The seeds of the replicas: seed, seed+1, ..., seed+K-1."""
    return [cfg.seed + k for k in range(cfg.train.replicas)]


def replica_config(cfg: RunConfig, seed: int) -> RunConfig:
    """The single-run configuration replica ``seed`` is equivalent to (replicas=1)."""
    return dataclasses.replace(cfg, seed=seed, train=dataclasses.replace(cfg.train, replicas=1))


def replica_dir(run_dir: str | os.PathLike, seed: int) -> Path:
    """Where the replica with ``seed`` writes its run record."""
    return Path(run_dir) / f"seed={seed}"


class StackedScratch:
    """K copies of :class:`~rnn_sweep.models.ScratchBackend` with stacked parameters.

    Parameters: W [K, 2+d, d], b [K, d], U [K, d, 2], c [K, 2]; state [K, B, d];
    ``unroll`` takes x [K, B, T, 2] and returns logits [K, B, T, 2].
    """

    cell = "rnn"

    def __init__(self, single, replicas: int):
        self.single = single
        self.replicas = replicas
        self.state_size = single.state_size
        self.name = f"{single.name}-x{replicas}"  # part of the engine's compile-cache key

    def init_params(self, seeds: list[int]) -> dict[str, np.ndarray]:
        inits = [self.single.init_params(s) for s in seeds]
        return {k: np.stack([p[k] for p in inits]) for k in inits[0]}

    def zero_state(self, batch: int) -> tuple:
        import tensorflow as tf

        return (tf.zeros([self.replicas, batch, self.state_size], tf.float32),)

    def unroll(self, params: dict, x, state: tuple):
        import tensorflow as tf

        W, b, U, c = params["W"], params["b"], params["U"], params["c"]
        k, batch, steps = x.shape[0], x.shape[1], x.shape[2]
        d = self.state_size
        # Same formulation as ScratchBackend.unroll, with one leading replica axis.
        xw = tf.matmul(tf.reshape(x, [k, batch * steps, NUM_CLASSES]), W[:, :NUM_CLASSES])
        xw = tf.reshape(xw, [k, batch, steps, d]) + b[:, None, None, :]
        w_s = W[:, NUM_CLASSES:]
        s = state[0]
        outs = []
        for t in range(steps):
            if d <= 8:  # tiny d: multiply + sum fuses into one XLA kernel (see models._small_matmul)
                rec = tf.reduce_sum(s[:, :, :, None] * w_s[:, None], axis=2)
            else:
                rec = tf.matmul(s, w_s)
            s = tf.tanh(xw[:, :, t] + rec)
            outs.append(s)
        h = tf.reshape(tf.stack(outs, axis=2), [k, batch * steps, d])
        logits = tf.reshape(tf.matmul(h, U) + c[:, None, :], [k, batch, steps, NUM_CLASSES])
        return logits, (s,)


def stacked_step(backend, params, x, y, state):
    """TF-style BPTT(n, n) step for all replicas: per-replica losses [K], stacked grads."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(params)
        logits, new_state = backend.unroll(params, x, state)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        per_replica = tf.reduce_mean(ce, axis=[1, 2])
        total = tf.reduce_sum(per_replica)  # d total / d params[k] = d loss_k / d params[k]
    grads = tape.gradient(total, params)
    return per_replica, grads, tuple(tf.stop_gradient(s) for s in new_state)


def epoch_data(cfg: RunConfig, seeds: list[int], epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Each replica's own training data for ``epoch``: (x, y), int8 [W, K, B, n]."""
    b, n = cfg.train.batch_size, cfg.num_steps
    pairs = [data_mod.epoch_windows(cfg.data, cfg.data.length, b, n,
                                    data_mod.rng_for(s, data_mod.TRAIN_STREAM, epoch)) for s in seeds]
    return np.stack([p[0] for p in pairs], axis=1), np.stack([p[1] for p in pairs], axis=1)


class ReplicaLog:
    """One replica's losses.csv, divergence status and last block, as a single run keeps them."""

    def __init__(self, run_dir: Path, seed: int):
        from rnn_sweep.train import LOSS_HEADER, LOSSES_FILE

        self.dir, self.seed = run_dir, seed
        self.file = open(run_dir / LOSSES_FILE, "w")
        self.file.write(LOSS_HEADER)
        self.status, self.diverged_at, self.step, self.epochs = "completed", None, 0, 0
        self.last_block = float("nan")

    def log_epoch(self, epoch: int, losses: np.ndarray, cfg: RunConfig, e0: float, e1: float) -> None:
        """Write one epoch's blocks (stops at the first diverged block, like train())."""
        from rnn_sweep.train import block_means

        if self.status == "diverged":
            return
        windows = len(losses)
        self.epochs += 1
        for size, mean in block_means(losses, cfg.train.log_every):
            self.step += size
            done = (self.step - epoch * windows) / windows
            self.file.write(f"{epoch},{self.step},{mean!r},{size},{e0 + done * (e1 - e0):.4f}\n")
            self.last_block = mean
            if not (math.isfinite(mean) and mean <= cfg.train.diverge_loss):
                self.status, self.diverged_at = "diverged", self.step
                break
        self.file.flush()


def _prepare_dirs(run_dir: Path, seeds: list[int], overwrite: bool) -> list[Path]:
    from rnn_sweep.train import SUMMARY_FILE

    dirs = [replica_dir(run_dir, s) for s in seeds]
    for d in dirs:
        if (d / SUMMARY_FILE).exists() and not overwrite:
            raise FileExistsError(f"{d / SUMMARY_FILE} exists: this run already finished (pass overwrite to redo it)")
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def _train_loop(cfg, stacked, fn, params, opt_state, hp, logs) -> tuple:
    """All epochs; returns (params, epoch_times, data_time, t_train)."""
    seeds = [lg.seed for lg in logs]
    epoch_times, data_time, t_train = [], 0.0, time.perf_counter()
    for epoch in range(cfg.train.epochs):
        t0 = time.perf_counter()
        xs, ys = epoch_data(cfg, seeds, epoch)
        t1 = time.perf_counter()
        params, opt_state, losses, _ = fn(params, opt_state, hp, xs, ys, stacked.zero_state(cfg.train.batch_size))
        losses = losses.numpy()  # [W, K]
        t2 = time.perf_counter()
        data_time += t1 - t0
        epoch_times.append(t2 - t1)
        for k, lg in enumerate(logs):
            lg.log_epoch(epoch, losses[:, k], cfg, t0 - t_train, t2 - t_train)
        if all(lg.status == "diverged" for lg in logs):
            break
    return params, epoch_times, data_time, t_train


def train_replicas(cfg: RunConfig, run_dir: str | os.PathLike, overwrite: bool = False) -> list[dict]:
    """Train ``cfg.train.replicas`` seeds of ``cfg`` as one computation.

    Returns the per-replica summaries, each also written to
    ``<run_dir>/seed=<seed>/summary.json`` next to its ``losses.csv``.
    """
    validate(cfg)
    seeds = replica_seeds(cfg)
    dirs = _prepare_dirs(Path(run_dir), seeds, overwrite)
    t_start = time.perf_counter()
    from rnn_sweep.train import _setup

    tf, single = _setup(cfg)
    from rnn_sweep import engine, optim

    t_import = time.perf_counter() - t_start
    stacked = StackedScratch(single, len(seeds))
    params = {k: tf.constant(v) for k, v in stacked.init_params(seeds).items()}
    hp = {k: tf.constant(v, tf.float32) for k, v in optim.hyperparams(cfg.train.optimizer).items()}
    opt_state = optim.init_state(cfg.train.optimizer.name, params, hp)
    fn = engine.epoch_fn(stacked, cfg.train.optimizer.name, "tf", cfg.train.xla, step_fn=stacked_step)
    logs = [ReplicaLog(d, s) for d, s in zip(dirs, seeds)]
    try:
        params, epoch_times, data_time, t_train = _train_loop(cfg, stacked, fn, params, opt_state, hp, logs)
    finally:
        for lg in logs:
            lg.file.close()
    t_eval = time.perf_counter()
    shared = {"import_s": t_import, "data_s": data_time, "train_s": t_eval - t_train,
              "epoch_s": epoch_times, "t_start": t_start, "t_eval": t_eval}
    return [_finish(cfg, single, {n: v[k] for n, v in params.items()}, lg, k, shared)
            for k, lg in enumerate(logs)]


def _finish(cfg: RunConfig, single, params: dict, lg: ReplicaLog, index: int, shared: dict) -> dict:
    """Evaluate replica ``index`` and write its summary.json (same keys as train())."""
    from rnn_sweep.baselines import learning_levels
    from rnn_sweep.runtime import versions
    from rnn_sweep.train import SUMMARY_FILE, _finite_or_none, evaluate, write_json_atomic

    rcfg = replica_config(cfg, lg.seed)
    t0 = time.perf_counter()
    ev = evaluate(rcfg, single, params) if lg.status == "completed" else {
        "heldout_loss": None, "heldout_optimal_loss": None, "learned_fraction": {}}
    epochs = shared["epoch_s"][:lg.epochs]
    summary = {
        "status": lg.status, "backend": cfg.model.backend, "cell": cfg.model.cell, "style": cfg.truncation.style,
        "num_steps": cfg.num_steps, "state_size": cfg.state_size, "seed": lg.seed,
        "final_loss": _finite_or_none(lg.last_block), "heldout_loss": ev["heldout_loss"],
        "heldout_optimal_loss": ev["heldout_optimal_loss"], "learned_fraction": ev["learned_fraction"],
        "levels": [lv.to_dict() for lv in learning_levels(cfg.data)],
        "steps": lg.step, "epochs_completed": lg.epochs, "diverged_at_step": lg.diverged_at,
        "timings": {  # training is shared by all replicas: its times are the whole computation's
            "total_s": time.perf_counter() - shared["t_start"], "import_s": shared["import_s"],
            "data_s": shared["data_s"], "train_s": shared["train_s"], "eval_s": time.perf_counter() - t0,
            "epoch_s": epochs, "first_epoch_s": epochs[0] if epochs else None,
            "warm_epoch_s": float(np.median(epochs[1:])) if len(epochs) > 1 else None,
        },
        "replica": {"index": index, "count": cfg.train.replicas, "first_seed": cfg.seed},
        "versions": versions(), "config": dataclasses.asdict(rcfg), "error": None,
    }
    write_json_atomic(lg.dir / SUMMARY_FILE, summary)
    return summary


def combined_summary(summaries: list[dict]) -> dict:
    """One summary-shaped dict over the replicas (means over completed ones), for the CLI's log line.

    Not written to disk: each replica's own summary.json is the record.
    """
    done = [s for s in summaries if s["status"] == "completed"]

    def mean(key):
        vals = [s[key] for s in done if s[key] is not None]
        return float(np.mean(vals)) if vals else None

    lags = done[0]["learned_fraction"].keys() if done else []
    return {
        "status": "completed" if len(done) == len(summaries) else "diverged",
        "final_loss": mean("final_loss"), "heldout_loss": mean("heldout_loss"),
        "levels": summaries[0]["levels"],
        "learned_fraction": {lag: float(np.mean([s["learned_fraction"][lag] for s in done])) for lag in lags},
        "seeds": [s["seed"] for s in summaries], "replicas": summaries,
    }
