"""Figures of an aggregated sweep (seaborn/matplotlib, Agg backend; no TensorFlow).

Every figure is drawn from the tidy tables of :mod:`rnn_sweep.analysis.tables` and
:mod:`rnn_sweep.analysis.stats` (means, bands, boundaries are computed there, never
here). Panel functions take ``ax=None`` (a new figure is made) and return the
axes; figure functions lay panels out and return the figure, or None when the
sweep has nothing to show in it. Colours, layouts and legends come from
:mod:`rnn_sweep.analysis.plot_style`, so a value has the same colour in every figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import EngFormatter

from rnn_sweep.analysis import plot_style as ps
from rnn_sweep.analysis.tables import Aggregation
from rnn_sweep.analysis.outdir import write_atomic
from rnn_sweep.analysis.plot_learning import arm_label, plot_boundary, plot_onset, plot_truncation
from rnn_sweep.analysis.plot_style import split
from rnn_sweep.analysis.questions import FLAG
from rnn_sweep.analysis.stats import band_table

FIGURES = ("grid", "boundary", "curves", "onset", "truncation")
LEARNED_LABEL = "learned fraction (1 = fully, 0 = not at all)"
MAX_BANDS = 8  # more lines than this in a panel: means only (bands would hide each other)
MAX_PANELS = 12  # loss-curve panels per figure; more state sizes: an evenly spread subset
PNG_DPI = 130
GRADIENT_CMAP = "vlag"  # diverging: blue below 0 (the control knows more), red above (the gradient adds)


def heatmap(cell: pd.DataFrame, ax=None, cbar: bool = False, annotate: bool = True, fontsize: float = 8,
            value: str = "learned_mean", text: str | None = None, limits: tuple[float, float] = (0.0, 1.0),
            cmap=ps.LEARNED_CMAP):
    """One dependency's cells: x = num_steps, y = state_size (largest on top).

    Args:
        cell: grid-table rows of one dependency and panel (columns num_steps,
            state_size, ``value`` and ``text``).
        ax: axes to draw into (a new figure when None).
        cbar: draw a colour bar beside this axes.
        annotate: write each cell's value into it.
        fontsize: of the annotations.
        value: the column coloured; shown clipped to ``limits`` (a probe's fraction can fall
            slightly outside [0, 1]: "-0.00" or "1.02" would read as an error).
        text: a column of ready-made cell labels (e.g. "2/3"); default: ``value`` to two decimals.
        limits: (low, high) of the colour scale and of the values shown.
        cmap: the colour map (a diverging one for differences).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    shown = cell.assign(_v=cell[value].astype(float).clip(*limits))
    table = shown.pivot_table(index="state_size", columns="num_steps", values="_v", dropna=False)
    table = table.sort_index(ascending=False)
    if text is None:
        labels = table.map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    else:
        labels = shown.pivot_table(index="state_size", columns="num_steps", values=text, aggfunc="first",
                                   dropna=False).reindex(index=table.index, columns=table.columns).fillna("")
    sns.heatmap(table, ax=ax, vmin=limits[0], vmax=limits[1], cmap=cmap, annot=labels.to_numpy() if annotate else False,
                fmt="", annot_kws={"fontsize": fontsize}, linewidths=0.5, linecolor="white", square=False,
                cbar=cbar, cbar_kws={"label": LEARNED_LABEL} if cbar else None)
    ax.set_xlabel(ps.LABELS["num_steps"])
    ax.set_ylabel(ps.LABELS["state_size"])
    ax.tick_params(axis="both", rotation=0, length=0)
    return ax


def grid_geometry(nx: int, ny: int, panels: int, per_row: int) -> dict:
    """Sizes of the heatmap figure: lags side by side while cells stay wide enough to hold
    their value, else one heatmap per row; values only in cells that fit them."""
    cols = per_row if per_row > 1 and (ps.PAGE_WIDTH - 1.6) / (nx * per_row) >= 0.34 else 1
    room = (ps.PAGE_WIDTH - 1.6 - 0.4 * (cols - 1)) / (nx * cols)
    # Cells up to 0.55 in, wider when few so that a panel (and its title) gets ~2.4 in.
    cell_w = min(max(0.55, 2.4 / nx), room)
    cell_h = min(0.4, max(0.22, 0.75 * cell_w))
    rows = math.ceil(panels / cols)
    # "0.93" is ~2.2 em wide: at 22 pt per inch of cell it fills ~2/3 of the cell.
    return {"cols": cols, "rows": rows, "annotate": cell_w >= 0.26,
            "fontsize": max(5.5, min(8.0, 22 * cell_w)),
            "figsize": (cols * nx * cell_w + 1.6 + 0.4 * (cols - 1), max(3.0, rows * (ny * cell_h + 0.75) + 1.0))}


def _grid_panels(grid: pd.DataFrame, groups: list[str]) -> list[tuple[str, pd.DataFrame, int, str]]:
    """(group label, rows, lag, what) per heatmap: for each group, the lags' mean learned
    fractions, then the lags' shares of seeds that learned (when any run could be judged);
    last, with a reservoir control, what the gradient learned (trained - control) per lag
    and other swept setting, from the trained rows."""
    lags = sorted(grid["lag"].unique())
    panels = []
    for label, part in split(grid, groups):
        for what in ("mean", "share"):
            if what == "share" and not part["seeds_judged"].gt(0).any():
                continue
            panels += [(arm_label(label), part[part["lag"] == lag], lag, what) for lag in lags
                       if (part["lag"] == lag).any()]
    if "gradient_mean" in grid:
        paired = grid[grid["gradient_pairs"].fillna(0).gt(0)]
        for label, part in split(paired, [c for c in groups if c != FLAG]):
            panels += [(label, part[part["lag"] == lag], lag, "gradient") for lag in lags if (part["lag"] == lag).any()]
    return panels


def _gradient_text(grid: pd.DataFrame) -> list[str]:
    """Cell labels of the gradient panels: the mean difference, signed, with '*' where its
    t interval excludes 0."""
    if "gradient_mean" not in grid:
        return [""] * len(grid)
    out = []
    for m, lo, hi in zip(grid["gradient_mean"], grid["gradient_low"], grid["gradient_high"]):
        sure = (lo > 0 or hi < 0) if pd.notna(lo) and pd.notna(hi) else False
        out.append("" if pd.isna(m) else f"{max(-1.0, min(1.0, m)):+.2f}" + ("*" if sure else ""))
    return out


GRID_PANELS = {  # what -> (heatmap arguments, panel name)
    "mean": ({}, "mean fraction"),
    "share": ({"value": "learned_share", "text": "share_text"}, "seeds that learned it"),
    "gradient": ({"value": "gradient_mean", "text": "gradient_text", "limits": (-1.0, 1.0), "cmap": GRADIENT_CMAP},
                 "trained − control"),
}


def plot_grid(agg: Aggregation) -> plt.Figure | None:
    """Per dependency (and other swept setting): the mean learned fraction over seeds and,
    below it, the share of seeds that learned it; with a reservoir control (runs with
    ``model.train_recurrent`` false), each arm on its own panels and, last, the learned
    fraction of the trained network minus its control's, paired by seed. None without
    probe values."""
    grid = agg.grid.dropna(subset=["learned_mean"])
    if grid.empty:
        return None
    shares = [f"{k}/{n}" if n else "" for k, n in zip(grid["seeds_learned"], grid["seeds_judged"])]
    grid = grid.assign(share_text=shares, gradient_text=_gradient_text(grid))
    panels = _grid_panels(grid, agg.panel_cols)
    geo = grid_geometry(grid["num_steps"].nunique(), grid["state_size"].nunique(), len(panels), grid["lag"].nunique())
    fig, axes = plt.subplots(geo["rows"], geo["cols"], squeeze=False, layout="constrained", figsize=geo["figsize"])
    flat = list(axes.flat)
    for i, (ax, (label, sub, lag, what)) in enumerate(zip(flat, panels)):
        kwargs, name = GRID_PANELS[what]
        heatmap(sub, ax=ax, annotate=geo["annotate"], fontsize=geo["fontsize"], **kwargs)
        ax.set_title((f"{label} · " if label else "") + f"lag {lag}: {name}")
        # Axis names once per column / row (tick labels stay: groups may sweep other values).
        if i + geo["cols"] < len(panels):
            ax.set_xlabel("")
        if i % geo["cols"]:
            ax.set_ylabel("")
    for ax in flat[len(panels):]:
        ax.set_axis_off()
    _grid_colorbars(fig, flat, panels, geo["rows"])
    ps.suptitle(fig, "How much of each dependency the RNN learned", ps.context(agg, *_grid_notes(agg, panels)))
    return fig


def _grid_colorbars(fig: plt.Figure, flat: list, panels: list, rows: int) -> None:
    """One colour bar for the fractions and shares, one for the differences (when drawn)."""
    shrink = min(1.0, 3.0 / rows) if rows > 3 else 1.0
    plain = [ax for ax, p in zip(flat, panels) if p[3] != "gradient"]
    diff = [ax for ax, p in zip(flat, panels) if p[3] == "gradient"]
    fig.colorbar(plain[0].collections[0], ax=plain, label="learned fraction or share of seeds\n"
                 "(1 = fully / all, 0 = not at all / none)", shrink=shrink)
    if diff:
        fig.colorbar(diff[0].collections[0], ax=diff, label="trained − control\n(learned fraction)",
                     shrink=min(1.0, max(0.6, len(diff) / max(1, len(plain)))))


def _grid_notes(agg: Aggregation, panels: list) -> list[str]:
    """The grid figure's subtitle notes: what each kind of panel shows."""
    t = agg.onset_threshold
    notes = [f"learned fraction (held-out probe at the end) clipped to [0, 1] for display, raw in grid.csv; k/N: "
             f"seeds whose fraction stayed ≥ {t:g} to the end"]
    pairs = [int(v) for _, sub, _, what in panels if what == "gradient" for v in sub["gradient_pairs"]]
    if pairs:
        k = f"{min(pairs)}" if min(pairs) == max(pairs) else f"{min(pairs)}-{max(pairs)}"
        notes.append(f"trained − control: the trained network's learned fraction minus its reservoir control's "
                     f"(same seed, recurrent weights frozen), mean over {k} seed pairs, * where the Student-t 95% "
                     "interval excludes 0, clipped to [−1, 1] for display")
    return notes


def curves_panel(bands: pd.DataFrame, levels: pd.DataFrame, colors: dict, ax=None, label_levels: bool = True,
                 band: bool = True):
    """Training loss against data seen (log x), one line per num_steps: the mean over seeds
    at each block's centre, and the range over seeds (shaded) when ``band``; a dashed line
    at each analytic level, named outside the axes on the right (no curve can cover it).

    Args:
        bands: :func:`rnn_sweep.analysis.stats.band_table` rows with keys num_steps, x data_mid.
        levels: levels-table rows of one rule (columns level, loss).
        colors: {num_steps: colour} (:func:`rnn_sweep.analysis.plot_style.colors_for`).
        ax: axes to draw into (a new figure when None).
        label_levels: write the levels' names (the last panel of a figure row).
        band: shade the range over seeds.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    for n in sorted(bands["num_steps"].unique()):
        b = bands[bands["num_steps"] == n]
        ax.plot(b["data_mid"], b["mean"], color=colors[n], linewidth=1.2, label=str(n))
        if band:
            ax.fill_between(b["data_mid"], b["min"], b["max"], color=colors[n], alpha=0.15, linewidth=0)
    for _, lv in levels.iterrows():
        ax.axhline(lv["loss"], **ps.LEVEL_STYLE)
        if label_levels:
            ax.annotate(f"{lv['level']}\n{lv['loss']:.3f}", xy=(1.0, lv["loss"]), xycoords=("axes fraction", "data"),
                        xytext=(3, 0), textcoords="offset points", ha="left", va="center", fontsize=7,
                        color="0.2", annotation_clip=False)
    if len(levels):
        top, bottom = levels["loss"].max(), levels["loss"].min()
        pad = 0.15 * (top - bottom) if top > bottom else 0.05
        ax.set_ylim(bottom - pad, top + 2 * pad)  # the levels frame the plot; a diverged spike is clipped
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(ps.LABELS["data_steps"])
    ax.set_ylabel("training loss (nats)")
    return ax


def plot_curves(agg: Aggregation) -> plt.Figure | None:
    """Loss curves against data seen, one panel per state_size and other swept setting."""
    curves = agg.curves.dropna(subset=["data_mid", "loss"])
    if curves.empty:
        return None
    groups = agg.panel_cols
    sizes = sorted(curves["state_size"].unique())
    shown = subset(sizes, max(1, MAX_PANELS // max(1, len(ps.split(curves, groups)))))
    curves = curves[curves["state_size"].isin(shown)]
    bands = band_table(curves, [*groups, "state_size", "num_steps"], "data_mid", "loss")
    panels = split(bands, [*groups, "state_size"])
    colors = ps.colors_for("num_steps", bands["num_steps"])
    cols = ps.columns_per_group(len(panels), len(shown))
    fig, axes, spare = ps.panel_figure(len(panels), panel_w=ps.panel_width(cols or len(panels)), cols=cols,
                                       sharex=True, sharey=True)
    cols = fig.axes[0].get_gridspec().ncols
    many = len(colors) > MAX_BANDS
    for i, (ax, (label, part)) in enumerate(zip(axes, panels)):
        rule = part["rule"].iloc[0] if "rule" in part else None
        levels = agg.levels if rule is None else agg.levels[agg.levels["rule"] == rule]
        if rule is None and agg.levels["rule"].nunique() > 1:
            levels = levels.iloc[:0]
        curves_panel(part, levels, colors, ax=ax, label_levels=i % cols == cols - 1 or i == len(panels) - 1,
                     band=not many)
        ax.set_title(label)
    ps.outer_labels(axes, cols)
    ps.value_legend(fig, "num_steps", colors, spare, axes)
    seeds = int(bands["units"].max())
    note = f"state sizes {', '.join(map(str, shown))} of {len(sizes)} (all in curves.csv)" \
        if len(shown) < len(sizes) else ""
    shade = (f"no shading with {len(colors)} lines (per-seed values in curves.csv)" if many and seeds > 1
             else f"shaded: range over the {seeds} seeds" if seeds > 1 else "")
    ps.suptitle(fig, "Training loss against data seen",
                ps.context(agg, f"line: mean over seeds of each block of {_block_width(agg)} time steps, at its "
                           "centre (the same blocks for every n)", shade, "dashed: analytic levels", note))
    return fig


def _block_width(agg: Aggregation) -> str:
    """The data grid's block width (the most common one), e.g. '10k'."""
    widths = (agg.curves["data_end"] - agg.curves["data_start"]).dropna()
    if widths.empty:
        return "?"
    w = float(widths.mode().iloc[0])
    return f"{w / 1000:g}k" if w >= 1000 else f"{w:g}"


def subset(values: list, k: int) -> list:
    """At most ``k`` of the sorted ``values``, evenly spread, always the first and the last."""
    if len(values) <= k:
        return list(values)
    return [values[i] for i in sorted({round(j) for j in np.linspace(0, len(values) - 1, k)})]


def save_figure(fig: plt.Figure, out_dir: Path, name: str, formats: tuple[str, ...] = ("png", "pdf"),
                dpi: int = PNG_DPI) -> list[Path]:
    """Save ``fig`` as out_dir/name.<format> for each format (each replaced atomically) and close it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        paths.append(write_atomic(out_dir / f"{name}.{fmt}", lambda tmp, f=fmt: _savefig(fig, tmp, f, dpi)))
        # The layout is solved by the first save; freezing it spares the next formats the same
        # work (text extents dominate: about half the figure time of a 300-run sweep).
        fig.set_layout_engine("none")
    plt.close(fig)
    return paths


def _savefig(fig: plt.Figure, path: Path, fmt: str, dpi: int) -> None:
    """``fig.savefig`` that lets a write error through as itself: matplotlib's PDF backend, cleaning up
    after a full disk, raises an AttributeError of its own that would hide the OSError behind it."""
    try:
        fig.savefig(path, format=fmt, dpi=dpi if fmt == "png" else None, bbox_inches="tight")
    except OSError:
        raise
    except Exception as err:
        cause = err.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is None:
            raise
        raise cause from None


def make_figures(agg: Aggregation, out_dir: Path, formats: tuple[str, ...] = ("png", "pdf"),
                 dpi: int = PNG_DPI) -> dict[str, list[Path]]:
    """Draw and save every figure that the sweep supports; returns {figure name: files}.

    ``truncation`` needs a swept style, ``onset`` a run whose loss crossed a level
    midpoint, ``grid`` and ``boundary`` probe values; a figure without data is
    skipped (never drawn empty).
    """
    makers = {"grid": plot_grid, "boundary": plot_boundary, "curves": plot_curves, "onset": plot_onset,
              "truncation": plot_truncation}
    out = {}
    with sns.axes_style("whitegrid"), plt.rc_context(ps.FONT):
        for name, make in makers.items():
            fig = make(agg) if not agg.runs.empty else None
            if fig is not None:
                out[name] = save_figure(fig, Path(out_dir), name, formats, dpi)
    return out


__all__ = ["FIGURES", "curves_panel", "heatmap", "make_figures", "plot_boundary", "plot_curves", "plot_grid",
           "plot_onset", "plot_truncation", "save_figure"]
