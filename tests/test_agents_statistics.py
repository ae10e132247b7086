"""Statistics of the evaluation against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from agents.common.statistics import (
    _weighted_iqm,
    clopper_pearson,
    compare,
    iqm,
    mean_ci,
    normalized_score,
    performance_profile,
    success_summary,
    summarize,
)


def test_clopper_pearson_known_values() -> None:
    # 0/n: the upper bound solves (1 - p)^n = 0.025.
    lo, hi = clopper_pearson(0, 48)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 48)) and round(hi, 4) == 0.0740
    # n/n: the lower bound solves p^n = 0.025.
    lo, hi = clopper_pearson(10, 10)
    assert lo == pytest.approx(0.025**0.1) and hi == 1.0
    # 5/10: the textbook interval [0.1871, 0.8129].
    lo, hi = clopper_pearson(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.1871, 0.8129)
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))
    s = success_summary([0.0] * 48)
    assert s.mean == 0.0 and s.ci_high == pytest.approx(0.07397, abs=1e-5)
    assert s.method == "clopper-pearson" and s.n == 48


def test_iqm_by_hand() -> None:
    # 8 values: 2 trimmed from each end, the mean of 3, 4, 5, 6.
    assert iqm([100.0, 1, 2, 3, 4, 5, 6, 7]) == 4.5
    assert iqm([1.0, np.nan, 3.0]) == 2.0  # fewer than 4 values: nothing trimmed
    assert math.isnan(iqm([]))
    # The resampling IQM (integer weights) equals trim_mean of the repeated values.
    rng = np.random.default_rng(0)
    x = np.sort(rng.normal(size=9))
    w = rng.integers(0, 4, size=(6, 9)).astype(float)
    want = [stats.trim_mean(np.repeat(x, w[i].astype(int)), 0.25) for i in range(6)]
    np.testing.assert_allclose(_weighted_iqm(x, w), want)


def _clustered(n_targets: int = 12, per_target: int = 8, spread: float = 0.0, seed: int = 0):
    """Every episode of a target has the target's value (+ optional noise)."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.0, 1.0, n_targets)
    values = np.repeat(effect, per_target) + spread * rng.normal(size=n_targets * per_target)
    return values, np.repeat(np.arange(n_targets), per_target)


def test_clustering_widens_the_interval() -> None:
    values, targets = _clustered()
    naive = mean_ci(values)  # pretends 96 independent episodes
    clustered = summarize(values, targets)  # 12 independent targets
    assert clustered.mean == pytest.approx(naive.mean)
    width = clustered.ci_high - clustered.ci_low
    # Fully correlated clusters of 8: about sqrt(8) ≈ 2.8 times wider.
    assert width > 2.0 * (naive.ci_high - naive.ci_low)
    assert clustered.n == 96 and clustered.n_targets == 12 and clustered.n_runs == 1
    assert clustered.iqm_low <= clustered.iqm <= clustered.iqm_high
    # The clustered interval is the bootstrap of the 12 target means.
    means = values.reshape(12, 8).mean(1)
    direct = summarize(means, np.arange(12))
    assert (direct.ci_low, direct.ci_high) == pytest.approx((clustered.ci_low, clustered.ci_high))


def test_training_runs_are_resampled_too() -> None:
    values, targets = _clustered(spread=0.1)
    one = summarize(values, targets)
    # Three runs that differ by a constant offset: run-to-run spread widens the CI.
    runs3 = np.concatenate([values - 1.0, values, values + 1.0])
    three = summarize(runs3, np.tile(targets, 3), np.repeat([0, 1, 2], values.size))
    assert three.n_runs == 3 and three.n == 3 * values.size
    assert three.mean == pytest.approx(one.mean)
    assert three.ci_high - three.ci_low > one.ci_high - one.ci_low + 1.0


def test_determinism_and_degenerate_cases() -> None:
    values, targets = _clustered(spread=0.3)
    assert summarize(values, targets, seed=3) == summarize(values, targets, seed=3)
    assert summarize(values, targets, seed=3) != summarize(values, targets, seed=4)
    one = summarize([1.0, 2.0, 3.0], [0, 0, 0])  # one target: no interval over targets
    assert one.mean == 2.0 and math.isnan(one.ci_low) and one.method == "none"
    empty = summarize([], [])
    assert empty.n == 0 and math.isnan(empty.mean)
    const = summarize([2.0] * 6, [0, 0, 1, 1, 2, 2])
    assert (const.ci_low, const.ci_high) == (2.0, 2.0)


def test_paired_difference_sign_and_ci() -> None:
    # X is Y + 0.1 on every episode, targets differ a lot: the unpaired intervals
    # overlap, the paired one is exactly [0.1, 0.1].
    y, targets = _clustered(spread=0.2)
    x = y + 0.1
    sx, sy = summarize(x, targets), summarize(y, targets)
    assert sx.ci_low < sy.ci_high  # overlapping: an overlap rule would say "tied"
    c = compare(x, y, targets, "return", higher_is_better=True)
    assert c.diff == pytest.approx(0.1) and c.diff_low == pytest.approx(0.1)
    assert c.diff_high == pytest.approx(0.1) and c.verdict == "better"
    assert c.n == y.size and c.n_targets == 12
    # Lower-is-better metric: the larger X is the worse one; swapping flips the sign.
    assert compare(x, y, targets, higher_is_better=False).verdict == "worse"
    c2 = compare(y, x, targets, higher_is_better=False)
    assert c2.diff == pytest.approx(-0.1) and c2.verdict == "better"
    # Noise centred on 0: the CI covers 0, no verdict.
    rng = np.random.default_rng(1)
    c3 = compare(y + rng.normal(0, 0.5, y.size), y, targets)
    assert c3.diff_low < 0 < c3.diff_high and c3.verdict == "no clear difference"
    with pytest.raises(ValueError, match="aligned"):
        compare([1.0, 2.0], [1.0], [0, 1])


def test_probability_of_improvement_by_hand() -> None:
    # Target 0: X = [1, 3], Y = [2, 2] -> pairs (1>2, 1>2, 3>2, 3>2) = 2/4 = 0.5.
    # Target 1: X = [5, 5], Y = [5, 4] -> (tie, win, tie, win) = (0.5+1+0.5+1)/4 = 0.75.
    x, y, targets = [1.0, 3.0, 5.0, 5.0], [2.0, 2.0, 5.0, 4.0], [0, 0, 1, 1]
    c = compare(x, y, targets, higher_is_better=True)
    assert c.p_improve == pytest.approx(0.625)
    assert c.p_low == pytest.approx(0.5) and c.p_high == pytest.approx(0.75)
    # Lower is better: target 0 -> 0.5, target 1 -> (0.5+0+0.5+0)/4 = 0.25.
    assert compare(x, y, targets, higher_is_better=False).p_improve == pytest.approx(0.375)
    assert compare(y, x, targets).p_improve == pytest.approx(1 - 0.625)


def test_normalized_score_by_hand() -> None:
    # Distances: static 10, oracle 2; x = 10 -> 0, x = 2 -> 1, x = 6 -> 0.5, x = 12 -> -0.25.
    s = normalized_score([10.0, 2.0, 6.0, 12.0], [10.0] * 4, [2.0] * 4)
    np.testing.assert_allclose(s, [0.0, 1.0, 0.5, -0.25])
    # Higher-is-better metric (return): static 1, oracle 5, x = 4 -> 0.75.
    assert normalized_score([4.0], [1.0], [5.0])[0] == pytest.approx(0.75)
    # No scale where static equals oracle.
    assert math.isnan(normalized_score([1.0], [3.0], [3.0])[0])
    with pytest.raises(ValueError, match="aligned"):
        normalized_score([1.0, 2.0], [1.0], [0.0])


def test_probability_of_improvement_is_rliables_mann_whitney_mean() -> None:
    # rliable: per task, U / (n_x·n_y) of the Mann–Whitney test (ties ½), averaged over
    # tasks; here tasks are targets and runs are the episodes (seeds) of a target.
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=30).astype(float)  # small integers: many ties
    y = rng.integers(0, 4, size=30).astype(float)
    targets = np.repeat(np.arange(6), 5)
    per_target = [
        stats.mannwhitneyu(x[targets == t], y[targets == t]).statistic / 25.0 for t in range(6)
    ]
    c = compare(x, y, targets, higher_is_better=True)
    assert c.p_improve == pytest.approx(float(np.mean(per_target)))


def test_performance_profile_by_hand() -> None:
    # Target a: scores 0, 0.5; target b: 1, 1.
    values, targets = [0.0, 0.5, 1.0, 1.0], ["a", "a", "b", "b"]
    prof = performance_profile(values, targets, taus=[-0.1, 0.0, 0.5, 0.75, 1.0, 1.5])
    # >= tau: 4/4, 4/4, 3/4, 2/4, 2/4 (1.0 counts at tau 1), 0/4.
    assert prof.fraction == pytest.approx((1.0, 1.0, 0.75, 0.5, 0.5, 0.0))
    assert prof.n == 4 and prof.n_targets == 2 and prof.n_runs == 1
    # Constant indicators give zero-width bands; the others span what resampling the two
    # targets can give: at tau 1 target a has 0/2 and b 2/2, so resamples give 0, ½ or 1.
    assert (prof.low[0], prof.high[0]) == (1.0, 1.0) and (prof.low[5], prof.high[5]) == (0.0, 0.0)
    assert (prof.low[4], prof.high[4]) == (0.0, 1.0)
    assert (prof.low[2], prof.high[2]) == (0.5, 1.0)  # a: 1/2, b: 2/2
    # The band is the clustered bootstrap of the mean of the indicator score >= tau.
    rng = np.random.default_rng(2)
    v = rng.normal(0.5, 0.4, 60)
    t = np.repeat(np.arange(12), 5)
    p = performance_profile(v, t, taus=[0.3, 0.6])
    for k, tau in enumerate((0.3, 0.6)):
        s = summarize((v >= tau).astype(float), t)
        assert (p.low[k], p.fraction[k], p.high[k]) == pytest.approx((s.ci_low, s.mean, s.ci_high))
    # Monotone in tau (same resamples for every tau); NaNs dropped; empty -> NaN.
    q = performance_profile(np.append(v, np.nan), np.append(t, 0))
    assert q.n == 60
    assert all(np.diff(q.fraction) <= 0) and all(np.diff(q.low) <= 1e-12)
    assert all(np.diff(q.high) <= 1e-12)
    assert math.isnan(performance_profile([], []).fraction[0])


def test_performance_profile_resamples_runs() -> None:
    values, targets = _clustered(spread=0.1)
    runs3 = np.concatenate([values - 1.0, values, values + 1.0])
    t3, r3 = np.tile(targets, 3), np.repeat([0, 1, 2], values.size)
    one = performance_profile(values, targets, taus=[0.0])
    three = performance_profile(runs3, t3, taus=[0.0], runs=r3)
    assert three.n_runs == 3
    assert three.high[0] - three.low[0] > one.high[0] - one.low[0]
