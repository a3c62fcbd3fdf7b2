"""The article's two questions: paired tables on hand-made sweeps whose answers are known,
the cell-evaluation count by hand, equal compute on hand-written checkpoints, and one real
sweep with the reservoir control end to end."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import run_cli

from rnn_sweep.analysis.plot_questions import write_questions
from rnn_sweep.analysis.questions import cells_per_update, equal_compute, question_runs, reservoir_table, styles_table

T_2DOF = 4.302652729749464  # Student-t 97.5% quantile, 2 degrees of freedom (printed tables: 4.303)
T_1DOF = 12.706204736174705  # 1 degree of freedom (12.706)


def reservoir_runs(rows):
    """A runs table from (num_steps, state_size, seed, train_recurrent, learned lag 3, learned lag 8)."""
    return pd.DataFrame([{"backend": "scratch", "style": "tf", "num_steps": n, "state_size": d, "seed": s,
                          "train_recurrent": tr, "learned_lag3": a, "learned_lag8": b}
                         for n, d, s, tr, a, b in rows])


def test_paired_difference_of_three_seeds_is_the_t_interval_by_hand():
    # Trained minus control at lag 8 is 0.1, 0.2, 0.3 for seeds 0, 1, 2: mean 0.2, sd 0.1.
    rows = [(4, 16, s, True, 0.9, 0.5 + d) for s, d in enumerate((0.1, 0.2, 0.3))]
    rows += [(4, 16, s, False, 0.9, 0.5) for s in range(3)]
    table = reservoir_table(reservoir_runs(rows))
    row = table[table["lag"] == 8].iloc[0]
    assert row["n_pairs"] == 3 and row["num_steps"] == 4 and row["state_size"] == 16
    assert row["diff_mean"] == pytest.approx(0.2)
    assert row["diff_sd"] == pytest.approx(0.1)
    half = T_2DOF * 0.1 / math.sqrt(3)
    assert row["diff_low"] == pytest.approx(0.2 - half) and row["diff_high"] == pytest.approx(0.2 + half)
    assert row["trained_mean"] == pytest.approx(0.7) and row["control_mean"] == pytest.approx(0.5)
    assert row["unpaired"] == "" and row["note"] == ""
    lag3 = table[table["lag"] == 3].iloc[0]
    assert lag3["diff_mean"] == pytest.approx(0.0) and lag3["diff_low"] == pytest.approx(0.0)


def test_pairs_are_by_seed_not_by_order():
    # The control rows come in reverse seed order: pairing by position would give -0.2, 0, 0.2.
    rows = [(2, 4, s, True, 0.0, v) for s, v in ((0, 0.1), (1, 0.2), (2, 0.3))]
    rows += [(2, 4, s, False, 0.0, v) for s, v in ((2, 0.2), (1, 0.1), (0, 0.0))]
    row = reservoir_table(reservoir_runs(rows)).query("lag == 8").iloc[0]
    assert row["diff_mean"] == pytest.approx(0.1) and row["diff_sd"] == pytest.approx(0.0)


def test_runs_without_a_partner_are_reported_and_one_pair_has_no_interval():
    rows = [(2, 4, 0, True, 0.5, 0.4), (2, 4, 0, False, 0.5, 0.1),  # one pair: diff 0.3 at lag 8
            (2, 4, 3, True, 0.5, 0.9),                               # a trained run without its control
            (2, 4, 5, False, 0.5, 0.9),                              # a control without its trained run
            (2, 4, 6, True, 0.5, float("nan")), (2, 4, 6, False, 0.5, 0.2)]  # a pair without a lag-8 value
    row = reservoir_table(reservoir_runs(rows)).query("lag == 8").iloc[0]
    assert row["n_pairs"] == 1 and row["diff_mean"] == pytest.approx(0.3)
    assert math.isnan(row["diff_low"]) and math.isnan(row["diff_high"])
    assert "trained seed 3" in row["unpaired"] and "control seed 5" in row["unpaired"]
    assert "seed 6: no value" in row["unpaired"]
    assert "fewer than 2 pairs" in row["note"] and "3 run(s) without a partner" in row["note"]


def test_a_second_run_of_the_same_seed_is_named_not_counted_twice():
    # Two sweeps read together can hold the same trained run twice: one pair, not two.
    rows = [(2, 4, s, True, 0.0, 0.5) for s in (0, 0, 1)] + [(2, 4, s, False, 0.0, 0.2) for s in (0, 1)]
    row = reservoir_table(reservoir_runs(rows)).query("lag == 8").iloc[0]
    assert row["n_pairs"] == 2 and row["diff_mean"] == pytest.approx(0.3)
    assert row["unpaired"] == "trained seed 0: a second run of the same configuration, not used"
    style_rows = [("true", 2, 4, 0, 0.5, 0.1), ("true", 2, 4, 0, 0.7, 0.1), ("tf", 4, 4, 0, 0.4, 0.1)]
    sty = styles_table(styles_runs(style_rows)).iloc[0]
    assert sty["n_pairs"] == 1 and sty["heldout_diff"] == pytest.approx(0.1)
    assert sty["unpaired"] == "true n=2 seed 0: a second run of the same configuration, not used"


def test_reservoir_cells_split_by_n_and_d_and_read_the_dotted_config_column():
    rows = [(n, d, s, tr, 0.0, 0.1 * n + (0.5 if tr else 0.0)) for n in (2, 4) for d in (4, 16) for s in (0, 1)
            for tr in (True, False)]
    runs = reservoir_runs(rows).rename(columns={"train_recurrent": "model.train_recurrent"})
    runs["model.train_recurrent"] = runs["model.train_recurrent"].map({True: "true", False: "false"})
    table = reservoir_table(runs).query("lag == 8")
    assert len(table) == 4 and (table["n_pairs"] == 2).all()
    assert table["diff_mean"].tolist() == pytest.approx([0.5] * 4)
    assert table["control_mean"].tolist() == pytest.approx([0.2, 0.2, 0.4, 0.4])


def test_cell_evaluations_per_update_by_hand():
    # TF style BPTT(n, n): n forward + n backward cells per window of n positions.
    assert cells_per_update("tf", 8) == 16
    # True BPTT(n, 1), u = n: u sub-sequences of n cells forward and back, plus u start-state cells.
    assert cells_per_update("true", 4) == 4 * 4 + 4 * 4 + 4 == 36
    assert cells_per_update("true", 4, update_every=2) == 2 * 4 + 2 * 4 + 2 == 18
    assert cells_per_update("true", 3, update_every=float("nan")) == 21


def styles_runs(rows):
    """A runs table from (style, num_steps, state_size, seed, heldout_loss, learned lag 8)."""
    return pd.DataFrame([{"backend": "scratch", "style": st, "num_steps": n, "state_size": d, "seed": s,
                          "heldout_loss": h, "learned_lag3": 1.0, "learned_lag8": f}
                         for st, n, d, s, h, f in rows])


def test_true_at_n_is_paired_with_tf_at_2n_of_the_same_seed_and_state_size():
    rows = [("true", 2, 4, s, 0.50 + 0.01 * s, 0.1) for s in range(3)]
    rows += [("tf", 4, 4, s, 0.49 + 0.02 * s, 0.3) for s in range(3)]          # diffs 0.01, 0, -0.01
    rows += [("tf", 2, 4, 0, 0.9, 0.0), ("true", 4, 4, 0, 0.9, 0.0)]         # same n: never paired
    rows += [("true", 3, 4, 0, 0.6, 0.0), ("tf", 6, 16, 0, 0.6, 0.0)]        # 2n but another state size
    rows += [("tf", 5, 4, 0, 0.6, 0.0)]                                      # odd: no true partner possible
    table = styles_table(styles_runs(rows))
    assert table[["state_size", "n", "n_pairs"]].values.tolist() == [[4, 2, 3], [4, 3, 0], [16, 3, 0]]
    assert table["unpaired"].tolist()[1:] == ["true n=3 seed 0", "tf n=6 seed 0"]
    row = table.iloc[0]
    assert row["n_tf"] == 4 and row["lag"] == 8 and row["n_pairs"] == 3
    assert row["heldout_true"] == pytest.approx(0.51) and row["heldout_tf"] == pytest.approx(0.51)
    assert row["heldout_diff"] == pytest.approx(0.0)
    half = T_2DOF * 0.01 / math.sqrt(3)
    assert row["heldout_diff_high"] == pytest.approx(half)
    assert row["learned_diff"] == pytest.approx(-0.2)


def test_unpaired_style_runs_are_named():
    rows = [("true", 2, 4, 0, 0.5, 0.1), ("tf", 4, 4, 0, 0.4, 0.1), ("true", 2, 4, 1, 0.5, 0.1),
            ("tf", 4, 4, 2, 0.5, 0.1)]
    row = styles_table(styles_runs(rows)).iloc[0]
    assert row["n_pairs"] == 1 and row["heldout_diff"] == pytest.approx(0.1)
    assert math.isnan(row["heldout_diff_low"])
    assert row["unpaired"] == "true n=2 seed 1; tf n=4 seed 2"


def write_run(path, style, n, seed, checkpoints, *, recurrent=None, epoch_s=(1.0,), pack=1, steps=None):
    """A run directory with a summary.json and a checkpoints.csv (updates, data_steps, loss, lag 8)."""
    path.mkdir(parents=True)
    model = {"backend": "scratch"} | ({} if recurrent is None else {"train_recurrent": recurrent})
    summary = {"status": "completed", "style": style, "num_steps": n, "seed": seed, "state_size": 4,
               "steps": steps, "stop_reason": "budget",
               "timings": {"train_s": 2.0 * pack, "epoch_s": list(epoch_s), "pack_size": pack},
               "config": {"num_steps": n, "model": model, "train": {"batch_size": 10, "epochs": 1},
                          "truncation": {"style": style, "update_every": None}, "data": {"length": 1000}}}
    (path / "summary.json").write_text(json.dumps(summary))
    lines = ["epoch,data_steps,updates,heldout_loss,learned_3,learned_8"]
    lines += [f"0,{d},{u},{h},1.0,{f}" for u, d, h, f in checkpoints]
    (path / "checkpoints.csv").write_text("\n".join(lines) + "\n")
    return path


def test_equal_compute_reads_both_runs_at_the_smaller_budget(tmp_path):
    # true n=2: 5 cells per update and row, x10 rows = 50 per update; 20 updates -> 1000 cells.
    true = write_run(tmp_path / "t", "true", 2, 0, [(0, 0, 0.7, 0.0), (10, 200, 0.6, 0.2), (20, 400, 0.5, 0.4)])
    # TF n=4: 8 x 10 = 80 per update; 5 updates -> 400 cells, the smaller budget.
    tf = write_run(tmp_path / "f", "tf", 4, 0, [(0, 0, 0.7, 0.0), (5, 200, 0.55, 0.5)])
    out = equal_compute(str(true), str(tf), 8, (50.0, 80.0), (4.0, 1.0))
    # 400 cells = 8 updates of the true run = data 160: loss 0.7 - 0.1 * 160/200 = 0.62, lag 8: 0.16.
    assert out["heldout_cells_true"] == pytest.approx(0.62) and out["learned_cells_true"] == pytest.approx(0.16)
    assert out["heldout_cells_tf"] == pytest.approx(0.55) and out["learned_cells_tf"] == pytest.approx(0.5)
    # Time: 1 s of the true run's 4 s = a quarter of its 400 data steps: 100 -> loss 0.65.
    assert out["heldout_time_true"] == pytest.approx(0.65) and out["heldout_time_tf"] == pytest.approx(0.55)


def test_question_runs_adds_facts_by_directory_and_write_questions_writes_both(tmp_path):
    sweep, rows = tmp_path / "sweep", []
    for seed in range(2):
        cps = [(0, 0, 0.7, 0.0), (10, 200, 0.6 - 0.01 * seed, 0.2)]
        for name, style, n, rec in (("t", "true", 2, None), ("f", "tf", 4, True), ("c", "tf", 4, False)):
            run_id = f"{name}{seed}"
            write_run(sweep / run_id, style, n, seed, cps, recurrent=rec, pack=2, steps=10)
            rows.append({"run_id": run_id, "source": "sweep", "source_dir": str(sweep), "backend": "scratch",
                         "style": style, "num_steps": n, "state_size": 4, "seed": seed, "steps": 10,
                         "heldout_loss": 0.6, "learned_lag8": 0.3 if rec is False else 0.5})
    runs = pd.DataFrame(rows)
    full = question_runs(runs, sorted(p for p in sweep.iterdir()))
    assert full["train_recurrent"].tolist() == [True, True, False] * 2  # absent from the config: True
    assert full["train_s_run"].tolist() == [2.0] * 6 and full["epoch_s_run"].tolist() == [0.5] * 6
    assert full["cells_per_update"].tolist() == [10, 8, 8] * 2
    written = write_questions(runs, sorted(sweep.iterdir()), tmp_path / "out", "png")
    assert [p.name for p in written] == ["reservoir.csv", "reservoir.png", "styles.csv", "styles.png"]
    res = pd.read_csv(tmp_path / "out/reservoir.csv")
    assert res.query("num_steps == 4")["diff_mean"].tolist() == pytest.approx([0.2])
    sty = pd.read_csv(tmp_path / "out/styles.csv")
    # Cells per run: true 10 x 10 updates x 10 rows = 1000; TF 8 x 10 x 10 = 800.
    assert sty["cells_true"].tolist() == [1000] and sty["cells_tf"].tolist() == [800]


def test_runs_of_several_sweeps_and_unreadable_summaries_are_matched(tmp_path):
    # Several sources: the aggregator prefixes run ids with the source's label.
    write_run(tmp_path / "a" / "r0", "tf", 4, 0, [(0, 0, 0.7, 0.0)], recurrent=False)
    broken = tmp_path / "a" / "r1"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json")
    runs = pd.DataFrame([{"run_id": f"a/{r}", "source": "a", "source_dir": str(tmp_path / "a"), "style": "tf",
                          "num_steps": 4, "state_size": 4, "seed": s, "model.train_recurrent": "false",
                          "learned_lag8": 0.1} for s, r in enumerate(("r0", "r1"))])
    full = question_runs(runs, [tmp_path / "a" / "r0", broken])
    assert full["run_dir"].tolist() == [str(tmp_path / "a" / "r0"), str(broken)]
    assert full["train_recurrent"].tolist() == [False, None]
    # The unreadable summary leaves the config column to decide: a control, not a trained run.
    table = reservoir_table(full).query("lag == 8").iloc[0]
    assert table["unpaired"] == "control seed 0; control seed 1"


def test_write_questions_writes_nothing_a_sweep_cannot_answer(tmp_path):
    runs = reservoir_runs([(2, 4, 0, True, 0.1, 0.1)]).assign(run_id="x", source_dir=str(tmp_path))
    assert write_questions(runs, [], tmp_path / "out", ("png",)) == []


@pytest.mark.slow
def test_real_sweep_with_the_control_end_to_end(tmp_path):
    from rnn_sweep.analysis.tables import aggregate
    from rnn_sweep.analysis.rundirs import discover_runs

    sweep = tmp_path / "sweep"
    out = run_cli("-m", "data=small", "data.length=8000", "data.eval_length=4000", "num_steps=2,4", "state_size=4",
                  "seed=0,1", "model.train_recurrent=true,false", f"hydra.sweep.dir={sweep}",
                  "hydra.callbacks.aggregate.enabled=false", "train.xla=false", "train.progress=false", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dirs, _ = discover_runs(sweep)
    assert len(run_dirs) == 8
    written = write_questions(aggregate(sweep).runs, run_dirs, tmp_path / "q", "png,pdf")
    assert [p.name for p in written] == ["reservoir.csv", "reservoir.png", "reservoir.pdf"]
    table = pd.read_csv(tmp_path / "q/reservoir.csv")
    assert sorted(table["num_steps"].unique()) == [2, 4] and (table["n_pairs"] == 2).all()
    # The expected difference, from the summaries directly.
    learned = {}
    for d in run_dirs:
        s = json.loads((d / "summary.json").read_text())
        learned[(s["num_steps"], s["seed"], s["config"]["model"]["train_recurrent"])] = s["learned_fraction"]["8"]
    for n in (2, 4):
        diffs = [learned[(n, s, True)] - learned[(n, s, False)] for s in (0, 1)]
        row = table.query(f"num_steps == {n} and lag == 8").iloc[0]
        assert row["diff_mean"] == pytest.approx(sum(diffs) / 2)
        half = T_1DOF * abs(diffs[0] - diffs[1]) / math.sqrt(2) / math.sqrt(2)
        assert row["diff_high"] - row["diff_mean"] == pytest.approx(half)
    # The aggregator writes the same table into its output and records it as its own.
    from rnn_sweep.analysis.aggregate_cli import run as aggregate_run

    assert aggregate_run(sweep, tmp_path / "agg", ("png",)) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "agg/reservoir.csv"), table)
    manifest = json.loads((tmp_path / "agg/.rnn-sweep-aggregate.json").read_text())
    assert {"reservoir.csv", "reservoir.png"} <= set(manifest["files"]) and "styles.csv" not in manifest["files"]
