"""Training to a criterion (train.stop_patience / stop_tolerance) and to a data budget
(train.max_data_steps): a stopped run equals the same run trained for the data it used, alone or
inside a pack whose other members go on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rnn_sweep.task.config import ConfigError, from_dict, validate
from rnn_sweep.run.train import epoch_limit, train, train_pack

B = 20


def _cfg(**train_over):
    train_cfg = {"batch_size": B, "log_data_steps": 400, "checkpoints": 8, "checkpoint_spacing": "linear",
                 "checkpoint_eval_length": 2000, "epochs": 3, "xla": False, "progress": False,
                 "optimizer": {"name": "adagrad", "lr": 0.3}}
    train_cfg.update(train_over)
    return from_dict({"num_steps": 4, "state_size": 4, "seed": 0,
                      "data": {"length": 4000, "eval_length": 2000}, "train": train_cfg})


def _record(run):
    losses = pd.read_csv(run / "losses.csv").drop(columns="elapsed_s")
    checkpoints = pd.read_csv(run / "checkpoints.csv")
    summary = json.loads((run / "summary.json").read_text())
    return losses, checkpoints, summary


def _same(a, b, atol=0.0):
    (la, ca, sa), (lb, cb, sb) = _record(a), _record(b)
    pd.testing.assert_frame_equal(la, lb, check_exact=atol == 0, atol=atol or None)
    pd.testing.assert_frame_equal(ca, cb, check_exact=atol == 0, atol=atol or None)
    for key in ("status", "steps", "data_steps", "epochs_completed", "final_loss_window"):
        assert sa[key] == sb[key], key
    for key in ("final_loss", "heldout_loss"):
        assert sa[key] == pytest.approx(sb[key], abs=atol), key
    for lag, value in sa["learned_fraction"].items():
        assert value == pytest.approx(sb["learned_fraction"][lag], abs=atol or 1e-12), lag


def test_epoch_limit_by_hand():
    cfg = _cfg(max_data_steps=4000 + 450)  # epoch 1 needs 450 steps = 23 positions of 20 rows = 6 windows of 4
    assert [epoch_limit(cfg, e) for e in range(3)] == [None, 6, 0]  # epoch 0 whole, 6 updates of epoch 1
    assert epoch_limit(_cfg(), 0) is None


@pytest.mark.parametrize("losses, stop_at", [
    # falls 0.0009 per checkpoint: by the 2nd step it is 0.0018 below the best, an improvement
    ([0.60, 0.5991, 0.5982, 0.5973, 0.5964, 0.5955, 0.5946], None),
    # flat within the tolerance: the 3rd checkpoint after the best stops it (patience 3)
    ([0.60, 0.5995, 0.5999, 0.5992], 3),
    # an improvement by more than the tolerance resets the count
    ([0.60, 0.5995, 0.598, 0.5979, 0.5978, 0.5977], 5),
])
def test_the_criterion_by_hand(tmp_path, losses, stop_at):
    from rnn_sweep.run.train import MemberLog

    member = MemberLog(_cfg(stop_patience=3, stop_tolerance=0.001), tmp_path)
    stops = [member.judge(0, k, {"heldout_loss": loss}) for k, loss in enumerate(losses)]
    assert (stops.index(True) if True in stops else None) == stop_at


def test_a_stopped_run_is_the_run_trained_for_the_data_it_used(tmp_path):
    stopped = train(_cfg(stop_patience=2, stop_tolerance=0.01), tmp_path / "stopped")
    assert stopped["stop_reason"] == "converged"
    used = stopped["data_steps"]
    assert 0 < used < 3 * 4000  # it stopped before the budget (else the test proves nothing)
    budget = train(_cfg(max_data_steps=used), tmp_path / "budget")
    assert budget["stop_reason"] == "budget" and budget["data_steps"] == used
    _same(tmp_path / "stopped", tmp_path / "budget")
    # and the full budget is another run (the comparison can fail)
    full = train(_cfg(), tmp_path / "full")
    assert full["data_steps"] == 3 * 200 * B and full["heldout_loss"] != stopped["heldout_loss"]


def test_a_member_that_stops_inside_a_pack_equals_it_alone(tmp_path):
    """Seed 0 stops early (a loose tolerance); seeds 1, 2 (a strict one) go on: every member's
    record equals its run alone, to 1e-5."""
    cfgs = [_cfg(stop_patience=2, stop_tolerance=0.01),
            _cfg(stop_patience=2, stop_tolerance=0.0),
            _cfg(stop_patience=0)]
    cfgs = [from_dict({**json.loads(json.dumps(__import__("dataclasses").asdict(c))), "seed": s})
            for c, s in zip(cfgs, (0, 1, 2))]
    out = train_pack(cfgs, [tmp_path / f"p{i}" for i in range(3)])
    assert out[0]["stop_reason"] == "converged" and out[2]["stop_reason"] == "budget"
    assert out[0]["data_steps"] < out[2]["data_steps"] == 3 * 200 * B
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"alone{i}")
        _same(tmp_path / f"p{i}", tmp_path / f"alone{i}", atol=1e-5)


@pytest.mark.parametrize("over,field", [({"stop_patience": 2, "checkpoints": 0}, "train.stop_patience"),
                                        ({"stop_patience": -1}, "train.stop_patience"),
                                        ({"stop_tolerance": float("nan")}, "train.stop_tolerance"),
                                        ({"max_data_steps": 0}, "train.max_data_steps")])
def test_bad_stopping_settings_are_refused_naming_the_field(over, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        validate(_cfg(**over))
