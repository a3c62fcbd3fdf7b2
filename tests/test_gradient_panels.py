"""What the gradient learned in the grid and boundary tables and figures: a hand-made sweep with
trained runs and reservoir controls whose paired differences and boundaries are known by
construction (every value a multiple of 1/8, so that sums are exact)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from test_aggregate import config, write_run  # noqa: E402

from rnn_sweep.analysis import plot_style as ps  # noqa: E402
from rnn_sweep.analysis.plot_learning import plot_boundary  # noqa: E402
from rnn_sweep.analysis.plots import plot_grid  # noqa: E402
from rnn_sweep.analysis.questions import seed_pairs  # noqa: E402
from rnn_sweep.analysis.tables import aggregate, gradient_boundary, write_tables  # noqa: E402

T_2DOF = 4.302652729749464  # Student-t 97.5% quantile, 2 degrees of freedom (printed tables: 4.303)
NS = (1, 2, 4, 8)
# Lag 8 at d = 16: the control reads 0.375 out of its random state at every n; the gradient adds
# these per seed (0, 1, 2) and n. Trained means 0.5, 0.625, 0.875, 0.958: the trained network
# "learns" lag 8 (>= 0.5) from the smallest n, the gradient's part only from n = 4.
CONTROL8_D16 = 0.375
GRADIENT8_D16 = {1: (0.0, 0.125, 0.25), 2: (0.125, 0.25, 0.375), 4: (0.375, 0.5, 0.625), 8: (0.5, 0.625, 0.625)}
CONTROL3, GRADIENT3 = 0.25, 0.5  # lag 3, every n, d and seed: the gradient adds 0.5
CONTROL8_D4 = 0.0625  # lag 8 at d = 4: trained = control, nothing through the gradient


def learned(n: int, d: int, seed: int, trained: bool) -> tuple[float, float]:
    """(lag 3, lag 8) learned fraction of one run, by the construction above."""
    lag3 = CONTROL3 + (GRADIENT3 if trained else 0.0)
    lag8 = CONTROL8_D16 + (GRADIENT8_D16[n][seed] if trained else 0.0) if d == 16 else CONTROL8_D4
    return lag3, lag8


def make_sweep(root, with_control: bool = True, record_flag: bool = True):
    """n 1, 2, 4, 8 x d 4, 16 x seeds 0-2 x trained (and control): summary.json, losses.csv,
    checkpoints.csv and the Hydra config of each run."""
    for n in NS:
        for d in (4, 16):
            for seed in range(3):
                for trained in (True, False) if with_control else (True,):
                    cfg = config(n, d, seed)
                    if record_flag or not trained:  # an older trained run does not record the field
                        cfg["model"]["train_recurrent"] = trained
                    write_run(root / f"{'t' if trained else 'c'}_n{n}_d{d}_s{seed}", cfg,
                              learned=learned(n, d, seed, trained))
    return aggregate(root)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return make_sweep(tmp_path_factory.mktemp("gradient_sweep"))


def _row(table, **values):
    mask = pd.Series(True, index=table.index)
    for k, v in values.items():
        mask &= table[k] == v
    assert mask.sum() == 1, values
    return table[mask].iloc[0]


def test_grid_gradient_columns_are_the_paired_differences_by_hand(sweep):
    grid = sweep.grid
    row = _row(grid, **{"model.train_recurrent": True}, num_steps=4, state_size=16, lag=8)
    # Differences 0.375, 0.5, 0.625: mean 0.5, sd 0.125, t interval 0.5 +- 4.303 x 0.125 / sqrt(3).
    assert row["gradient_pairs"] == 3
    assert row["gradient_mean"] == pytest.approx(0.5) and row["gradient_sd"] == pytest.approx(0.125)
    half = T_2DOF * 0.125 / math.sqrt(3)
    assert row["gradient_low"] == pytest.approx(0.5 - half) and row["gradient_high"] == pytest.approx(0.5 + half)
    assert row["gradient_trained"] == pytest.approx(0.875) and row["gradient_control"] == pytest.approx(0.375)
    same = _row(grid, **{"model.train_recurrent": True}, num_steps=2, state_size=4, lag=3)
    assert same["gradient_mean"] == pytest.approx(0.5) and same["gradient_sd"] == pytest.approx(0.0)
    # The control's rows carry no gradient numbers: they are the trained rows' business.
    control = grid[grid["model.train_recurrent"] == False]  # noqa: E712
    assert len(control) == 16 and control["gradient_mean"].isna().all() and control["gradient_pairs"].isna().all()


def test_trained_cells_do_not_mix_in_the_control(sweep):
    grid = sweep.grid
    trained = _row(grid, **{"model.train_recurrent": True}, num_steps=1, state_size=16, lag=8)
    control = _row(grid, **{"model.train_recurrent": False}, num_steps=1, state_size=16, lag=8)
    assert trained["n_runs"] == 3 and control["n_runs"] == 3
    assert trained["learned_mean"] == pytest.approx(0.5)  # pooled with the control it would be 0.4375
    assert control["learned_mean"] == pytest.approx(0.375)


def test_gradient_boundary_by_hand_differs_from_the_trained_boundary(sweep):
    bounds = sweep.boundary
    trained = _row(bounds, **{"model.train_recurrent": True}, state_size=16, lag=8, threshold=0.5)
    # The trained network's mean stays >= 0.5 from n = 1, the smallest swept: the reservoir's part.
    assert trained["n_mean"] == 1 and bool(trained["at_smallest"])
    # The gradient's part: means 0.125, 0.25, 0.5, 0.583 -> from n = 4, inside the range; per seed
    # 0: (0, .125, .375, .5) -> 8; 1: (.125, .25, .5, .625) -> 4; 2: (.25, .375, .625, .625) -> 4.
    assert trained["gradient_n_mean"] == 4 and not bool(trained["gradient_at_smallest"])
    assert (trained["gradient_n_seed_min"], trained["gradient_n_seed_median"], trained["gradient_n_seed_max"]) == \
        (4, 4, 8)
    assert trained["gradient_seeds"] == 3 and trained["gradient_seeds_reached"] == 3
    never = _row(bounds, **{"model.train_recurrent": True}, state_size=16, lag=8, threshold=0.9)
    assert math.isnan(never["gradient_n_mean"]) and never["gradient_n_seed_min"] == math.inf
    assert never["n_mean"] == 8  # the trained means 0.5, 0.625, 0.875, 0.958 reach 0.9 at n = 8
    d4 = _row(bounds, **{"model.train_recurrent": True}, state_size=4, lag=3, threshold=0.5)
    assert d4["gradient_n_mean"] == 1 and bool(d4["gradient_at_smallest"])
    control = bounds[bounds["model.train_recurrent"] == False]  # noqa: E712
    assert control["gradient_n_mean"].isna().all() and control["gradient_seeds"].isna().all()
    plain = gradient_boundary(bounds)
    assert len(plain) == 8 and "model.train_recurrent" not in plain
    assert _row(plain, state_size=16, lag=8, threshold=0.5)["n_mean"] == 4


def test_tables_written_with_the_gradient_columns(sweep, tmp_path):
    write_tables(sweep, tmp_path)
    grid = pd.read_csv(tmp_path / "grid.csv")
    bounds = pd.read_csv(tmp_path / "boundary.csv")
    assert {"gradient_pairs", "gradient_trained", "gradient_control", "gradient_mean", "gradient_sd",
            "gradient_low", "gradient_high"} <= set(grid.columns)
    assert {"gradient_n_mean", "gradient_at_smallest", "gradient_seeds", "gradient_seeds_reached",
            "gradient_n_seed_min", "gradient_n_seed_median", "gradient_n_seed_max"} <= set(bounds.columns)
    row = grid[(grid["model.train_recurrent"]) & (grid["num_steps"] == 8) & (grid["state_size"] == 16)
               & (grid["lag"] == 8)].iloc[0]
    assert row["gradient_mean"] == pytest.approx((0.5 + 0.625 + 0.625) / 3)


def test_grid_figure_has_the_gradient_panels_with_their_values(sweep):
    fig = plot_grid(sweep)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    gradient = [t for t in titles if "trained − control" in t]
    assert gradient == ["lag 3: trained − control", "lag 8: trained − control"]
    assert "trained · lag 8: mean fraction" in titles and "control · lag 8: mean fraction" in titles
    # 2 arms x (mean, share) x 2 lags + 2 gradient panels.
    assert len(titles) == 10
    ax = next(a for a in fig.axes if a.get_title() == "lag 8: trained − control")
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    assert mesh.norm.vmin == -1.0 and mesh.norm.vmax == 1.0
    # Rows: d = 16 on top, then 4; columns n = 1, 2, 4, 8.
    values = mesh.get_array().reshape(2, 4)
    assert values[0].tolist() == pytest.approx([0.125, 0.25, 0.5, (0.5 + 0.625 + 0.625) / 3])
    assert values[1].tolist() == pytest.approx([0.0] * 4)
    texts = [t.get_text() for t in ax.texts]
    # n = 1, 2: sd 0.125, half-width 0.31 > the mean: the interval includes 0; n = 4 and 8 exclude it (*).
    assert texts[:4] == ["+0.12", "+0.25", "+0.50*", "+0.58*"] and texts[4:] == ["+0.00"] * 4
    trained = next(a for a in fig.axes if a.get_title() == "trained · lag 8: mean fraction")
    top = next(c for c in trained.collections if isinstance(c, QuadMesh)).get_array().reshape(2, 4)[0]
    assert top.tolist() == pytest.approx([0.5, 0.625, 0.875, 0.375 + (0.5 + 0.625 + 0.625) / 3])
    assert "Student-t 95%" in " ".join(a.get_text() for a in fig.artists if hasattr(a, "get_text"))
    assert "\n" not in fig._suptitle.get_text().strip()
    plt.close(fig)


def _markers(ax, color) -> dict[str, list[float]]:
    """{marker: y values} of the boundary panel's markers drawn in ``color``."""
    out: dict[str, list[float]] = {}
    for line in ax.lines:
        if line.get_marker() not in ("None", None, "") and matplotlib.colors.to_hex(line.get_color()) == color:
            out.setdefault(line.get_marker(), []).extend(float(y) for y in line.get_ydata())
    return out


def test_boundary_figure_has_the_gradient_row_and_its_boundary(sweep):
    fig = plot_boundary(sweep)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 9  # rows: control, trained, trained - control; columns: lag 3, lag 8, boundary
    assert titles[-3:] == ["lag 3: trained − control", "lag 8: trained − control", "boundary of trained − control"]
    assert titles[5] == "learning boundary; trained" and titles[2] == "learning boundary; control"
    lag8 = matplotlib.colors.to_hex(ps.dependency_color(8, [3, 8]))
    trained = _markers(fig.axes[5], lag8)
    gradient = _markers(fig.axes[8], lag8)
    # Trained, lag 8, d = 16: >= 0.5 at the smallest n (down triangle at 1), >= 0.9 from n = 8 (square).
    assert trained["v"] == [1.0] and trained["s"] == [8.0] and trained["^"] == [9.0, 9.0]  # d = 4: never
    # Through the gradient: >= 0.5 from n = 4 (a circle inside the range); >= 0.9 never. d = 4 never.
    assert gradient["o"] == [4.0] and sorted(gradient["^"]) == [9.0, 9.0, 9.0]
    diff_ax = fig.axes[7]
    # The d = 16 line of the lag-8 difference: the means over the seed pairs.
    means = [line.get_ydata().tolist() for line in diff_ax.lines if len(line.get_xdata()) == 4]
    assert [0.125, 0.25, 0.5, pytest.approx((0.5 + 0.625 + 0.625) / 3)] in means
    plt.close(fig)


def test_without_a_control_nothing_about_the_gradient(tmp_path):
    agg = make_sweep(tmp_path, with_control=False)
    assert "gradient_mean" not in agg.grid and "gradient_n_mean" not in agg.boundary and agg.gradient.empty
    fig = plot_grid(agg)
    assert not [ax for ax in fig.axes if "trained − control" in ax.get_title()]
    plt.close(fig)
    fig = plot_boundary(agg)
    assert len(fig.axes) == 3
    plt.close(fig)


def test_trained_runs_that_do_not_record_the_flag_are_not_pooled_with_the_controls(tmp_path):
    # Runs of versions before the control do not record model.train_recurrent: they trained every weight.
    agg = make_sweep(tmp_path, record_flag=False)
    row = _row(agg.grid, **{"model.train_recurrent": True}, num_steps=4, state_size=16, lag=8)
    assert row["n_runs"] == 3 and row["learned_mean"] == pytest.approx(0.875)  # pooled: 0.625 over 6 runs
    assert row["gradient_pairs"] == 3 and row["gradient_mean"] == pytest.approx(0.5)
    assert set(agg.runs["model.train_recurrent"]) == {True, False}


def test_seed_pairs_pairs_by_seed_and_uses_a_second_run_once():
    deps = pd.DataFrame([
        {"num_steps": 2, "state_size": 4, "seed": s, "lag": 8, "model.train_recurrent": flag, "learned": v}
        for s, flag, v in ((0, True, 0.5), (1, True, 0.75), (2, True, 0.25),  # seed 2: no control
                           (1, "false", 0.25), (0, "false", 0.125), (0, False, 0.9))])  # seed 0 twice: first counts
    pairs = seed_pairs(deps, ["num_steps", "state_size"])
    assert pairs[["seed", "trained", "control", "learned"]].values.tolist() == [[0, 0.5, 0.125, 0.375],
                                                                                [1, 0.75, 0.25, 0.5]]
