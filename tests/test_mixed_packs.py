"""Packs whose members differ in num_steps: every member equals its run trained alone.

A sweep over n and seeds packs one state size into one pack; each member's losses,
trained parameters, records and checkpoints are what the NumPy oracle (tests/oracle.py)
and the run alone give, including n that do not divide the row length (C = 23 columns)
and n above the data's lags (10 > 8).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import oracle
from rnn_sweep.task.config import from_dict

B, C = 3, 23  # rows per batch, positions per row: 23 is divisible by none of 3, 7, 10
HP = {"initial_accumulator": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
# (num_steps, seed, lr): n = 3 twice (a group of two), the others alone in their group
MEMBERS = [(1, 3, 0.05), (3, 11, 0.2), (7, 4, 0.1), (10, 3, 0.1), (3, 5, 0.15)]


def _cfg(backend: str, cell: str, opt: str, n: int, seed: int, lr: float, style: str = "tf", **train):
    train_cfg = {"batch_size": B, "xla": False, "progress": False, "checkpoints": 0,
                 "optimizer": {"name": opt, "lr": lr}, **train}
    trunc = {"style": style} if style == "tf" else {"style": "true", "update_every": None}
    return from_dict({"num_steps": n, "state_size": 2, "seed": seed, "model": {"backend": backend, "cell": cell},
                      "truncation": trunc, "data": {"length": C * B, "eval_length": 300}, "train": train_cfg})


def _windows(rows: np.ndarray, n: int) -> np.ndarray:
    """Rows [B, C] -> the article's windows [C // n, B, n] (leftover columns dropped), by hand."""
    w = rows.shape[1] // n
    return np.stack([rows[:, i * n:(i + 1) * n] for i in range(w)])


def _rows(cfg):
    """The member's own training rows [B, C], drawn as a run alone draws them."""
    from rnn_sweep.task import data

    x, y, _ = data.generate(cfg.data, cfg.data.length, data.rng_for(cfg.seed, data.TRAIN_STREAM, 0))
    return x.reshape(B, C), y.reshape(B, C)


@pytest.mark.parametrize("backend,cell,opt,style", [("scratch", "rnn", "adagrad", "tf"),
                                                    ("static", "gru", "adam", "tf"),
                                                    ("scratch", "rnn", "adam", "tf"),
                                                    ("dynamic", "rnn", "adagrad", "true")])
def test_a_mixed_n_pack_matches_the_oracle_member_by_member(backend, cell, opt, style):
    """n = 1, 3, 7, 10 (and 3 again) in one pack, each member with its own seed and learning
    rate: its losses per update and per position and its trained parameters are the oracle's
    epoch for that run alone."""
    from rnn_sweep.run.pack import Pack

    cfgs = [_cfg(backend, cell, opt, n, s, lr, style) for n, s, lr in MEMBERS]
    pack = Pack(cfgs)
    init = {k: v.numpy().copy() for k, v in pack.params.items()}
    result = pack.train_epoch(0)
    trained = {k: v.numpy() for k, v in pack.params.items()}
    assert result.group_size == [1, 2, 1, 1, 2]  # the two n = 3 members train as one group
    assert result.group_s[1] == result.group_s[4] and sum(set(result.group_s)) <= result.train_s
    for k, cfg in enumerate(cfgs):
        n = cfg.num_steps
        xr, yr = _rows(cfg)
        one = {name: v[k] for name, v in init.items()}
        ref_steps: list = []
        ref, ref_losses = oracle.reference_epoch(cell, one, _windows(xr, n), _windows(yr, n), style, opt,
                                                 {"lr": cfg.train.optimizer.lr, **HP}, step_losses=ref_steps)
        assert len(ref_losses) == C // n
        np.testing.assert_allclose(result.update_losses(k), ref_losses, rtol=1e-5, err_msg=f"member {k} (n={n})")
        np.testing.assert_allclose(result.position_losses(k), ref_steps, rtol=1e-5, err_msg=f"member {k} positions")
        for name in ref:
            assert not np.allclose(ref[name], one[name])  # every parameter moved: the comparison has teeth
            np.testing.assert_allclose(trained[name][k], ref[name], rtol=1e-4, atol=1e-5, err_msg=f"member {k}, {name}")


def _record(run):
    losses = pd.read_csv(run / "losses.csv").drop(columns="elapsed_s")
    checkpoints = pd.read_csv(run / "checkpoints.csv")
    return losses, checkpoints, json.loads((run / "summary.json").read_text())


def _e2e_cfg(n, seed, lr, **train):
    base = {"batch_size": 20, "log_data_steps": 400, "checkpoints": 6, "checkpoint_spacing": "log",
            "checkpoint_eval_length": 2000, "epochs": 2, "xla": False, "progress": False,
            "optimizer": {"name": "adagrad", "lr": lr}, **train}
    return from_dict({"num_steps": n, "state_size": 4, "seed": seed,
                      "data": {"length": 4000, "eval_length": 2000}, "train": base})


@pytest.mark.slow
def test_mixed_n_pack_records_equal_each_run_trained_alone(tmp_path):
    """losses.csv, checkpoints.csv and summary.json of every member of a mixed-n pack (one of
    them training to a criterion, so it stops early while the others go on to a data budget
    that ends inside epoch 1) equal the run trained alone, to 1e-5."""
    from rnn_sweep.run.train import train, train_pack

    budget = 4000 + 2090  # epoch 1: 2090 steps = 105 positions of 20 rows
    cfgs = [_e2e_cfg(1, 0, 0.1, max_data_steps=budget),
            _e2e_cfg(3, 1, 0.3, stop_patience=2, stop_tolerance=0.01, max_data_steps=budget),
            _e2e_cfg(7, 0, 0.2, max_data_steps=budget), _e2e_cfg(10, 2, 0.1, max_data_steps=budget)]
    packed = train_pack(cfgs, [tmp_path / f"pack{k}" for k in range(len(cfgs))])
    assert [s["status"] for s in packed] == ["completed"] * 4
    for s in packed:  # each n is a group of one; its engine seconds are part of the pack's
        t = s["timings"]
        assert t["group_size"] == 1 and t["pack_size"] == 4 and len(t["group_epoch_s"]) == len(t["epoch_s"])
        assert all(0 < g < e for g, e in zip(t["group_epoch_s"], t["epoch_s"]))
    assert packed[1]["stop_reason"] == "converged" and packed[1]["data_steps"] < 4000 + 105 * 20  # stopped early
    # the others: a whole epoch 0 (n = 7: 28 windows = 196 of the 200 positions), then the updates that
    # reach position 105 of epoch 1 (n = 1: 105 updates, n = 7: 15 = 105 positions, n = 10: 11 = 110)
    assert [packed[k]["data_steps"] for k in (0, 2, 3)] == [(200 + 105) * 20, (196 + 105) * 20, (200 + 110) * 20]
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"alone{k}")
        (la, ca, sa), (lb, cb, sb) = _record(tmp_path / f"pack{k}"), _record(tmp_path / f"alone{k}")
        pd.testing.assert_frame_equal(la, lb, check_exact=False, atol=1e-5)
        pd.testing.assert_frame_equal(ca, cb, check_exact=False, atol=1e-5)
        assert sa == {**sa, **{key: sb[key] for key in ("status", "steps", "data_steps", "epochs_completed",
                                                       "stop_reason", "final_loss_window")}}
        for key in ("final_loss", "heldout_loss"):
            assert sa[key] == pytest.approx(alone[key], abs=1e-5), (k, key)
        for lag, value in sa["learned_fraction"].items():
            assert value == pytest.approx(sb["learned_fraction"][lag], abs=1e-5), (k, lag)


def test_checkpoints_sit_on_the_same_data_positions_for_every_n(tmp_path):
    """4 evenly spaced checkpoints over C = 200 positions per row: at positions 50, 100, 150, 200
    every member has made the updates that complete that position (n = 7: 8, 15, 22, 28 updates
    = 56, 105, 154, 196 positions), not the same fraction of its own updates."""
    from rnn_sweep.run.train import train_pack

    cfgs = [_e2e_cfg(n, 0, 0.1, checkpoints=4, checkpoint_spacing="linear", epochs=1) for n in (1, 7, 40)]
    train_pack(cfgs, [tmp_path / f"n{cfg.num_steps}" for cfg in cfgs])

    def rows(n):
        return pd.read_csv(tmp_path / f"n{n}" / "checkpoints.csv")[["data_steps", "updates"]].values.tolist()

    b = 20
    assert rows(1) == [[0, 0]] + [[p * b, p] for p in (50, 100, 150, 200)]
    assert rows(7) == [[0, 0]] + [[u * 7 * b, u] for u in (8, 15, 22, 28)]
    # n = 40: position 50 is completed by update 2 (80 positions), 100 by 3, 150 and 200 by 4 and 5
    assert rows(40) == [[0, 0]] + [[u * 40 * b, u] for u in (2, 3, 4, 5)]
    for n in (1, 7, 40):
        positions = [d // b for d, _ in rows(n)[1:]]
        assert all(abs(pos - p) < n for pos, p in zip(positions, (50, 100, 150, 200)))  # on the grid, within n


def test_plan_packs_puts_every_n_of_a_state_size_in_one_pack_and_says_why_it_splits():
    from rnn_sweep.run import packing

    cfgs = [_e2e_cfg(n, s, 0.1) for n in (1, 2, 3) for s in (0, 1)]
    cfgs += [from_dict({"num_steps": 2, "state_size": 8, "seed": 0})]
    assert packing.plan_packs(cfgs) == [([0, 1, 2, 3, 4, 5], ""), ([6], "")]
    # at most 4 runs: n = 1 and 2 fill the first pack; n = 3 is not cut across packs
    assert packing.plan_packs(cfgs, max_pack_size=3) == [([0, 1], "split by max_pack_size 3"),
                                                        ([2, 3], "split by max_pack_size 3"),
                                                        ([4, 5], "split by max_pack_size 3"), ([6], "")]
    cap = packing.plan_packs(cfgs[:6], 32, memory_budget=2**30, estimate=lambda c: 2**29 - 1)
    assert cap == [([0, 1], "split by the memory cap (1 GB per pack)"),
                   ([2, 3], "split by the memory cap (1 GB per pack)"),
                   ([4, 5], "split by the memory cap (1 GB per pack)")]
    alone = packing.plan_packs([from_dict({"model": {"backend": "keras"}})])
    assert alone == [([0], "runs alone: model.backend=keras trains by model.fit")]


def test_a_pack_of_every_n_compiles_the_tf_style_program_once():
    """Groups of equal size and n up to the buffer share one compiled epoch program."""
    from rnn_sweep.run import packing

    pack = [_e2e_cfg(n, s, 0.1) for n in (1, 5, 20) for s in (0, 1)]
    other = [_e2e_cfg(n, s, 0.1) for n in (2, 3, 32) for s in (4, 5)]
    assert packing.pack_programs(pack) == packing.pack_programs(other)
    assert packing.pack_programs(pack) != packing.pack_programs(pack[:3])  # a group of one: another shape
    assert math.isclose(packing.pack_cost(pack), sum(packing.pack_seconds(c, 1) for c in pack))


def test_a_segment_call_hands_back_positions_and_never_one_hots_the_epoch():
    """Each segment call of a TF-style epoch returns its position losses [C + buffer, K] (not an
    [updates, buffer, K] block per update), and the compiled epoch one-hots each step inside its
    loop: no float copy of the whole epoch's inputs (8 bytes per step per replica) is made."""
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.model.backends import build_backend
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig

    be = build_backend(ModelConfig(backend="scratch", cell="rnn"), 2)
    params = {k: tf.constant(v) for k, v in be.init_params([0, 1]).items()}
    hp = optim.stacked_hyperparams([OptimizerConfig(name="adagrad", lr=0.1)] * 2)
    xs = tf.constant(np.zeros((C, 2, B), np.int8))
    fn = engine.epoch_fn(be, "adagrad", "tf", False, 3)
    args = (params, optim.init_state("adagrad", params, hp), hp, xs, xs, tf.constant(3), be.zero_state(2, B),
            tf.constant(0), tf.constant(C // 3))
    out = fn.program(*args)
    assert tuple(out[3].shape) == (C + 32, 2)  # one row per position (+ one window buffer), per replica
    graph = fn.program.get_concrete_function(*args).graph
    assert not [op for op in graph.get_operations() if op.type == "OneHot"]  # only inside the loop's body


@pytest.mark.parametrize("style", ["tf", "true"])
def test_no_group_is_charged_for_compiling_the_program_it_shares(monkeypatch, style):
    """Groups of other n share one compiled program (TF style: every n; true BPTT: n = 3 and 4
    have one block size); the epoch compiles it for its shapes before any group's seconds are
    counted, so no timed segment traces, and the warm-up makes no update: the losses are those
    of an epoch without it (a pack of one n-group per member, compared with each trained alone)."""
    from rnn_sweep.run.pack import Pack

    cfgs = [_cfg("scratch", "rnn", "adagrad", n, 7, 0.1, style=style, xla=True) for n in (3, 4)]
    traced_at_segments = []
    real_segment = Pack._segment

    def segment(group, run, stop, result):
        traced_at_segments.append(group.fn.program.experimental_get_tracing_count())
        return real_segment(group, run, stop, result)

    monkeypatch.setattr(Pack, "_segment", staticmethod(segment))
    pack = Pack(cfgs)
    assert pack.groups[0].fn.program is pack.groups[1].fn.program
    before = pack.groups[0].fn.program.experimental_get_tracing_count()
    result = pack.train_epoch(0)
    assert traced_at_segments and set(traced_at_segments) == {before + 1}  # traced once, before the first segment
    for k, cfg in enumerate(cfgs):
        alone = Pack([cfg])
        monkeypatch.setattr(Pack, "_warm_up", staticmethod(lambda group, run: None))  # no warm-up at all
        ref = alone.train_epoch(0)
        np.testing.assert_allclose(np.concatenate(result.losses[k]), np.concatenate(ref.losses[0]), rtol=1e-6)
