"""The run records of issue 21: losses.csv on a data grid, checkpoints.csv, final_loss's window.

Each check compares against a value derived independently: the per-update losses of the
optional updates.csv (computed by the engine's window/update path, not its per-position
buffer), the NumPy oracle's forward pass on the checkpoint data, and counts by hand.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import oracle
from rnn_sweep.task.config import from_dict
from rnn_sweep.run.pack import checkpoint_stops
from rnn_sweep.run.train import train

B = 20  # rows


def _cfg(**over):
    raw = {"num_steps": 4, "state_size": 3, "seed": 0,
           "data": {"length": 4000, "eval_length": 2000},  # 200 positions per row
           "train": {"batch_size": B, "log_data_steps": 400, "checkpoints": 4, "checkpoint_eval_length": 1000,
                     "log_updates": True, "log_every": 1, "xla": False, "progress": False,
                     "optimizer": {"name": "adagrad", "lr": 0.3}}}
    for key, value in over.items():
        node = raw
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return from_dict(raw)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_checkpoint_stops_by_hand():
    assert checkpoint_stops(100, 4, "linear") == [25, 50, 75, 100]
    assert checkpoint_stops(100, 0, "log") == [100]
    # log, 4 points: 256^-1 = 1/256 -> 10; 256^(-2/3) = 1/40.3 -> 63.5 -> 63; 256^(-1/3) = 1/6.35 -> 403
    assert checkpoint_stops(2560, 4, "log") == [10, 63, 403, 2560]
    assert checkpoint_stops(7, 10, "linear") == [1, 2, 3, 4, 5, 6, 7]  # more checkpoints than updates: each once
    assert checkpoint_stops(3, 10, "log") == [1, 2, 3]


@pytest.mark.parametrize("n", [1, 3, 4, 7])
def test_losses_csv_is_on_one_data_grid_for_every_n(tmp_path, n):
    """Blocks of 400 time steps = 20 positions of the 20 rows, whatever n: the same data_start /
    data_end for every full block; each block's loss is the mean over exactly its positions."""
    cfg = _cfg(num_steps=n)
    summary = train(cfg, tmp_path / "r")
    rows = _rows(tmp_path / "r" / "losses.csv")
    positions = (200 // n) * n  # trained positions per row (the article drops the leftover columns)
    assert [int(r["data_start"]) for r in rows] == [p * B for p in range(0, positions, 20)]
    assert [int(r["data_end"]) for r in rows] == [min(p + 20, positions) * B for p in range(0, positions, 20)]
    updates = [float(r["loss"]) for r in _rows(tmp_path / "r" / "updates.csv")]  # one per window of n positions
    assert len(updates) == positions // n == summary["steps"]
    per_position = np.repeat(updates, n)  # a window's mean stands for its n positions: exact where blocks hold
    for r in rows:                        # whole windows, and the weighted total is exact for any n
        start, end = int(r["data_start"]) // B, int(r["data_end"]) // B
        if start % n == 0 and end % n == 0:
            assert float(r["loss"]) == pytest.approx(per_position[start:end].mean(), rel=1e-5)
        assert int(r["updates"]) == math.ceil(end / n)
    weights = [(int(r["data_end"]) - int(r["data_start"])) // B for r in rows]
    assert np.average([float(r["loss"]) for r in rows], weights=weights) == pytest.approx(np.mean(updates), rel=1e-5)


def test_final_loss_is_the_mean_over_the_last_tenth_of_the_data(tmp_path):
    cfg = _cfg(num_steps=2)  # 100 windows of 2 positions: the last 10% = the last 10 windows
    summary = train(cfg, tmp_path / "r")
    updates = [float(r["loss"]) for r in _rows(tmp_path / "r" / "updates.csv")]
    assert summary["final_loss"] == pytest.approx(np.mean(updates[-10:]), rel=1e-5)
    assert summary["final_loss_window"] == {"fraction": 0.1, "data_start": 180 * B, "data_end": 200 * B}
    assert summary["data_steps"] == 200 * B


def test_checkpoints_csv_rows_and_the_untrained_row_against_the_oracle(tmp_path):
    from rnn_sweep.task import data as D
    from rnn_sweep.model.backends import build_backend

    cfg = _cfg(**{"train.epochs": 2, "train.checkpoint_spacing": "linear"})
    train(cfg, tmp_path / "r")
    rows = _rows(tmp_path / "r" / "checkpoints.csv")
    assert list(rows[0]) == ["epoch", "data_steps", "updates", "heldout_loss", "learned_3", "learned_8"]
    # the untrained network, then 4 per epoch at 1/4..4/4 of its 200 positions per row (50, 100,
    # 150, 200), each after the update that completes that position (4 positions per update)
    expect = [(0, 0, 0)] + [(e, e * 4000 + u * 4 * B, e * 50 + u) for e in (0, 1) for u in (13, 25, 38, 50)]
    assert [(int(r["epoch"]), int(r["data_steps"]), int(r["updates"])) for r in rows] == expect
    # row 0 by the NumPy oracle: the initial weights' forward pass over the checkpoint data's rows
    x, y, _, _ = D.generate_full(cfg.data, 1000, D.rng_for(0, D.CHECKPOINT_STREAM))
    params = {k: v[0] for k, v in build_backend(cfg.model, 3).init_params([0]).items()}
    xr, yr = D.to_rows(x, B), D.to_rows(y, B)  # [20, 50]: 12 windows of 4 -> 48 positions scored
    logits, _ = oracle.forward(params, oracle.onehot(xr), np.zeros((B, 3)))
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, yr[..., None].astype(np.int64), -1)[..., 0][:, :48]
    assert float(rows[0]["heldout_loss"]) == pytest.approx(ce.mean(), rel=1e-4)
    later = [float(r["heldout_loss"]) for r in rows[1:]]
    assert later[-1] < float(rows[0]["heldout_loss"]) - 0.02  # it learned: the checkpoints show it


def test_no_checkpoints_no_file_and_a_diverged_run_stops_both_logs(tmp_path):
    train(_cfg(**{"train.checkpoints": 0}), tmp_path / "quiet")
    assert not (tmp_path / "quiet" / "checkpoints.csv").exists()
    cfg = _cfg(**{"train.optimizer": {"name": "sgd", "lr": 1e4}, "train.diverge_loss": 0.8})
    summary = train(cfg, tmp_path / "wild")
    assert summary["status"] == "diverged"
    rows = _rows(tmp_path / "wild" / "losses.csv")
    assert float(rows[-1]["loss"]) > 0.8 or not math.isfinite(float(rows[-1]["loss"]))
    assert all(float(r["loss"]) <= 0.8 for r in rows[:-1])
    assert summary["diverged_at_data_steps"] == int(rows[-1]["data_end"])
    assert all(int(r["data_steps"]) <= summary["diverged_at_data_steps"]
               for r in _rows(tmp_path / "wild" / "checkpoints.csv"))
