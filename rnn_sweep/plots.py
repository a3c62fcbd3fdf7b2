"""Figures of an aggregated sweep (seaborn/matplotlib, Agg backend; no TensorFlow).

Every figure is drawn from the tidy tables of :mod:`rnn_sweep.aggregate`.
Panel functions take ``ax=None`` (a new figure is made) and return the axes;
figure functions lay panels out and return the figure. Colours come from the
module-level mappings below, so a method (truncation style, backend, cell) or
a dependency has the same colour in every figure.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (sweeps run on servers)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rnn_sweep.aggregate import Aggregation, bootstrap_ci  # noqa: E402

_TAB10 = sns.color_palette("tab10")
# One colour per method across all figures: truncation styles, backends, cells.
METHOD_COLORS = {
    "tf": _TAB10[0], "true": _TAB10[3],
    "scratch": _TAB10[2], "static": _TAB10[4], "dynamic": _TAB10[5], "keras": _TAB10[6],
    "rnn": _TAB10[7], "gru": _TAB10[8], "lstm": _TAB10[9],
}
DEPENDENCY_COLORS = sns.color_palette("Dark2")  # k-th shortest lag of the rule -> k-th colour
NUM_STEPS_CMAP = "viridis"  # num_steps is ordinal: a sequential map, short n dark
LEARNED_CMAP = "mako"
LEVEL_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 0.9}
CI_LEVEL = 0.95  # bands: percentile bootstrap over runs (seeds), see aggregate.bootstrap_ci
FIGURES = ("grid", "curves", "truncation", "onset")
MAX_COLS = 3  # state sizes per figure row in the line-plot figures
LEARNED_LABEL = "learned fraction\n(1 = fully, 0 = not at all)"


def method_color(name: str):
    """The colour of a method; unknown names get a stable tab10 colour from their hash."""
    return METHOD_COLORS.get(str(name), _TAB10[zlib.crc32(str(name).encode()) % len(_TAB10)])


def dependency_color(lag: int, lags) -> tuple:
    """Colour of ``lag`` by its rank among the rule's ``lags`` (shortest first)."""
    return DEPENDENCY_COLORS[sorted(lags).index(lag) % len(DEPENDENCY_COLORS)]


def ci_lines(ax, df: pd.DataFrame, x: str, y: str, hue: str, order: list, colors: dict,
             labels: dict | None = None, marker: str | None = None, unit: str = "run_id") -> None:
    """One line per ``hue`` value: the mean of ``y`` over units (runs) at each ``x``, with a
    95% bootstrap band. Values of ``order`` with no data still get a legend entry."""
    labels = labels or {h: str(h) for h in order}
    for h in order:
        part = df[df[hue] == h].dropna(subset=[y])
        if part.empty:
            ax.plot([], [], color=colors[h], marker=marker, label=labels[h])
            continue
        table = part.pivot_table(index=x, columns=unit, values=y, aggfunc="mean")
        mean, low, high = bootstrap_ci(table.to_numpy(), level=CI_LEVEL)
        xs = table.index.to_numpy()
        ax.plot(xs, mean, color=colors[h], marker=marker, markersize=5, linewidth=1.3, label=labels[h])
        ax.fill_between(xs, low, high, color=colors[h], alpha=0.2, linewidth=0)


def _legend_outside(ax, title: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _panels(df: pd.DataFrame, cols: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """Split ``df`` by the values of ``cols``: [(label like 'style=true', part)]."""
    if not cols or df.empty:
        return [("", df)]
    return [(", ".join(f"{c}={v}" for c, v in zip(cols, key if isinstance(key, tuple) else (key,))), part)
            for key, part in df.groupby(cols, dropna=False, sort=True)]


def _fixed_settings(agg: Aggregation) -> str:
    """What every run shares (rule, backend, style), for titles."""
    runs = agg.runs
    parts = [f"{c}={runs[c].iloc[0]}" for c in ("backend", "style") if c not in agg.config_cols]
    if "rule" not in agg.config_cols:
        parts.append(runs["rule"].iloc[0])
    return ", ".join(parts)


def _swept(agg: Aggregation) -> str:
    """A title fragment naming what was swept, e.g. 'num_steps x state_size x style, 2 seeds'."""
    seeds = agg.runs.groupby(agg.config_cols, dropna=False)["seed"].nunique().max()
    return f"swept {' × '.join(agg.config_cols)}, {seeds} seed{'s' if seeds != 1 else ''} per cell"


def heatmap(cell: pd.DataFrame, ax=None, cbar: bool = False):
    """One dependency's learned fraction: x = num_steps, y = state_size (largest on top).

    Args:
        cell: grid-table rows of one dependency and panel (columns num_steps,
            state_size, learned_mean).
        ax: axes to draw into (a new figure when None).
        cbar: draw a colour bar beside this axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    table = cell.pivot_table(index="state_size", columns="num_steps", values="learned_mean", dropna=False)
    table = table.sort_index(ascending=False)
    sns.heatmap(table, ax=ax, vmin=0.0, vmax=1.0, cmap=LEARNED_CMAP, annot=True, fmt=".2f",
                annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white", square=False,
                cbar=cbar, cbar_kws={"label": LEARNED_LABEL} if cbar else None)
    ax.set_xlabel("num_steps (truncation length n)")
    ax.set_ylabel("state_size (d)")
    ax.tick_params(axis="y", rotation=0)
    return ax


def plot_grid(agg: Aggregation) -> plt.Figure:
    """One heatmap per dependency (columns) and per other swept setting (rows)."""
    panels = _panels(agg.grid, agg.panel_cols)
    lags = sorted(agg.grid["lag"].unique())
    width = 1.0 + 0.6 * agg.grid["num_steps"].nunique()
    height = 1.0 + 0.45 * agg.grid["state_size"].nunique()
    fig, axes = plt.subplots(len(panels), len(lags), squeeze=False, sharex=True, sharey=True,
                             figsize=(1.5 + width * len(lags), max(3.0, 1.0 + height * len(panels))),
                             layout="constrained")
    for row, (label, part) in enumerate(panels):
        for col, lag in enumerate(lags):
            ax = axes[row, col]
            sub = part[part["lag"] == lag]
            if sub["learned_mean"].notna().any():
                heatmap(sub, ax=ax)
            else:
                ax.set_axis_off()
            ax.set_title(f"lag {lag}: Y_t depends on X_(t-{lag})" + (f"\n{label}" if label else ""), fontsize=10)
    for ax in axes.flat:
        ax.label_outer()  # shared axes: tick labels and axis labels on the outer panels only
    mappable = next((ax.collections[0] for ax in axes.flat if ax.collections), None)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, label=LEARNED_LABEL.replace("fraction", "fraction, mean over seeds"))
    fig.suptitle(f"How much of each dependency the RNN learned (probe on held-out data)\n{_swept(agg)}; "
                 f"{_fixed_settings(agg)}", fontsize=10)
    return fig


def curves_panel(curves: pd.DataFrame, levels: pd.DataFrame, ax=None, legend: bool = True):
    """Training loss against step, one line per num_steps (mean and 95% CI over seeds),
    with a labelled dashed line at each analytic level of ``levels`` (one rule)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ns = sorted(curves["num_steps"].unique())
    palette = dict(zip(ns, sns.color_palette(NUM_STEPS_CMAP, len(ns))))
    ci_lines(ax, curves, "step", "loss", "num_steps", ns, palette)
    for _, lv in levels.iterrows():
        ax.axhline(lv["loss"], **LEVEL_STYLE)
        # At the left: early in training the loss is still high, so the lower labels stay clear.
        ax.annotate(f"{lv['level']} ({lv['loss']:.3f})", xy=(0.0, lv["loss"]), xycoords=("axes fraction", "data"),
                    xytext=(3, 2), textcoords="offset points", ha="left", va="bottom", fontsize=8, color="0.2",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    if len(levels):
        top, bottom = levels["loss"].max(), levels["loss"].min()
        pad = 0.15 * (top - bottom) if top > bottom else 0.05
        ax.set_ylim(bottom - pad, top + 2 * pad)  # the levels frame the plot; a diverged spike is clipped
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (nats, block mean)")
    if legend:
        _legend_outside(ax, "num_steps")
    return ax


def plot_curves(agg: Aggregation) -> plt.Figure:
    """Loss curves faceted by state_size and by the other swept settings."""
    def draw(ax, cell, part, first):
        rule = part["rule"].iloc[0] if "rule" in part else agg.levels["rule"].iloc[0] if len(agg.levels) else None
        curves_panel(cell, agg.levels[agg.levels["rule"] == rule], ax=ax, legend=first)

    fig = _facet(agg.curves, agg.panel_cols, draw)
    fig.suptitle(f"Training loss (mean and 95% CI over seeds; dashed: analytic levels): {_swept(agg)}\n"
                 f"{_fixed_settings(agg)}", fontsize=11)
    return fig


def _deps_with_config(agg: Aggregation) -> pd.DataFrame:
    """deps (run_id, lag, learned, onset) joined with each run's configuration and seed."""
    return agg.deps.merge(agg.runs[["run_id", *agg.config_cols, "seed"]], on="run_id")


def _facet(df: pd.DataFrame, rows: list[str], draw, width: float = 4.2, height: float = 3.2) -> plt.Figure:
    """One panel per (value of ``rows``, state_size); state sizes run across, wrapped at MAX_COLS.

    ``draw(ax, cell, part, first)`` fills a panel: ``cell`` is its rows of ``df``,
    ``part`` those of its ``rows`` value, ``first`` marks the panel that carries the legend.
    """
    panels = _panels(df, rows)
    sizes = sorted(df["state_size"].unique())
    ncols = min(len(sizes), MAX_COLS)
    per = -(-len(sizes) // ncols)  # figure rows per panel
    fig, axes = plt.subplots(len(panels) * per, ncols, squeeze=False, sharey=True, layout="constrained",
                             figsize=(1 + width * ncols, 0.8 + height * len(panels) * per))
    for p, (label, part) in enumerate(panels):
        for i, size in enumerate(sizes):
            ax = axes[p * per + i // ncols, i % ncols]
            draw(ax, part[part["state_size"] == size], part, p == 0 and i == ncols - 1)
            ax.set_title(f"state_size = {size}" + (f", {label}" if label else ""), fontsize=10)
            if i % ncols:
                ax.set_ylabel("")  # shared y: the first column says it
        for i in range(len(sizes), per * ncols):
            axes[p * per + i // ncols, i % ncols].set_axis_off()
    return fig


def truncation_panel(longest: pd.DataFrame, ax=None, legend: bool = True):
    """Learned fraction of the longest dependency against num_steps, one line per
    truncation style (mean and 95% CI over seeds). ``longest``: columns num_steps,
    style, learned, lag."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    styles = sorted(longest["style"].unique())
    ci_lines(ax, longest, "num_steps", "learned", "style", styles, {s: method_color(s) for s in styles}, marker="o")
    ax.axhline(1.0, **LEVEL_STYLE)
    ax.axhline(0.0, **LEVEL_STYLE)
    ax.set_ylim(-0.1, 1.15)
    lag = longest["lag"].iloc[0]
    ax.set_xlabel("num_steps (truncation length n)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # n is an integer
    ax.set_ylabel(f"learned fraction of lag {lag}\n(1 = fully learned)")
    ax.axvline(lag, color="0.6", linewidth=0.8, linestyle=":")  # n = lag: the window just spans it
    if legend:
        _legend_outside(ax, "truncation style")
    return ax


def plot_truncation(agg: Aggregation) -> plt.Figure | None:
    """Truncation styles compared on the longest dependency; None when style does not vary."""
    if "style" not in agg.config_cols or agg.deps.empty:
        return None
    deps = _deps_with_config(agg)
    longest = deps[deps["lag"] == deps.groupby("run_id")["lag"].transform("max")].dropna(subset=["learned"])
    if longest.empty:
        return None
    fig = _facet(longest, [c for c in agg.panel_cols if c != "style"],
                 lambda ax, cell, part, first: truncation_panel(cell, ax=ax, legend=first))
    fig.suptitle("Which truncation style learns the longest dependency (dotted: n = lag; mean and 95% CI over "
                 f"seeds)\n{_swept(agg)}; {_fixed_settings(agg)}", fontsize=11)
    return fig


def onset_panel(deps: pd.DataFrame, ax=None, legend: bool = True):
    """Learn-onset step of each dependency against num_steps (mean and 95% CI over the
    seeds whose loss crossed). ``deps``: columns num_steps, lag, onset."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    lags = sorted(deps["lag"].unique())
    counts = deps.groupby("lag")["onset"].agg(["count", "size"])
    names = {lag: f"lag {lag} ({counts.loc[lag, 'count']}/{counts.loc[lag, 'size']} runs)" for lag in lags}
    ci_lines(ax, deps, "num_steps", "onset", "lag", lags, {lg: dependency_color(lg, lags) for lg in lags},
             labels=names, marker="o")
    ax.set_xlabel("num_steps (truncation length n)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # n is an integer
    ax.set_ylabel("learn-onset step\n(smoothed loss crosses the level midpoint)")
    ax.set_ylim(bottom=0)
    if legend:
        ax.legend(title="dependency (runs that crossed)", fontsize=8, title_fontsize=8)
    return ax


def plot_onset(agg: Aggregation) -> plt.Figure | None:
    """Learn-onset steps faceted by state_size; None when no run's loss crossed any midpoint."""
    if agg.deps.empty or agg.deps["onset"].isna().all():
        return None
    deps = _deps_with_config(agg)
    # Every panel has its own legend: it counts the runs that crossed in that panel.
    fig = _facet(deps, agg.panel_cols, lambda ax, cell, part, first: onset_panel(cell, ax=ax, legend=True))
    # Panels share y, and each panel's set_ylim(bottom=0) froze the top at the data seen so
    # far: rescale over every panel's lines and bands once all are drawn.
    tops = []
    for ax in fig.axes:
        ax.relim()
        ax.autoscale(axis="y")
        tops.append(ax.get_ylim()[1])
    for ax in fig.axes:
        ax.set_ylim(0, max(tops))
    fig.suptitle(f"When each dependency is learned (runs that never cross are left out): {_swept(agg)}\n"
                 f"{_fixed_settings(agg)}", fontsize=11)
    return fig


def save_figure(fig: plt.Figure, out_dir: Path, name: str, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as out_dir/name.<format> for each format (PNG at 150 dpi) and close it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=150 if fmt == "png" else None, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def make_figures(agg: Aggregation, out_dir: Path, formats: tuple[str, ...] = ("png", "pdf")) -> dict[str, list[Path]]:
    """Draw and save every figure that the sweep supports; returns {figure name: files}.

    ``truncation`` needs a swept style and ``onset`` a run whose loss crossed a
    level midpoint; figures without data are skipped (not drawn empty).
    """
    makers = {"grid": plot_grid, "curves": plot_curves, "truncation": plot_truncation, "onset": plot_onset}
    needs = {"grid": agg.grid["learned_mean"].notna().any() if len(agg.grid) else False,
             "curves": not agg.curves.empty}
    out = {}
    with sns.axes_style("whitegrid"):
        for name, make in makers.items():
            if not needs.get(name, True):
                continue
            fig = make(agg)
            if fig is not None:
                out[name] = save_figure(fig, Path(out_dir), name, formats)
    return out
