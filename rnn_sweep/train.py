"""``train(cfg, run_dir) -> summary``: one run, end to end, with no Hydra.

Files written into ``run_dir``:

* ``losses.csv`` -- one row per logging block of ``train.log_every`` steps:
  ``epoch`` (0-based), ``step`` (global training steps completed at the block's
  end), ``loss`` (mean training loss of the block, nats), ``block_steps`` (steps
  in the block; the last block of an epoch may be shorter), ``elapsed_s``
  (seconds since training started; the epoch runs as one compiled call, so
  times inside an epoch are interpolated by step).
* ``summary.json`` -- written last, atomically (temp file + rename): its
  presence means the run finished (status ``completed`` or ``diverged``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np

from rnn_sweep import data as data_mod
from rnn_sweep import probe
from rnn_sweep.baselines import learning_levels
from rnn_sweep.config import RunConfig, updates_per_epoch, validate
from rnn_sweep.records import (  # noqa: F401  (the run record lives in rnn_sweep.records; re-exported)
    LOSS_HEADER, LOSSES_FILE, SUMMARY_FILE, ResultsWriteError, check_writable, write_json_atomic)


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def block_means(losses: np.ndarray, log_every: int) -> list[tuple[int, float]]:
    """Split per-step losses into blocks of ``log_every``: [(steps_in_block, mean)]."""
    out = []
    for start in range(0, len(losses), log_every):
        block = losses[start:start + log_every]
        out.append((len(block), float(np.mean(block))))
    return out


def _setup(cfg: RunConfig):
    from rnn_sweep.runtime import import_tf

    tf = import_tf(cfg.train.threads)
    from rnn_sweep.models import build_backend

    return tf, build_backend(cfg.model, cfg.state_size)


def evaluate(cfg: RunConfig, backend, params) -> dict:
    """Held-out loss and probe on fresh data (its own seeded stream)."""
    from rnn_sweep import engine

    b, n = cfg.train.batch_size, cfg.num_steps
    x, y, p_true, lagged = data_mod.generate_full(cfg.data, cfg.data.eval_length, data_mod.rng_for(cfg.seed, data_mod.EVAL_STREAM))
    xs = data_mod.to_windows(data_mod.to_rows(x, b), n)
    # Not XLA: one forward pass over the held-out data runs in ~0.1 s as a plain graph,
    # less than XLA needs to compile it (benchmarks/, notes/perf.md).
    p_win = engine.predict_fn(backend, xla=False)(params, xs, backend.zero_state(b)).numpy()
    used = xs.shape[0] * n

    def rows(a):  # sequence -> the [B, used] positions the windows cover, flattened
        return data_mod.to_rows(a, b)[:, :used].reshape(-1)

    p_model = p_win.transpose(1, 0, 2).reshape(b, used).reshape(-1)
    return {
        "heldout_loss": probe.cross_entropy(p_model, rows(y)),
        "heldout_optimal_loss": probe.cross_entropy(rows(p_true), rows(y)),
        "learned_fraction": probe.learned_fractions(
            p_model, rows(p_true), [rows(xl) for xl in lagged], [d.lag for d in cfg.data.dependencies]),
    }


def train(cfg: RunConfig, run_dir: str | os.PathLike, overwrite: bool = False) -> dict:
    """Train one configuration and write its results into ``run_dir``.

    Args:
        cfg: a validated (or to-be-validated) run configuration.
        run_dir: output directory; created if missing.
        overwrite: replace a completed run's files; otherwise an existing
            ``summary.json`` raises FileExistsError (finished results are never lost).

    Returns:
        The summary dict also written to ``run_dir/summary.json``. With
        ``train.replicas`` K > 1: each seed's record goes to ``run_dir/seed=<s>/``
        and the return value is :func:`rnn_sweep.replicas.combined_summary`.
    """
    validate(cfg)
    if cfg.train.replicas > 1:  # K seeds as one vectorised computation, one record per seed
        from rnn_sweep.replicas import combined_summary, train_replicas

        return combined_summary(train_replicas(cfg, run_dir, overwrite))
    run_dir = Path(run_dir)
    check_writable(run_dir)
    if (run_dir / SUMMARY_FILE).exists() and not overwrite:
        raise FileExistsError(f"{run_dir / SUMMARY_FILE} exists: this run already finished (pass overwrite to redo it)")
    t_start = time.perf_counter()
    tf, backend = _setup(cfg)
    from tqdm.auto import tqdm

    from rnn_sweep import engine, optim

    t_import = time.perf_counter() - t_start
    b, n = cfg.train.batch_size, cfg.num_steps
    init = backend.init_params(cfg.seed)
    params = {k: tf.constant(v) for k, v in init.items()}
    hp = {k: tf.constant(v, tf.float32) for k, v in optim.hyperparams(cfg.train.optimizer).items()}
    opt_state = optim.init_state(cfg.train.optimizer.name, params, hp)
    if hasattr(backend, "make_epoch_fn"):  # model.backend=keras trains with model.fit, same signature
        fn = backend.make_epoch_fn(cfg)
    else:
        fn = engine.epoch_fn(backend, cfg.train.optimizer.name, cfg.truncation.style, cfg.train.xla,
                             update_every=cfg.truncation.update_every)

    status, diverged_at, step, epoch_times, data_time = "completed", None, 0, [], 0.0
    last_block = float("nan")
    windows = updates_per_epoch(cfg)  # = windows for TF style; true style: every update_every steps
    bar = tqdm(total=cfg.train.epochs * windows, unit="step", disable=None if cfg.train.progress else True,
               desc=f"{backend.name} n={n} d={cfg.state_size} seed={cfg.seed}", leave=False)
    t_train = time.perf_counter()
    with open(run_dir / LOSSES_FILE, "w") as out:
        out.write(LOSS_HEADER)
        for epoch in range(cfg.train.epochs):
            t0 = time.perf_counter()
            xs, ys = data_mod.epoch_windows(cfg.data, cfg.data.length, b, n,
                                            data_mod.rng_for(cfg.seed, data_mod.TRAIN_STREAM, epoch))
            t1 = time.perf_counter()
            params, opt_state, losses, _ = fn(params, opt_state, hp, xs, ys, backend.zero_state(b))
            losses = losses.numpy()
            t2 = time.perf_counter()
            data_time += t1 - t0
            epoch_times.append(t2 - t1)
            e0, e1 = t0 - t_train, t2 - t_train
            for size, mean in block_means(losses, cfg.train.log_every):
                step += size
                done = (step - epoch * windows) / windows
                out.write(f"{epoch},{step},{mean!r},{size},{e0 + done * (e1 - e0):.4f}\n")
                last_block = mean
                if diverged_at is None and not (math.isfinite(mean) and mean <= cfg.train.diverge_loss):
                    status, diverged_at = "diverged", step
                    break
            out.flush()
            bar.update(windows)
            bar.set_postfix(loss=f"{last_block:.4f}")
            if status == "diverged":
                break
    bar.close()
    t_eval = time.perf_counter()
    ev = evaluate(cfg, backend, params) if status == "completed" else {
        "heldout_loss": None, "heldout_optimal_loss": None, "learned_fraction": {}}
    t_end = time.perf_counter()
    summary = {
        "status": status,
        "backend": cfg.model.backend, "cell": cfg.model.cell, "style": cfg.truncation.style,
        "num_steps": n, "state_size": cfg.state_size, "seed": cfg.seed,
        "final_loss": _finite_or_none(last_block),
        "heldout_loss": ev["heldout_loss"],
        "heldout_optimal_loss": ev["heldout_optimal_loss"],
        "learned_fraction": ev["learned_fraction"],
        "levels": [lv.to_dict() for lv in learning_levels(cfg.data)],
        "steps": step, "epochs_completed": len(epoch_times), "diverged_at_step": diverged_at,
        "timings": {
            "total_s": t_end - t_start, "import_s": t_import, "data_s": data_time,
            "train_s": t_eval - t_train, "eval_s": t_end - t_eval, "epoch_s": epoch_times,
            "first_epoch_s": epoch_times[0] if epoch_times else None,
            "warm_epoch_s": float(np.median(epoch_times[1:])) if len(epoch_times) > 1 else None,
        },
        "versions": __import__("rnn_sweep.runtime", fromlist=["versions"]).versions(),
        "config": dataclasses.asdict(cfg),
        "error": None,
    }
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
    return summary
