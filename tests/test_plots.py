"""Figures, checked through their matplotlib objects (labels, lines, cells), not pixels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from test_aggregate import ARTICLE_LEVELS, CURVE, config, write_run  # noqa: E402

from rnn_sweep import plots  # noqa: E402
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
    """One style: num_steps 4, 8, 12 x state_size 4 x 2 seeds."""
    root = tmp_path_factory.mktemp("tf_sweep")
    for n in (4, 8, 12):
        for seed in (0, 1):
            write_run(root / f"n{n}_s{seed}", config(n, 4, seed), learned=(1.0, n / 12))
    return aggregate(root)


def heatmap_axes(fig):
    return [ax for ax in fig.axes if any(isinstance(c, QuadMesh) for c in ax.collections)
            and ax.get_label() != "<colorbar>"]


def test_grid_one_annotated_heatmap_per_dependency_and_style(style_sweep):
    fig = plots.plot_grid(style_sweep)
    axes = heatmap_axes(fig)
    assert len(axes) == 4  # lags 3, 8 x styles tf, true
    titles = [ax.get_title() for ax in axes]
    assert titles == ["lag 3: Y_t depends on X_(t-3)\nstyle=tf", "lag 8: Y_t depends on X_(t-8)\nstyle=tf",
                      "lag 3: Y_t depends on X_(t-3)\nstyle=true", "lag 8: Y_t depends on X_(t-8)\nstyle=true"]
    assert all(len(ax.texts) == 4 for ax in axes)  # 2 num_steps x 2 state sizes, each annotated
    # Shared axes: labels on the outer panels only (bottom row, first column).
    xlabel = "num_steps (truncation length n)"
    assert [ax.get_xlabel() for ax in axes] == ["", "", xlabel, xlabel]
    assert [ax.get_ylabel() for ax in axes] == ["state_size (d)", "", "state_size (d)", ""]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["4", "12"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["16", "4"]  # largest state on top
    # lag 8, style tf: means over seeds 0.1 (n=4) and 0.7 (n=12), rows d=16 then d=4.
    assert [t.get_text() for t in axes[1].texts] == ["0.10", "0.70", "0.10", "0.70"]
    assert [t.get_text() for t in axes[3].texts] == ["0.30", "1.00", "0.30", "1.00"]
    cbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(cbars) == 1 and "learned fraction" in cbars[0].get_ylabel()
    assert "swept style × num_steps × state_size, 2 seeds per cell" in fig._suptitle.get_text()
    plt.close(fig)


def test_heatmap_makes_its_own_axes():
    import pandas as pd

    cell = pd.DataFrame({"num_steps": [2, 4, 2], "state_size": [4, 4, 8], "learned_mean": [0.25, 0.5, 1.0]})
    ax = plots.heatmap(cell)
    assert [t.get_text() for t in ax.texts] == ["1.00", "0.25", "0.50"]  # the missing cell (4, 8) is blank
    plt.close(ax.figure)


def test_curves_one_line_per_num_steps_and_labelled_levels(style_sweep):
    fig = plots.plot_curves(style_sweep)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["state_size = 4, style=tf", "state_size = 16, style=tf",
                                              "state_size = 4, style=true", "state_size = 16, style=true"]
    for ax in axes:
        data = [ln for ln in ax.lines if len(ln.get_xdata()) > 2]
        levels = [ln for ln in ax.lines if len(set(ln.get_ydata())) == 1 and len(ln.get_xdata()) == 2]
        assert len(data) == 2  # num_steps 4 and 12, mean over the two seeds
        assert sorted(ln.get_ydata()[0] for ln in levels) == pytest.approx(sorted(lv["loss"] for lv in ARTICLE_LEVELS))
        assert [t.get_text() for t in ax.texts] == ["none (0.662)", "lag 3 (0.519)", "lags 3+8 (0.454)"]
        assert list(data[0].get_ydata()) == pytest.approx(CURVE)  # both seeds share the curve
        assert ax.get_xlabel() == "training step"
    assert [ax.get_ylabel() for ax in axes] == ["training loss (nats, block mean)", ""] * 2  # first column only
    legend = axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["4", "12"] and legend.get_title().get_text() == "num_steps"
    plt.close(fig)


def test_truncation_one_line_per_style_with_method_colours(style_sweep, tf_sweep):
    assert plots.plot_truncation(tf_sweep) is None  # style not swept
    fig = plots.plot_truncation(style_sweep)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 2  # state sizes
    for ax in axes:
        data = [ln for ln in ax.lines if len(ln.get_xdata()) > 2 or list(ln.get_xdata()) == [4, 12]]
        assert len(data) == 2
        assert [to_rgb(ln.get_color()) for ln in data] == [to_rgb(plots.method_color("tf")),
                                                         to_rgb(plots.method_color("true"))]
        assert list(data[0].get_ydata()) == pytest.approx([0.1, 0.7]) and list(data[1].get_ydata()) == pytest.approx(
            [0.3, 1.0])
        assert ax.get_xlabel() == "num_steps (truncation length n)"
    assert "learned fraction of lag 8" in axes[0].get_ylabel() and axes[1].get_ylabel() == ""
    assert plots.method_color("true") != plots.method_color("tf")
    assert plots.method_color("some-new-backend") == plots.method_color("some-new-backend")
    plt.close(fig)


def test_onset_one_line_per_dependency(tf_sweep):
    fig = plots.plot_onset(tf_sweep)
    (ax,) = [ax for ax in fig.axes if ax.get_title()]
    data = [ln for ln in ax.lines if len(ln.get_xdata()) == 3]
    assert len(data) == 2  # lags 3 and 8, over num_steps 4, 8, 12
    assert [list(ln.get_ydata()) for ln in data] == [[60.0] * 3, [100.0] * 3]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lag 3 (6/6 runs)", "lag 8 (6/6 runs)"]
    assert "learn-onset step" in ax.get_ylabel()
    plt.close(fig)


def test_make_figures_writes_each_format(tf_sweep, tmp_path):
    open_before = plt.get_fignums()
    written = plots.make_figures(tf_sweep, tmp_path, ("png", "svg"))
    assert sorted(written) == ["curves", "grid", "onset"]  # no truncation: one style
    for name, files in written.items():
        assert [p.name for p in files] == [f"{name}.png", f"{name}.svg"]
        assert all(p.stat().st_size > 1000 for p in files)
    assert plt.get_fignums() == open_before  # figures are closed after saving
