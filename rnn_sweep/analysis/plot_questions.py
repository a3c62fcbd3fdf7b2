"""Figures of the article's two questions (matplotlib/seaborn only; statistics in :mod:`rnn_sweep.analysis.questions`).

``reservoir.png``: what the gradient learns beyond the reservoir control, per lag over n for
each state size. ``styles.png``: true BPTT at n against TF style at 2n, at equal data, equal
cell evaluations and equal training time. Panel functions take ``ax=None`` and return the
axes; :func:`write_questions` writes the tables and figures a sweep can answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rnn_sweep.analysis import plot_style as ps
from rnn_sweep.analysis.outdir import write_atomic
from rnn_sweep.analysis.questions import question_runs, recurrent_flags, reservoir_table, styles_table

DPI = 130
SIZE_STYLES = ("-", "--", ":", "-.")  # one line style per state size, in order
ZERO = {"color": "0.3", "linewidth": 0.8, "zorder": 0}


def _sizes(table: pd.DataFrame) -> dict:
    """{state size: line style}, in order."""
    sizes = sorted(table["state_size"].dropna().unique())
    return {d: SIZE_STYLES[i % len(SIZE_STYLES)] for i, d in enumerate(sizes)}


def _size_colors(table: pd.DataFrame) -> dict:
    return ps.colors_for("state_size", table["state_size"].dropna().unique())


def _dodge(table: pd.DataFrame, d) -> float:
    """A small x offset per state size, so that their interval bars do not hide each other."""
    sizes = sorted(table["state_size"].dropna().unique())
    return 0.12 * (sizes.index(d) - (len(sizes) - 1) / 2)


def _integer_ticks(ax, values) -> None:
    ticks = sorted({int(v) for v in values if pd.notna(v)})
    if 0 < len(ticks) <= 16:
        ax.set_xticks(ticks)


def _interval(ax, x, mean, low, high, color, style, label) -> None:
    """A mean line with its 95% interval as error bars (NaN bounds: the point alone)."""
    x, mean = np.asarray(x, float), np.asarray(mean, float)
    err = np.vstack([mean - np.asarray(low, float), np.asarray(high, float) - mean])
    ax.errorbar(x, mean, yerr=np.where(np.isfinite(err), err, 0.0), color=color, linestyle=style, marker="o",
                markersize=3.5, linewidth=1.3, capsize=2.5, elinewidth=0.9, label=label)


def _lag_lines(table: pd.DataFrame, lag: int, ax=None) -> tuple:
    """A reservoir panel's axes, ``lag``'s rows, a colour per state size and its rows per state size
    (sorted by n): ``(ax, part, colors, [(d, rows)])``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 2.6))
    part = table[table["lag"] == lag]
    lines = [(d, part[part["state_size"] == d].sort_values("num_steps")) for d in _sizes(part)]
    return ax, part, _size_colors(part), lines


def plot_reservoir_diff(table: pd.DataFrame, lag: int, ax=None):
    """Trained minus control learned fraction of ``lag`` over n, one line per state size, with t 95% intervals."""
    ax, part, colors, lines = _lag_lines(table, lag, ax)
    for d, g in lines:
        _interval(ax, g["num_steps"] + _dodge(part, d), g["diff_mean"], g["diff_low"], g["diff_high"], colors[d],
                  "-", f"d = {d:g}")
    ax.axhline(0.0, **ZERO)
    _integer_ticks(ax, part["num_steps"])
    ax.axvline(lag + 0.5, color="0.6", linestyle=":", linewidth=0.8)  # n > lag: a gradient path reaches X[t-lag]
    ax.set_title(f"lag {lag}: learned through the gradient")
    ax.set_xlabel(ps.LABELS["num_steps"])
    ax.set_ylabel("trained − control (learned fraction)")
    return ax


def plot_reservoir_levels(table: pd.DataFrame, lag: int, ax=None):
    """The two arms themselves: trained (solid) and control (dashed, open markers) learned fraction of
    ``lag`` over n, one colour per state size."""
    ax, part, colors, lines = _lag_lines(table, lag, ax)
    for d, g in lines:
        ax.plot(g["num_steps"], g["trained_mean"], color=colors[d], linestyle="-", marker="o", markersize=3,
                label=f"trained, d = {d:g}")
        ax.plot(g["num_steps"], g["control_mean"], color=colors[d], linestyle="--", marker="s", markersize=3,
                markerfacecolor="white", label=f"control, d = {d:g}")
    ax.axhline(0.0, **ZERO)
    _integer_ticks(ax, part["num_steps"])
    ax.set_title(f"lag {lag}: trained and reservoir control")
    ax.set_xlabel(ps.LABELS["num_steps"])
    ax.set_ylabel("learned fraction (mean over seeds)")
    return ax


def reservoir_figure(table: pd.DataFrame, subtitle: str) -> plt.Figure | None:
    """Top row: both arms per lag; bottom row: their paired difference with intervals."""
    if table.empty:
        return None
    lags = sorted(table["lag"].unique())
    with plt.rc_context(ps.FONT):
        fig, axes = plt.subplots(2, len(lags), figsize=(3.6 * len(lags), 5.6), squeeze=False, sharex=True)
        for j, lag in enumerate(lags):
            plot_reservoir_levels(table, lag, axes[0, j])
            plot_reservoir_diff(table, lag, axes[1, j])
        axes[0, -1].legend(loc="best", fontsize=7)
        axes[1, -1].legend(loc="best", fontsize=7)
        ps.suptitle(fig, "What the gradient learns beyond a random recurrent state (trained − reservoir control)",
                    subtitle)
        fig.tight_layout()
    return fig


STYLE_ROWS = (("", "equal data (whole runs)"), ("_cells", "equal cell evaluations"),
              ("_time", "equal training time"))


def plot_styles_values(table: pd.DataFrame, budget: str = "", metric: str = "heldout", ax=None):
    """``metric`` of true BPTT at n (red) and TF style at 2n (blue) over n, at a ``budget``
    (``""``, ``"_cells"``, ``"_time"``), one line style per state size; means over the pairs
    with their t 95% intervals."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 2.6))
    for d, style in _sizes(table).items():
        g = table[table["state_size"] == d].sort_values("n")
        for side, label in (("true", "true at n"), ("tf", "TF at 2n")):
            p = f"{metric}{budget}_{side}"
            shift = _dodge(table, d) + (0.05 if side == "tf" else -0.05)
            _interval(ax, g["n"] + shift, g[p], g[f"{p}_low"], g[f"{p}_high"], ps.method_color(side), style,
                      f"{label}, d = {d:g}")
    _integer_ticks(ax, table["n"])
    ax.set_xlabel("n (true BPTT; TF style at 2n)")
    ax.set_ylabel("held-out loss (nats)" if metric == "heldout" else "learned fraction")
    return ax


def plot_styles_diff(table: pd.DataFrame, budget: str = "", metric: str = "heldout", ax=None):
    """Paired difference true(n) − TF(2n) of ``metric`` with its t 95% interval and a zero line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 2.6))
    colors = _size_colors(table)
    for d in _sizes(table):
        g = table[table["state_size"] == d].sort_values("n")
        p = f"{metric}{budget}_diff"
        _interval(ax, g["n"] + _dodge(table, d), g[p], g[f"{p}_low"], g[f"{p}_high"], colors[d], "-", f"d = {d:g}")
    ax.axhline(0.0, **ZERO)
    _integer_ticks(ax, table["n"])
    ax.set_xlabel("n (true BPTT; TF style at 2n)")
    ax.set_ylabel("true(n) − TF(2n)" + (" (nats)" if metric == "heldout" else ""))
    return ax


def styles_figure(table: pd.DataFrame, subtitle: str) -> plt.Figure | None:
    """Rows: equal data, equal cell evaluations, equal time; columns: held-out loss of both
    styles, its paired difference, the longest lag's paired difference."""
    if table.empty or not table["n_pairs"].gt(0).any():
        return None
    rows = [(b, name) for b, name in STYLE_ROWS if f"heldout{b}_true" in table]
    lag = int(table["lag"].iloc[0]) if pd.notna(table["lag"].iloc[0]) else None
    with plt.rc_context(ps.FONT):
        fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 2.7 * len(rows)), squeeze=False, sharex=True)
        for i, (budget, name) in enumerate(rows):
            plot_styles_values(table, budget, "heldout", axes[i, 0]).set_title(f"held-out loss, {name}")
            plot_styles_diff(table, budget, "heldout", axes[i, 1]).set_title(f"held-out loss: true − TF, {name}")
            if lag is not None and f"learned{budget}_diff" in table:
                plot_styles_diff(table, budget, "learned", axes[i, 2]).set_title(f"lag {lag}: true − TF, {name}")
            else:
                axes[i, 2].set_visible(False)
        axes[0, 0].legend(loc="best", fontsize=7)
        axes[0, 1].legend(loc="best", fontsize=7)
        ps.suptitle(fig, "Does true BPTT at n match TF-style BPTT at 2n? (paired by seed)", subtitle)
        fig.tight_layout()
    return fig


def budget_text(runs: pd.DataFrame) -> str:
    """'1 epoch × 1M time steps' from the runs' ``epochs`` and ``data_length`` (empty when unknown)."""
    epochs = sorted({int(e) for e in pd.to_numeric(runs.get("epochs"), errors="coerce").dropna()}) \
        if "epochs" in runs else []
    length = sorted({int(x) for x in pd.to_numeric(runs.get("data_length"), errors="coerce").dropna()}) \
        if "data_length" in runs else []
    if not epochs or not length:
        return "training budget not recorded"
    e = "-".join(map(str, sorted({epochs[0], epochs[-1]})))
    steps = "/".join(f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" for x in length)
    return f"{e} epoch{'s' if epochs[-1] != 1 else ''} × {steps} time steps of training data"


def _seeds(table: pd.DataFrame) -> str:
    pairs = table["n_pairs"][table["n_pairs"] > 0]
    lo, hi = (int(pairs.min()), int(pairs.max())) if len(pairs) else (0, 0)
    return f"{lo} seed pairs per point" if lo == hi else f"{lo}-{hi} seed pairs per point"


def _formats(formats) -> list[str]:
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    return [f.strip().lstrip(".") for f in items if f and f.strip()]


def _save(fig: plt.Figure, out_dir: Path, name: str, formats: Iterable[str]) -> list[Path]:
    try:
        return [write_atomic(out_dir / f"{name}.{fmt}", lambda tmp, f=fmt: fig.savefig(tmp, format=f, dpi=DPI))
                for fmt in formats]
    finally:
        plt.close(fig)


def _has_both_arms(runs: pd.DataFrame) -> bool:
    return set(recurrent_flags(runs)) == {True, False}


def write_questions(runs: pd.DataFrame, run_dirs: list[Path], out_dir: Path, formats="png") -> list[Path]:
    """Write what the sweep can answer: ``reservoir.csv`` and ``reservoir.<fmt>`` when it has
    trained and control runs; ``styles.csv`` and ``styles.<fmt>`` when it has true BPTT at n
    and TF style at 2n. Each file is written to a temporary name and renamed.

    Args:
        runs: the aggregator's runs table (one row per run).
        run_dirs: the run directories (their summary.json and checkpoints.csv are read).
        out_dir: where to write (created if missing).
        formats: figure formats, e.g. ``("png", "pdf")`` or ``"png,pdf"``.

    Returns:
        The paths written, tables first.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = question_runs(runs, [Path(d) for d in run_dirs])
    budget, written = budget_text(full), []
    if _has_both_arms(full):
        table = reservoir_table(full)
        written.append(write_atomic(out_dir / "reservoir.csv", lambda tmp: table.to_csv(tmp, index=False)))
        fig = reservoir_figure(table, f"{budget}; {_seeds(table)}; bars: Student-t 95% over the paired "
                                      "differences; dotted: n = lag")
        written += _save(fig, out_dir, "reservoir", _formats(formats)) if fig is not None else []
    if {"true", "tf"} <= set(full["style"].dropna()):
        table = styles_table(full)
        if len(table) and table["n_pairs"].gt(0).any():
            written.append(write_atomic(out_dir / "styles.csv", lambda tmp: table.to_csv(tmp, index=False)))
            fig = styles_figure(table, f"{budget}; {_seeds(table)}; bars: Student-t 95%; equal compute: both "
                                       "runs read from their held-out checkpoints at the smaller budget (time: a run's "
                                       "share of its pack's compiled epochs)")
            written += _save(fig, out_dir, "styles", _formats(formats)) if fig is not None else []
    return written
