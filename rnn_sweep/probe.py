"""What a trained model captured of each dependency, measured on held-out data.

For a dependency with lag L the captured effect is
E[p_model | X_{t-L}=1] - E[p_model | X_{t-L}=0], divided by the same
difference of the true probability on the same positions: 1 means the model
has the full effect, 0 none. Works for any rule (NumPy only).
"""

from __future__ import annotations

import numpy as np


def effect(p: np.ndarray, lagged: np.ndarray) -> float:
    """E[p | lagged=1] - E[p | lagged=0] (NaN if either group is empty)."""
    on, off = lagged == 1, lagged == 0
    if not on.any() or not off.any():
        return float("nan")
    return float(p[on].mean() - p[off].mean())


def learned_fractions(p_model: np.ndarray, p_true: np.ndarray, lagged: list[np.ndarray],
                      lags: list[int]) -> dict[str, float]:
    """Captured fraction of each dependency's effect, keyed by str(lag).

    All arrays are aligned 1-D over the same positions.
    """
    out = {}
    for lag, xl in zip(lags, lagged):
        true_eff = effect(p_true, xl)
        out[str(lag)] = float("nan") if not true_eff else effect(p_model, xl) / true_eff
    return out


def cross_entropy(p_model: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy in nats of P(Y=1)=p_model against targets y."""
    p = np.clip(p_model.astype(np.float64), 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))
