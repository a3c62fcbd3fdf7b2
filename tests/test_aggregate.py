"""Aggregation of sweep directories built by hand in the real file schema.

Expected numbers are derived by hand in this file (binary entropies, medians,
means), never captured from the code under test.
"""

from __future__ import annotations

import json
import os
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rnn_sweep.analysis.tables import aggregate, write_tables
from rnn_sweep.analysis.rundirs import read_losses

ARTICLE = [{"lag": 3, "effect": 0.5}, {"lag": 8, "effect": -0.25}]
HEADER = "epoch,data_start,data_end,loss,updates,elapsed_s\n"  # the data grid (train.log_data_steps)
CP_HEADER = "epoch,data_steps,updates,heldout_loss,learned_3,learned_8\n"
VENV_BIN = Path(sys.executable).parent


def H(p: float) -> float:
    """Binary entropy in nats (independent of rnn_sweep.task.baselines)."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


# The article's levels by hand (SEED_NOTES): H(0.625); 0.5 H(0.875) + 0.5 H(0.375); 0.25 ln2 + 0.5 H(0.25).
L0, L1, L2 = H(0.625), 0.5 * H(0.875) + 0.5 * H(0.375), 0.25 * math.log(2) + 0.5 * H(0.25)
ARTICLE_LEVELS = [{"name": "none", "lags": [], "loss": L0}, {"name": "lag 3", "lags": [3], "loss": L1},
                  {"name": "lags 3+8", "lags": [3, 8], "loss": L2}]
# The configs below: 100,000 time steps per epoch, batch 200: 500 positions per row; a loss block
# every 10,000 time steps = 50 positions, so 10 blocks per epoch for every n that divides 500.
LENGTH, BATCH, GRID = 100_000, 200, 50
CURVE = [0.69, 0.69, 0.60, 0.55, 0.52, 0.52, 0.50, 0.47, 0.46, 0.455]  # one epoch of block means
# Held-out checkpoints at 0 (untrained), 20k, 40k, 60k, 80k, 100k time steps, learned fractions:
CP_DATA = [0, 20_000, 40_000, 60_000, 80_000, 100_000]
LEARNED3 = [0.0, 0.2, 0.6, 0.9, 1.0, 1.0]  # >= 0.5 from between 20k (0.2) and 40k (0.6): 20k + 0.3/0.4 * 20k
LEARNED8 = [0.0, 0.0, 0.1, 0.3, 0.7, 0.8]  # between 60k (0.3) and 80k (0.7): 60k + 0.2/0.4 * 20k
ONSET3, ONSET8 = 35_000.0, 70_000.0  # by hand, threshold 0.5


def config(num_steps=5, state_size=4, seed=0, style="tf", deps=ARTICLE, base_prob=0.5, backend="scratch",
           lr=0.1, epochs=1) -> dict:
    """A resolved run config, as summary.json['config'] / .hydra/config.yaml hold it."""
    return {
        "data": {"input_prob": 0.5, "base_prob": base_prob, "dependencies": deps, "length": LENGTH,
                 "eval_length": 50000, "boundary": "pad"},
        "model": {"backend": backend, "cell": "rnn"},
        "train": {"epochs": epochs, "batch_size": BATCH, "log_every": 10, "log_data_steps": GRID * BATCH,
                  "checkpoints": 5, "checkpoint_eval_length": 20000, "final_fraction": 0.1, "log_updates": False,
                  "optimizer": {"name": "adagrad", "lr": lr, "initial_accumulator": 0.1, "beta1": 0.9,
                                "beta2": 0.999, "epsilon": 1e-8},
                  "xla": True, "threads": 0, "progress": seed % 2 == 0, "replicas": 1, "diverge_loss": 10.0},
        "truncation": {"style": style, "update_every": None},
        "num_steps": num_steps, "state_size": state_size, "seed": seed,
    }


def grid_rows(losses, n: int = 5, per_update: int | None = None) -> str:
    """losses.csv rows as train.py writes them, worked out here: blocks of GRID positions over the
    P = (500 // u) * u positions an epoch trains (u = positions per update, n for TF style), the
    epoch's last block partial; data counted in time steps (positions x BATCH) from the run's start;
    updates done once a block's last position is trained."""
    u = per_update or n
    positions, per_epoch = (LENGTH // BATCH) // u * u, (LENGTH // BATCH) // u
    rows, i = [], 0
    for epoch in range(-(-len(losses) // -(-positions // GRID))):
        for start in range(0, positions, GRID):
            if i == len(losses):
                break
            end = min(start + GRID, positions)
            rows.append(f"{epoch},{epoch * LENGTH + start * BATCH},{epoch * LENGTH + end * BATCH},{losses[i]!r},"
                        f"{epoch * per_epoch + -(-end // u)},{0.5 * (i + 1):.4f}\n")
            i += 1
    return "".join(rows)


def write_losses(run_dir: Path, losses, n: int = 5) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "losses.csv").write_text(HEADER + grid_rows(losses, n))


def checkpoint_rows(learned3=LEARNED3, learned8=LEARNED8, data=CP_DATA, n: int = 5) -> str:
    """checkpoints.csv rows: untrained first; updates = data / (n x BATCH) within the one epoch."""
    return "".join(f"0,{x},{x // (n * BATCH)},{0.69 - 0.2 * a!r},{a!r},{b!r}\n"
                   for x, a, b in zip(data, learned3, learned8))


def write_run(run_dir: Path, cfg: dict, losses=CURVE, learned=(1.0, 0.0), heldout=0.52, levels=ARTICLE_LEVELS,
              status="completed", total_s=2.0, summary=True, hydra=True, checkpoints=(LEARNED3, LEARNED8)) -> Path:
    """One run directory in the real schema (summary.json, losses.csv, checkpoints.csv, .hydra/config.yaml)."""
    n = cfg["num_steps"]
    if losses is not None:
        write_losses(run_dir, losses, n)
    run_dir.mkdir(parents=True, exist_ok=True)
    if checkpoints is not None:
        (run_dir / "checkpoints.csv").write_text(CP_HEADER + checkpoint_rows(*checkpoints, n=n))
    if hydra:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if summary:
        lags = [d["lag"] for d in cfg["data"]["dependencies"]]
        data = (10 * len(losses) if losses else 0) * GRID * BATCH // 10
        s = {"status": status, "backend": cfg["model"]["backend"], "cell": "rnn",
             "style": cfg["truncation"]["style"], "num_steps": n,
             "state_size": cfg["state_size"], "seed": cfg["seed"],
             "final_loss": losses[-1] if losses else None,
             "final_loss_window": {"fraction": 0.1, "data_start": data - LENGTH // 10, "data_end": data},
             "heldout_loss": heldout, "heldout_optimal_loss": 0.455,
             "learned_fraction": {str(lag): v for lag, v in zip(lags, learned)}, "levels": levels,
             "steps": data // (BATCH * n), "data_steps": data, "epochs_completed": 1, "diverged_at_step": None,
             "diverged_at_data_steps": None, "timings": {"total_s": total_s}, "versions": {}, "config": cfg,
             "error": None}
        (run_dir / "summary.json").write_text(json.dumps(s))
    return run_dir


def test_levels_by_hand_match_the_article():
    assert (round(L0, 4), round(L1, 4), round(L2, 4)) == (0.6616, 0.5192, 0.4545)


def test_runs_table_exact(tmp_path):
    # 2 num_steps x 2 seeds at state_size 4: learned (lag3, lag8), held-out loss chosen by hand.
    spec = {(5, 0): ((1.0, 0.0), 0.52), (5, 1): ((0.9, 0.1), 0.50),
            (10, 0): ((1.0, 1.0), 0.46), (10, 1): ((1.0, 0.8), 0.70)}
    for (n, seed), (learned, heldout) in spec.items():
        write_run(tmp_path / f"num_steps={n},seed={seed}", config(n, 4, seed), learned=learned, heldout=heldout,
                  total_s=n + seed)
    agg = aggregate(tmp_path)
    assert agg.warnings == []
    assert agg.config_cols == ["num_steps", "state_size"]  # train.progress differs but never splits a sweep
    assert list(agg.runs.columns) == [
        "run_id", "source", "source_dir", "rule", "backend", "style", "num_steps", "state_size", "seed", "status", "problem",
        "steps", "data_steps", "epochs_completed", "final_loss", "final_loss_from", "final_loss_to", "heldout_loss",
        "heldout_optimal_loss", "baseline_0", "baseline_1", "baseline_2", "level", "level_k", "level_clear",
        "level_from", "learned_lag3", "learned_lag8", "onset_lag3", "onset_lag8", "onset_status_lag3",
        "onset_status_lag8", "wall_s"]
    r = agg.runs
    assert list(r["run_id"]) == ["num_steps=5,seed=0", "num_steps=5,seed=1", "num_steps=10,seed=0",
                                 "num_steps=10,seed=1"]  # numeric order of num_steps, then seed
    assert list(r["level"]) == ["lag 3", "lag 3", "lags 3+8", "none"]
    assert list(r["level_k"]) == [1, 1, 2, 0]
    assert list(r["level_clear"]) == [True, False, True, False]
    assert list(r["learned_lag8"]) == [0.0, 0.1, 1.0, 0.8]
    # Onsets in data steps from the checkpoints, the same for every n (the checkpoints are in data).
    assert list(r["onset_lag3"]) == [ONSET3] * 4 and list(r["onset_lag8"]) == [ONSET8] * 4
    assert set(r["onset_status_lag3"]) == {"reached"}
    assert list(r["data_steps"]) == [100_000] * 4 and set(r["source_dir"]) == {str(tmp_path)}
    # final_loss and the data window it averages, from summary.json: the last 10% of 100k steps.
    assert list(r["final_loss"]) == [0.455] * 4
    assert list(r["final_loss_from"]) == [90_000] * 4 and list(r["final_loss_to"]) == [100_000] * 4
    assert set(r["source"]) == {tmp_path.name}
    assert list(r["wall_s"]) == [5.0, 6.0, 10.0, 11.0]
    assert list(r["steps"]) == [100, 100, 50, 50] and set(r["status"]) == {"completed"}
    assert np.allclose(r[["baseline_0", "baseline_1", "baseline_2"]].to_numpy(), [[L0, L1, L2]] * 4)
    assert r["rule"].iloc[0] == "P(Y=1)=0.5 +0.5·X[t-3] -0.25·X[t-8]; P(X=1)=0.5"


def test_grid_and_curves_exact(tmp_path):
    for n, seed, learned, heldout in [(5, 0, (1.0, 0.0), 0.52), (5, 1, (0.5, 0.2), 0.53),
                                      (10, 0, (1.0, 1.0), 0.46), (10, 1, (1.0, 0.6), 0.50)]:
        # n=10, seed 1 never gets lag 8 to 0.5 at a checkpoint: censored, and kept.
        cps = (LEARNED3, [0.0, 0.1, 0.2, 0.3, 0.4, 0.45]) if (n, seed) == (10, 1) else (LEARNED3, LEARNED8)
        write_run(tmp_path / f"n{n}_s{seed}", config(n, 16, seed), learned=learned, heldout=heldout,
                  checkpoints=cps)
    agg = aggregate(tmp_path)
    g = agg.grid.set_index(["num_steps", "lag"])
    assert list(agg.grid.columns[:3]) == ["num_steps", "state_size", "lag"]
    assert len(agg.grid) == 4 and set(agg.grid["n_runs"]) == {2}
    assert g.loc[(5, 3), "learned_mean"] == pytest.approx(0.75)
    assert g.loc[(5, 3), "learned_std"] == pytest.approx(math.sqrt(0.125))  # sample std of 1.0, 0.5
    assert "learned_low" not in agg.grid  # no interval for a mean of seeds on two levels (see test_coverage)
    assert (g.loc[(5, 8), "learned_min"], g.loc[(5, 8), "learned_max"]) == (0.0, 0.2)
    assert g.loc[(10, 8), "learned_mean"] == pytest.approx(0.8)
    assert g.loc[(10, 3), "heldout_loss_mean"] == pytest.approx(0.48)
    # n=10: 0.46 sits nearest 3+8 and 0.50 nearest lag 3: a tie goes to fewer dependencies.
    assert g.loc[(5, 3), "level"] == "lag 3" and g.loc[(10, 3), "level"] == "lag 3"
    assert g.loc[(10, 8), "level_k_mean"] == pytest.approx(1.5)
    assert g.loc[(5, 8), "onset_median"] == ONSET8 and g.loc[(5, 8), "seeds_learned"] == 2
    # The censored seed counts: 1 of 2 learned, so no median (not more than half learned); exact interval
    # of 1/2 by hand: 1 - (1 - p)^2 = 0.025 at the low end, symmetric at the high end.
    assert math.isnan(g.loc[(10, 8), "onset_median"]) and g.loc[(10, 8), "onset_censored"] == 1
    assert (g.loc[(10, 8), "seeds_learned"], g.loc[(10, 8), "seeds_judged"]) == (1, 2)
    low = 1 - math.sqrt(0.975)
    assert (g.loc[(10, 8), "learned_share_low"], g.loc[(10, 8), "learned_share_high"]) == (
        pytest.approx(low, abs=1e-9), pytest.approx(1 - low, abs=1e-9))
    c = agg.curves
    assert list(c.columns) == ["run_id", "num_steps", "state_size", "seed", "epoch", "data_start", "data_end",
                               "data_mid", "updates", "loss"]
    assert len(c) == 4 * len(CURVE)
    one = c[c["run_id"] == "n10_s1"]
    assert list(one["data_start"]) == [10_000 * i for i in range(10)] and list(one["loss"]) == CURVE
    assert list(one["data_mid"]) == [5_000 + 10_000 * i for i in range(10)]
    assert list(one["updates"]) == [5 * (i + 1) for i in range(10)]  # 50 positions per block, 10 per update
    assert set(one["num_steps"]) == {10} and set(one["seed"]) == {1}
    lv = agg.levels
    assert list(lv["level"]) == ["none", "lag 3", "lags 3+8"] and list(lv["lags"]) == ["", "3", "3+8"]


def test_the_curve_grid_does_not_depend_on_n(tmp_path):
    # n=1 and n=20 (both divide the 500 positions of a row): the same ten blocks of 10k time steps.
    write_run(tmp_path / "n1", config(1, 4, 0))
    write_run(tmp_path / "n20", config(20, 4, 0))
    c = aggregate(tmp_path).curves
    x1, x20 = (list(c[c["num_steps"] == n]["data_mid"]) for n in (1, 20))
    assert x1 == x20 == [5_000 + 10_000 * i for i in range(10)]
    assert list(c[c["num_steps"] == 1]["updates"]) == [50 * (i + 1) for i in range(10)]
    # n=20: a block of 50 positions ends inside an update (every 20 positions): updates done are 3, 5, 8, ...
    assert list(c[c["num_steps"] == 20]["updates"]) == [-(-50 * (i + 1) // 20) for i in range(10)]
    # n=7 trains 71 x 7 = 497 positions: the same blocks, the last one 47 positions wide.
    write_run(tmp_path / "n7", config(7, 4, 0))
    c = aggregate(tmp_path).curves
    seven = c[c["num_steps"] == 7]
    assert list(seven["data_start"]) == [10_000 * i for i in range(10)]
    assert list(seven["data_end"])[-1] == 497 * 200 and list(seven["data_mid"])[:9] == x1[:9]


def test_read_losses_drops_a_truncated_last_line(tmp_path):
    path = tmp_path / "losses.csv"
    path.write_text(HEADER + "0,0,10000,0.69,10,0.5\n0,10000,20000,0.60,20,1.0\n0,20000,30000,0.5")  # killed mid-write
    frame, problems = read_losses(path)
    assert list(frame["data_end"]) == [10000, 20000] and list(frame["loss"]) == [0.69, 0.60]
    assert problems == ["losses.csv: dropped 1 malformed line(s): its last line (truncated write?)"]
    path.write_text(HEADER + "0,0,10000,0.69,10,0.5\ngarbage\n0,20000,30000,0.5,30,1.5\n")
    frame, problems = read_losses(path)
    assert list(frame["data_start"]) == [0, 20000] and problems == [
        "losses.csv: dropped 1 malformed line(s): lines [3]"]
    path.write_text("")
    frame, problems = read_losses(path)
    assert frame.empty and problems == ["losses.csv is empty"]


def test_an_older_versions_losses_csv_is_named_to_rerun(tmp_path):
    run = write_run(tmp_path / "old", config(5, 4, 0), checkpoints=None)
    (run / "losses.csv").write_text("epoch,step,loss,block_steps,elapsed_s\n0,10,0.69,10,0.5\n")
    write_run(tmp_path / "new", config(5, 4, 1))
    agg = aggregate(tmp_path)
    assert sorted(agg.curves["run_id"].unique()) == ["new"]
    assert agg.warnings == ["old: losses.csv was written by an older version of rnn-sweep (blocks of updates, "
                            "not of data): no curve or onset from it; rerun the run"]
    # Its summary still counts (final numbers); without checkpoints.csv it has no onset.
    r = agg.runs.set_index("run_id")
    assert r.loc["old", "status"] == "completed" and r.loc["old", "onset_status_lag3"] == "no_checkpoints"


def _broken_sweep(root: Path) -> None:
    write_run(root / "ok", config(5, 4, 0), learned=(1.0, 0.0), heldout=0.52)
    # Crashed/running: losses only; Hydra's record is in <sweep>/.jobs/<run>/config.yaml (sweep layout).
    write_run(root / "running", config(5, 4, 1), losses=CURVE[:7], summary=False, hydra=False,
              checkpoints=(LEARNED3[:4], LEARNED8[:4]))  # checkpoints to 60k of its 70k steps so far
    (root / ".jobs" / "running").mkdir(parents=True)
    (root / ".jobs" / "running" / "config.yaml").write_text(yaml.safe_dump(config(5, 4, 1)))
    # Truncated losses.csv (the last line cut) with a finished summary.
    write_run(root / "truncated", config(10, 4, 0), learned=(1.0, 1.0), heldout=0.46)
    with open(root / "truncated" / "losses.csv", "a") as f:
        f.write("0,150,0.4")
    # Corrupt summary.json: falls back to losses + .hydra/config.yaml.
    write_run(root / "corrupt", config(10, 4, 1), losses=CURVE[:3])
    (root / "corrupt" / "summary.json").write_text('{"status": "compl')
    # A job Hydra started that has written nothing yet.
    (root / ".jobs" / "pending").mkdir(parents=True)
    (root / ".jobs" / "pending" / "config.yaml").write_text(yaml.safe_dump(config(10, 4, 2)))
    # A directory with an empty losses.csv and nothing else: nothing to aggregate.
    (root / "empty_run").mkdir()
    (root / "empty_run" / "losses.csv").write_text("")
    # A failed run: summary with status failed and the error.
    write_run(root / "failed", config(5, 4, 2), losses=None, learned=(), heldout=None, status="failed")
    s = json.loads((root / "failed" / "summary.json").read_text())
    (root / "failed" / "summary.json").write_text(json.dumps({**s, "error": "RuntimeError: boom"}))


def test_broken_runs_are_warned_never_raised(tmp_path):
    _broken_sweep(tmp_path)
    agg = aggregate(tmp_path)
    r = agg.runs.set_index("run_id")
    assert sorted(r.index) == ["corrupt", "failed", "ok", "running", "truncated"]
    assert dict(r["status"]) == {"corrupt": "incomplete", "failed": "failed", "ok": "completed",
                                 "running": "incomplete", "truncated": "completed"}
    w = {line.split(":")[0]: line for line in agg.warnings}
    assert "no summary.json (crashed, or still running)" in w["running"]
    assert "summary.json unreadable (JSONDecodeError" in w["corrupt"]
    assert "dropped 1 malformed line(s): its last line" in w["truncated"]
    assert "started" in w["pending"] and "failed: RuntimeError: boom" in w["failed"]
    assert w["empty_run"] == "empty_run: skipped, nothing to aggregate: no usable summary.json and no logged loss; " \
                             "losses.csv is empty"
    assert len(agg.warnings) == 6
    # The running run: levels recomputed from Hydra's config; its final loss is over the blocks that cover
    # the last 10% of the 70k steps it saw (the block 60k-70k: 0.50), nearest lag 3; level from training.
    run = r.loc["running"]
    assert (run["baseline_0"], run["baseline_2"]) == (pytest.approx(L0), pytest.approx(L2))
    assert run["final_loss"] == 0.50 and run["level_from"] == "train" and run["level"] == "lag 3"
    assert (run["final_loss_from"], run["final_loss_to"]) == (60_000, 70_000)
    # Its checkpoints so far: lag 3 reached at 35k; lag 8 not yet (0.3 at 60k): censored, kept.
    assert run["onset_lag3"] == ONSET3 and run["onset_status_lag8"] == "censored"
    assert math.isnan(run["onset_lag8"]) and math.isnan(run["learned_lag3"])
    assert run["wall_s"] == 3.5 and run["seed"] == 1 and run["steps"] == 70  # elapsed_s, updates of the last block
    assert r.loc["truncated", "steps"] == 50 and r.loc["corrupt", "seed"] == 1
    assert r.loc["corrupt", "problem"].startswith("summary.json unreadable")
    # The failed run has no losses: it is listed, with no level.
    assert pd.isna(r.loc["failed", "level"])


def test_mixed_rules_get_their_own_levels(tmp_path):
    write_run(tmp_path / "article", config(5, 4, 0), learned=(1.0, 0.0), heldout=0.52)
    # Another rule, no summary: P(Y=1) = 0.3 + 0.4 X_{t-2}; levels none = H(0.5), lag 2 = H(0.3).
    other = config(5, 4, 0, deps=[{"lag": 2, "effect": 0.4}], base_prob=0.3)
    write_run(tmp_path / "other", other, losses=[0.69, 0.69, 0.65, 0.62, 0.61, 0.61], summary=False,
              checkpoints=None)
    (tmp_path / "other" / "checkpoints.csv").write_text("epoch,data_steps,updates,heldout_loss,learned_2\n"
                                                        "0,0,0,0.69,0.1\n0,20000,20,0.6,0.4\n0,40000,40,0.6,0.8\n")
    agg = aggregate(tmp_path)
    assert any("2 different data rules" in w for w in agg.warnings)
    assert agg.config_cols == ["rule", "num_steps", "state_size"]
    r = agg.runs.set_index("run_id")
    assert r.loc["other", "baseline_0"] == pytest.approx(math.log(2))
    assert r.loc["other", "baseline_1"] == pytest.approx(H(0.3)) and pd.isna(r.loc["other", "baseline_2"])
    # Its checkpoints: lag 2 at 0.4 (20k) then 0.8 (40k): 0.5 is reached at 20k + 0.1 / 0.4 * 20k.
    assert r.loc["other", "onset_lag2"] == pytest.approx(25_000)
    assert pd.isna(r.loc["other", "onset_lag3"])
    assert r.loc["other", "level"] == "lag 2"
    assert sorted(agg.grid["lag"]) == [2, 3, 8] and agg.grid["rule"].nunique() == 2
    assert sorted(agg.levels.groupby("rule").size()) == [2, 3]


def test_replica_directories_and_varying_fields(tmp_path):
    job = tmp_path / "num_steps=5,train.optimizer.lr=0.3"
    for seed in (3, 4):
        write_run(job / f"seed={seed}", config(5, 4, seed, lr=0.3), hydra=False)
    write_run(job / "seed=5", config(5, 4, 5, lr=0.3), losses=CURVE[:2], summary=False, hydra=False)
    (tmp_path / ".jobs" / job.name).mkdir(parents=True)
    (tmp_path / ".jobs" / job.name / "config.yaml").write_text(yaml.safe_dump(config(5, 4, 3, lr=0.3)))
    write_run(tmp_path / "num_steps=5,train.optimizer.lr=0.1", config(5, 4, 3))
    agg = aggregate(tmp_path)
    r = agg.runs
    assert agg.config_cols == ["train.optimizer.lr", "num_steps", "state_size"]
    assert list(r.columns[:5]) == ["run_id", "source", "source_dir", "train.optimizer.lr", "rule"]
    assert list(r["train.optimizer.lr"]) == [0.1, 0.3, 0.3, 0.3] and list(r["seed"]) == [3, 3, 4, 5]
    assert list(r["status"]) == ["completed", "completed", "completed", "incomplete"]
    assert list(agg.grid.query("lag == 3")["n_runs"]) == [1, 3]
    assert not any("started" in w for w in agg.warnings)  # the job's runs are its replica directories


def test_empty_directory(tmp_path):
    agg = aggregate(tmp_path)
    assert agg.runs.empty and agg.grid.empty and agg.curves.empty
    assert agg.warnings == [f"no runs under {tmp_path}: no directory holds summary.json or losses.csv"]
    written = write_tables(agg, tmp_path / "out")
    assert [p.name for p in written] == ["runs.csv", "curves.csv", "grid.csv", "levels.csv", "boundary.csv",
                                         "warnings.txt"]


def test_write_tables_round_trip(tmp_path):
    write_run(tmp_path / "sweep" / "a", config(5, 4, 0), learned=(0.25, 0.5))
    agg = aggregate(tmp_path / "sweep")
    write_tables(agg, tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert runs.loc[0, "learned_lag3"] == 0.25 and runs.loc[0, "onset_lag8"] == ONSET8
    grid = pd.read_csv(tmp_path / "out" / "grid.csv")
    assert list(grid["lag"]) == [3, 8] and list(grid["learned_mean"]) == [0.25, 0.5]
    assert (tmp_path / "out" / "warnings.txt").read_text() == ""


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "rnn-sweep-aggregate"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _main(*args) -> int:
    from rnn_sweep.analysis.aggregate_cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code


def test_cli_arguments_in_process(tmp_path, capsys):
    assert _main("--help") == 0 and "runs.csv" in capsys.readouterr().out
    assert _main(tmp_path / "missing") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"rnn-sweep-aggregate: error: SWEEP_DIR='{tmp_path / 'missing'}' is invalid: not an existing directory"]
    assert _main(tmp_path, "--format", "png,tiff") == 2
    assert "--format='png,tiff' is invalid: comma-separated values among png, pdf, svg, eps" in capsys.readouterr().err
    assert _main(tmp_path, "--margin", "2") == 2 and "--margin=2.0 is invalid" in capsys.readouterr().err
    _broken_sweep(tmp_path / "sweep")
    assert _main(tmp_path / "sweep", "--no-figures") == 0
    captured = capsys.readouterr()
    assert captured.err.count("rnn-sweep-aggregate: warning:") == 6 and "aggregated 5 runs" in captured.out
    produced = sorted(p.name for p in (tmp_path / "sweep" / "aggregate").iterdir())
    assert produced == [".rnn-sweep-aggregate.json", "boundary.csv", "curves.csv", "grid.csv", "levels.csv",
                        "runs.csv", "warnings.txt"]  # the tables and the record of what was written
    # Rerunning into the sweep does not pick up its own output as runs.
    assert _main(tmp_path / "sweep", "--no-figures", "--out", tmp_path / "sweep" / "aggregate") == 0
    assert "aggregated 5 runs" in capsys.readouterr().out


@pytest.mark.slow  # several console-script processes
def test_console_script_exit_codes(tmp_path):
    (tmp_path / "empty").mkdir()
    out = _cli(tmp_path / "empty", cwd=tmp_path)
    assert out.returncode == 1 and "no runs under" in out.stderr and "Traceback" not in out.stderr
    assert list((tmp_path / "empty").iterdir()) == []  # the output folder made for nothing is gone again
    write_run(tmp_path / "sweep" / "a", config(5, 4, 0))
    out = _cli(tmp_path / "sweep", "--out", tmp_path / "figs", "--format", "png,svg", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    produced = {p.name for p in (tmp_path / "figs").iterdir()}
    assert {"runs.csv", "grid.png", "grid.svg", "curves.png", "curves.svg", "onset.png"} <= produced
    assert "truncation.png" not in produced  # one truncation style: nothing to compare
    # A file under a figure's name that no aggregation wrote is the user's: never deleted as "stale".
    (tmp_path / "figs" / "truncation.png").write_text("mine")
    out = _cli(tmp_path / "sweep", "--out", tmp_path / "figs", "--format", "png", cwd=tmp_path)
    produced = {p.name for p in (tmp_path / "figs").iterdir()}
    assert out.returncode == 0 and "grid.svg" not in produced  # its own figure in a format not asked for: stale
    assert (tmp_path / "figs" / "truncation.png").read_text() == "mine"


def test_library_never_imports_tensorflow_or_hydra(tmp_path):
    # A fresh interpreter aggregates a sweep with every figure, then lists what it imported.
    write_run(tmp_path / "sweep" / "n5", config(5, 4, 0))
    write_run(tmp_path / "sweep" / "n10", config(10, 4, 0, style="true"))
    code = ("import sys; from rnn_sweep.analysis.aggregate_cli import run; "
            f"assert run({str(tmp_path / 'sweep')!r}, {str(tmp_path / 'out')!r}, ('png',)) == 0; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'hydra', 'keras')]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {"grid.png", "boundary.png", "curves.png", "onset.png", "truncation.png"} <= {
        p.name for p in (tmp_path / "out").iterdir()}


def test_200_run_sweep(tmp_path, record_property):
    rng = np.random.default_rng(0)
    for n in range(1, 11):
        for d in (2, 4, 8, 16, 32):
            for seed in range(4):
                decay = L2 + (L0 - L2) * np.exp(-np.arange(50) / (2 + n)) + rng.normal(0, 0.003, 50)
                losses = [float(v) for v in np.round(decay, 5)]
                write_run(tmp_path / f"n{n}_d{d}" / f"seed={seed}", config(n, d, seed),
                          losses=losses, learned=(min(1.0, n / 8), n / 10), heldout=0.5, hydra=False)
    t0 = time.perf_counter()
    agg = aggregate(tmp_path)
    elapsed = time.perf_counter() - t0
    record_property("aggregate_200_runs_s", elapsed)
    print(f"aggregated 200 runs in {elapsed:.2f} s")
    assert len(agg.runs) == 200 and len(agg.curves) == 200 * 50 and len(agg.grid) == 10 * 5 * 2
    g = agg.grid.set_index(["num_steps", "state_size", "lag"])
    assert g.loc[(4, 8, 3), "learned_mean"] == 0.5 and g.loc[(4, 8, 8), "learned_mean"] == 0.4
    assert set(agg.grid["n_runs"]) == {4} and set(agg.grid["learned_std"]) == {0.0}


def test_callback_aggregates_and_refuses_bad_settings(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import rnn_sweep.launch.cli  # noqa: F401  (registers the schema and resolvers conf/ uses)
    from rnn_sweep.launch.callbacks import AggregateCallback

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    callback = instantiate(cfg.hydra.callbacks.aggregate)  # registered in conf/config.yaml
    assert isinstance(callback, AggregateCallback) and callback.out == "aggregate"
    write_run(tmp_path / "a", config(5, 4, 0))
    sweep = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    AggregateCallback(formats="png").on_multirun_end(sweep)
    assert pd.read_csv(tmp_path / "aggregate" / "runs.csv")["run_id"].tolist() == ["a"]
    assert (tmp_path / "aggregate" / "grid.png").exists()
    # A bad setting stops the command when Hydra creates the callback (before any job), not at the end.
    for bad in ({"formats": "tiff"}, {"enabled": "maybe"}, {"out": None}):
        with pytest.raises(SystemExit) as stop:
            AggregateCallback(**bad)
        assert stop.value.code == 2


@pytest.mark.slow
def test_real_sweep_is_aggregated_when_it_ends(tmp_path):
    from conftest import run_cli

    out = run_cli("-m", "data=small", "num_steps=3,9", "seed=0", "train.progress=false",
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = pd.read_csv(tmp_path / "sweep" / "aggregate" / "runs.csv")
    assert list(runs["num_steps"]) == [3, 9] and set(runs["status"]) == {"completed"}
    for _, row in runs.iterrows():
        summary = json.loads((tmp_path / "sweep" / row["run_id"] / "summary.json").read_text())
        assert row["heldout_loss"] == pytest.approx(summary["heldout_loss"], rel=1e-12)
        assert row["learned_lag8"] == pytest.approx(summary["learned_fraction"]["8"], rel=1e-12)
    produced = {p.name for p in (tmp_path / "sweep" / "aggregate").iterdir()}
    assert {"grid.png", "grid.pdf", "curves.png", "curves.pdf"} <= produced


# summary.json bodies that parse but break the schema, each with the problem its warning must name.
MALFORMED = {
    "no_levels": (lambda s: {k: v for k, v in s.items() if k != "levels"}, "levels is not a non-empty list"),
    "string_loss": (lambda s: {**s, "heldout_loss": "0.5"}, "heldout_loss='0.5' is not a loss"),
    "no_config": (lambda s: {k: v for k, v in s.items() if k != "config"}, "no config"),
    "junk_level": (lambda s: {**s, "levels": [{"name": "none", "lags": [], "loss": "high"}]}, "levels entry"),
    "junk_learned": (lambda s: {**s, "learned_fraction": {"3": "abc"}}, "learned_fraction="),
    "negative_n": (lambda s: {**s, "num_steps": -3}, "num_steps='-3' is not an integer >= 1"),
    "bool_seed": (lambda s: {**s, "seed": True}, "seed='True' is not an integer >= 0"),
    "status": (lambda s: {**s, "status": "done"}, "status='done' is not one of"),
    "nan_loss": (lambda s: {**s, "final_loss": float("nan")}, "final_loss='nan' is not a loss"),
    "other_config": (lambda s: {**s, "num_steps": 7}, "num_steps/state_size/seed differ from its config"),
}


def _malformed_sweep(root: Path) -> None:
    write_run(root / "good", config(5, 4, 0))
    for seed, (name, (edit, _)) in enumerate(MALFORMED.items(), start=1):
        run = write_run(root / name, config(5, 4, seed))
        (run / "summary.json").write_text(json.dumps(edit(json.loads((run / "summary.json").read_text()))))
    (root / "a_list").mkdir()
    (root / "a_list" / "summary.json").write_text("[1, 2]")
    # No config anywhere (summary without it, no Hydra record): its configuration is unknown.
    run = write_run(root / "orphan", config(5, 4, 99), hydra=False)
    s = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({k: v for k, v in s.items() if k != "config"}))


def test_malformed_summaries_are_each_reported_never_counted_completed(tmp_path):
    _malformed_sweep(tmp_path)
    agg = aggregate(tmp_path)
    r = agg.runs.set_index("run_id")
    assert r.loc["good", "status"] == "completed"
    # Each malformed summary is treated as missing: the run is read from losses.csv and Hydra's record.
    assert sorted(r.index) == sorted(["good", *MALFORMED])
    assert set(r.drop(index="good")["status"]) == {"incomplete"}
    assert r.loc["no_levels", "baseline_2"] == pytest.approx(L2)  # levels recomputed from the config
    w = {line.split(":")[0]: line for line in agg.warnings}
    for name, (_, problem) in MALFORMED.items():
        assert "summary.json does not follow the schema" in w[name] and problem in w[name], w[name]
    assert "not a JSON object" in w["a_list"] and "no config" in w["orphan"] and "skipped" in w["orphan"]
    assert len(agg.warnings) == len(MALFORMED) + 2


def test_malformed_summaries_on_the_console(tmp_path, capsys):
    _malformed_sweep(tmp_path / "sweep")
    assert _main(tmp_path / "sweep", "--out", tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert captured.err.count("rnn-sweep-aggregate: warning:") == len(MALFORMED) + 2
    assert f"(1 completed, {len(MALFORMED)} incomplete; {len(MALFORMED) + 2} warnings" in captured.out
    assert len((tmp_path / "out" / "warnings.txt").read_text().splitlines()) == len(MALFORMED) + 2
    assert "Traceback" not in captured.err


def test_run_without_any_config_is_skipped_and_missing_fields_do_not_split(tmp_path):
    write_run(tmp_path / "a", config(5, 4, 0))
    old = config(5, 4, 1)
    del old["data"]["boundary"]  # an older schema without this field: unknown, not a second value
    write_run(tmp_path / "b", old)
    write_run(tmp_path / "orphan", config(5, 4, 2), losses=CURVE[:4], summary=False, hydra=False)
    agg = aggregate(tmp_path)
    assert list(agg.runs["run_id"]) == ["a", "b"] and agg.config_cols == ["num_steps", "state_size"]
    assert agg.warnings == ["orphan: skipped: no usable summary.json and no Hydra config record (.hydra/config.yaml or "
                            ".jobs/), so its configuration is unknown"]
    assert str(agg.runs["num_steps"].dtype) == "Int64"


def test_several_sweeps_pool_with_their_source_and_facet_what_differs(tmp_path):
    # Two experiments that differ in epochs and logging (constant within each), one of them
    # with a second truncation style, plus a sweep split over two machines (same config).
    for seed in (0, 1):
        write_run(tmp_path / "a" / "quick" / f"s{seed}", config(5, 4, seed))
        cfg = config(5, 4, seed)
        cfg["train"].update(epochs=2, log_every=20)
        write_run(tmp_path / "b" / "quick" / f"s{seed}", cfg)
    agg = aggregate([tmp_path / "a" / "quick", tmp_path / "b" / "quick"])
    r = agg.runs
    assert sorted(r["run_id"]) == ["a/quick/s0", "a/quick/s1", "b/quick/s0", "b/quick/s1"]  # labels disambiguate
    assert dict(zip(r["run_id"], r["source_dir"]))["b/quick/s1"] == str(tmp_path / "b" / "quick")
    assert sorted(set(r["source"])) == ["a/quick", "b/quick"]
    # epochs and log_every vary only between the sources: one facet, "source".
    assert agg.config_cols == ["source", "num_steps", "state_size"]
    assert list(r["train.epochs"]) == [1, 1, 2, 2] and set(agg.grid["n_runs"]) == {2}
    # Same config in both: no facet; the cells pool the runs of both machines.
    write_run(tmp_path / "m1" / "s0", config(5, 4, 0))
    write_run(tmp_path / "m2" / "s1", config(5, 4, 1), learned=(0.5, 0.0))
    agg = aggregate([tmp_path / "m1", tmp_path / "m2"])
    assert agg.config_cols == ["num_steps", "state_size"] and agg.warnings == []
    assert agg.grid.set_index("lag").loc[3, "learned_mean"] == pytest.approx(0.75)


def test_cli_with_several_sweeps_needs_out(tmp_path, capsys):
    write_run(tmp_path / "x" / "r", config(5, 4, 0))
    write_run(tmp_path / "y" / "r", config(5, 4, 0, style="true"))
    assert _main(tmp_path / "x", tmp_path / "y") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "rnn-sweep-aggregate: error: --out is required with several SWEEP_DIRs (where should the pooled tables go?)"]
    assert _main(tmp_path / "x", tmp_path / "x", "--out", tmp_path / "o") == 2
    assert "the same directory is given twice" in capsys.readouterr().err
    assert _main(tmp_path / "x", tmp_path / "y", "--out", tmp_path / "o", "--format", "png") == 0
    runs = pd.read_csv(tmp_path / "o" / "runs.csv")
    assert list(runs["style"]) == ["tf", "true"] and list(runs["run_id"]) == ["x/r", "y/r"]
    assert "truncation.png" in {p.name for p in (tmp_path / "o").iterdir()}  # style differs: a facet


def _user_files(folder: Path) -> dict:
    """A folder of a user's own files, some with the aggregator's extensions."""
    files = {"thesis.tex": b"\\documentclass{article}", "notes/todo.txt": b"x", "my_grid.png": b"\x89PNG fake",
             "runs_old.csv": b"a,b\n1,2\n", "aggregate.json": b"{}", "grid.tiff": b"keep", "results.csv": b"1"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def test_out_holding_user_files_keeps_them_byte_identical(tmp_path):
    write_run(tmp_path / "sweep" / "n5", config(5, 4, 0))
    write_run(tmp_path / "sweep" / "n10", config(10, 4, 0))
    out = tmp_path / "paper"
    out.mkdir()
    files = _user_files(out)
    # A figure name in a format not asked for: the user's (no aggregation recorded it), so left alone.
    files["truncation.svg"] = b"the user's own figure"
    (out / "truncation.svg").write_bytes(files["truncation.svg"])
    target = tmp_path / "elsewhere.csv"
    target.write_text("the user's file a link points to")
    (out / "levels.csv").symlink_to(target)
    # A link under a table's name is not the aggregator's file: refused, the link and its target kept.
    proc = _cli(tmp_path / "sweep", "--out", out, "--format", "png", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "levels.csv (a symbolic link)" in proc.stderr
    assert (out / "levels.csv").is_symlink() and target.read_text() == "the user's file a link points to"
    assert sorted(p.name for p in out.iterdir()) == sorted({*(n.split("/")[0] for n in files), "levels.csv"})
    (out / "levels.csv").unlink()
    for _ in range(2):  # a second run replaces its own files and still touches nothing else
        assert _main(tmp_path / "sweep", "--out", out, "--format", "png") == 0
    for name, data in files.items():
        assert (out / name).read_bytes() == data, name
    ours = {p.name for p in out.iterdir()} - {n.split("/")[0] for n in files}
    assert ours == {"runs.csv", "curves.csv", "grid.csv", "levels.csv", "boundary.csv", "warnings.txt", "grid.png",
                    "boundary.png", "curves.png", "onset.png", ".rnn-sweep-aggregate.json"}  # no temp files


@pytest.mark.parametrize("make_out,why", [
    (lambda t: (t / "file.txt").write_text("mine") and t / "file.txt", "it exists and is not a directory"),
    (lambda t: (t / "file.txt").write_text("mine") and t / "file.txt" / "sub", "cannot create it"),
    (lambda t: Path("/proc/rnn-sweep-aggregate-out"), "cannot create it"),
    (lambda t: Path("/proc"), "cannot write there"),
    (lambda t: (t / "o" / "grid.png").mkdir(parents=True) or t / "o", "grid.png there is not a file"),
])
def test_unusable_out_is_one_line_exit_2(tmp_path, make_out, why):
    write_run(tmp_path / "sweep" / "a", config(5, 4, 0))
    out = make_above = make_out(tmp_path)
    proc = _cli(tmp_path / "sweep", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and why in proc.stderr and f"--out='{make_above}'" in proc.stderr
    if (tmp_path / "file.txt").exists():
        assert (tmp_path / "file.txt").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_read_only_out_is_one_line(tmp_path):
    write_run(tmp_path / "sweep" / "a", config(5, 4, 0))
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    proc = _cli(tmp_path / "sweep", "--out", tmp_path / "ro", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "cannot write there" in proc.stderr


def test_data_steps_of_a_run_without_summary_are_its_last_block(tmp_path):
    # True BPTT, n=5, update_every=2: 250 updates of 2 positions; its blocks are the TF run's blocks.
    cfg = config(5, 4, 0, style="true")
    cfg["truncation"]["update_every"] = 2
    run = write_run(tmp_path / "true", cfg, losses=None, summary=False)
    (run / "losses.csv").write_text(HEADER + grid_rows([0.69, 0.6, 0.52], per_update=2))
    write_run(tmp_path / "tf", config(5, 4, 0))
    agg = aggregate(tmp_path)
    c = agg.curves.set_index("run_id")
    assert list(c.loc["true", "data_mid"]) == list(c.loc["tf", "data_mid"])[:3] == [5_000, 15_000, 25_000]
    assert list(c.loc["true", "updates"]) == [25, 50, 75]  # 50 positions per block, 2 per update
    assert dict(zip(agg.runs["run_id"], agg.runs["data_steps"])) == {"tf": 100_000, "true": 30_000}
