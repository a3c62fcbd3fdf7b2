"""A pack: K compatible runs trained as one compiled program (no files; see train.py for records).

Runs are compatible when they share everything that shapes the compiled program
and the data but the window length: they may differ only in ``seed``, ``num_steps``
and the optimizer's numeric hyper-parameters (plus execution-only settings). Members
with the same n train as one group in one engine call; in TF style every group runs
the same compiled program (n is a runtime number). Replica k of a pack is exactly
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


def positions_per_update(cfg: RunConfig) -> int:
    """Positions of each row one update trains: n (TF style) or u = update_every or n (true style)."""
    return cfg.num_steps if cfg.truncation.style == "tf" else (cfg.truncation.update_every or cfg.num_steps)


class _Group:
    """The members of a pack that share one window length n: one engine call trains them all.

    Args:
        members: their indices in the pack.
        cfgs: their configurations (equal but for :data:`PER_REPLICA` keys and execution settings).
        backend: the pack's backend.
    """

    def __init__(self, members: list[int], cfgs: Sequence[RunConfig], backend):
        import tensorflow as tf

        from rnn_sweep.model import engine
        from rnn_sweep.model import optimizers as optim

        cfg = cfgs[0]
        self.members, self.cfg = members, cfg
        self.params = {k: tf.constant(v) for k, v in backend.init_params([c.seed for c in cfgs]).items()}
        self.hp = optim.stacked_hyperparams([c.train.optimizer for c in cfgs])
        self.opt_state = optim.init_state(cfg.train.optimizer.name, self.params, self.hp)
        self.per_update = positions_per_update(cfg)
        if hasattr(backend, "make_epoch_fn"):  # model.backend=keras trains with model.fit, same signature
            self.fn = backend.make_epoch_fn(cfg)
        else:
            self.fn = engine.epoch_fn(backend, cfg.train.optimizer.name, cfg.truncation.style, cfg.train.xla,
                                      cfg.num_steps, update_every=cfg.truncation.update_every,
                                      frozen=engine.frozen_params(cfg.model.train_recurrent))

    def updates_at(self, position: int, total: int) -> int:
        """Updates that complete data position ``position`` of the rows (at most ``total``, the epoch's)."""
        return min(-(-int(position) // self.per_update), total)


class Pack:
    """The compiled training state of K runs: per window length n, stacked parameters, optimizer
    slots and the epoch function; held-out measurement of all K at once.

    Members that share n form a group (:class:`_Group`) trained by one engine call per
    segment; in TF style every group whose n fits one window buffer runs the same compiled
    program (n is a runtime number). Members with different n still share everything else:
    the data drawn per seed, one held-out prediction pass per checkpoint, one record.

    Args:
        cfgs: the members' validated configurations (see :func:`check_packable`).
    """

    def __init__(self, cfgs: Sequence[RunConfig]):
        from rnn_sweep.model.backends import build_backend

        self.cfgs = list(cfgs)
        cfg = self.cfgs[0]
        self.seeds = [c.seed for c in self.cfgs]
        self.backend = build_backend(cfg.model, cfg.state_size)
        by_n: dict[int, list[int]] = {}
        for k, c in enumerate(self.cfgs):
            by_n.setdefault(c.num_steps, []).append(k)
        self.groups = [_Group(members, [self.cfgs[k] for k in members], self.backend) for members in by_n.values()]
        order = [k for g in self.groups for k in g.members]
        self._member_order = np.argsort(order)  # row k of the groups' concatenation is member order[k]
        self._checkpoint_data: list | None = None
        self._checkpoint_refs: list = []  # per replica: heldout_reference of its checkpoint data
        self.stopped: set[int] = set()  # replicas that stopped training (train.stop_patience)

    @property
    def size(self) -> int:
        """K, the number of replicas."""
        return len(self.cfgs)

    @property
    def params(self) -> dict:
        """Every member's parameters stacked in member order, {name: [K, ...]}."""
        import tensorflow as tf

        if len(self.groups) == 1:
            return self.groups[0].params
        return {name: tf.gather(tf.concat([g.params[name] for g in self.groups], axis=0), self._member_order)
                for name in self.groups[0].params}

    def train_epoch(self, epoch: int, checkpoints: int = 0, limit: int | None = None,
                    on_checkpoint=None) -> "EpochResult":
        """One epoch of every replica, measured on held-out data at ``checkpoints`` points of it.

        The checkpoints sit on data positions of the rows, the same for every member
        whatever its n (:func:`checkpoint_stops` over the C positions per row; the first
        epoch spaced as ``train.checkpoint_spacing`` says, later ones evenly); ``limit``
        (positions, a data budget ending inside the epoch) ends the epoch early. At each
        stop p every member has made the updates that complete position p
        (:meth:`_Group.updates_at`); then every replica's held-out loss and learned
        fractions are measured in one pass (:meth:`checkpoint_metrics`) and
        ``on_checkpoint(updates done per member, metrics)`` may return replicas that stop
        there: their learning rate becomes 0, so their parameters never change again
        (exactly: a zero step under adagrad, sgd and adam), and once every replica has
        stopped the epoch ends. The segments run one compiled program per group and equal
        the epoch made at once.
        """
        cfg = self.cfgs[0]
        t0 = time.perf_counter()
        rows = data_mod.epoch_rows(cfg.data, cfg.data.length, cfg.train.batch_size, self.seeds, epoch)
        columns = cfg.data.length // cfg.train.batch_size
        result = EpochResult(size=self.size, data_s=time.perf_counter() - t0)
        stops = checkpoint_stops(columns, checkpoints, cfg.train.checkpoint_spacing if epoch == 0 else "linear")
        if limit is not None and limit < columns:
            stops = [s for s in stops if s < limit] + [limit]
        runs = [self._group_run(g, rows, columns) for g in self.groups]
        t1 = time.perf_counter()
        for g, run in zip(self.groups, runs):
            self._warm_up(g, run)
        result.train_s += time.perf_counter() - t1
        for stop in stops:
            t1 = time.perf_counter()
            done, before = [0] * self.size, [run["first"] for run in runs]
            for g, run in zip(self.groups, runs):
                run["first"] = self._segment(g, run, g.updates_at(stop, run["total"]), result)
                for k in g.members:
                    done[k] = run["first"]
            result.train_s += time.perf_counter() - t1
            if checkpoints and before != [run["first"] for run in runs]:  # no member moved: nothing new to measure
                t2 = time.perf_counter()
                metrics = self.checkpoint_metrics()
                result.checkpoints.append((done, metrics))
                result.eval_s += time.perf_counter() - t2
                if on_checkpoint is not None and self.stop(on_checkpoint(done, metrics)):
                    break
        return result

    def _group_run(self, group: "_Group", rows: dict, columns: int) -> dict:
        """A group's epoch in progress: its time-major data, carried state and updates made."""
        import tensorflow as tf

        b = self.cfgs[0].train.batch_size
        # Tensors once per epoch: every segment call would otherwise copy the NumPy arrays in again.
        xs = tf.constant(data_mod.steps_major([rows[self.seeds[k]][0] for k in group.members]))
        ys = tf.constant(data_mod.steps_major([rows[self.seeds[k]][1] for k in group.members]))
        return {"xs": xs, "ys": ys, "state": self.backend.zero_state(len(group.members), b), "first": 0,
                "total": group.fn.updates(columns)}

    @staticmethod
    def _warm_up(group: "_Group", run: dict) -> None:
        """Compile the group's program for this epoch's shapes with a call that makes no update
        (and discard what it returns), so that the seconds a group is charged for
        (``EpochResult.group_s``) are training, not compiling: groups of other n share the
        program, and the first to call it would otherwise carry its compile. ~1 ms once compiled.
        Not for ``model.fit`` (``model.backend=keras``), which compiles nothing ahead."""
        if not hasattr(group.fn, "program"):
            return
        group.fn.with_step_losses(group.params, group.opt_state, group.hp, run["xs"], run["ys"], run["state"],
                                  first=0, stop=0)

    @staticmethod
    def _segment(group: "_Group", run: dict, stop: int, result: "EpochResult") -> int:
        """The group's updates run["first"] .. stop - 1; their losses and seconds go to ``result``.
        Returns ``stop``."""
        if stop <= run["first"]:
            return run["first"]
        t0 = time.perf_counter()
        group.params, group.opt_state, losses, steps, run["state"] = group.fn.with_step_losses(
            group.params, group.opt_state, group.hp, run["xs"], run["ys"], run["state"], first=run["first"], stop=stop)
        losses, steps = np.asarray(losses), np.asarray(steps)
        seconds = time.perf_counter() - t0
        for j, k in enumerate(group.members):
            result.losses[k].append(losses[:, j])
            result.step_losses[k].append(steps[:, j])
            result.group_s[k] += seconds
            result.group_size[k] = len(group.members)
        return stop

    def stop(self, replicas) -> bool:
        """Stop training ``replicas`` (their learning rate becomes 0); True once every replica has stopped."""
        import tensorflow as tf

        new = set(replicas) - self.stopped
        if new:
            self.stopped |= new
            for g in self.groups:
                lr = g.hp["lr"].numpy().copy()
                lr[[j for j, k in enumerate(g.members) if k in self.stopped]] = 0.0
                g.hp = {**g.hp, "lr": tf.constant(lr)}
        return len(self.stopped) == self.size

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
    """One epoch of a pack, member by member (members with different n make different numbers of
    updates): losses per update and per trained position (segment by segment, see
    :meth:`Pack.train_epoch`), the checkpoints as (updates done per member, metrics per member),
    and seconds spent drawing data, training and measuring checkpoints; ``group_s[k]`` the
    seconds of the engine calls that trained member k's n-group, of ``group_size[k]`` members."""

    size: int
    losses: list = field(default_factory=list)
    step_losses: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    data_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0

    def __post_init__(self):
        self.losses = [[] for _ in range(self.size)]
        self.step_losses = [[] for _ in range(self.size)]
        self.group_s = [0.0] * self.size
        self.group_size = [1] * self.size

    def update_losses(self, k: int) -> np.ndarray:
        """Member k's loss per update [U_k]."""
        return np.concatenate(self.losses[k]) if self.losses[k] else np.zeros(0, np.float32)

    def position_losses(self, k: int) -> np.ndarray:
        """Member k's loss per trained position [P_k] (the mean over its B rows)."""
        return np.concatenate(self.step_losses[k]) if self.step_losses[k] else np.zeros(0, np.float32)


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
    masks = probe.lag_masks(inputs)
    return {"used": used, "targets": targets == 1, "truth": truth, "masks": masks, "lags": lags,
            "undefined": undefined, "optimal": probe.cross_entropy(truth, targets),
            "true_effects": probe.effects(truth, masks)}


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
    fractions = {str(lag): None if str(lag) in ref["undefined"] else model / true
                 for lag, model, true in zip(ref["lags"], probe.effects(p_model, ref["masks"]), ref["true_effects"])}
    return {
        "heldout_loss": probe.cross_entropy(p_model, ref["targets"]),
        "heldout_optimal_loss": ref["optimal"],
        "learned_fraction": fractions,
        # Why a fraction is null (a dependency with no effect has nothing to learn).
        "learned_fraction_note": ref["undefined"],
    }
