"""Figures of where and when each dependency gets learned: boundary, onset, truncation.

Drawing only: the numbers come from :mod:`rnn_sweep.analysis.stats` tables
(:func:`~rnn_sweep.analysis.stats.band_table`, :func:`~rnn_sweep.analysis.stats.boundary_table`,
:func:`~rnn_sweep.analysis.stats.onset_table`). Panel functions take ``ax=None`` and
return the axes; figure functions return None when the sweep cannot show it.
Every spread drawn is a range over seeds (every seed, named as such): no
interval that claims a coverage it cannot keep at 3 seeds.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, MaxNLocator

from rnn_sweep.analysis import plot_style as ps
from rnn_sweep.analysis.questions import FLAG
from rnn_sweep.analysis.tables import Aggregation, gradient_boundary
from rnn_sweep.analysis.stats import CENSORED, FIRST, REACHED, THRESHOLDS, UNTRAINED, band_table, onset_table

MAX_BANDS = 8  # more lines than this in a panel: means and markers only
THRESHOLD_MARKERS = {THRESHOLDS[0]: "o", THRESHOLDS[1]: "s"}
AT_SMALLEST, NOT_REACHED = "v", "^"  # boundary markers: at or below the smallest n swept; beyond the largest


def learned_panel(bands: pd.DataFrame, hue: str, colors: dict, lag: int, ax=None, ylabel: str | None = None):
    """Learned fraction of one dependency against num_steps, one line per ``hue`` value
    (mean over seeds, with the range over seeds shaded when there are few lines).

    Args:
        bands: :func:`rnn_sweep.analysis.stats.band_table` rows with key ``hue`` and x num_steps.
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
            ax.fill_between(b["num_steps"], b["min"], b["max"], color=colors[v], alpha=0.15, linewidth=0)
    for t in THRESHOLDS:
        ax.axhline(t, color="0.6", linewidth=0.7, linestyle=(0, (4, 3)))
    if bands["num_steps"].min() <= lag <= bands["num_steps"].max():  # outside, it would only widen the axis
        ax.axvline(lag, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_ylim(-0.1, 1.1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(ps.LABELS["num_steps"])
    ax.set_ylabel(ylabel or f"learned fraction of lag {lag}")
    return ax


def _marker_style(t: float, color) -> dict:
    """Threshold 0.5: hollow markers; 0.9: filled."""
    return {"color": color, "markerfacecolor": color if t == THRESHOLDS[1] else "white", "markersize": 5}


def boundary_panel(rows: pd.DataFrame, lags: list[int], ax=None, top: float | None = None) -> set:
    """Smallest n from which each lag's learned fraction stays >= 0.5 (hollow) or 0.9
    (filled), against state_size: the seeds' mean (marker) and the range over every seed
    (bar; a seed that never gets there stretches it to the top row). Circles/squares: a
    boundary inside the swept n; a down triangle at the smallest n: at or below it; an up
    triangle on top: not within the swept n.

    Args:
        rows: :func:`rnn_sweep.analysis.stats.boundary_table` rows of one panel.
        lags: every lag of the rule (for colours).
        top: where "not reached" is drawn (default: one above the largest swept n), so
            that panels of one figure share their y axis.

    Returns:
        The kinds drawn, for the legend: (lag, threshold) pairs, "inside", "at_smallest", "not_reached".
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2.6))
    sizes = sorted(rows["state_size"].unique())
    pos = {d: i for i, d in enumerate(sizes)}
    top = rows["n_swept_max"].max() + 1 if top is None else top
    slots = [(lag, t) for lag in lags for t in THRESHOLDS]
    drawn = set()
    for k, (lag, t) in enumerate(slots):
        r = rows[(rows["lag"] == lag) & (rows["threshold"] == t)]
        if r.empty:
            continue
        x = (r["state_size"].map(pos) + 0.5 * (k - (len(slots) - 1) / 2) / len(slots)).to_numpy()
        style = _marker_style(t, ps.dependency_color(lag, lags))
        lo = r["n_seed_min"].clip(upper=top).to_numpy(float)
        hi = r["n_seed_max"].clip(upper=top).to_numpy(float)
        mean = r["n_mean"].to_numpy(float)
        y = np.where(np.isnan(mean), top, mean)
        ok = np.isfinite(r["n_seed_min"].to_numpy(float))  # some seed got there: a bar
        ax.vlines(x[ok], lo[ok], hi[ok], color=style["color"], linewidth=1)
        kinds = np.where(np.isnan(mean), "not_reached", np.where(r["at_smallest"].to_numpy(bool), "at_smallest",
                                                                   "inside"))
        for kind, marker in (("inside", THRESHOLD_MARKERS[t]), ("at_smallest", AT_SMALLEST),
                             ("not_reached", NOT_REACHED)):
            sel = kinds == kind
            if sel.any():
                ax.plot(x[sel], y[sel], marker, linestyle="", **style)
                drawn |= {kind, (lag, t)}
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
    return drawn


def boundary_key(lags: list[int], drawn: set, smallest: float | None = None) -> list[Line2D]:
    """Legend handles of what :func:`boundary_panel` drew (``drawn``): lags, thresholds, marker kinds."""
    handles = [Line2D([], [], color=ps.dependency_color(lag, lags), marker="s", linestyle="",
                      label=f"boundary of lag {lag}") for lag in lags if any((lag, t) in drawn for t in THRESHOLDS)]
    handles += [Line2D([], [], color="0.3", marker=THRESHOLD_MARKERS[t], linestyle="", label=f"stays ≥ {t:g}",
                       markerfacecolor="0.3" if t == THRESHOLDS[1] else "white")
                for t in THRESHOLDS if any((lag, t) in drawn for lag in lags)]
    at = f" (n = {smallest:g})" if smallest is not None else ""
    kinds = {"at_smallest": (AT_SMALLEST, f"at or below the smallest n swept{at}"),
             "not_reached": (NOT_REACHED, "not within the swept n")}
    return handles + [Line2D([], [], color="0.3", marker=m, linestyle="", label=label)
                      for kind, (m, label) in kinds.items() if kind in drawn]


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


ARMS = {f"{FLAG}=True": "trained", f"{FLAG}=False": "control", f"{FLAG}=None": "trained"}


def arm_label(label: str) -> str:
    """A panel label with the reservoir-control setting in words ('model.train_recurrent=False'
    -> 'control')."""
    for raw, words in ARMS.items():
        label = label.replace(raw, words)
    return label


def _boundary_rows(agg: Aggregation, deps: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """(kind, label, bands, boundary rows) per figure row: the learned fraction of each swept
    setting (each arm of a reservoir control apart), then, with a control, trained - control
    per seed pair (:attr:`Aggregation.gradient`) and its boundary."""
    groups = agg.panel_cols
    bands = band_table(deps, [*groups, "lag", "state_size"], "num_steps", "learned")
    rows = []
    for label, part in ps.split(bands, groups):
        key = dict(zip(groups, part[groups].iloc[0])) if groups else {}
        mask = pd.Series(True, index=agg.boundary.index)
        for c, v in key.items():
            mask &= agg.boundary[c] == v
        rows.append(("learned", arm_label(label), part, agg.boundary[mask]))
    pairs = agg.gradient.dropna(subset=["learned"]) if len(agg.gradient) else agg.gradient
    if len(pairs) and pairs["num_steps"].nunique() > 1:
        gg = [c for c in groups if c != FLAG]
        gbands = band_table(pairs, [*gg, "lag", "state_size"], "num_steps", "learned", unit="seed")
        bounds = gradient_boundary(agg.boundary)
        for label, part in ps.split(gbands, gg):
            key = part[gg].iloc[0] if gg else None
            mine = bounds[(bounds[gg] == key).all(axis=1)] if gg else bounds
            rows.append(("gradient", label, part, mine))
    return rows


def plot_boundary(agg: Aggregation) -> plt.Figure | None:
    """Learned fraction vs n per lag (one line per state size) and the learning boundary
    per state size, one row per other swept setting; with a reservoir control, a last row
    of what was learned through the gradient (trained - control, paired by seed) and its
    boundary. None without probe values or with a single swept n."""
    deps = agg.deps.dropna(subset=["learned"])
    if deps.empty or deps["num_steps"].nunique() < 2:
        return None
    lags = sorted(deps["lag"].unique())
    colors = ps.colors_for("state_size", deps["state_size"])
    rows = _boundary_rows(agg, deps)
    fig, axes = plt.subplots(len(rows), len(lags) + 1, squeeze=False, layout="constrained",
                             figsize=(2.7 * (len(lags) + 1) + 0.6, 2.5 * len(rows) + 1.4))
    top = agg.boundary["n_swept_max"].max() + 1
    drawn: set = set()
    for r, (kind, label, part, bounds) in enumerate(rows):
        _boundary_row(axes[r], kind, label, part, lags, colors)
        drawn |= boundary_panel(bounds, lags, ax=axes[r, -1], top=top)
        name = "learning boundary" if kind == "learned" else "boundary of trained − control"
        axes[r, -1].set_title(name + (f"; {label}" if label else ""))
    _share_axes(axes, [k for k, *_ in rows], len(lags))
    smallest = agg.boundary["n_swept_min"].min() if agg.boundary["n_swept_min"].nunique() == 1 else None
    _legend(fig, colors, boundary_key(lags, drawn, smallest), list(axes.flat))
    shade = shading(len(colors), int(rows[0][2]["units"].max()))
    notes = [f"learned fraction at the end against n: mean over seeds, {shade}; dotted: n = lag; boundary: smallest n "
             "from which the mean stays ≥ 0.5 / ≥ 0.9, bars: range of the same over every seed (a seed that never "
             "gets there reaches the top row)"]
    if any(k == "gradient" for k, *_ in rows):
        pairs = int(max(p["units"].max() for k, _, p, _ in rows if k == "gradient"))
        notes.append(f"trained − control: each seed's learned fraction minus its reservoir control's (recurrent "
                     f"weights frozen), mean over up to {pairs} seed pairs, shaded: their range; its boundary the same "
                     "on these differences")
    ps.suptitle(fig, "Where each dependency gets learned", ps.context(agg, *notes))
    return fig


def _boundary_row(axes, kind: str, label: str, part: pd.DataFrame, lags: list, colors: dict) -> None:
    """One row of the boundary figure's fraction panels (one per lag)."""
    for col, lag in enumerate(lags):
        ax, sub = axes[col], part[part["lag"] == lag]
        head = f"lag {lag}" + (": trained − control" if kind == "gradient" else "")
        ax.set_title(head + (f", {label}" if label else ""))
        if sub.empty:  # e.g. another rule's dependency: say so rather than draw an empty frame
            ax.text(0.5, 0.5, "no run with a probe\nof this dependency here", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            ax.set_axis_off()
            continue
        learned_panel(sub, "state_size", colors, lag, ax=ax,
                      ylabel="learned fraction" if kind == "learned" else "trained − control")
        if kind == "gradient":  # a difference can fall below 0: the control knew more
            ax.axhline(0.0, color="0.3", linewidth=0.8)
            ax.set_ylim(max(-1.1, min(-0.1, float(part["min"].min()) - 0.05)), 1.1)


def _share_axes(axes, kinds: list[str], n_lags: int) -> None:
    """One n axis in every row; one fraction axis per kind of row (differences have their own)."""
    for kind in dict.fromkeys(kinds):
        panels = [ax for r, k in enumerate(kinds) if k == kind for ax in axes[r, :n_lags] if ax.axison]
        for ax in panels[1:]:
            ax.sharey(panels[0])
    first = axes[0, 0]
    for i, ax in enumerate(axes[:, :n_lags].flat):
        if i:
            ax.sharex(first)
        if i % n_lags:
            ax.set_ylabel("")
    for ax in axes[:-1].flat:  # every row shares the x axes: name them once, under the last row
        ax.set_xlabel("")


def shading(lines: int, seeds: int) -> str:
    """What a learned-fraction panel's shading is (see :func:`learned_panel`), for a subtitle."""
    if seeds < 2:
        return "one seed: no spread"
    return f"shaded: range over the {seeds} seeds" if lines <= MAX_BANDS else \
        f"no shading with {lines} lines (per-seed values in runs.csv)"


def _onset_limits(deps: pd.DataFrame) -> tuple[float, float]:
    """(floor, ceiling) of the onset axis: room below the earliest onset for 'learned without
    training' and above the end of training for 'not learned by the end'."""
    on = deps.loc[deps["onset"] > 0, "onset"]
    ends = deps["onset_at"].dropna()
    first = deps["checkpoint_1"].dropna() if "checkpoint_1" in deps else pd.Series(dtype=float)
    low = min([v for v in (on.min(), first.min()) if pd.notna(v)], default=1.0)
    high = max([v for v in (ends.max(), on.max()) if pd.notna(v)], default=10.0)
    return low / 3, high * 3


def onset_panel(points: pd.DataFrame, medians: pd.DataFrame, colors: dict, limits: tuple[float, float],
                ax=None) -> set:
    """One dependency's onsets (data seen, log y) against num_steps, one colour per state
    size: every seed as a point (hollow: before the first checkpoint, only known to lie
    there; an up triangle at the top: censored, not learned by the end; a diamond at the
    bottom: learned without training), and the median over all seeds as a line (absent
    where half or more did not learn). Returns the point kinds drawn."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2.6))
    sizes = sorted(points["state_size"].unique())
    floor, ceiling = limits
    drawn = set()
    for k, d in enumerate(sizes):
        shift = 0.5 * (k - (len(sizes) - 1) / 2) / max(1, len(sizes))  # state sizes side by side
        p = points[points["state_size"] == d]
        # Censored and untrained seeds share one y: spread them a little so that each one shows.
        rank = p.groupby(["num_steps", "onset_status"]).cumcount().to_numpy(float)
        size = p.groupby(["num_steps", "onset_status"])["onset_status"].transform("size").to_numpy(float)
        same_y = p["onset_status"].isin([UNTRAINED, CENSORED]).to_numpy()
        x = p["num_steps"].to_numpy(float) + shift + np.where(same_y, 0.3 * (rank - (size - 1) / 2) /
                                                                max(1, len(sizes)), 0.0)
        for status, y, marker, face in ((REACHED, p["onset"], "o", None), (FIRST, p["onset"], "o", "white"),
                                        (UNTRAINED, np.full(len(p), floor * 1.5), "D", None),
                                        (CENSORED, np.full(len(p), ceiling / 1.5), NOT_REACHED, "white")):
            sel = (p["onset_status"] == status).to_numpy()
            if sel.any():
                ax.plot(x[sel], np.asarray(y)[sel], marker, color=colors[d], markersize=3.5, alpha=0.8,
                        markerfacecolor=face or colors[d], linestyle="")
                drawn.add(status)
        m = medians[medians["state_size"] == d]
        ax.plot(m["num_steps"] + shift, m["onset_median"], color=colors[d], linewidth=1.1)
    ax.set_yscale("log")
    ax.set_ylim(floor, ceiling)
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(ps.LABELS["num_steps"])
    ax.set_ylabel("onset (data seen)")
    return drawn


ONSET_KEY = {REACHED: ("o", None, "a seed's onset"), FIRST: ("o", "white", "before the first checkpoint"),
             UNTRAINED: ("D", None, "learned without training"),
             CENSORED: (NOT_REACHED, "white", "not learned by the end (censored)")}


def plot_onset(agg: Aggregation) -> plt.Figure | None:
    """When each dependency is learned, one panel per lag and other swept setting (every
    seed, censored ones included); None when no run has checkpoints."""
    deps = agg.deps[agg.deps["onset_status"].isin([REACHED, FIRST, UNTRAINED, CENSORED])] \
        if "onset_status" in agg.deps else agg.deps.iloc[:0]
    if deps.empty:
        return None
    groups, lags = agg.panel_cols, sorted(deps["lag"].unique())
    medians = onset_table(deps, [*groups, "lag", "state_size", "num_steps"])
    colors = ps.colors_for("state_size", deps["state_size"])
    panels = ps.split(deps, [*groups, "lag"])
    per_row = ps.columns_per_group(len(panels), len(lags))  # one column per dependency
    fig, axes, spare = ps.panel_figure(len(panels), panel_w=ps.panel_width(per_row or len(panels)), panel_h=2.6,
                                       cols=per_row, sharex=True, sharey=True)
    limits = _onset_limits(deps)
    marks = {"first checkpoint after the start": (deps["checkpoint_1"].median(), "--"),
             "end of training": (deps["data_end"].max(), "-")}
    marks = {k: v for k, v in marks.items() if pd.notna(v[0])}
    drawn: set = set()
    for ax, (label, part) in zip(axes, panels):
        key = part[[*groups, "lag"]].iloc[0]
        med = medians[(medians[[*groups, "lag"]] == key).all(axis=1)]
        drawn |= onset_panel(part, med, colors, limits, ax=ax)
        for y, style in marks.values():
            ax.axhline(y, color="0.6", linewidth=0.8, linestyle=style)
        ax.set_title(label.replace("lag=", "lag "))
    ps.outer_labels(axes, fig.axes[0].get_gridspec().ncols)
    key = [Line2D([], [], color="0.3", marker=m, markerfacecolor=face or "0.3", linestyle="", label=text)
           for status, (m, face, text) in ONSET_KEY.items() if status in drawn]
    key.append(Line2D([], [], color="0.3", label="median over all seeds"))
    key += [Line2D([], [], color="0.6", linestyle=style, label=name) for name, (_, style) in marks.items()]
    ps.value_legend(fig, "state_size", colors, spare, axes, marker="o", extra=key)
    learned = int(deps["onset_status"].isin([REACHED, FIRST, UNTRAINED]).sum())
    ps.suptitle(fig, "When each dependency is learned",
                ps.context(agg, f"onset: data seen from which the learned fraction at held-out checkpoints stays "
                           f"≥ {agg.onset_threshold:g}; {learned} of {len(deps)} run-lag pairs learned; line: median "
                           "over all seeds, censored ones counted as later (none unless more than half learned)"))
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
    shade = shading(len(colors), int(bands["units"].max()))
    ps.suptitle(fig, "Which truncation style learns the longest dependency",
                ps.context(agg, f"learned fraction at the end: mean over seeds, {shade}; dotted: n = lag; "
                           "dashed: 0.5 and 0.9"))
    return fig


__all__ = ["boundary_key", "boundary_panel", "learned_panel", "onset_panel", "plot_boundary", "plot_onset",
           "plot_truncation"]
