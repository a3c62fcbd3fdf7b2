"""The article's two questions as paired comparisons (pandas/NumPy/SciPy only: no TensorFlow, no Hydra).

(a) **Reservoir control** (:func:`reservoir_table`): how much of a dependency is learned
*through the gradient*? A run with ``model.train_recurrent=false`` keeps its cell at the
seeded initial weights and trains only the output layer; with the same seed it starts from
the same weights and sees the same data as the trained run. Per (n, d, lag) the table gives
the trained run's learned fraction minus its control's, paired by seed.

(b) **Truncation styles** (:func:`styles_table`): does true BPTT(n, 1) at n match
TF-style BPTT(2n, 2n)? Pairs (true at n, TF at 2n) with the same state size and seed; held-out
loss and the learned fraction of the longest lag, at equal data (the whole run) and at equal
compute (both runs read from their checkpoints at the smaller of the two budgets).

Cell evaluations per update (:func:`cells_per_update`, per row of the batch; a backward step
through a cell -- its vector-Jacobian product, which in TF style includes recomputing the
cell -- counts as one evaluation):

* TF style BPTT(n, n): one update trains a window of n positions: n forward cells and n
  backward cells, ``2n``.
* true BPTT(n, 1) with u = ``truncation.update_every`` (default n): one update trains u
  positions; the u sub-sequences of n cells are unrolled forward and back as one batch
  (``2un``), after the forward pass without gradient that gives their start states (``u``):
  ``u(2n + 1)``.

Per position of data that is 2 against 2n + 1: with the same data, true BPTT at n costs
(2n + 1)/2 times the cell evaluations of TF style at 2n. This counts BPTT(n, 1) as defined
(and as the Keras cells compute it). The scratch cell gets the same gradient from one
trajectory per update (:func:`rnn_sweep.model.truncation.true_block_grad_steps`: u + n
forward cells and n backward steps of the u sub-sequences as one block, reading the recorded
states), so for it "equal time" is the comparison that reflects what the code spent.

Every interval is Student-t, 95%, with k - 1 degrees of freedom over the k paired
differences; with fewer than 2 pairs it is NaN and the row's ``note`` says so. Runs without
a partner are named in ``unpaired``, never dropped silently. :func:`question_runs` adds the
columns these tables need that the aggregator's runs table lacks, read from each run's
``summary.json`` (and ``checkpoints.csv`` for equal compute).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

LAG_COLUMN = re.compile(r"^learned_lag(\d+)$")
CONFIDENCE = 0.95
# Identity columns of the runs table; dotted columns (varying config fields) are identity too.
IDENTITY = ("rule", "backend", "style", "cell", "num_steps", "state_size", "seed")
NOT_IDENTITY = {"model.train_recurrent", "truncation.update_every", "truncation.style", "model.backend"}
FEW_PAIRS = "fewer than 2 pairs: no interval"


def cells_per_update(style: str, n: int, update_every: int | None = None) -> int:
    """Cell evaluations of one update, per row of the batch (module docstring): TF ``2n``,
    true ``u(2n + 1)`` with u = ``update_every`` (None: n)."""
    if style == "tf":
        return 2 * n
    u = n if update_every is None or (isinstance(update_every, float) and math.isnan(update_every)) \
        else int(update_every)
    return u * (2 * n + 1)


def t_interval(diffs) -> tuple[float, float, float, float]:
    """(mean, sample sd, low, high) of paired differences: Student-t 95% with k-1 dof; NaN bounds for k < 2."""
    d = np.asarray([x for x in diffs if np.isfinite(x)], dtype=float)
    if not len(d):
        return math.nan, math.nan, math.nan, math.nan
    mean = float(d.mean())
    if len(d) < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(d.std(ddof=1))
    half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1)) * sd / math.sqrt(len(d))
    return mean, sd, mean - half, mean + half


# ---------------------------------------------------------------- reading the run directories

def _summary(run_dir: Path) -> dict:
    try:
        data = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def run_facts(run_dir: Path) -> dict:
    """What the tables need from one run's summary.json: ``train_recurrent`` (True when the
    config lacks it, None when there is no readable summary),
    ``update_every`` (true style: u, the config's null = n; TF: NaN), ``batch_size``, ``train_s``
    and ``pack_size`` (the pack's training seconds, checkpoints included, and its size), ``epoch_s``
    (the pack's compiled epochs alone, summed), ``group_epoch_s`` and ``group_size`` (those of the
    run's n-group inside its pack), ``stop_reason``, ``epochs``,
    ``data_length`` (the training budget), ``run_dir``."""
    s = _summary(run_dir)
    cfg = s.get("config") if isinstance(s.get("config"), dict) else {}
    sect = {k: (cfg.get(k) if isinstance(cfg.get(k), dict) else {}) for k in ("model", "truncation", "train")}
    timings = s.get("timings") if isinstance(s.get("timings"), dict) else {}
    style = s.get("style", sect["truncation"].get("style"))
    n = s.get("num_steps", cfg.get("num_steps"))
    every = sect["truncation"].get("update_every")
    # Unknown (no readable summary) stays None, so that the runs table's config column decides.
    recurrent = sect["model"].get("train_recurrent", True) if cfg else None
    return {"run_dir": str(run_dir), "train_recurrent": recurrent,
            "update_every": (every if every is not None else n) if style == "true" else math.nan,
            "batch_size": sect["train"].get("batch_size", math.nan),
            "train_s": timings.get("train_s", math.nan), "pack_size": timings.get("pack_size", math.nan),
            "epoch_s": _total(timings.get("epoch_s")),
            # the compiled epochs of the run's own n-group (a pack holds one group per n) and its size
            "group_epoch_s": _total(timings.get("group_epoch_s")) if "group_epoch_s" in timings else math.nan,
            "group_size": timings.get("group_size", math.nan),
            "stop_reason": s.get("stop_reason"), "epochs": sect["train"].get("epochs", math.nan),
            "data_length": (cfg.get("data") or {}).get("length", math.nan) if isinstance(cfg.get("data"), dict)
            else math.nan}


def _total(values) -> float:
    ok = isinstance(values, list) and values and all(isinstance(v, (int, float)) for v in values)
    return float(sum(values)) if ok else math.nan


def _row_dirs(runs: pd.DataFrame) -> list[list[str]]:
    """Candidate directories of each runs-table row: source_dir/run_id, and without the source
    label the aggregator prefixes when it reads several sweeps."""
    out = []
    for rec in runs.to_dict("records"):
        base, rid, label = str(rec.get("source_dir") or ""), str(rec.get("run_id") or ""), str(rec.get("source") or "")
        cands = [os.path.join(base, rid)]
        if label and rid.startswith(label + "/"):
            cands.append(os.path.join(base, rid[len(label) + 1:]))
        out.append([os.path.realpath(c) for c in cands])
    return out


def run_dirs_of(runs: pd.DataFrame) -> list[Path]:
    """The run directories of the aggregator's runs table that exist (see :func:`_row_dirs`)."""
    return [Path(c) for cands in _row_dirs(runs) for c in dict.fromkeys(cands) if os.path.isdir(c)]


def question_runs(runs: pd.DataFrame, run_dirs: list[Path]) -> pd.DataFrame:
    """The runs table with :func:`run_facts` columns added (matched by directory), plus
    ``train_s_run`` (``train_s / pack_size``: a run's share of its pack's training time, an
    approximation: the members of a pack train as one program), ``epoch_s_run`` (the run's share
    of its n-group's compiled epochs alone: no checkpoints, data or logging) and ``cells_per_update``.
    A row whose directory is not among ``run_dirs`` gets NaN facts (``train_recurrent`` True)."""
    facts = {os.path.realpath(d): run_facts(Path(d)) for d in run_dirs}
    blank = run_facts(Path(os.devnull)) | {"run_dir": None}  # every fact unknown
    rows = [next((facts[c] for c in cands if c in facts), blank) for cands in _row_dirs(runs)]
    added = pd.DataFrame(rows, index=runs.index)
    out = runs.drop(columns=[c for c in added if c in runs], errors="ignore").join(added)
    pack = pd.to_numeric(out["pack_size"], errors="coerce")
    out["train_s_run"] = pd.to_numeric(out["train_s"], errors="coerce") / pack
    # A pack trains one n-group after another: a run's share of the arithmetic is its group's
    # epochs over the group's size; records without groups (one n per pack) share the pack's.
    group = pd.to_numeric(out["group_epoch_s"], errors="coerce") / pd.to_numeric(out["group_size"], errors="coerce")
    out["epoch_s_run"] = group.fillna(pd.to_numeric(out["epoch_s"], errors="coerce") / pack)
    out["cells_per_update"] = [cells_per_update(s, int(n), u) if pd.notna(n) else math.nan
                               for s, n, u in zip(out["style"], out["num_steps"], out["update_every"])]
    return out


def lag_columns(runs: pd.DataFrame) -> dict[int, str]:
    """lag -> its ``learned_lag<L>`` column, shortest lag first."""
    found = {int(m.group(1)): c for c in runs.columns if (m := LAG_COLUMN.match(c))}
    return dict(sorted(found.items()))


def _identity(runs: pd.DataFrame, drop: set[str]) -> list[str]:
    cols = [c for c in IDENTITY if c in runs] + sorted(c for c in runs if "." in c and c not in NOT_IDENTITY)
    return [c for c in cols if c not in drop]


def _groups(runs: pd.DataFrame, identity: list[str], fixed: tuple[str, ...]) -> list[str]:
    """Identity columns (seed excluded) that vary among the runs, then ``fixed``."""
    varying = [c for c in identity if c not in (*fixed, "seed") and runs[c].nunique(dropna=False) > 1]
    return [*varying, *fixed]


def _unpaired(rows: pd.DataFrame, label: str) -> list[str]:
    return [f"{label} seed {s}" for s in sorted(rows["seed"].tolist(), key=str)]


def _first_of_each(frame: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the first run of each pairing key, the others): two sweeps read together can hold the
    same configuration and seed twice, and a pair is one run of each arm."""
    dup = frame.duplicated(key, keep="first")
    return frame[~dup], frame[dup]


def _doubles(rows: pd.DataFrame, label: str) -> list[str]:
    return [f"{label} seed {s}: a second run of the same configuration, not used" for s in rows["seed"]]


def _paired(prefix: str, a, b, names: tuple[str, str]) -> dict:
    """Means of ``a`` and ``b`` over the pairs where both are finite (each with its t interval,
    ``_low``/``_high``), and their paired difference a - b with its t interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    out = {}
    for name, values in zip(names, (a[ok], b[ok])):
        mean, _, low, high = t_interval(values)
        out.update({f"{prefix}_{name}": mean, f"{prefix}_{name}_low": low, f"{prefix}_{name}_high": high})
    mean, sd, low, high = t_interval(a[ok] - b[ok])
    return out | {f"{prefix}_diff": mean, f"{prefix}_diff_sd": sd, f"{prefix}_diff_low": low,
                  f"{prefix}_diff_high": high, f"{prefix}_pairs": int(ok.sum())}


def _note(n_pairs: int, unpaired: list[str]) -> str:
    return "; ".join(([FEW_PAIRS] if n_pairs < 2 else []) + ([f"{len(unpaired)} run(s) without a partner"]
                                                            if unpaired else []))


def _flag(value) -> bool | None:
    """A config boolean as the schema writes it (True/False, 'true'/'false'); None when unknown."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    return True if text == "true" else False if text == "false" else None


def recurrent_flags(runs: pd.DataFrame) -> pd.Series:
    """``train_recurrent`` as booleans: the summary's (:func:`run_facts`), else the runs table's
    config column ``model.train_recurrent``, else True (the default, and older runs)."""
    none = pd.Series(None, index=runs.index, dtype=object)
    facts, config = runs.get("train_recurrent", none), runs.get("model.train_recurrent", none)
    return pd.Series([next((f for f in (_flag(a), _flag(b)) if f is not None), True) for a, b in zip(facts, config)],
                     index=runs.index, dtype=bool)


RESERVOIR_COLUMNS = ["lag", "n_pairs", "trained_mean", "control_mean", "diff_mean", "diff_sd", "diff_low",
                     "diff_high", "unpaired", "note"]


def reservoir_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Learned through the gradient: trained minus reservoir control, paired by seed.

    Args:
        runs: one row per run with ``num_steps``, ``state_size``, ``seed``, ``learned_lag<L>``
            columns and ``train_recurrent`` (or ``model.train_recurrent``; absent = True).
            Every other identity column (``IDENTITY`` and dotted config fields) must agree
            between partners.

    Returns:
        One row per (varying identity columns, num_steps, state_size, lag): ``n_pairs`` (seeds
        with both runs and both values), ``trained_mean``, ``control_mean`` (over those pairs),
        ``diff_mean``, ``diff_sd``, ``diff_low``, ``diff_high`` (trained - control, t 95%),
        ``unpaired`` (runs without a usable partner: ``trained seed 3``), ``note``.
    """
    lags = lag_columns(runs)
    runs = runs.assign(train_recurrent=recurrent_flags(runs), **{c: _col(runs, c) for c in lags.values()})
    identity = _identity(runs, drop={"train_recurrent"})
    groups = _groups(runs, identity, ("num_steps", "state_size"))
    rows = []
    for key, cell in runs.groupby(groups, dropna=False, sort=True):
        trained, twice = _first_of_each(cell[cell["train_recurrent"]], identity)
        control, again = _first_of_each(cell[~cell["train_recurrent"]], identity)
        both = trained.merge(control, on=identity, suffixes=("_t", "_c"))
        alone = (_unpaired(trained[~trained["seed"].isin(both["seed"])], "trained")
                 + _unpaired(control[~control["seed"].isin(both["seed"])], "control")
                 + _doubles(twice, "trained") + _doubles(again, "control"))
        for lag, col in lags.items():
            stat = _paired("x", both[f"{col}_t"], both[f"{col}_c"], ("t", "c"))
            missing = [f"seed {s}: no value" for s, a, b in zip(both["seed"], both[f"{col}_t"], both[f"{col}_c"])
                       if not (np.isfinite(a) and np.isfinite(b))]
            unpaired = alone + missing
            rows.append({**dict(zip(groups, key if isinstance(key, tuple) else (key,))), "lag": lag,
                         "n_pairs": stat["x_pairs"], "trained_mean": stat["x_t"], "control_mean": stat["x_c"],
                         "diff_mean": stat["x_diff"], "diff_sd": stat["x_diff_sd"], "diff_low": stat["x_diff_low"],
                         "diff_high": stat["x_diff_high"], "unpaired": "; ".join(unpaired),
                         "note": _note(stat["x_pairs"], unpaired)})
    return pd.DataFrame(rows, columns=[*groups, *RESERVOIR_COLUMNS])


# ---------------------------------------------------------------- (b) true BPTT at n vs TF style at 2n

def _read_csv(path: Path, needed: set[str]) -> pd.DataFrame | None:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    return frame if needed <= set(frame.columns) else None


def equal_compute(true_dir, tf_dir, lag: int, cells: tuple[float, float], seconds: tuple[float, float]) -> dict:
    """Both runs of a pair at the same compute, read from their ``checkpoints.csv``.

    Budget by cell evaluations: the smaller of the two runs' totals (updates x ``cells``, the
    cells per update and row times the rows of each), found on each run's checkpoints by
    their update counts. Budget by time: the smaller of the two runs' ``seconds`` (their share
    of the compiled epochs' time), taken as the same fraction of each run's data (a run's
    time grows linearly with its data; the first epoch's compiling is spread over it). Each
    run's held-out loss and lag fraction are interpolated linearly between its checkpoints
    at the data point of the budget. NaN where a file or a time is missing.

    Returns:
        ``{heldout_cells_true, heldout_cells_tf, learned_cells_true, learned_cells_tf}`` and the
        same with ``time``.
    """
    need = {"data_steps", "updates", "heldout_loss"}
    cps = [_read_csv(Path(d) / "checkpoints.csv", need) if isinstance(d, str) and d else None
           for d in (true_dir, tf_dir)]
    out = {f"{m}_{b}_{s}": math.nan for m in ("heldout", "learned") for b in ("cells", "time") for s in ("true", "tf")}
    if any(c is None or c.empty for c in cps):
        return out
    spent = [c["updates"].to_numpy(float) * k for c, k in zip(cps, cells)]
    budget = min(s[-1] for s in spent)
    data = {"cells": [np.interp(budget, s, c["data_steps"].to_numpy(float)) for s, c in zip(spent, cps)]}
    if all(np.isfinite(seconds)) and min(seconds) > 0:
        data["time"] = [c["data_steps"].iloc[-1] * min(seconds) / t for c, t in zip(cps, seconds)]
    for budget_name, points in data.items():
        for side, cp, x in zip(("true", "tf"), cps, points):
            steps = cp["data_steps"].to_numpy(float)
            out[f"heldout_{budget_name}_{side}"] = float(np.interp(x, steps, cp["heldout_loss"].to_numpy(float)))
            col = f"learned_{lag}"
            if col in cp:
                vals = pd.to_numeric(cp[col], errors="coerce").to_numpy(float)
                ok = np.isfinite(vals)
                out[f"learned_{budget_name}_{side}"] = (float(np.interp(x, steps[ok], vals[ok])) if ok.any()
                                                        else math.nan)
    return out


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(frame[name], errors="coerce") if name in frame else pd.Series(math.nan, index=frame.index)


def _pair_styles(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """(pairs: true at n merged with TF at 2n, suffixes _true/_tf; the pairing key; the runs of
    both styles at the n and 2n of pairs present in the sweep, with column ``n``; notes on
    the runs left out as a second run of the same configuration and seed)."""
    key = _identity(runs, drop={"style", "num_steps"})
    steps = _col(runs, "num_steps").astype("Int64")
    true = runs[runs["style"] == "true"].assign(n=steps)
    tf = runs[(runs["style"] == "tf") & (steps % 2 == 0).fillna(False)].assign(n=steps // 2)
    present = set(true["n"]) & set(tf["n"])
    true, twice = _first_of_each(true[true["n"].isin(present)], [*key, "n"])
    tf, again = _first_of_each(tf[tf["n"].isin(present)], [*key, "n"])
    pairs = true.merge(tf, on=[*key, "n"], suffixes=("_true", "_tf"))
    return pairs, key, pd.concat([true, tf]), pd.concat([twice, again])


def _compute_columns(pairs: pd.DataFrame) -> dict:
    """Seconds per run (training; compiled epochs) and cell evaluations (whole run: per update x
    updates x rows); the ratios true / tf (time: compiled epochs)."""
    out = {}
    for side in ("true", "tf"):
        cells = (_col(pairs, f"cells_per_update_{side}") * _col(pairs, f"steps_{side}")
                 * _col(pairs, f"batch_size_{side}"))
        out[f"cells_per_update_{side}"] = _col(pairs, f"cells_per_update_{side}").mean()
        out[f"cells_{side}"] = cells.mean()
        out[f"train_s_run_{side}"] = _col(pairs, f"train_s_run_{side}").mean()
        out[f"epoch_s_run_{side}"] = _col(pairs, f"epoch_s_run_{side}").mean()
        pairs = pairs.assign(**{f"_cells_{side}": cells})
    out["cells_ratio"] = (pairs["_cells_true"] / pairs["_cells_tf"]).mean()
    out["time_ratio"] = (_col(pairs, "epoch_s_run_true") / _col(pairs, "epoch_s_run_tf")).mean()
    return out


def _at_equal_compute(pairs: pd.DataFrame, lag: int) -> dict:
    """Paired statistics of both runs at equal cell evaluations and at equal training time."""
    if "run_dir_true" not in pairs:
        return {}
    rows = [equal_compute(a, b, lag, (ca * ba, cb * bb), (ta, tb)) for a, b, ca, ba, cb, bb, ta, tb in zip(
        pairs["run_dir_true"], pairs["run_dir_tf"], _col(pairs, "cells_per_update_true"),
        _col(pairs, "batch_size_true"), _col(pairs, "cells_per_update_tf"), _col(pairs, "batch_size_tf"),
        _col(pairs, "epoch_s_run_true"), _col(pairs, "epoch_s_run_tf"))]
    frame = pd.DataFrame(rows, index=pairs.index)
    out = {}
    for m in ("heldout", "learned"):
        for b in ("cells", "time"):
            stat = _paired(f"{m}_{b}", frame.get(f"{m}_{b}_true", pd.Series(dtype=float)),
                           frame.get(f"{m}_{b}_tf", pd.Series(dtype=float)), ("true", "tf"))
            out.update({k: v for k, v in stat.items() if not k.endswith("_pairs")})
    return out


def styles_table(runs: pd.DataFrame) -> pd.DataFrame:
    """True BPTT at n against TF style at 2n, paired by seed (same state size and every other
    identity column).

    Args:
        runs: one row per run with ``style`` (``true``/``tf``), ``num_steps``, ``state_size``,
            ``seed``, ``heldout_loss``, ``learned_lag<L>``; optional (from :func:`question_runs`):
            ``update_every``, ``steps``, ``batch_size``, ``cells_per_update``, ``train_s_run``,
            ``pack_size``, ``run_dir`` (for the equal-compute columns).

    Returns:
        One row per (varying identity columns, state_size, n) for every n whose TF partner 2n is
        in the sweep: ``n_tf`` (= 2n), ``lag`` (the longest), ``n_pairs``; for ``heldout`` and
        ``learned`` (that lag's fraction): ``<m>_true``, ``<m>_tf`` (means over the pairs, each
        with ``_low``/``_high``: its own t 95% interval), ``<m>_diff`` (true - tf),
        ``<m>_diff_sd``, ``<m>_diff_low``/``_high`` (t 95%); compute: ``train_s_run_*``
        (training seconds, a run's share of its pack's), ``epoch_s_run_*`` (its compiled epochs
        alone), ``cells_per_update_*``, ``cells_*`` (whole run, all rows), ``cells_ratio``,
        ``time_ratio`` (true / tf, time: compiled epochs); at equal compute the same statistics
        as ``<m>_cells_*`` and ``<m>_time_*`` (:func:`equal_compute`); ``unpaired``, ``note``.
    """
    runs = runs.assign(update_every=_col(runs, "update_every"))
    pairs, key, both, doubles = _pair_styles(runs)
    lag, col = max(lag_columns(runs).items(), default=(math.nan, None))
    groups = _groups(both, key, ("state_size",))
    rows = []
    for cell_key, cell in both.groupby([*groups, "n"], dropna=False, sort=True):
        values = dict(zip([*groups, "n"], cell_key))
        mine = pairs.loc[(pairs[[*groups, "n"]] == pd.Series(values)).all(axis=1)]
        paired = set(mine["seed"])
        unpaired = [f"{s} n={int(n)} seed {seed}" for s, n, seed in zip(cell["style"], cell["num_steps"], cell["seed"])
                    if seed not in paired]
        row = {**values, "n_tf": 2 * values["n"], "update_every": _col(mine, "update_every_true").mean(),
               "lag": lag, "n_pairs": len(mine)}
        row.update(_paired("heldout", _col(mine, "heldout_loss_true"), _col(mine, "heldout_loss_tf"), ("true", "tf")))
        if col:
            row.update(_paired("learned", _col(mine, f"{col}_true"), _col(mine, f"{col}_tf"), ("true", "tf")))
        row.update(_compute_columns(mine))
        row.update(_at_equal_compute(mine, lag))
        extra = doubles.loc[(doubles[[*groups, "n"]] == pd.Series(values)).all(axis=1)] if len(doubles) else doubles
        unpaired += [f"{s} n={int(n)} seed {seed}: a second run of the same configuration, not used"
                     for s, n, seed in zip(extra["style"], extra["num_steps"], extra["seed"])]
        row["unpaired"], row["note"] = "; ".join(unpaired), _note(len(mine), unpaired)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else [*groups, "n", "n_tf", "lag", "n_pairs"])
    return frame.drop(columns=["heldout_pairs", "learned_pairs"], errors="ignore")


# ---------------------------------------------------------------- (a) in the grid and boundary tables

FLAG = "model.train_recurrent"  # the config column that tells the two arms apart
GRADIENT_COLUMNS = ["gradient_pairs", "gradient_trained", "gradient_control", "gradient_mean", "gradient_sd",
                    "gradient_low", "gradient_high"]


def trained_arm(values: pd.Series) -> pd.Series:
    """Whether each value of the ``model.train_recurrent`` column is the trained arm: True/'true'
    and unknown (None: a run that does not record it trained its recurrent weights, the default)."""
    return pd.Series([_flag(v) is not False for v in values], index=values.index, dtype=bool)


def seed_pairs(deps: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Each trained run paired with its reservoir control of the same seed, per dependency.

    Args:
        deps: one row per run and dependency with ``*keys``, ``model.train_recurrent``
            (absent or None: trained), ``seed``, ``lag``, ``learned``.
        keys: the configuration columns partners share (seed excluded; ``num_steps`` and
            ``state_size`` among them), ``model.train_recurrent`` not among them.

    Returns:
        Columns ``*keys``, ``seed``, ``lag``, ``trained``, ``control`` (their learned
        fractions) and ``learned`` (trained - control: what the gradient learned; NaN where
        either is): one row per seed that has both arms. A second run of the same arm,
        configuration and seed (two sweeps read together) is not used: the first one counts.
    """
    cols = [*keys, "seed", "lag", "trained", "control", "learned"]
    if deps.empty:
        return pd.DataFrame(columns=cols)
    arm = trained_arm(deps[FLAG]) if FLAG in deps else pd.Series(True, index=deps.index)
    on = [*keys, "seed", "lag"]
    trained = deps[arm].drop_duplicates(on)[[*on, "learned"]]
    control = deps[~arm].drop_duplicates(on)[[*on, "learned"]]
    both = trained.merge(control, on=on, suffixes=("_t", "_c")).rename(
        columns={"learned_t": "trained", "learned_c": "control"})
    both["learned"] = pd.to_numeric(both["trained"], errors="coerce") - pd.to_numeric(both["control"], errors="coerce")
    return both[cols].sort_values(on, ignore_index=True)


def gradient_cells(pairs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Learned through the gradient per cell: :func:`seed_pairs` summarised per (``keys``, lag).

    Returns:
        Columns ``*keys``, ``lag``, ``gradient_pairs`` (seed pairs with both values),
        ``gradient_trained``, ``gradient_control`` (the arms' means over those pairs),
        ``gradient_mean``, ``gradient_sd``, ``gradient_low``, ``gradient_high`` (trained -
        control: mean, sample sd and Student-t 95% interval over the pairs, k - 1 degrees of
        freedom; no interval with fewer than 2 pairs).
    """
    rows = []
    for key, g in pairs.groupby([*keys, "lag"], dropna=False, sort=True):
        ok = g["learned"].notna()
        mean, sd, low, high = t_interval(g.loc[ok, "learned"])
        rows.append({**dict(zip([*keys, "lag"], key)), "gradient_pairs": int(ok.sum()),
                     "gradient_trained": pd.to_numeric(g.loc[ok, "trained"]).mean(),
                     "gradient_control": pd.to_numeric(g.loc[ok, "control"]).mean(),
                     "gradient_mean": mean, "gradient_sd": sd, "gradient_low": low, "gradient_high": high})
    return pd.DataFrame(rows, columns=[*keys, "lag", *GRADIENT_COLUMNS])
