"""Figures, checked through their matplotlib objects (data, labels, layout), not pixels.

Fake sweeps are built in the real file schema (test_aggregate.write_run); every
expected number is worked out by hand from the values written.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from test_aggregate import ARTICLE_LEVELS, CURVE, ONSET3, ONSET8, config, write_run  # noqa: E402

from rnn_sweep import plot_style, plots  # noqa: E402
from rnn_sweep.aggregate import aggregate  # noqa: E402

# learned fraction of lag 8 per (style, num_steps) for seeds 0 and 1; lag 3 is always 1.0.
LAG8 = {("tf", 4): (0.0, 0.2), ("tf", 12): (0.6, 0.8), ("true", 4): (0.2, 0.4), ("true", 12): (1.0, 1.0)}


@pytest.fixture(scope="module")
def style_sweep(tmp_path_factory):
    """2 styles x num_steps 4, 12 x state_size 4, 16 x 2 seeds = 16 runs."""
    root = tmp_path_factory.mktemp("style_sweep")
    for (style, n), values in LAG8.items():
        for d in (4, 16):
            for seed, lag8 in enumerate(values):
                write_run(root / f"{style}_n{n}_d{d}_s{seed}", config(n, d, seed, style=style),
                          learned=(1.0, lag8), heldout=0.5)
    return aggregate(root)


@pytest.fixture(scope="module")
def tf_sweep(tmp_path_factory):
    """One style: num_steps 4, 8, 12 x state_size 4 x 2 seeds; seed 1 is below the lag-3
    midpoint from its first block (step 10) and learns lag 8 when seed 0 does."""
    root = tmp_path_factory.mktemp("tf_sweep")
    for n in (4, 8, 12):
        for seed in (0, 1):
            losses = CURVE if seed == 0 else [0.55] + [0.52] * 8 + [0.455] * 5
            write_run(root / f"n{n}_s{seed}", config(n, 4, seed), losses=losses, learned=(1.0, n / 12))
    return aggregate(root)


@pytest.fixture(scope="module")
def wide_sweep(tmp_path_factory):
    """30 values of num_steps x 3 state sizes, one seed: the layout limits."""
    root = tmp_path_factory.mktemp("wide_sweep")
    for n in range(1, 31):
        for d in (2, 8, 32):
            write_run(root / f"n{n}_d{d}", config(n, d, 0), learned=(1.0, min(1.0, n / 20)), hydra=False)
    return aggregate(root)


def heatmap_axes(fig):
    return [ax for ax in fig.axes if any(isinstance(c, QuadMesh) for c in ax.collections)
            and ax.get_label() != "<colorbar>"]


def test_grid_heatmaps_with_values_where_they_fit(style_sweep, wide_sweep):
    fig = plots.plot_grid(style_sweep)
    axes = heatmap_axes(fig)
    assert [ax.get_title() for ax in axes] == ["lag 3; style=tf", "lag 8; style=tf", "lag 3; style=true",
                                              "lag 8; style=true"]
    xlabel = "num_steps (truncation length n)"
    assert [ax.get_xlabel() for ax in axes] == ["", "", xlabel, xlabel]  # once per column
    assert [ax.get_ylabel() for ax in axes] == ["state_size (d)", "", "state_size (d)", ""]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["4", "12"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["16", "4"]  # largest state on top
    # lag 8, style tf: means over seeds 0.1 (n=4) and 0.7 (n=12), rows d=16 then d=4.
    assert [t.get_text() for t in axes[1].texts] == ["0.10", "0.70", "0.10", "0.70"]
    assert [t.get_text() for t in axes[3].texts] == ["0.30", "1.00", "0.30", "1.00"]
    assert "16 runs: style × num_steps × state_size, 2 seeds per cell" in fig._suptitle.get_text()
    plt.close(fig)
    # 30 values of n: one heatmap per row, too narrow for values, still within a page and <= 3:1.
    fig = plots.plot_grid(wide_sweep)
    axes = heatmap_axes(fig)
    assert len(axes) == 2 and all(not ax.texts for ax in axes)
    assert axes[0].get_position().x0 == pytest.approx(axes[1].get_position().x0)  # stacked
    w, h = fig.get_size_inches()
    assert w <= plot_style.PAGE_WIDTH + 0.5 and w / h <= plot_style.MAX_ASPECT
    plt.close(fig)


def test_curves_against_data_seen_with_levels(style_sweep):
    fig = plots.plot_curves(style_sweep)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["style=tf, state_size=4", "style=tf, state_size=16",
                                              "style=true, state_size=4", "style=true, state_size=16"]
    for ax in axes:
        assert ax.get_xscale() == "log"
        data = [ln for ln in ax.lines if len(ln.get_xdata()) > 2]
        levels = [ln for ln in ax.lines if len(ln.get_xdata()) == 2 and len(set(ln.get_ydata())) == 1]
        assert len(data) == 2  # num_steps 4 and 12, mean over the two seeds
        # x = updates x 200 n time steps (n = 4: 800 per update; n = 12: 2400).
        assert list(data[0].get_xdata()) == [800 * 10 * (i + 1) for i in range(len(CURVE))]
        assert list(data[1].get_xdata()) == [2400 * 10 * (i + 1) for i in range(len(CURVE))]
        assert list(data[0].get_ydata()) == pytest.approx(CURVE)  # both seeds share the curve
        assert sorted(ln.get_ydata()[0] for ln in levels) == pytest.approx(sorted(lv["loss"] for lv in ARTICLE_LEVELS))
    # Level names once per figure row (first column), the y label on the first column only.
    assert [len(ax.texts) for ax in axes] == [3, 0, 3, 0]  # one row per style: level names on the left
    assert [t.get_text() for t in axes[0].texts] == ["none (0.662)", "lag 3 (0.519)", "lags 3+8 (0.454)"]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + fig.legends
    assert [t.get_text() for t in legends[0].get_texts()] == ["4", "12"]
    plt.close(fig)


def test_many_num_steps_get_a_colour_bar_and_no_empty_panel(wide_sweep):
    fig = plots.plot_curves(wide_sweep)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3 and all(len(ax.lines) >= 30 for ax in panels)  # 30 n + 3 levels
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "num_steps" in bars[0].get_xlabel()
    # Every axes in the figure shows data, a key or a colour bar: none is an empty frame.
    for ax in fig.axes:
        assert ax in panels or ax in bars or not ax.axison
    w, h = fig.get_size_inches()
    assert w / h <= plot_style.MAX_ASPECT
    plt.close(fig)


def test_boundary_marks_the_smallest_n_by_hand(style_sweep):
    fig = plots.plot_boundary(style_sweep)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["lag 3, style=tf", "lag 8, style=tf", "learning boundary; style=tf"]
    summary = fig.axes[2]
    # style tf, lag 8: seed means 0.1 (n=4), 0.7 (n=12): >= 0.5 from n=12, 0.9 never (a triangle
    # on top at 12 + 1); lag 3 is 1.0 everywhere: both thresholds at the smallest n, 4.
    color8 = to_rgb(plot_style.dependency_color(8, [3, 8]))
    ys = {(ln.get_marker(), to_rgb(ln.get_color())): sorted(set(ln.get_ydata())) for ln in summary.lines
          if ln.get_marker() in ("o", "s", "^") and len(ln.get_ydata())}
    assert ys[("o", color8)] == [12.0] and ys[("^", color8)] == [13.0] and ("s", color8) not in ys
    assert ys[("o", to_rgb(plot_style.dependency_color(3, [3, 8])))] == [4.0]
    # The learned-fraction panel of lag 8: one line per state size, seed means 0.1 and 0.7.
    lines = [ln for ln in fig.axes[1].lines if len(ln.get_xdata()) == 2 and ln.get_marker() == "o"]
    assert [list(ln.get_ydata()) for ln in lines] == [pytest.approx([0.1, 0.7])] * 2
    plt.close(fig)


def test_onset_in_data_steps_with_first_block_bounds(tf_sweep):
    fig = plots.plot_onset(tf_sweep)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["lag 3", "lag 8"]
    assert axes[0].get_yscale() == "log"
    per = np.array([800, 1600, 2400])  # time steps per update at n = 4, 8, 12
    # lag 3: seed 0 crosses at ONSET3 updates, seed 1 at its first block (10 updates: an upper
    # bound, so the points are hollow); lag 8: both at ONSET8 (smoothed .52 at 100, .455 at 110).
    lines = [ln for ln in axes[0].lines if len(ln.get_xdata()) == 3]
    mean3 = next(ln for ln in lines if ln.get_marker() in ("None", ""))
    assert list(mean3.get_ydata()) == pytest.approx((ONSET3 + 10) / 2 * per)
    hollow = [ln for ln in lines if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_ydata()) == pytest.approx((ONSET3 + 10) / 2 * per)
    mean8 = next(ln for ln in axes[1].lines if len(ln.get_xdata()) == 3 and ln.get_marker() in ("None", ""))
    assert list(mean8.get_ydata()) == pytest.approx(ONSET8 * per)
    filled = [ln for ln in axes[1].lines if ln.get_marker() == "o" and ln.get_markerfacecolor() != "white"]
    assert len(filled[0].get_ydata()) == 3
    plt.close(fig)


def test_truncation_one_line_per_style_with_method_colours(style_sweep, tf_sweep):
    assert plots.plot_truncation(tf_sweep) is None  # style not swept
    fig = plots.plot_truncation(style_sweep)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["state_size=4", "state_size=16"]
    for ax in axes:
        data = [ln for ln in ax.lines if ln.get_marker() == "o"]
        assert [to_rgb(ln.get_color()) for ln in data] == [to_rgb(plot_style.method_color("tf")),
                                                         to_rgb(plot_style.method_color("true"))]
        assert [list(ln.get_ydata()) for ln in data] == [pytest.approx([0.1, 0.7]), pytest.approx([0.3, 1.0])]
    assert plot_style.method_color("some-new-backend") == plot_style.method_color("some-new-backend")
    plt.close(fig)


@pytest.mark.parametrize("panels", [1, 2, 3, 5, 8, 12, 30])
def test_layout_stays_within_a_page_and_3_to_1(panels):
    rows, cols = plot_style.layout(panels, panel_w=2.6)
    assert rows * cols >= panels and (rows - 1) * cols < panels  # no empty row
    assert cols * 2.6 <= plot_style.PAGE_WIDTH
    assert cols * 2.6 / (rows * 2.3 + 0.7) <= plot_style.MAX_ASPECT


def test_one_colour_mapping():
    ns = plot_style.colors_for("num_steps", [1, 2, 3])
    assert plot_style.colors_for("num_steps", [3, 2, 1]) == ns and len(set(ns.values())) == 3
    assert plot_style.colors_for("style", ["true"])["true"] == plot_style.method_color("true")
    assert plot_style.colors_for("lag", [3, 8])[8] == plot_style.dependency_color(8, [3, 8])


def test_make_figures_writes_each_format(tf_sweep, tmp_path):
    open_before = plt.get_fignums()
    written = plots.make_figures(tf_sweep, tmp_path, ("png", "svg"))
    assert sorted(written) == ["boundary", "curves", "grid", "onset"]  # no truncation: one style
    for name, files in written.items():
        assert [p.name for p in files] == [f"{name}.png", f"{name}.svg"]
        assert all(p.stat().st_size > 1000 for p in files)
    assert plt.get_fignums() == open_before  # figures are closed after saving
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_a_panel_above_a_spare_slot_keeps_its_x_tick_labels(tmp_path):
    # 5 state sizes in 3 columns: the third panel of row 1 has nothing below it.
    for d in (2, 4, 8, 16, 32):
        write_run(tmp_path / f"d{d}", config(5, d, 0), hydra=False)
    fig = plots.plot_curves(aggregate(tmp_path))
    panels = [ax for ax in fig.axes if ax.get_title()]
    fig.canvas.draw()
    shown = [any(t.get_visible() and t.get_text() for t in ax.get_xticklabels()) for ax in panels]
    assert shown == [False, False, True, True, True]
    assert [bool(ax.get_xlabel()) for ax in panels] == [False, False, True, True, True]
    plt.close(fig)


def test_boundary_with_two_rules_says_which_panel_has_no_data(tmp_path):
    for n in (2, 6):
        write_run(tmp_path / f"a{n}", config(n, 4, 0), learned=(1.0, 0.5), hydra=False)
        other = config(n, 4, 0, deps=[{"lag": 2, "effect": 0.4}], base_prob=0.3)
        write_run(tmp_path / f"b{n}", other, learned=(0.8,), levels=[
            {"name": "none", "lags": [], "loss": 0.6931}, {"name": "lag 2", "lags": [2], "loss": 0.6109}], hydra=False)
    fig = plots.plot_boundary(aggregate(tmp_path))
    empty = [ax for ax in fig.axes if not ax.axison and ax.texts]
    # Rows: the two rules; columns: lags 2, 3, 8 and the boundary. The article's rule has no lag 2,
    # the other rule no lag 3 or 8: three panels say so instead of showing an empty frame.
    assert len(empty) == 3 and all("no run" in ax.texts[0].get_text() for ax in empty)
    plt.close(fig)
