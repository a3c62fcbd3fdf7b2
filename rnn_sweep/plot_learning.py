"""Figures of where and when each dependency gets learned: boundary, onset, truncation.

Drawing only: the numbers come from :mod:`rnn_sweep.stats` tables
(:func:`~rnn_sweep.stats.band_table`, :func:`~rnn_sweep.stats.boundary_table`,
:func:`~rnn_sweep.stats.onset_table`). Panel functions take ``ax=None`` and
return the axes; figure functions return None when the sweep cannot show it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, MaxNLocator

from rnn_sweep import plot_style as ps
from rnn_sweep.aggregate import Aggregation
from rnn_sweep.stats import THRESHOLDS, band_table, onset_table

MAX_BANDS = 6  # more lines than this in a panel: means and markers only
THRESHOLD_MARKERS = {THRESHOLDS[0]: "o", THRESHOLDS[1]: "s"}


def learned_panel(bands: pd.DataFrame, hue: str, colors: dict, lag: int, ax=None, ylabel: str | None = None):
    """Learned fraction of one dependency against num_steps, one line per ``hue`` value
    (mean over seeds, with its 95% band when there are few lines).

    Args:
        bands: :func:`rnn_sweep.stats.band_table` rows with key ``hue`` and x num_steps.
        hue: the column that tells lines apart (state_size, style, ...).
        colors: {hue value: colour}.
        lag: the dependency (marks n = lag, where a window first spans it).
        ylabel: the y label (default names the lag).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2.6))
    values = sorted(bands[hue].unique())
    for v in values:
        b = bands[bands[hue] == v]
        ax.plot(b["num_steps"], b["mean"], color=colors[v], marker="o", markersize=3, linewidth=1.2)
        if len(values) <= MAX_BANDS:
            ax.fill_between(b["num_steps"], b["low"], b["high"], color=colors[v], alpha=0.15, linewidth=0)
    for t in THRESHOLDS:
        ax.axhline(t, color="0.6", linewidth=0.7, linestyle=(0, (4, 3)))
    if bands["num_steps"].min() <= lag <= bands["num_steps"].max():  # outside, it would only widen the axis
        ax.axvline(lag, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_ylim(-0.1, 1.1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(ps.LABELS["num_steps"])
    ax.set_ylabel(ylabel or f"learned fraction of lag {lag}")
    return ax


def boundary_key(lags: list[int]) -> list[Line2D]:
    """Legend handles of :func:`boundary_panel`: lag colours, threshold markers, 'not reached'."""
    handles = [Line2D([], [], color=ps.dependency_color(lag, lags), marker="s", linestyle="",
                      label=f"boundary of lag {lag}") for lag in lags]
    handles += [Line2D([], [], color="0.3", marker=THRESHOLD_MARKERS[t], linestyle="", label=f"stays ≥ {t:g}",
                       markerfacecolor="0.3" if t == THRESHOLDS[1] else "white") for t in THRESHOLDS]
    return handles + [Line2D([], [], color="0.3", marker="^", linestyle="", label="not within swept n")]


def boundary_panel(rows: pd.DataFrame, lags: list[int], ax=None, top: float | None = None):
    """Smallest n at which each lag's learned fraction reaches 0.5 (circles) and 0.9 (squares)
    and stays there, against state_size: the seeds' mean (marker) and the range of the
    seeds that reach it (bar). A lag that never does within the swept n: a triangle on top.

    Args:
        rows: :func:`rnn_sweep.stats.boundary_table` rows of one panel.
        lags: every lag of the rule (for colours).
        top: where "not reached" is drawn (default: one above the largest swept n), so
            that panels of one figure share their y axis.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2.6))
    sizes = sorted(rows["state_size"].unique())
    pos = {d: i for i, d in enumerate(sizes)}
    top = rows["n_swept_max"].max() + 1 if top is None else top
    slots = [(lag, t) for lag in lags for t in THRESHOLDS]
    for k, (lag, t) in enumerate(slots):
        r = rows[(rows["lag"] == lag) & (rows["threshold"] == t)]
        x = r["state_size"].map(pos) + 0.5 * (k - (len(slots) - 1) / 2) / len(slots)
        color, marker = ps.dependency_color(lag, lags), THRESHOLD_MARKERS[t]
        reached = r["n_mean"].notna()
        ax.errorbar(x[reached], r["n_mean"][reached], yerr=[(r["n_mean"] - r["n_seed_min"])[reached].clip(lower=0),
                    (r["n_seed_max"] - r["n_mean"])[reached].clip(lower=0)], fmt=marker, color=color,
                    markersize=5, capsize=2, linewidth=1, markerfacecolor=color if t == THRESHOLDS[1] else "white")
        ax.plot(x[~reached], [top] * int((~reached).sum()), "^", color=color, markersize=5, alpha=0.7)
    for lag in lags:
        ax.axhline(lag, color=ps.dependency_color(lag, lags), linewidth=0.7, linestyle=":")
    ax.axhline(top - 0.5, color="0.7", linewidth=0.6)
    step = max(1, -(-len(sizes) // 10))  # at most ~10 labels: they must not overlap
    ax.set_xticks(range(len(sizes)), [str(d) if i % step == 0 else "" for i, d in enumerate(sizes)])
    ax.set_xlim(-0.6, len(sizes) - 0.4)
    ax.set_ylim(0, top + 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(ps.LABELS["state_size"])
    ax.set_ylabel("smallest n that learns it")
    return ax


def _legend(fig: plt.Figure, colors: dict, key: list, panels: list) -> None:
    """Under the panels: state sizes in one row, the boundary key in the next (a colour bar
    for the state sizes when there are many)."""
    sizes = [Line2D([], [], color=c, marker="o", label=f"d = {d}") for d, c in colors.items()]
    if len(sizes) > ps.MAX_LEGEND:
        ps.value_legend(fig, "state_size", colors, [], panels)
        sizes = []
    cols = max(len(sizes), len(key))
    blank = Line2D([], [], linestyle="", label="")
    rows = [row + [blank] * (cols - len(row)) for row in (sizes, key) if row]
    # Legends fill column by column: interleave the rows so that each row reads across.
    handles = [h for column in zip(*rows) for h in column]
    fig.legend(handles=handles, loc="outside lower center", ncols=cols, frameon=False)


def plot_boundary(agg: Aggregation) -> plt.Figure | None:
    """Learned fraction vs n per lag (one line per state size) and the learning boundary
    per state size, one row per other swept setting; None without probe values or
    with a single swept n."""
    deps = agg.deps.dropna(subset=["learned"])
    if deps.empty or deps["num_steps"].nunique() < 2:
        return None
    groups, lags = agg.panel_cols, sorted(deps["lag"].unique())
    bands = band_table(deps, [*groups, "lag", "state_size"], "num_steps", "learned")
    colors = ps.colors_for("state_size", deps["state_size"])
    parts = ps.split(bands, groups)
    fig, axes = plt.subplots(len(parts), len(lags) + 1, squeeze=False, layout="constrained",
                             figsize=(2.7 * (len(lags) + 1) + 0.6, 2.5 * len(parts) + 1.2))
    for row, (label, part) in enumerate(parts):
        key = dict(zip(groups, part[groups].iloc[0])) if groups else {}
        for col, lag in enumerate(lags):
            ax, sub = axes[row, col], part[part["lag"] == lag]
            ax.set_title(ps.panel_label({"lag": lag, **key}).replace("lag=", "lag "))
            if sub.empty:  # e.g. another rule's dependency: say so rather than draw an empty frame
                ax.text(0.5, 0.5, "no run with a probe\nof this dependency here", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
                ax.set_axis_off()
                continue
            learned_panel(sub, "state_size", colors, lag, ax=ax, ylabel="learned fraction")
        mask = pd.Series(True, index=agg.boundary.index)
        for c, v in key.items():
            mask &= agg.boundary[c] == v
        boundary_panel(agg.boundary[mask], lags, ax=axes[row, -1], top=agg.boundary["n_swept_max"].max() + 1)
        axes[row, -1].set_title("learning boundary" + (f"; {label}" if label else ""))
    for i, ax in enumerate(axes[:, :len(lags)].flat):  # one n axis and one fraction axis in every row
        if i:
            ax.sharex(axes[0, 0])
            ax.sharey(axes[0, 0])
        if i % len(lags):
            ax.set_ylabel("")
    for ax in axes[:-1].flat:  # every row shares the x axes: name them once, under the last row
        ax.set_xlabel("")
    _legend(fig, colors, boundary_key(lags), list(axes.flat))
    ps.suptitle(fig, "Where each dependency gets learned: learned fraction against n (mean, 95% CI over seeds; "
                "dotted: n = lag), and the smallest n from which it stays ≥ 0.5 / ≥ 0.9 (bars: range over seeds)",
                f"{ps.swept(agg)}; {ps.fixed_settings(agg)}")
    return fig


def onset_panel(table: pd.DataFrame, colors: dict, reach: pd.DataFrame | None = None, ax=None):
    """Learn-onset (data seen, log y) against num_steps, one line per state_size: the mean
    over the seeds that crossed; hollow markers where an onset is the first logged block
    (only an upper bound). ``reach``: num_steps, first, last (data steps of the first and
    last logged block), drawn as grey limits of what can be measured."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2.6))
    for d in sorted(table["state_size"].unique()):
        t = table[table["state_size"] == d]
        ax.plot(t["num_steps"], t["mean"], color=colors[d], linewidth=1.1)
        bound = t["first_block"] > 0
        ax.plot(t["num_steps"][~bound], t["mean"][~bound], "o", color=colors[d], markersize=4)
        ax.plot(t["num_steps"][bound], t["mean"][bound], "o", color=colors[d], markersize=4, markerfacecolor="white")
    if reach is not None and len(reach):
        ax.plot(reach["num_steps"], reach["first"], color="0.6", linewidth=0.8, linestyle="--")
        ax.plot(reach["num_steps"], reach["last"], color="0.6", linewidth=0.8, linestyle="-")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(ps.LABELS["num_steps"])
    ax.set_ylabel("learn-onset (data seen)")
    return ax


def plot_onset(agg: Aggregation) -> plt.Figure | None:
    """When each dependency is learned, one panel per lag and other swept setting (panels
    where no run crossed are left out); None when no run crossed any midpoint."""
    deps = agg.deps
    if deps.empty or deps["onset"].isna().all():
        return None
    groups, lags = agg.panel_cols, sorted(deps["lag"].unique())
    table = onset_table(deps, [*groups, "lag", "state_size", "num_steps"])
    reach = agg.curves.groupby([*groups, "num_steps"], dropna=False)["data_steps"].agg(["min", "max"])
    reach = reach.rename(columns={"min": "first", "max": "last"}).reset_index()
    colors = ps.colors_for("state_size", deps["state_size"])
    panels = [(label, part) for label, part in ps.split(table, [*groups, "lag"]) if part["mean"].notna().any()]
    per_row = ps.columns_per_group(len(panels), len(lags))  # one column per dependency
    width = ps.panel_width(per_row or len(panels))
    fig, axes, spare = ps.panel_figure(len(panels), panel_w=width, panel_h=2.6, cols=per_row,
                                       sharex=True, sharey=True)
    for ax, (label, part) in zip(axes, panels):
        key = part[groups].iloc[0] if groups else pd.Series(dtype=object)
        r = reach[(reach[groups] == key).all(axis=1)] if groups else reach
        onset_panel(part, colors, r, ax=ax)
        ax.set_title(label.replace("lag=", "lag "))
    ps.outer_labels(axes, fig.axes[0].get_gridspec().ncols)
    key = [Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="",
                  label="upper bound: a seed crossed\nby its first logged block"),
           Line2D([], [], color="0.6", linestyle="--", label="first logged block"),
           Line2D([], [], color="0.6", linestyle="-", label="last logged block")]
    ps.value_legend(fig, "state_size", colors, spare, axes, marker="o", extra=key)
    crossed = int(deps["onset"].notna().sum())
    ps.suptitle(fig, "When each dependency is learned: data seen when the smoothed loss crosses the level midpoint "
                f"for good (mean over the seeds that crossed: {crossed} of {len(deps)} run-dependency pairs)",
                f"{ps.swept(agg)}; {ps.fixed_settings(agg)}")
    return fig


def plot_truncation(agg: Aggregation) -> plt.Figure | None:
    """Truncation styles compared on the longest dependency, one panel per state size and
    other swept setting; None when style does not vary."""
    if "style" not in agg.config_cols or agg.deps.empty:
        return None
    deps = agg.deps.dropna(subset=["learned"])
    longest = deps[deps["lag"] == deps.groupby("run_id")["lag"].transform("max")]
    if longest.empty:
        return None
    groups = [c for c in agg.panel_cols if c != "style"]
    bands = band_table(longest, [*groups, "state_size", "lag", "style"], "num_steps", "learned")
    colors = ps.colors_for("style", bands["style"])
    panels = ps.split(bands, [*groups, "state_size"])
    cols = ps.columns_per_group(len(panels), bands["state_size"].nunique())
    fig, axes, spare = ps.panel_figure(len(panels), panel_w=ps.panel_width(cols or len(panels)), cols=cols,
                                       sharex=True, sharey=True)
    for ax, (label, part) in zip(axes, panels):
        learned_panel(part, "style", colors, int(part["lag"].iloc[0]), ax=ax)
        ax.set_title(label)
    ps.outer_labels(axes, fig.axes[0].get_gridspec().ncols)
    ps.value_legend(fig, "style", colors, spare, axes, title="truncation style", marker="o")
    ps.suptitle(fig, "Which truncation style learns the longest dependency (mean, 95% CI over seeds; dotted: n = lag)",
                f"{ps.swept(agg)}; {ps.fixed_settings(agg)}")
    return fig
