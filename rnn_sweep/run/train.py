"""``train(cfg, run_dir)`` and ``train_pack(cfgs, run_dirs)``: runs end to end, with no Hydra.

Every run is trained as a member of a pack (:mod:`rnn_sweep.run.pack`; a run alone is
a pack of one) and gets its own record. Files written into each run directory:

* ``losses.csv`` -- the training loss on a grid of data seen that does not depend
  on n (docs/outputs.md): one row per block of ``train.log_data_steps`` time steps
  (whole positions of the rows): ``epoch`` (0-based), ``data_start`` / ``data_end``
  (training time steps seen before / after the block, epoch e starting at e x
  ``data.length``), ``loss`` (mean over exactly the block's positions, nats),
  ``updates`` (parameter updates done when the block's last position is trained),
  ``elapsed_s`` (seconds since training started, interpolated inside an epoch).
* ``checkpoints.csv`` -- held-out loss and learned fraction per lag of the untrained
  network and at ``train.checkpoints`` points of every epoch (the last at its end),
  all on the same ``train.checkpoint_eval_length`` held-out steps.
* ``updates.csv`` -- only with ``train.log_updates``: loss per block of
  ``train.log_every`` updates (a block spans a number of time steps that depends on n).
* ``summary.json`` -- written last, atomically (temp file + rename): its
  presence means the run finished (status ``completed``, ``diverged`` or, for
  a member of a pack whose own evaluation or record failed, ``failed``).
  ``timings`` are the pack's (``pack_size`` = K says how the run was trained).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rnn_sweep.task.baselines import learning_levels
from rnn_sweep.task.config import RunConfig, updates_per_epoch, validate
from rnn_sweep.run.records import (
    CHECKPOINTS_FILE, LOSS_HEADER, LOSSES_FILE, SUMMARY_FILE, UPDATES_FILE, UPDATES_HEADER, ResultsWriteError,
    check_writable, write_json_atomic)
from rnn_sweep.run.pack import check_packable, positions_per_update


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A write error (a full disk: ``[Errno 28]`` alone) becomes ResultsWriteError naming ``path``."""
    try:
        yield
    except ResultsWriteError:
        raise
    except OSError as err:
        raise ResultsWriteError(err.errno, f"cannot write {path}: {err.strerror or err}") from err


def block_means(losses: np.ndarray, log_every: int) -> list[tuple[int, float]]:
    """Split per-step losses into blocks of ``log_every``: [(steps_in_block, mean)]."""
    out = []
    for start in range(0, len(losses), log_every):
        block = losses[start:start + log_every]
        out.append((len(block), float(np.mean(block))))
    return out


class MemberLog:
    """One pack member's records while it trains, kept exactly as a run alone keeps them.

    ``losses.csv`` is the training loss on a grid of data seen that does not depend
    on n: blocks of ``train.log_data_steps`` // batch positions of every row, each
    the mean over exactly its positions' losses. ``checkpoints.csv`` holds the
    held-out loss and learned fraction per lag measured during training, and
    ``updates.csv`` (``train.log_updates``) the loss per block of ``train.log_every``
    updates. ``status`` is ``completed`` until a block's loss is NaN or above
    ``train.diverge_loss`` (then ``diverged`` at that block; nothing more is logged)
    or the member's own record fails (``failed``, with ``error``).
    """

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg, self.dir, self.files = cfg, run_dir, {}
        self.status, self.diverged_at, self.diverged_at_data, self.error = "completed", None, None, None
        self.step, self.epochs, self.data_steps, self.epoch_start_step = 0, 0, 0, 0
        self.best, self.wait, self.stopped_at, self.stop_reason = math.inf, 0, None, "budget"
        self.judged_at = self.logged_at = None  # (epoch, updates) of the last checkpoint judged / written
        self.grid = max(1, cfg.train.log_data_steps // cfg.train.batch_size)  # positions per losses.csv block
        self.per_update = positions_per_update(cfg)
        self.position_losses: list[np.ndarray] = []  # per epoch: each trained position's loss (for final_loss)
        self.lags = [d.lag for d in cfg.data.dependencies]

    def open(self, overwrite: bool) -> None:
        """Check the run directory (before any expensive work) and start its CSV records."""
        check_writable(self.dir)
        if (self.dir / SUMMARY_FILE).exists() and not overwrite:
            raise FileExistsError(f"{self.dir / SUMMARY_FILE} exists: this run already finished "
                                  "(pass overwrite to redo it)")
        t = self.cfg.train
        headers = {LOSSES_FILE: LOSS_HEADER}
        if t.checkpoints:
            headers[CHECKPOINTS_FILE] = ",".join(["epoch", "data_steps", "updates", "heldout_loss",
                                                  *(f"learned_{lag}" for lag in self.lags)]) + "\n"
        if t.log_updates:
            headers[UPDATES_FILE] = UPDATES_HEADER
        for name, header in headers.items():
            with _naming(self.dir / name):
                self.files[name] = open(self.dir / name, "w")
                self.files[name].write(header)

    def close(self) -> None:
        files, self.files = self.files, {}
        for name, file in files.items():
            with _naming(self.dir / name):
                file.close()

    @property
    def training(self) -> bool:
        return self.status == "completed"

    @property
    def active(self) -> bool:
        """Still training: neither diverged, failed nor stopped by the criterion."""
        return self.training and self.stopped_at is None

    def judge(self, epoch: int, updates_in_epoch: int, metrics: dict) -> bool:
        """Whether training stops at this checkpoint (``train.stop_patience``): True after
        ``stop_patience`` checkpoints in a row without a held-out loss ``stop_tolerance`` below the best."""
        loss = metrics.get("heldout_loss")
        if loss is None or not math.isfinite(loss) or (epoch, updates_in_epoch) == self.judged_at:
            return False  # no measurement, or the same parameters as the last checkpoint (a longer n)
        self.judged_at = (epoch, updates_in_epoch)
        # The best moves only on an improvement (Keras' EarlyStopping rule): a loss that falls by
        # less than the tolerance at every checkpoint still adds up to an improvement.
        improved = loss < self.best - self.cfg.train.stop_tolerance
        if improved:
            self.best = loss
        if epoch < 0:  # the untrained network: a starting point, never a reason to stop
            return False
        self.wait = 0 if improved else self.wait + 1
        if self.cfg.train.stop_patience and self.wait >= self.cfg.train.stop_patience:
            self.stopped_at, self.stop_reason = (epoch, updates_in_epoch), "converged"
            return True
        return False

    def _epoch_data(self, epoch: int, positions: int) -> int:
        """Time steps of training data seen after ``positions`` positions of epoch ``epoch``."""
        return epoch * self.cfg.data.length + positions * self.cfg.train.batch_size

    def log_epoch(self, epoch: int, positions: np.ndarray, updates: np.ndarray, e0: float, e1: float) -> None:
        """Write one epoch's blocks: ``positions`` [P] per-position losses, ``updates`` [U] per-update
        losses; ``e0``/``e1`` = epoch start/end in seconds since training began."""
        if not self.training or (self.stopped_at is not None and epoch > self.stopped_at[0]):
            return
        if self.stopped_at is not None:  # stopped inside this epoch: nothing after its checkpoint
            updates = updates[:self.stopped_at[1]]
            positions = positions[:len(updates) * self.per_update]
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        self.epochs, self.epoch_start_step = self.epochs + 1, self.step
        trained = len(positions)
        with _naming(self.dir / LOSSES_FILE):
            file = self.files[LOSSES_FILE]
            for start in range(0, trained, self.grid):
                end = min(start + self.grid, trained)
                mean = float(np.mean(positions[start:end]))
                done = self.step + -(-end // self.per_update)  # updates done once position end-1 is trained
                elapsed = e0 + end / trained * (e1 - e0)
                file.write(f"{epoch},{self._epoch_data(epoch, start)},{self._epoch_data(epoch, end)},{mean!r},"
                           f"{done},{elapsed:.4f}\n")
                if not (math.isfinite(mean) and mean <= self.cfg.train.diverge_loss):
                    self.status, self.diverged_at = "diverged", done
                    self.diverged_at_data = self._epoch_data(epoch, end)
                    trained = end
                    break
            file.flush()
        self.position_losses.append(positions[:trained])
        self._log_updates(epoch, updates, e0, e1)
        self.step = self.step + len(updates) if self.training else self.diverged_at
        self.data_steps += trained * self.cfg.train.batch_size

    def _log_updates(self, epoch: int, losses: np.ndarray, e0: float, e1: float) -> None:
        if UPDATES_FILE not in self.files:
            return
        with _naming(self.dir / UPDATES_FILE):
            done, total = 0, len(losses)
            for size, mean in block_means(np.ascontiguousarray(losses), self.cfg.train.log_every):
                done += size
                self.files[UPDATES_FILE].write(f"{epoch},{self.step + done},{mean!r},{size},"
                                               f"{e0 + done / total * (e1 - e0):.4f}\n")
            self.files[UPDATES_FILE].flush()

    def log_checkpoint(self, epoch: int, updates_in_epoch: int, metrics: dict) -> None:
        """One row of checkpoints.csv: the held-out numbers after ``updates_in_epoch`` updates of ``epoch``."""
        if CHECKPOINTS_FILE not in self.files or (epoch, updates_in_epoch) == self.logged_at:
            return  # a pack checkpoint at which this member made no update since its last row
        self.logged_at = (epoch, updates_in_epoch)
        data = self._epoch_data(epoch, updates_in_epoch * self.per_update)
        if self.diverged_at_data is not None and data > self.diverged_at_data:
            return
        if self.stopped_at is not None and (epoch, updates_in_epoch) > self.stopped_at:
            return
        fractions = metrics.get("learned_fraction") or {}
        cells = ["" if fractions.get(str(lag)) is None else repr(float(fractions[str(lag)])) for lag in self.lags]
        loss = metrics.get("heldout_loss")
        with _naming(self.dir / CHECKPOINTS_FILE):
            self.files[CHECKPOINTS_FILE].write(
                ",".join([str(epoch), str(data), str(self.epoch_start_step + updates_in_epoch),
                          "" if loss is None else repr(float(loss)), *cells]) + "\n")
            self.files[CHECKPOINTS_FILE].flush()

    def final_window(self) -> tuple[float | None, dict]:
        """Mean training loss over the last ``train.final_fraction`` of the trained positions, and
        which data that is ({"fraction", "data_start", "data_end"})."""
        total = sum(len(p) for p in self.position_losses)
        fraction = self.cfg.train.final_fraction
        if total == 0:
            return None, {"fraction": fraction, "data_start": None, "data_end": None}
        want = max(1, round(fraction * total))
        tail, epoch, left = [], len(self.position_losses), want
        while left > 0:
            epoch -= 1
            chunk = self.position_losses[epoch][-left:]
            tail.append(chunk)
            left -= len(chunk)
        first_pos = len(self.position_losses[epoch]) - len(tail[-1])
        last = len(self.position_losses) - 1
        window = {"fraction": fraction, "data_start": self._epoch_data(epoch, first_pos),
                  "data_end": self._epoch_data(last, len(self.position_losses[last]))}
        return _finite_or_none(float(np.mean(np.concatenate(tail)))), window

    def fail(self, err: BaseException) -> None:
        self.status, self.error = "failed", f"{type(err).__name__}: {err}"


def _member_timings(clock: dict, lg: MemberLog, pack_size: int, k: int) -> dict:
    """The pack's timings as seen by member ``k`` (its epochs only), plus ``pack_size``.

    ``setup_s`` is train()'s own setup; ``tf_import_s`` what this process paid to import
    TensorFlow (once per process, wherever it happened); ``process_s`` the whole process
    so far (interpreter, Hydra, imports, earlier runs of a reused worker included).
    ``group_epoch_s`` / ``group_size``: the compiled-epoch seconds of the member's n-group
    (the pack's members with its num_steps) and how many members it has; a run's share of
    the training arithmetic is ``group_epoch_s / group_size`` (``epoch_s / pack_size``
    spreads the whole pack's, every n alike).
    """
    from rnn_sweep.run.runtime import IMPORT_SECONDS, process_age_s

    epochs = clock["epoch_s"][:lg.epochs]
    group = [float(e[k]) for e in clock["group_epoch_s"][:lg.epochs]]
    return {
        "total_s": time.perf_counter() - clock["start"], "setup_s": clock["import_s"],
        "tf_import_s": IMPORT_SECONDS.get("tensorflow"), "process_s": process_age_s(), "data_s": clock["data_s"],
        "train_s": clock["train_s"], "eval_s": clock["eval_s"], "checkpoint_s": clock["checkpoint_s"],
        "epoch_s": epochs,
        "first_epoch_s": epochs[0] if epochs else None,
        "warm_epoch_s": float(np.median(epochs[1:])) if len(epochs) > 1 else None,
        "pack_size": pack_size,
        "group_epoch_s": group, "group_size": clock.get("group_size", [1] * pack_size)[k],
    }


def build_summary(lg: MemberLog, ev: dict | None, timings: dict) -> dict:
    """summary.json's body for one run (``ev``: held-out numbers, None unless completed)."""
    from rnn_sweep.run.runtime import versions

    cfg = lg.cfg
    final_loss, window = lg.final_window()
    ev = ev or {"heldout_loss": None, "heldout_optimal_loss": None, "learned_fraction": {},
                "learned_fraction_note": {}}
    return {
        "status": lg.status,
        "backend": cfg.model.backend, "cell": cfg.model.cell, "style": cfg.truncation.style,
        "num_steps": cfg.num_steps, "state_size": cfg.state_size, "seed": cfg.seed,
        "final_loss": final_loss, "final_loss_window": window,
        "heldout_loss": ev["heldout_loss"],
        "heldout_optimal_loss": ev["heldout_optimal_loss"],
        "learned_fraction": ev["learned_fraction"],
        "learned_fraction_note": ev["learned_fraction_note"],
        "levels": [lv.to_dict() for lv in learning_levels(cfg.data)],
        "steps": lg.step, "data_steps": lg.data_steps, "epochs_completed": lg.epochs,
        "diverged_at_step": lg.diverged_at, "diverged_at_data_steps": lg.diverged_at_data,
        "stop_reason": "diverged" if lg.status == "diverged" else lg.stop_reason,
        "timings": timings,
        "versions": versions(),
        "config": dataclasses.asdict(cfg),
        "error": lg.error,
    }


def _log_checkpoints(logs: list[MemberLog], epoch: int, done: list[int], metrics: list, isolate: bool) -> None:
    """One checkpoint row per training member (``done[k]``: member k's updates in the epoch so far); a
    member whose measurement raised fails alone."""
    for lg, m, updates in zip(logs, metrics, done):
        if not lg.training:
            continue
        if isinstance(m, Exception):
            if not isolate:
                raise m
            lg.fail(m)
        else:
            lg.log_checkpoint(epoch, updates, m)


def _judge(logs: list[MemberLog], epoch: int):
    """The pack's ``on_checkpoint``: the replicas that stop at this checkpoint (criterion met, or
    no longer training at all), so that their updates become no-ops. ``done[k]``: the updates
    member k has made in this epoch (members with different n make different numbers)."""
    def on_checkpoint(done: list[int], metrics: list) -> list[int]:
        out = []
        for k, (lg, m) in enumerate(zip(logs, metrics)):
            if lg.active and not isinstance(m, Exception):
                lg.judge(epoch, done[k], m)
            if not lg.active:
                out.append(k)
        return out
    return on_checkpoint


def epoch_limit(cfg: RunConfig, epoch: int) -> int | None:
    """Updates epoch ``epoch`` may make under ``train.max_data_steps`` (None: all; 0: none): the
    budget ends at the first update whose positions reach it."""
    positions = position_limit(cfg, epoch)
    if not positions:  # None (all) or 0 (none)
        return positions
    limit = -(-positions // positions_per_update(cfg))
    return None if limit >= updates_per_epoch(cfg) else limit


def position_limit(cfg: RunConfig, epoch: int) -> int | None:
    """Positions of each row epoch ``epoch`` may train under ``train.max_data_steps`` (None: all;
    0: none). Every member of a pack shares the budget, so this is the same for every n; a member
    makes the updates that reach it (:func:`epoch_limit`)."""
    budget = cfg.train.max_data_steps
    if budget is None:
        return None
    left = budget - epoch * cfg.data.length
    if left <= 0:
        return 0
    positions = -(-left // cfg.train.batch_size)
    return None if positions >= cfg.data.length // cfg.train.batch_size else positions


def _train_epochs(pack, logs: list[MemberLog], clock: dict, isolate: bool) -> None:
    """Every epoch of the pack until each member has finished, diverged or stopped, with its checkpoints."""
    from tqdm.auto import tqdm

    cfg = logs[0].cfg
    ns = sorted({lg.cfg.num_steps for lg in logs})
    bar = tqdm(total=cfg.train.epochs * cfg.data.length, unit="step", unit_scale=True, leave=False,
               disable=None if any(lg.cfg.train.progress for lg in logs) else True,
               desc=f"{cfg.model.backend} n={','.join(map(str, ns))} d={cfg.state_size} seeds={sorted(set(pack.seeds))}")
    if cfg.train.checkpoints:  # the untrained network: what the random state already carries
        t0 = time.perf_counter()
        metrics = pack.checkpoint_metrics()
        _log_checkpoints(logs, 0, [0] * len(logs), metrics, isolate)
        for lg, m in zip(logs, metrics):
            if lg.training and not isinstance(m, Exception):
                lg.judge(-1, 0, m)
        clock["checkpoint_s"] += time.perf_counter() - t0
    t_train = time.perf_counter()
    for epoch in range(cfg.train.epochs):
        limit = position_limit(cfg, epoch)
        if not any(lg.active for lg in logs) or limit == 0:
            break
        e0 = time.perf_counter() - t_train
        result = pack.train_epoch(epoch, cfg.train.checkpoints, limit, _judge(logs, epoch))
        e1 = time.perf_counter() - t_train
        clock["data_s"] += result.data_s
        clock["checkpoint_s"] += result.eval_s
        clock["epoch_s"].append(result.train_s)
        clock["group_epoch_s"].append(result.group_s)
        clock["group_size"] = result.group_size
        for k, lg in enumerate(logs):
            lg.log_epoch(epoch, result.position_losses(k), result.update_losses(k), e0, e1)
        for done, metrics in result.checkpoints:
            _log_checkpoints(logs, epoch, done, metrics, isolate)
        bar.update(cfg.data.length)
        live = [float(np.mean(result.position_losses(k)[-lg.grid:])) for k, lg in enumerate(logs) if lg.active]
        bar.set_postfix(loss=f"{np.mean(live):.4f}" if live else "done")
    bar.close()
    clock["train_s"] = time.perf_counter() - t_train


def _evaluate(pack, logs: list[MemberLog], clock: dict, isolate: bool) -> list[dict | None]:
    """Held-out numbers of the completed members (one compiled pass for the whole pack)."""
    from rnn_sweep.run.pack import heldout_metrics

    t_eval = time.perf_counter()
    results: list[dict | None] = [None] * len(logs)
    if any(lg.training for lg in logs):
        try:
            predictions = pack.heldout_predictions()
        except Exception as err:  # noqa: BLE001 -- every member fails alike; recorded per member
            if not isolate:
                raise
            predictions = [err] * len(logs)
        for k, (lg, pred) in enumerate(zip(logs, predictions)):
            if not lg.training:
                continue
            try:
                if isinstance(pred, Exception):
                    raise pred
                results[k] = heldout_metrics(lg.cfg, *pred)
            except Exception as err:  # noqa: BLE001 -- one member's failure is its own record
                if not isolate:
                    raise
                lg.fail(err)
    clock["eval_s"] = time.perf_counter() - t_eval
    return results


def _record(logs: list[MemberLog], results: list[dict | None], clock: dict, isolate: bool) -> list[dict]:
    """Write each member's summary.json; a member whose record fails is marked failed, not the pack."""
    summaries = []
    for k, (lg, ev) in enumerate(zip(logs, results)):
        lg.close()
        summary = build_summary(lg, ev, _member_timings(clock, lg, len(logs), k))
        try:
            write_json_atomic(lg.dir / SUMMARY_FILE, summary)
        except Exception as err:  # noqa: BLE001 -- one member's disk problem is that member's failure
            if not isolate:
                raise
            lg.fail(err)
            summary = build_summary(lg, None, summary["timings"])
            try:  # the failure record is smaller than the results; it may still fit
                write_json_atomic(lg.dir / SUMMARY_FILE, summary)
            except OSError:
                pass  # nothing on disk: the sweep treats the run as unfinished and retrains it
        summaries.append(summary)
    return summaries


def _run_pack(cfgs: list[RunConfig], run_dirs: list[Path], overwrite: bool, isolate: bool,
              threads: int) -> list[dict]:
    """Setup, epochs, evaluation, records: flax's train_and_evaluate for a pack."""
    logs = [MemberLog(cfg, d) for cfg, d in zip(cfgs, run_dirs)]
    clock = {"start": time.perf_counter(), "data_s": 0.0, "epoch_s": [], "group_epoch_s": [], "train_s": 0.0,
             "eval_s": 0.0, "checkpoint_s": 0.0}
    try:
        for lg in logs:
            lg.open(overwrite)
        from rnn_sweep.run.pack import Pack
        from rnn_sweep.run.runtime import import_tf

        import_tf(threads or cfgs[0].train.threads)
        clock["import_s"] = time.perf_counter() - clock["start"]
        pack = Pack(cfgs)
        _train_epochs(pack, logs, clock, isolate)
        results = _evaluate(pack, logs, clock, isolate)
    except BaseException:
        for lg in logs:
            try:
                lg.close()
            except OSError:
                pass  # the error being raised says what went wrong first
        raise
    return _record(logs, results, clock, isolate)


def train(cfg: RunConfig, run_dir: str | os.PathLike, overwrite: bool = False) -> dict:
    """Train one configuration and write its results into ``run_dir``.

    Args:
        cfg: a validated (or to-be-validated) run configuration.
        run_dir: output directory; created if missing.
        overwrite: replace a completed run's files; otherwise an existing
            ``summary.json`` raises FileExistsError (finished results are never lost).

    Returns:
        The summary dict also written to ``run_dir/summary.json``. With
        ``train.replicas`` K > 1 the seeds seed..seed+K-1 train as one pack, each
        seed's record goes to ``run_dir/seed=<s>/`` and the return value is
        :func:`combined_summary` of theirs.

    Raises:
        Any error of training, evaluation or writing (a sweep records it as a failure).
    """
    validate(cfg)
    if cfg.train.replicas > 1:
        seeds = replica_seeds(cfg)
        cfgs = [dataclasses.replace(cfg, seed=s, train=dataclasses.replace(cfg.train, replicas=1)) for s in seeds]
        return combined_summary(train_pack(cfgs, [replica_dir(run_dir, s) for s in seeds], overwrite=overwrite))
    return _run_pack([cfg], [Path(run_dir)], overwrite, isolate=False, threads=cfg.train.threads)[0]


def train_pack(cfgs: Sequence[RunConfig], run_dirs: Sequence[str | os.PathLike], threads: int = 0,
               overwrite: bool = False) -> list[dict]:
    """Train compatible runs as ONE pack; each member gets its own record, as from :func:`train`.

    Args:
        cfgs: the members; they may differ only in ``seed``, ``train.optimizer.{lr,
            initial_accumulator, beta1, beta2, epsilon}``, ``train.progress`` and
            ``train.threads`` (:func:`rnn_sweep.run.packing.pack_key`).
        run_dirs: one run directory per member (created if missing).
        threads: TensorFlow intra-op threads (0 = the first member's ``train.threads``).
        overwrite: as for :func:`train`.

    Returns:
        The members' summaries in order, status completed / diverged / failed each. A
        member that diverges stops logging at its step while the others go on
        unaffected; the ``model.backend=keras`` (model.fit) members train one by one.

    Raises:
        ValueError: the members differ in another key (named) or the lists differ in length.
        ConfigError, FileExistsError, ResultsWriteError: before any training.
        Any error that stops the whole pack's training.
    """
    cfgs, run_dirs = list(cfgs), [Path(d) for d in run_dirs]
    if len(cfgs) != len(run_dirs):
        raise ValueError(f"train_pack: {len(cfgs)} configs but {len(run_dirs)} run dirs")
    for cfg in cfgs:
        validate(cfg)
    check_packable(cfgs)
    if cfgs[0].model.backend != "keras":
        return _run_pack(cfgs, run_dirs, overwrite, isolate=True, threads=threads)
    return [_keras_member(cfg, d, overwrite, threads) for cfg, d in zip(cfgs, run_dirs)]


def _keras_member(cfg: RunConfig, run_dir: Path, overwrite: bool, threads: int) -> dict:
    """A model.fit member of a pack, trained alone; its failure is its own record."""
    try:
        return _run_pack([cfg], [run_dir], overwrite, isolate=True, threads=threads)[0]
    except (FileExistsError, OSError):
        raise
    except Exception as err:  # noqa: BLE001 -- isolate this member from the rest of the pack
        lg = MemberLog(cfg, run_dir)
        lg.fail(err)
        summary = build_summary(lg, None, {"pack_size": 1})
        write_json_atomic(run_dir / SUMMARY_FILE, summary)
        return summary


def replica_seeds(cfg: RunConfig) -> list[int]:
    """``train.replicas`` K: the seeds seed, seed+1, ..., seed+K-1."""
    return [cfg.seed + k for k in range(cfg.train.replicas)]


def replica_dir(run_dir: str | os.PathLike, seed: int) -> Path:
    """Where the replica with ``seed`` of a ``train.replicas`` run writes its record."""
    return Path(run_dir) / f"seed={seed}"


def combined_summary(summaries: list[dict]) -> dict:
    """One summary-shaped dict over a ``train.replicas`` run's seeds (means over completed ones),
    for the CLI's log line. Not written to disk: each seed's own summary.json is the record."""
    done = [s for s in summaries if s["status"] == "completed"]

    def mean(key):
        vals = [s[key] for s in done if s[key] is not None]
        return float(np.mean(vals)) if vals else None

    lags = done[0]["learned_fraction"].keys() if done else []

    def fraction(lag):  # None where no seed has a defined fraction (a dependency without effect)
        vals = [s["learned_fraction"][lag] for s in done if s["learned_fraction"].get(lag) is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "status": "completed" if len(done) == len(summaries) else "diverged",
        "final_loss": mean("final_loss"), "heldout_loss": mean("heldout_loss"),
        "levels": summaries[0]["levels"],
        "learned_fraction": {lag: fraction(lag) for lag in lags},
        "seeds": [s["seed"] for s in summaries], "replicas": summaries,
    }


def failed_summary(cfg: RunConfig, run_dir: str | os.PathLike, err: BaseException) -> dict:
    """summary.json's body for a run whose training raised before it recorded itself (status ``failed``).

    The same schema as every record (:func:`build_summary`): nothing trained, no
    losses, ``error`` naming the exception.
    """
    lg = MemberLog(cfg, Path(run_dir))
    lg.fail(err)
    return build_summary(lg, None, {})
