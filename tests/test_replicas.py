"""Packs: K runs trained as one compiled program give each run exactly what it gets alone.

Covers ``train_pack`` (any seeds and optimizer hyper-parameters), ``train.replicas=K``
(seeds seed..seed+K-1 as one pack, one record per seed) and per-member isolation
(a diverging or failing member does not touch the others). The reference for every
member is the same run trained alone by ``train()`` -- itself checked against the
NumPy oracle (tests/test_oracle.py, tests/test_train.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import small_cfg
import oracle
from rnn_sweep.task.config import RunConfig, validate

TINY = ["num_steps=4", "state_size=5", "data.length=30000", "data.eval_length=10000", "train.log_every=25",
        "train.epochs=2"]


def assert_same_run(a: Path, b: Path) -> None:
    """Every losses.csv value but elapsed_s, and every summary field but timings, to 1e-5."""
    la, lb = pd.read_csv(a / "losses.csv"), pd.read_csv(b / "losses.csv")
    assert la[["epoch", "data_start", "data_end", "updates"]].equals(lb[["epoch", "data_start", "data_end", "updates"]])
    if (a / "checkpoints.csv").exists() or (b / "checkpoints.csv").exists():
        ca, cb = pd.read_csv(a / "checkpoints.csv"), pd.read_csv(b / "checkpoints.csv")
        assert ca[["epoch", "data_steps", "updates"]].equals(cb[["epoch", "data_steps", "updates"]])
        np.testing.assert_allclose(ca.drop(columns=["epoch", "data_steps", "updates"]).to_numpy(float),
                                   cb.drop(columns=["epoch", "data_steps", "updates"]).to_numpy(float), atol=1e-5)
    np.testing.assert_allclose(la["loss"], lb["loss"], atol=1e-5, rtol=0)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert set(sa) == set(sb)
    for key in set(sa) - {"timings", "heldout_loss", "heldout_optimal_loss", "final_loss", "learned_fraction"}:
        assert sa[key] == sb[key], key
    for key in ("heldout_loss", "heldout_optimal_loss", "final_loss"):
        assert (sa[key] is None) == (sb[key] is None), key
        if sa[key] is not None:
            assert sa[key] == pytest.approx(sb[key], abs=1e-5), key
    assert sa["learned_fraction"].keys() == sb["learned_fraction"].keys()
    for lag in sa["learned_fraction"]:
        assert sa["learned_fraction"][lag] == pytest.approx(sb["learned_fraction"][lag], abs=1e-4)


def test_stacked_gradients_are_each_replicas_own():
    """Slice k of a pack's gradient == the oracle's hand-derived gradient of replica k alone."""
    import tensorflow as tf

    from rnn_sweep.model.scratch import ScratchBackend
    from rnn_sweep.model.truncation import cell_state, row_state, state_buffers, tf_style_window

    be, seeds = ScratchBackend(3), [4, 9, 11]
    rng = np.random.default_rng(0)
    xs, ys = rng.integers(0, 2, (3, 6, 5)), rng.integers(0, 2, (3, 6, 5))  # [K, B, n]
    s0 = rng.uniform(-1, 1, (3, 6, 3)).astype(np.float32)
    params = {k: tf.constant(v) for k, v in be.init_params(seeds).items()}
    state = cell_state(be, (tf.constant(s0),))
    losses, _, grads, (end, _) = tf_style_window(
        be, params, tf.one_hot(xs.transpose(2, 0, 1), 2), tf.constant(ys.transpose(2, 0, 1), tf.int32),
        tf.constant(0), tf.constant(5), state, state_buffers(state, 32))
    (s_new,) = row_state(be, end)
    for k in range(3):
        ref = oracle.window_grads({n: v[k].numpy() for n, v in params.items()}, oracle.onehot(xs[k]), ys[k], s0[k])
        assert losses[k].numpy() == pytest.approx(ref.loss, abs=1e-6)
        np.testing.assert_allclose(s_new[k].numpy(), ref.final_state, atol=1e-6)
        for name in oracle.PARAM_NAMES:
            np.testing.assert_allclose(grads[name][k].numpy(), ref.grads[name], atol=1e-6, err_msg=name)


@pytest.mark.parametrize("extra", [
    [], pytest.param(["truncation=true_bptt", "model=static", "model.cell=gru"], marks=pytest.mark.slow)])
def test_pack_members_equal_their_runs_alone(tmp_path, extra):
    """Seeds AND learning rates differ inside the pack; every member's record is its run alone."""
    from rnn_sweep.run.train import train, train_pack

    members = [(5, 0.1), (6, 0.3), (5, 0.05)]
    cfgs = [small_cfg(*TINY, *extra, f"seed={s}", f"train.optimizer.lr={lr}") for s, lr in members]
    out = train_pack(cfgs, [tmp_path / f"pack{i}" for i in range(3)])
    assert [s["status"] for s in out] == ["completed"] * 3 and [s["timings"]["pack_size"] for s in out] == [3] * 3
    for i, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"alone{i}")
        assert alone["timings"]["pack_size"] == 1
        assert_same_run(tmp_path / f"pack{i}", tmp_path / f"alone{i}")
    # the members really are different runs (the comparison can fail)
    first = pd.read_csv(tmp_path / "pack0" / "losses.csv")["loss"]
    for other in ("pack1", "pack2"):
        assert not np.allclose(first, pd.read_csv(tmp_path / other / "losses.csv")["loss"], atol=1e-4)


def test_diverging_member_is_isolated(tmp_path):
    """A huge learning rate diverges its own member at its step; the others finish as if alone."""
    from rnn_sweep.run.train import train, train_pack

    cfgs = [small_cfg(*TINY, "train.optimizer.name=sgd", f"seed={s}", f"train.optimizer.lr={lr}",
                      "train.diverge_loss=5") for s, lr in [(1, 0.5), (2, 1e6), (3, 0.5)]]
    out = train_pack(cfgs, [tmp_path / f"p{i}" for i in range(3)])
    assert [s["status"] for s in out] == ["completed", "diverged", "completed"]
    # 150 positions per row, windows of 4: the first block of 50 positions ends in update ceil(50/4) = 13
    assert out[1]["diverged_at_step"] == 13 and out[1]["heldout_loss"] is None
    assert pd.read_csv(tmp_path / "p1" / "losses.csv")["data_end"].tolist() == [50 * 200]
    for i in (0, 2):
        train(cfgs[i], tmp_path / f"alone{i}")
        assert_same_run(tmp_path / f"p{i}", tmp_path / f"alone{i}")
    train(cfgs[1], tmp_path / "alone1")
    assert_same_run(tmp_path / "p1", tmp_path / "alone1")  # diverged alone at the same step


def test_failing_member_is_isolated(tmp_path, monkeypatch):
    """A member whose record cannot be written is recorded as failed; the others complete."""
    from rnn_sweep.run import train as train_mod

    real = train_mod.write_json_atomic

    def flaky(path, obj):
        if path.parent.name == "p1" and obj["status"] != "failed":
            raise OSError(28, "No space left on device")
        real(path, obj)

    monkeypatch.setattr(train_mod, "write_json_atomic", flaky)
    cfgs = [small_cfg(*TINY, f"seed={s}") for s in (0, 1, 2)]
    out = train_mod.train_pack(cfgs, [tmp_path / f"p{i}" for i in range(3)])
    assert [s["status"] for s in out] == ["completed", "failed", "completed"]
    assert "No space left" in out[1]["error"]
    assert json.loads((tmp_path / "p1" / "summary.json").read_text())["status"] == "failed"


def test_member_whose_evaluation_fails_is_isolated(tmp_path, monkeypatch):
    """An error in one member's held-out evaluation fails that member only."""
    from rnn_sweep.run import pack
    from rnn_sweep.run.train import train_pack

    real = pack.heldout_metrics

    def broken_for_seed_1(cfg, p_win, full, *ref):
        if cfg.seed == 1:
            raise FloatingPointError("injected evaluation failure")
        return real(cfg, p_win, full, *ref)

    monkeypatch.setattr(pack, "heldout_metrics", broken_for_seed_1)
    out = train_pack([small_cfg(*TINY, f"seed={s}") for s in (0, 1)], [tmp_path / "p0", tmp_path / "p1"])
    assert [s["status"] for s in out] == ["completed", "failed"]
    assert out[1]["error"] == "FloatingPointError: injected evaluation failure" and out[1]["heldout_loss"] is None
    assert out[0]["heldout_loss"] is not None
    assert json.loads((tmp_path / "p1" / "summary.json").read_text())["status"] == "failed"


def test_pack_rejects_runs_that_differ_in_shape(tmp_path):
    from rnn_sweep.run.packing import pack_key
    from rnn_sweep.run.train import train_pack

    a, b = small_cfg(*TINY), small_cfg(*TINY, "state_size=6", "seed=3", "train.optimizer.lr=0.2")
    with pytest.raises(ValueError, match=r"differ in state_size \(5 vs 6\)"):
        train_pack([a, b], [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()  # refused before anything ran
    c = small_cfg(*TINY, "seed=9", "train.optimizer.lr=0.7", "train.optimizer.beta1=0.5", "train.progress=true")
    assert pack_key(a) == pack_key(c) != pack_key(b)


@pytest.mark.slow
def test_replicas_option_is_a_pack_of_seeds(tmp_path):
    """train.replicas=3: seeds 5, 6, 7 as one pack, each its own record == the run with that seed."""
    from rnn_sweep.run.train import train

    combined = train(small_cfg(*TINY, "seed=5", "train.replicas=3", "model=dynamic", "model.cell=lstm"),
                     tmp_path / "rep")
    assert combined["seeds"] == [5, 6, 7] and combined["status"] == "completed"
    assert not (tmp_path / "rep" / "summary.json").exists()  # only per-seed records: no double counting
    for seed in (5, 6, 7):
        rec = json.loads((tmp_path / "rep" / f"seed={seed}" / "summary.json").read_text())
        assert rec["config"]["seed"] == seed and rec["config"]["train"]["replicas"] == 1
        train(small_cfg(*TINY, f"seed={seed}", "model=dynamic", "model.cell=lstm"), tmp_path / f"single{seed}")
        assert_same_run(tmp_path / "rep" / f"seed={seed}", tmp_path / f"single{seed}")


def test_existing_replica_record_is_not_overwritten(tmp_path):
    from rnn_sweep.run.train import train

    (tmp_path / "seed=1").mkdir()
    (tmp_path / "seed=1" / "summary.json").write_text("{}")
    with pytest.raises(FileExistsError, match="seed=1"):
        train(small_cfg("train.replicas=2"), tmp_path)
    assert (tmp_path / "seed=1" / "summary.json").read_text() == "{}"


def test_replicas_work_with_every_backend_and_style():
    cfg = RunConfig()
    cfg.train.replicas, cfg.model.backend, cfg.truncation.style = 4, "static", "true"
    validate(cfg)  # a pack of seeds now runs on the one training path, any backend and style


def test_replicas_must_be_positive():
    from rnn_sweep.task.config import ConfigError

    cfg = RunConfig()
    cfg.train.replicas = 0
    with pytest.raises(ConfigError, match=r"^train\.replicas=0 is invalid"):
        validate(cfg)
