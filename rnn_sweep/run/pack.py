"""A pack: K compatible runs trained as one compiled program (no files; see train.py for records).

Runs are compatible when they share everything that shapes the compiled program
and the data: they may differ only in ``seed`` and the optimizer's numeric
hyper-parameters (plus execution-only settings). Replica k of a pack is exactly
the run ``cfgs[k]`` alone: its weights are ``init_params([seed_k])``, its data
``rng_for(seed_k, ...)``, its hyper-parameters slice [k] of [K] tensors, and no
operation mixes replicas (see :mod:`rnn_sweep.model.truncation` for why the gradients
stay each replica's own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rnn_sweep.task import data as data_mod
from rnn_sweep.task import probe
from rnn_sweep.task.config import RunConfig
from rnn_sweep.run.packing import PER_REPLICA, shared_settings

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

        from rnn_sweep.model import engine
        from rnn_sweep.model import optimizers as optim
        from rnn_sweep.model.backends import build_backend

        self.cfgs = list(cfgs)
        cfg = self.cfgs[0]
        self.seeds = [c.seed for c in self.cfgs]
        self.backend = build_backend(cfg.model, cfg.state_size)
        self.params = {k: tf.constant(v) for k, v in self.backend.init_params(self.seeds).items()}
        self.hp = optim.stacked_hyperparams([c.train.optimizer for c in self.cfgs])
        self.opt_state = optim.init_state(cfg.train.optimizer.name, self.params, self.hp)
        self._checkpoint_data: list | None = None
        self._checkpoint_refs: list = []  # per replica: heldout_reference of its checkpoint data
        self.stopped: set[int] = set()  # replicas that stopped training (train.stop_patience)
        if hasattr(self.backend, "make_epoch_fn"):  # model.backend=keras trains with model.fit, same signature
            self.fn = self.backend.make_epoch_fn(cfg)
        else:
            self.fn = engine.epoch_fn(self.backend, cfg.train.optimizer.name, cfg.truncation.style, cfg.train.xla,
                                      cfg.num_steps, update_every=cfg.truncation.update_every,
                                      frozen=engine.frozen_params(cfg.model.train_recurrent))

    @property
    def size(self) -> int:
        """K, the number of replicas."""
        return len(self.cfgs)

    def train_epoch(self, epoch: int, checkpoints: int = 0, limit: int | None = None,
                    on_checkpoint=None) -> "EpochResult":
        """One epoch of every replica, measured on held-out data at ``checkpoints`` points of it.

        The epoch's updates are made in segments ending at :func:`checkpoint_stops` (the
        first epoch spaced as ``train.checkpoint_spacing`` says, later ones evenly) and, with
        ``limit``, at most ``limit`` updates (a data budget ending inside the epoch). After
        each segment every replica's held-out loss and learned fractions are measured on its
        checkpoint data (:meth:`checkpoint_metrics`) and ``on_checkpoint(updates done,
        metrics)`` may return replicas that stop there: their learning rate becomes 0, so
        their parameters never change again (exactly: a zero step under adagrad, sgd and
        adam), and once every replica has stopped the epoch ends. The segments run one
        compiled program and equal the epoch made at once.
        """
        cfg = self.cfgs[0]
        t0 = time.perf_counter()
        xs, ys = data_mod.pack_epoch_steps(cfg.data, cfg.data.length, cfg.train.batch_size, self.seeds, epoch)
        data_s = time.perf_counter() - t0
        state = self.backend.zero_state(self.size, cfg.train.batch_size)
        total = self.fn.updates(int(xs.shape[0]))
        result = EpochResult(updates=total, data_s=data_s)
        stops = checkpoint_stops(total, checkpoints, self.cfgs[0].train.checkpoint_spacing if epoch == 0 else "linear")
        if limit is not None and limit < total:
            stops = [s for s in stops if s < limit] + [limit]
        first = 0
        for stop in stops:
            t1 = time.perf_counter()
            self.params, self.opt_state, losses, steps, state = self.fn.with_step_losses(
                self.params, self.opt_state, self.hp, xs, ys, state, first=first, stop=stop)
            result.losses.append(np.asarray(losses))
            result.step_losses.append(np.asarray(steps))
            result.train_s += time.perf_counter() - t1
            first = stop
            if checkpoints:
                t2 = time.perf_counter()
                metrics = self.checkpoint_metrics()
                result.checkpoints.append((stop, metrics))
                result.eval_s += time.perf_counter() - t2
                if on_checkpoint is not None and self.stop(on_checkpoint(stop, metrics)):
                    break
        return result

    def stop(self, replicas) -> bool:
        """Stop training ``replicas`` (their learning rate becomes 0); True once every replica has stopped."""
        import tensorflow as tf

        new = set(replicas) - self.stopped
        if new:
            self.stopped |= new
            lr = self.hp["lr"].numpy().copy()
            lr[sorted(new)] = 0.0
            self.hp = {**self.hp, "lr": tf.constant(lr)}
        return len(self.stopped) == self.size

    def positions_per_update(self) -> int:
        """Positions of each row one update trains: n (TF style) or u (true style)."""
        cfg = self.cfgs[0]
        return cfg.num_steps if cfg.truncation.style == "tf" else (cfg.truncation.update_every or cfg.num_steps)

    def checkpoint_metrics(self) -> list[dict | Exception]:
        """Every replica's held-out numbers (:func:`heldout_metrics`) on its checkpoint data; a
        replica whose measurement raised gets the exception instead (one member's problem)."""
        if self._checkpoint_data is None:
            cfg = self.cfgs[0]
            self._checkpoint_data = self._held_out(cfg.train.checkpoint_eval_length, data_mod.CHECKPOINT_STREAM)
            self._checkpoint_refs = [None] * self.size
        try:
            predictions = self._predict(self._checkpoint_data)
        except Exception as err:  # noqa: BLE001 -- every member alike; the caller decides
            return [err] * self.size
        out: list[dict | Exception] = []
        for k, (cfg, (p, f)) in enumerate(zip(self.cfgs, predictions)):
            try:
                if self._checkpoint_refs[k] is None:  # the same data at every checkpoint: score it once
                    self._checkpoint_refs[k] = heldout_reference(cfg, f, p.shape[1])
                out.append(heldout_metrics(cfg, p, f, self._checkpoint_refs[k]))
            except Exception as err:  # noqa: BLE001 -- this member's own failure
                out.append(err)
        return out

    def heldout_predictions(self) -> list[tuple[np.ndarray, tuple]]:
        """Every replica's predictions on its own fresh held-out data, in ONE compiled pass.

        Returns per replica (p_rows float32 [B, C] = P(Y=1) along its held-out rows,
        its data ``generate_full(...)`` tuple); pass them to :func:`heldout_metrics`.
        A replica whose parameters are not finite gets NaNs; it cannot disturb the others.
        """
        return self._predict(self._held_out(self.cfgs[0].data.eval_length, data_mod.EVAL_STREAM))

    def _held_out(self, length: int, stream: int) -> list[tuple]:
        """Each replica's held-out data (``generate_full`` tuples) of ``length`` steps from ``stream``."""
        cfg = self.cfgs[0]
        drawn = {s: data_mod.generate_full(cfg.data, length, data_mod.rng_for(s, stream))
                 for s in dict.fromkeys(self.seeds)}
        return [drawn[s] for s in self.seeds]

    def _predict(self, full: list[tuple]) -> list[tuple[np.ndarray, tuple]]:
        from rnn_sweep.model import engine

        cfg = self.cfgs[0]
        b = cfg.train.batch_size
        xs = data_mod.steps_major([data_mod.to_rows(f[0], b) for f in full])  # [C, K, B]
        # Compiled with XLA when training is: the program does not depend on n, so a sweep
        # compiles it once per state size (and pack size, and held-out length), and it then
        # runs in milliseconds.
        predict = engine.predict_fn(self.backend, xla=cfg.train.xla)
        p = np.asarray(predict(self.params, xs, self.backend.zero_state(self.size, b)))
        return [(p[:, k].T, f) for k, f in enumerate(full)]


LOG_SPAN = 256  # log spacing: the first checkpoint of an epoch after 1/256 of its updates


def checkpoint_stops(total: int, checkpoints: int, spacing: str = "linear") -> list[int]:
    """The update counts (1..total, the last = total) after which an epoch's checkpoints are measured.

    ``linear``: evenly spaced, k/c of the epoch. ``log``: geometrically spaced from
    1/256 of the epoch to its end (10 points: 0.4%, 0.7%, 1.3%, 2.5%, 4.6%, 8.5%,
    16%, 29%, 54%, 100%), so that early learning -- lag 3 is learned within the
    first few percent of the article's epoch at d >= 8 -- falls between checkpoints
    instead of before the first. Counts that round to the same update are measured
    once; ``checkpoints=0``: ``[total]`` (one segment, no checkpoint).
    """
    if checkpoints <= 0 or total <= 0:
        return [total]
    if spacing == "log" and checkpoints > 1:
        fractions = [LOG_SPAN ** ((i - checkpoints + 1) / (checkpoints - 1)) for i in range(checkpoints)]
    else:
        fractions = [(i + 1) / checkpoints for i in range(checkpoints)]
    return sorted(({max(1, round(total * f)) for f in fractions}) | {total})


@dataclass
class EpochResult:
    """One epoch of a pack: losses per update [U, K] and per trained position [P, K] (segment by
    segment, see :meth:`Pack.train_epoch`), the checkpoints as (updates done, metrics per replica),
    and seconds spent drawing data, training and measuring checkpoints."""

    updates: int
    losses: list = field(default_factory=list)
    step_losses: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    data_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0

    def update_losses(self) -> np.ndarray:
        return np.concatenate(self.losses)

    def position_losses(self) -> np.ndarray:
        return np.concatenate(self.step_losses)


def heldout_reference(cfg: RunConfig, full: tuple, columns: int) -> dict:
    """What a run's held-out score needs that does not depend on the model: the targets, the true
    probabilities and lagged inputs on the positions training's windows cover (the first
    (C // n) * n of each of the B rows, flattened), the undefined fractions, the true effects
    and the optimal loss. Computed once per run for its checkpoint data (:meth:`Pack.checkpoint_metrics`)."""
    _, y, p_true, lagged = full
    b = cfg.train.batch_size
    used = (columns // cfg.num_steps) * cfg.num_steps

    def rows(a):  # sequence -> the [B, used] positions the windows cover, flattened
        return data_mod.to_rows(a, b)[:, :used].reshape(-1)

    truth, inputs, lags = rows(p_true), [rows(xl) for xl in lagged], [d.lag for d in cfg.data.dependencies]
    undefined = probe.undefined_fractions(truth, inputs, lags)
    targets = rows(y)
    return {"used": used, "targets": targets, "truth": truth, "inputs": inputs, "lags": lags,
            "undefined": undefined, "optimal": probe.cross_entropy(truth, targets),
            "true_effects": [probe.effect(truth, xl) for xl in inputs]}


def heldout_metrics(cfg: RunConfig, p_rows: np.ndarray, full: tuple, ref: dict | None = None) -> dict:
    """One run's held-out numbers from its predictions p_rows [B, C] on its data ``full``.

    Scored on the positions training's windows of n cover (the first (C // n) * n
    of each row), as the article evaluates. ``ref``: :func:`heldout_reference` of the same
    data, when the caller keeps it.

    Returns heldout_loss and heldout_optimal_loss (nats), learned_fraction {str(lag): fraction or
    None}, learned_fraction_note {str(lag): why that fraction is None}.
    """
    ref = ref or heldout_reference(cfg, full, p_rows.shape[1])
    p_model = p_rows[:, :ref["used"]].reshape(-1)
    fractions = {str(lag): None if str(lag) in ref["undefined"] else probe.effect(p_model, xl) / true
                 for lag, xl, true in zip(ref["lags"], ref["inputs"], ref["true_effects"])}
    return {
        "heldout_loss": probe.cross_entropy(p_model, ref["targets"]),
        "heldout_optimal_loss": ref["optimal"],
        "learned_fraction": fractions,
        # Why a fraction is null (a dependency with no effect has nothing to learn).
        "learned_fraction_note": ref["undefined"],
    }
