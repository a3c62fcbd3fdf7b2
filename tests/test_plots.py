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
from matplotlib.text import Annotation  # noqa: E402
from test_aggregate import ARTICLE_LEVELS, CURVE, LEARNED3, LEARNED8, ONSET8, config, write_run  # noqa: E402

from rnn_sweep.analysis import plot_style
from rnn_sweep.analysis import plots  # noqa: E402
from rnn_sweep.analysis.tables import aggregate  # noqa: E402

# learned fraction of lag 8 per (style, num_steps) for seeds 0 and 1; lag 3 is always 1.0.
LAG8 = {("tf", 4): (0.0, 0.2), ("tf", 12): (0.6, 0.8), ("true", 4): (0.2, 0.4), ("true", 12): (1.0, 1.0)}
BUDGET = "trained 1 epoch × 100k time steps of training data"  # the configs: 1 epoch of data.length 100,000


def ramp(final: float) -> list[float]:
    """Checkpoints of a fraction rising to ``final`` at the end (0 untrained): learned by the end iff >= 0.5."""
    return [0.0, 0.0, 0.0, final / 3, 2 * final / 3, final]


def subtitle(fig) -> str:
    """The figure's subtitle with its line breaks undone."""
    return " ".join(" ".join(a.get_text().split()) for a in fig.artists if isinstance(a, Annotation))


def check_title(fig) -> None:
    """One line of title, a subtitle that states the training budget."""
    assert "\n" not in fig._suptitle.get_text().strip() and BUDGET in subtitle(fig), subtitle(fig)


@pytest.fixture(scope="module")
def style_sweep(tmp_path_factory):
    """2 styles x num_steps 4, 12 x state_size 4, 16 x 2 seeds = 16 runs."""
    root = tmp_path_factory.mktemp("style_sweep")
    for (style, n), values in LAG8.items():
        for d in (4, 16):
            for seed, lag8 in enumerate(values):
                write_run(root / f"{style}_n{n}_d{d}_s{seed}", config(n, d, seed, style=style),
                          learned=(1.0, lag8), heldout=0.5, checkpoints=(LEARNED3, ramp(lag8)))
    return aggregate(root)


# Checkpoints of the tf sweep's three seeds: (lag 3, lag 8) per seed.
SEEDS = {0: (LEARNED3, LEARNED8),  # onsets 35k and 70k
         1: ([0.1, 0.9, 1.0, 1.0, 1.0, 1.0], [0.0, 0.1, 0.2, 0.3, 0.3, 0.3]),  # lag 3 before 20k; lag 8 never
         2: ([0.6, 0.7, 0.8, 0.9, 1.0, 1.0], LEARNED8)}  # lag 3 without training; lag 8 at 70k


@pytest.fixture(scope="module")
def tf_sweep(tmp_path_factory):
    """One style: num_steps 4, 8, 12 x state_size 4 x 3 seeds (SEEDS)."""
    root = tmp_path_factory.mktemp("tf_sweep")
    for n in (4, 8, 12):
        for seed, cps in SEEDS.items():
            write_run(root / f"n{n}_s{seed}", config(n, 4, seed), learned=(1.0, n / 12), checkpoints=cps)
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
    assert [ax.get_title() for ax in axes] == [f"style={style} · lag {lag}: {what}" for style in ("tf", "true")
                                              for what in ("mean fraction", "seeds that learned it") for lag in (3, 8)]
    assert "k/N: seeds whose fraction stayed ≥ 0.5 to the end" in subtitle(fig)
    xlabel = "num_steps (truncation length n)"
    assert [ax.get_xlabel() for ax in axes] == [""] * 6 + [xlabel, xlabel]  # once per column
    assert [ax.get_ylabel() for ax in axes] == ["state_size (d)", ""] * 4
    assert [t.get_text() for t in axes[6].get_xticklabels()] == ["4", "12"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["16", "4"]  # largest state on top
    # lag 8, style tf: means over seeds 0.1 (n=4) and 0.7 (n=12), rows d=16 then d=4 ...
    assert [t.get_text() for t in axes[1].texts] == ["0.10", "0.70", "0.10", "0.70"]
    # ... and the spread: no seed ends >= 0.5 at n=4 (0.0, 0.2), both at n=12 (0.6, 0.8).
    assert [t.get_text() for t in axes[3].texts] == ["0/2", "2/2", "0/2", "2/2"]
    assert [t.get_text() for t in axes[5].texts] == ["0.30", "1.00", "0.30", "1.00"]
    assert "16 runs: style × num_steps × state_size, 2 seeds per cell" in subtitle(fig)
    check_title(fig)
    plt.close(fig)
    # 30 values of n: one heatmap per row, too narrow for values, still within a page and <= 3:1.
    fig = plots.plot_grid(wide_sweep)
    axes = heatmap_axes(fig)
    assert len(axes) == 4 and all(not ax.texts for ax in axes)
    assert axes[0].get_position().x0 == pytest.approx(axes[1].get_position().x0)  # stacked
    w, h = fig.get_size_inches()
    assert w <= plot_style.PAGE_WIDTH + 0.5 and w / h <= plot_style.MAX_ASPECT
    plt.close(fig)


def test_grid_cells_show_fractions_clipped_to_0_1(tmp_path):
    # The probe's fraction can fall slightly outside [0, 1]: the cells say 0.00 and 1.00, never -0.00 or 1.02.
    write_run(tmp_path / "a", config(4, 4, 0), learned=(1.02, -0.003), hydra=False)
    write_run(tmp_path / "b", config(8, 4, 0), learned=(1.0, 0.5), hydra=False)
    fig = plots.plot_grid(aggregate(tmp_path))
    axes = heatmap_axes(fig)
    assert [t.get_text() for t in axes[0].texts] == ["1.00", "1.00"]
    assert [t.get_text() for t in axes[1].texts] == ["0.00", "0.50"]
    assert "clipped to [0, 1] for display, raw in grid.csv" in subtitle(fig)
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
        # Both n at the same points: the centres of the 10k-step blocks of data; n=12 trains 41 x 12 = 492
        # of the 500 positions, so its last block is 42 positions wide (90k to 98.4k steps).
        centres = [5_000 + 10_000 * i for i in range(len(CURVE))]
        assert list(data[0].get_xdata()) == centres
        assert list(data[1].get_xdata()) == centres[:-1] + [(90_000 + 98_400) / 2]
        assert list(data[0].get_ydata()) == pytest.approx(CURVE)  # both seeds share the curve
        assert sorted(ln.get_ydata()[0] for ln in levels) == pytest.approx(sorted(lv["loss"] for lv in ARTICLE_LEVELS))
    # Level names on the last panel of each figure row, outside the axes on the right: no curve covers them.
    assert [len(ax.texts) for ax in axes] == [0, 3, 0, 3]
    assert [t.get_text() for t in axes[1].texts] == ["none\n0.662", "lag 3\n0.519", "lags 3+8\n0.454"]
    fig.canvas.draw()
    for t in axes[1].texts:
        assert t.get_window_extent().x0 >= axes[1].get_window_extent().x1
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + fig.legends
    assert [t.get_text() for t in legends[0].get_texts()] == ["4", "12"]
    assert "range over the 2 seeds" in subtitle(fig)
    check_title(fig)
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
    # style tf, lag 8: seed means 0.1 (n=4), 0.7 (n=12): >= 0.5 from n=12 (a circle inside the range),
    # 0.9 never (a triangle on top at 12 + 1); lag 3 is 1.0 everywhere: at or below the smallest n, 4
    # (a down triangle, not a circle: the boundary may lie below the sweep).
    color8 = to_rgb(plot_style.dependency_color(8, [3, 8]))
    color3 = to_rgb(plot_style.dependency_color(3, [3, 8]))
    ys = {(ln.get_marker(), to_rgb(ln.get_color())): sorted(set(ln.get_ydata())) for ln in summary.lines
          if ln.get_marker() in ("o", "s", "^", "v") and len(ln.get_ydata())}
    assert ys[("o", color8)] == [12.0] and ys[("^", color8)] == [13.0] and ("s", color8) not in ys
    assert ys[("v", color3)] == [4.0] and ("o", color3) not in ys
    # The learned-fraction panel of lag 8: one line per state size, seed means 0.1 and 0.7.
    lines = [ln for ln in fig.axes[1].lines if len(ln.get_xdata()) == 2 and ln.get_marker() == "o"]
    assert [list(ln.get_ydata()) for ln in lines] == [pytest.approx([0.1, 0.7])] * 2
    labels = [t.get_text() for t in fig.legends[0].get_texts() if t.get_text()]
    assert "at or below the smallest n swept (n = 4)" in labels and "not within the swept n" in labels
    assert "range over the 2 seeds" in subtitle(fig)
    check_title(fig)
    plt.close(fig)


def test_boundary_bars_span_every_seed_and_the_legend_lists_only_what_is_drawn(tmp_path):
    # Lag 8 at n = 2, 6, 10 for three seeds; seed 2 never reaches 0.5: its bar reaches the top row (11).
    for n, lag8 in ((2, (0.1, 0.1, 0.1)), (6, (0.6, 0.1, 0.2)), (10, (0.9, 0.95, 0.2))):
        for seed, v in enumerate(lag8):
            write_run(tmp_path / f"n{n}_s{seed}", config(n, 4, seed), learned=(0.2 + 0.08 * n, v), hydra=False)
    agg = aggregate(tmp_path)
    fig = plots.plot_boundary(agg)
    color8 = to_rgb(plot_style.dependency_color(8, [3, 8]))
    bars = [c for c in fig.axes[2].collections if to_rgb(c.get_color()[0][:3]) == color8]
    # Threshold 0.5: seeds from 6, 10 and never (the top row, 10 + 1): one bar from 6 to 11.
    spans = sorted(tuple(seg[:, 1]) for c in bars for seg in c.get_segments())
    assert (6.0, 11.0) in spans
    labels = [t.get_text() for t in fig.legends[0].get_texts() if t.get_text()]
    # Lag 3 (0.36, 0.68, 1.0 at n = 2, 6, 10) stays >= 0.5 from n=6: inside the range; nothing at the smallest n.
    assert not any("smallest n" in label for label in labels)
    plt.close(fig)


def test_onset_shows_every_seed_censored_ones_included(tf_sweep):
    fig = plots.plot_onset(tf_sweep)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["lag 3", "lag 8"]
    assert axes[0].get_yscale() == "log"
    # lag 3 per n: 35k (reached), 10k (first checkpoint: 0 + 0.4 / 0.8 x 20k), 0 (untrained): median 10k.
    median3 = next(ln for ln in axes[0].lines if ln.get_marker() in ("None", "") and len(ln.get_xdata()) == 3)
    assert list(median3.get_ydata()) == [10_000.0] * 3
    hollow = [ln for ln in axes[0].lines if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_ydata()) == [10_000.0] * 3
    assert sum(len(ln.get_xdata()) for ln in axes[0].lines if ln.get_marker() == "D") == 3
    # lag 8: 70k, censored, 70k: 2 of 3 learned, median 70k; the censored seed is drawn at the top.
    median8 = next(ln for ln in axes[1].lines if ln.get_marker() in ("None", "") and len(ln.get_xdata()) == 3)
    assert list(median8.get_ydata()) == [ONSET8] * 3
    censored = [ln for ln in axes[1].lines if ln.get_marker() == "^"]
    assert len(censored) == 1 and len(censored[0].get_xdata()) == 3
    assert list(censored[0].get_ydata()) == pytest.approx([axes[1].get_ylim()[1] / 1.5] * 3)
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "not learned by the end (censored)" in labels and "learned without training" in labels
    check_title(fig)
    plt.close(fig)


def test_onset_legend_lists_only_what_is_drawn(tmp_path):
    for n in (4, 8):
        write_run(tmp_path / f"n{n}", config(n, 4, 0), hydra=False)  # both lags learned, ordinary onsets
    fig = plots.plot_onset(aggregate(tmp_path))
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "a seed's onset" in labels
    assert not {"not learned by the end (censored)", "learned without training", "before the first checkpoint"} \
        & set(labels)
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
    check_title(fig)
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


def test_a_full_disk_inside_the_pdf_backend_surfaces_as_the_write_error(tmp_path, monkeypatch):
    # matplotlib's PDF backend, cleaning up after ENOSPC, raises AttributeError ('Stream' has no 'pos'),
    # which would be a traceback; the OSError behind it is what the aggregator reports in one line.
    fig, _ = plt.subplots()

    def full(*args, **kwargs):
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise AttributeError("'Stream' object has no attribute 'pos'")

    monkeypatch.setattr(fig, "savefig", full)
    with pytest.raises(OSError) as err:
        plots.save_figure(fig, tmp_path, "grid", ("pdf",))
    assert err.value.errno == 28 and not list(tmp_path.iterdir())
