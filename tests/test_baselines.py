"""Analytic loss levels against hand derivations and Monte-Carlo estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnn_sweep.task import data
from rnn_sweep.task.baselines import binary_entropy, conditional_entropy, learning_levels
from rnn_sweep.task.config import DataConfig, Dependency


def H(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_article_levels_to_four_decimals():
    levels = learning_levels(DataConfig())
    assert [lv.name for lv in levels] == ["none", "lag 3", "lags 3+8"]
    assert [round(lv.loss, 4) for lv in levels] == [0.6616, 0.5192, 0.4545]
    # the same numbers derived by hand (SEED_NOTES)
    assert levels[0].loss == pytest.approx(H(0.625), abs=1e-12)
    assert levels[1].loss == pytest.approx(0.5 * H(0.875) + 0.5 * H(0.375), abs=1e-12)
    assert levels[2].loss == pytest.approx(0.25 * math.log(2) + 0.5 * H(0.25), abs=1e-12)


def test_lag8_alone_is_less_informative():
    # knows X_{t-8} only: 0.5 H(0.75) + 0.5 H(0.5) > H given X_{t-3} only, so lag 3 is learned first
    rule = DataConfig()
    assert conditional_entropy(rule, (1,)) == pytest.approx(0.5 * H(0.75) + 0.5 * H(0.5))
    assert conditional_entropy(rule, (1,)) > conditional_entropy(rule, (0,))


def test_binary_entropy_edges():
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_entropy(0.5) == pytest.approx(math.log(2))


def monte_carlo_entropy(rule, known, n=400_000, seed=0):
    """Empirical H(Y | known lagged inputs) from the true probabilities of simulated data."""
    _, _, p, lagged = data.generate_full(rule, n, np.random.default_rng(seed))
    keys = np.zeros(n, dtype=np.int64)
    for i in known:
        keys = keys * 2 + lagged[i]
    total = 0.0
    for k in np.unique(keys):
        sel = keys == k
        total += sel.mean() * binary_entropy(p[sel].mean())
    return total


@pytest.mark.parametrize("rule", [
    DataConfig(input_prob=0.3, base_prob=0.4, dependencies=[Dependency(2, 0.5), Dependency(5, -0.3)]),
    DataConfig(input_prob=0.7, base_prob=0.1,
               dependencies=[Dependency(1, 0.2), Dependency(4, 0.3), Dependency(9, 0.35)]),
    DataConfig(base_prob=0.5, dependencies=[Dependency(6, -0.4)]),
])
def test_levels_match_monte_carlo_for_other_rules(rule):
    levels = learning_levels(rule)
    index = {d.lag: i for i, d in enumerate(rule.dependencies)}
    for lv in levels:
        known = tuple(index[lag] for lag in lv.lags)
        assert lv.loss == pytest.approx(monte_carlo_entropy(rule, known), abs=3e-3), lv
    losses = [lv.loss for lv in levels]
    assert losses == sorted(losses, reverse=True)  # each level knows more, so loses less


def test_levels_ordered_by_information_gain():
    # lag 9 has the biggest effect, so it is learned first even though it is the longest
    rule = DataConfig(dependencies=[Dependency(2, 0.1), Dependency(9, 0.4)])
    assert [lv.lags for lv in learning_levels(rule)] == [(), (9,), (9, 2)]
