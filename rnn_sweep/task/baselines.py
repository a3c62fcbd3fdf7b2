"""Analytic loss levels: the conditional entropy H(Y | known lagged inputs).

For any rule (lags, effects, base and input probability) the best predictor
that knows a subset S of the lagged inputs has expected cross-entropy
H(Y | X_S) = sum_a P(X_S=a) H(E[P(Y=1) | X_S=a]); we enumerate every a.
The learning levels are the nested subsets picked greedily by information gain.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

from rnn_sweep.task.config import DataConfig


def binary_entropy(p: float) -> float:
    """H(p) in nats, with H(0) = H(1) = 0."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def conditional_entropy(rule: DataConfig, known: tuple[int, ...] | list[int]) -> float:
    """H(Y | X_{t-lag_i} for i in ``known``) in nats; ``known`` indexes rule.dependencies."""
    deps = rule.dependencies
    q = rule.input_prob
    known = tuple(known)
    unknown = [i for i in range(len(deps)) if i not in known]
    total = 0.0
    for bits in itertools.product((0, 1), repeat=len(known)):
        p_bits = math.prod(q if b else 1 - q for b in bits)
        if p_bits == 0:
            continue
        # E[P(Y=1) | known bits]: average the unknown inputs out (enumerated, not assumed additive).
        p_y = 0.0
        for ubits in itertools.product((0, 1), repeat=len(unknown)):
            p_u = math.prod(q if b else 1 - q for b in ubits)
            p = rule.base_prob + sum(deps[i].effect * b for i, b in zip(known, bits))
            p += sum(deps[i].effect * b for i, b in zip(unknown, ubits))
            p_y += p_u * p
        total += p_bits * binary_entropy(p_y)
    return total


@dataclass(frozen=True)
class Level:
    """One analytic learning level: which lags are known and the best loss then."""

    name: str  # e.g. "none", "lag 3", "lags 3+8"
    lags: tuple[int, ...]  # lags known at this level, in the order learned
    loss: float  # nats

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lags"] = list(self.lags)
        return d


def level_name(lags: tuple[int, ...]) -> str:
    if not lags:
        return "none"
    return ("lag " if len(lags) == 1 else "lags ") + "+".join(str(lg) for lg in lags)


def learning_levels(rule: DataConfig) -> list[Level]:
    """Nested levels none -> best single dependency -> ... -> all, by information gain.

    Ties are broken by the smaller lag (the one truncated BPTT reaches first).
    """
    deps = rule.dependencies
    known: list[int] = []
    levels = [Level("none", (), conditional_entropy(rule, ()))]
    remaining = list(range(len(deps)))
    while remaining:
        best = min(remaining, key=lambda i: (conditional_entropy(rule, tuple(known + [i])), deps[i].lag))
        known.append(best)
        remaining.remove(best)
        lags = tuple(deps[i].lag for i in known)
        levels.append(Level(level_name(lags), lags, conditional_entropy(rule, tuple(known))))
    return levels
