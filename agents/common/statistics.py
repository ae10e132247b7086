"""Means and confidence intervals of per-episode metrics.

:func:`mean_ci` is the evaluation's summary (95 % percentile bootstrap, fixed seed);
:func:`mean_normal_band` the per-step band of the report's distance plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MetricSummary:
    """Mean and 95 % bootstrap CI of a metric over episodes.

    :param mean: the mean.
    :param ci_low: 2.5th percentile of bootstrap means.
    :param ci_high: 97.5th percentile of bootstrap means.
    :param n: number of episodes.
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int


def mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> MetricSummary:
    """Mean and 95 % percentile-bootstrap CI (fixed seed: reproducible).

    :param values: per-episode values (non-finite ones are dropped).
    :param n_boot: bootstrap resamples.
    :param seed: resampling seed.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return MetricSummary(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if x.size == 1:
        return MetricSummary(m, m, m, 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return MetricSummary(m, float(lo), float(hi), int(x.size))


def mean_normal_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and half-width of a 95 % normal interval (``1.96·sd/√n``), NaNs
    ignored. ``[n, T] -> ([T], [T])``.

    :param values: one row per episode.
    """
    mean = np.nanmean(values, 0)
    half = 1.96 * np.nanstd(values, 0) / math.sqrt(max(1, values.shape[0]))
    return mean, half
