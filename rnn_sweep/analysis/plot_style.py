"""Colours, layouts and legends shared by every figure (matplotlib only; no statistics).

One colour mapping (:func:`colors_for`) gives a value the same colour in every
figure: a method (truncation style, backend, cell) its tab10 colour, a lag its
Dark2 colour by rank, num_steps and state_size their own sequential maps.
Layouts adapt to the number of panels and values: panels wrap to keep a figure
at most ~3:1 wide and within a page, a spare grid slot holds the legend (never
an empty panel), and more than :data:`MAX_LEGEND` ordinal values get a colour
bar instead of a legend.
"""

from __future__ import annotations

import math
import textwrap
import zlib

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (sweeps run on servers)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

_TAB10 = sns.color_palette("tab10")
# One colour per method across all figures: truncation styles, backends, cells.
METHOD_COLORS = {
    "tf": _TAB10[0], "true": _TAB10[3],
    "scratch": _TAB10[2], "static": _TAB10[4], "dynamic": _TAB10[5], "keras": _TAB10[6],
    "rnn": _TAB10[7], "gru": _TAB10[8], "lstm": _TAB10[9],
}
DEPENDENCY_COLORS = sns.color_palette("Dark2")  # k-th shortest lag of the rule -> k-th colour
# Ordinal settings get sequential maps, cut before their palest end so every line shows on white.
ORDINAL_CMAPS = {"num_steps": "viridis", "state_size": "plasma"}
ORDINAL_RANGE = (0.0, 0.85)
LEARNED_CMAP = "mako"
LEVEL_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 0.9}
MAX_LEGEND = 8  # more ordinal values than this: a colour bar instead of a legend
PAGE_WIDTH = 8.0  # inches: the widest figure (a page, or a slide, at 100%)
MAX_ASPECT = 3.0  # width / height
LABELS = {"num_steps": "num_steps (truncation length n)", "state_size": "state_size (d)",
          "data_steps": "data seen (time steps)"}
FONT = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
        "legend.title_fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8}


def method_color(name: str):
    """The colour of a method; unknown names get a stable tab10 colour from their hash."""
    return METHOD_COLORS.get(str(name), _TAB10[zlib.crc32(str(name).encode()) % len(_TAB10)])


def dependency_color(lag: int, lags) -> tuple:
    """Colour of ``lag`` by its rank among the rule's ``lags`` (shortest first)."""
    return DEPENDENCY_COLORS[sorted(lags).index(lag) % len(DEPENDENCY_COLORS)]


def ordinal_cmap(column: str, n: int) -> ListedColormap:
    """``n`` colours of ``column``'s sequential map, short/small values darkest."""
    cmap = plt.get_cmap(ORDINAL_CMAPS.get(column, "cividis"))
    return ListedColormap(cmap(np.linspace(*ORDINAL_RANGE, max(n, 2))[:n]))


def colors_for(column: str, values) -> dict:
    """The one colour mapping: {value: colour} for the values of ``column`` in a figure."""
    values = sorted(set(values))
    if column in ORDINAL_CMAPS:
        cmap = ordinal_cmap(column, len(values))
        return {v: cmap(i) for i, v in enumerate(values)}
    if column == "lag":
        return {v: dependency_color(v, values) for v in values}
    return {v: method_color(v) for v in values}


def layout(n_panels: int, panel_w: float = 3.0, panel_h: float = 2.3, spare: bool = False,
           max_width: float = PAGE_WIDTH, title_h: float = 0.7) -> tuple[int, int]:
    """(rows, cols) for ``n_panels`` (+1 slot for a legend when ``spare``): as many columns
    as fit ``max_width``, fewer while the figure would be wider than MAX_ASPECT:1."""
    slots = n_panels + int(spare)
    cols = max(1, min(slots, int(max_width // panel_w)))
    while cols > 1 and cols * panel_w / (math.ceil(slots / cols) * panel_h + title_h) > MAX_ASPECT:
        cols -= 1
    return math.ceil(slots / cols), cols


def panel_width(n_panels: int) -> float:
    """Panel width in inches: few panels get wider (up to 4 in), many stay 2.6 in so
    that three fit a page."""
    return min(4.0, max(2.6, PAGE_WIDTH / max(1, n_panels)))


def columns_per_group(n_panels: int, per_group: int) -> int | None:
    """One figure row per group (e.g. per truncation style) when there are several groups
    of ``per_group`` panels that fit a page side by side; else None (:func:`layout` decides)."""
    fits = per_group * 2.6 <= PAGE_WIDTH
    return per_group if n_panels > per_group and n_panels % per_group == 0 and fits else None


def panel_figure(n_panels: int, panel_w: float = 3.0, panel_h: float = 2.3, spare: bool = False,
                 cols: int | None = None, **subplots) -> tuple[plt.Figure, list, list]:
    """A figure with a grid of panels; returns (fig, panel axes, spare axes turned off).
    ``cols`` fixes the number of columns (e.g. one per dependency), else :func:`layout`
    chooses; it is ``fig.axes[0].get_gridspec().ncols``."""
    rows, cols = layout(n_panels, panel_w, panel_h, spare) if cols is None else (-(-n_panels // cols), cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(cols * panel_w, rows * panel_h + 0.7), **subplots)
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_axis_off()
    return fig, flat[:n_panels], flat[n_panels:]


def value_legend(fig: plt.Figure, column: str, colors: dict, spare: list, panels: list,
                 title: str | None = None, marker: str | None = None, extra: list | None = None) -> None:
    """A key to ``colors``: a legend for up to MAX_LEGEND values, a discrete colour bar for
    more ordinal values; in a spare grid slot when there is one, else under the panels
    (never beside the title). ``extra``: more legend handles (e.g. marker meanings)."""
    title = title or LABELS.get(column, column)
    values = list(colors)
    extra = extra or []
    if len(values) > MAX_LEGEND and column in ORDINAL_CMAPS:
        cmap = ListedColormap([colors[v] for v in values])
        norm = BoundaryNorm(np.arange(len(values) + 1) - 0.5, cmap.N)
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        where = {"cax": spare[0].inset_axes([0.05, 0.55, 0.9, 0.12])} if spare else {
            "ax": panels, "location": "bottom", "shrink": 0.6, "aspect": 40}
        bar = fig.colorbar(mappable, orientation="horizontal", label=title, **where)
        step = max(1, math.ceil(len(values) / 10))  # at most ~10 tick labels
        bar.set_ticks(range(0, len(values), step), labels=[str(v) for v in values[::step]])
        values, title = [], None
    handles = [Line2D([], [], color=colors[v], marker=marker, label=str(v)) for v in values] + extra
    if not handles:
        return
    if spare:
        spare[0].legend(handles=handles, title=title, loc="center", frameon=False, ncols=1 + len(handles) // 7)
    else:
        # Entries take ~1 inch (values) or ~2 (sentences): as many per row as the figure holds.
        per_row = max(1, int(fig.get_figwidth() / (2.0 if extra else 1.0)))
        fig.legend(handles=handles, title=title, loc="outside lower center", frameon=False,
                   ncols=min(len(handles), per_row))


def outer_labels(axes: list, cols: int) -> None:
    """Axis and tick labels on the outer panels of a grid only (the axes are shared): x on
    each panel with no panel below it, y on the first column."""
    for i, ax in enumerate(axes):
        # plt.subplots(sharex=True) hides every tick label above the last grid row, even where
        # the panel below is a spare slot: switch them back on for the panels that end a column.
        ax.tick_params(labelbottom=i + cols >= len(axes))
        if i + cols < len(axes):
            ax.set_xlabel("")
        if i % cols:
            ax.tick_params(labelleft=False)
            ax.set_ylabel("")


def panel_label(values: dict) -> str:
    """'style=true, state_size=4' from {column: value}, skipping empty parts."""
    return ", ".join(f"{k}={v}" for k, v in values.items() if k)


def split(df, cols: list[str]) -> list[tuple[str, object]]:
    """Split ``df`` by the values of ``cols`` (sorted): [(label like 'style=true', part)]."""
    if not cols or df.empty:
        return [("", df)]
    return [(panel_label(dict(zip(cols, key if isinstance(key, tuple) else (key,)))), part)
            for key, part in df.groupby(cols, dropna=False, sort=True)]


def fixed_settings(agg) -> str:
    """What every run shares (rule, backend, style), for subtitles."""
    runs = agg.runs
    parts = [f"{c}={runs[c].iloc[0]}" for c in ("backend", "style") if c not in agg.config_cols]
    if "rule" not in agg.config_cols:
        parts.append(runs["rule"].iloc[0])
    return ", ".join(parts)


def swept(agg) -> str:
    """A subtitle fragment naming what was swept, e.g. '12 runs: num_steps × state_size, 2 seeds per cell'."""
    seeds = agg.runs.groupby(agg.config_cols, dropna=False)["seed"].nunique()
    lo, hi = seeds.min(), seeds.max()
    count = f"{hi}" if lo == hi else f"{lo}-{hi}"
    return f"{len(agg.runs)} runs: {' × '.join(agg.config_cols)}, {count} seed{'s' if hi != 1 else ''} per cell"


def context(agg, *notes: str) -> str:
    """The subtitle every figure carries: what was swept, the training budget, what is fixed, then ``notes``."""
    budget = f"trained {agg.budget}" if getattr(agg, "budget", "") else "training budget not recorded"
    return "; ".join(p for p in (swept(agg), budget, fixed_settings(agg), *notes) if p)


TITLE_SIZE, SUBTITLE_SIZE = 10.0, 7.5


def suptitle(fig: plt.Figure, title: str, subtitle: str = "") -> None:
    """A one-line title (its font shrinks, never below 7 pt, rather than wrap) and a smaller
    subtitle wrapped at the figure's width, so neither widens the figure."""
    chars = fig.get_figwidth() * 72 / 0.55  # characters per line at 1 pt
    size = max(7.0, min(TITLE_SIZE, chars / max(1, len(title))))
    sub = textwrap.fill(subtitle, max(40, int(chars / SUBTITLE_SIZE))) if subtitle else ""
    lines = sub.count("\n") + 1 if sub else 0
    # The title's text holds blank lines as tall as the subtitle, so that the layout keeps room for it;
    # the subtitle is drawn into them, just below the title's first line.
    blank = math.ceil(lines * SUBTITLE_SIZE / size) if sub else 0
    head = fig.suptitle(title + "\n" * blank, fontsize=size, fontweight="bold")
    if sub:
        fig.add_artist(Annotation(sub, xy=(0.5, 1.0), xycoords=head, xytext=(0, -1.25 * size),
                                  textcoords="offset points", ha="center", va="top", fontsize=SUBTITLE_SIZE,
                                  color="0.25"))
