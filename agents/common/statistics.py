"""Point estimates and 95 % confidence intervals of per-episode metrics.

The evaluation plays every target once per evaluation seed, possibly for several
training runs of one algorithm. Episodes of one target are correlated (the same sound
is easy or hard whatever the seed), so intervals resample *targets*, never single
episodes; with several training runs, runs are resampled too, independently of targets
(a two-way "pigeonhole" bootstrap for crossed factors, Owen 2007). Resampling is done by
:func:`scipy.stats.bootstrap` (percentile method, fixed seed: reproducible) on the
target and run indices.

* :func:`summarize` — mean and IQM (interquartile mean, the 25 % trimmed mean of
  Agarwal et al. 2021, :func:`scipy.stats.trim_mean`) with clustered bootstrap CIs;
* :func:`success_summary` — a success rate with its exact Clopper–Pearson interval
  (:meth:`scipy.stats.binomtest(...).proportion_ci <scipy.stats.binomtest>`);
* :func:`compare` — two agents on the same episodes: the mean paired difference and
  the probability of improvement P(X > Y) (rliable's definition: per target, the
  share of episode pairs where X beats Y, ties counted half, averaged over targets),
  both with clustered bootstrap CIs; "X beats Y" only when the paired CI excludes 0
  (the point estimate is rliable's ``probability_of_improvement`` with targets as
  tasks and episode seeds as runs: per target the Mann–Whitney ``U / (n_x·n_y)``;
  rliable's CI resamples runs within tasks, ours resamples targets);
* :func:`normalized_score` — ``(zero − x) / (zero − one)``, per episode, against two
  per-episode reference results (0 = e.g. doing nothing, 1 = the oracle);
* :func:`performance_profile` — rliable's score distribution: the fraction of episodes
  whose (normalized) score is at least τ, for a grid of τ, with target-clustered bands;
* :func:`mean_ci` — the plain episode bootstrap (kept for callers without targets);
* :func:`mean_normal_band` — the per-step band of the report's distance plot.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Bootstrap resamples of every interval.
N_BOOT = 2000
#: Confidence level of every interval.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class MetricSummary:
    """Mean (and IQM) of a metric with 95 % CIs.

    :param mean: the mean (for a success rate: k / n).
    :param ci_low: lower end of the mean's CI.
    :param ci_high: upper end of the mean's CI.
    :param n: number of episodes.
    :param iqm: interquartile mean (NaN for success rates).
    :param iqm_low: lower end of the IQM's CI.
    :param iqm_high: upper end of the IQM's CI.
    :param n_targets: targets (bootstrap clusters) the episodes come from.
    :param n_runs: training runs the episodes come from.
    :param method: how the CI was computed (``"clopper-pearson"``, ``"cluster-bootstrap"``,
        ``"bootstrap"``; ``"none"`` when fewer than two targets leave it undefined).
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    iqm: float = math.nan
    iqm_low: float = math.nan
    iqm_high: float = math.nan
    n_targets: int = 0
    n_runs: int = 1
    method: str = "bootstrap"


@dataclass(frozen=True)
class Comparison:
    """Agent X against agent Y on the same episodes (X − Y, per episode).

    :param metric: the metric compared.
    :param diff: mean of X − Y over paired episodes.
    :param diff_low: lower end of its clustered 95 % CI.
    :param diff_high: upper end.
    :param p_improve: P(X better than Y) (rliable's probability of improvement; for a
        lower-is-better metric "better" means smaller).
    :param p_low: lower end of its clustered 95 % CI.
    :param p_high: upper end.
    :param n: paired episodes.
    :param n_targets: targets.
    :param verdict: ``"better"`` / ``"worse"`` when the difference's CI excludes 0 (X is
        better / worse than Y), else ``"no clear difference"``.
    """

    metric: str
    diff: float
    diff_low: float
    diff_high: float
    p_improve: float
    p_low: float
    p_high: float
    n: int
    n_targets: int
    verdict: str


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % (25 % trimmed from each end).

    :param values: the values (non-finite ones dropped).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return float(stats.trim_mean(x, 0.25)) if x.size else math.nan


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial proportion ``k / n``.

    :param k: successes.
    :param n: trials (0: NaN interval).
    :param confidence: confidence level.
    """
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence, method="exact")
    return float(ci.low), float(ci.high)


def success_summary(successes: Sequence[float], runs: Sequence[int] | None = None) -> MetricSummary:
    """Success rate with its exact Clopper–Pearson 95 % interval.

    The interval treats episodes as independent trials: it is exact for that model and
    does not widen for correlation between episodes of one target.

    :param successes: per-episode 0/1 (non-finite dropped).
    :param runs: per-episode training run (only counted).
    """
    x = np.asarray(successes, dtype=np.float64)
    x = x[np.isfinite(x)]
    n, k = int(x.size), round(float(x.sum()))
    lo, hi = clopper_pearson(k, n)
    n_runs = len(set(runs)) if runs is not None and len(runs) else 1
    return MetricSummary(
        k / n if n else math.nan, lo, hi, n, n_runs=n_runs, method="clopper-pearson"
    )


def _codes(labels: Sequence[object] | None, n: int) -> tuple[np.ndarray, int]:
    if labels is None:
        return np.zeros(n, dtype=np.int64), 1
    _, inv = np.unique(np.asarray(labels), return_inverse=True)
    return inv.ravel().astype(np.int64), int(inv.max()) + 1 if n else 0


def _cube(
    values: np.ndarray, targets: Sequence[object], runs: Sequence[object] | None
) -> np.ndarray:
    """Values as a ``[runs, targets, repeats]`` array, NaN where a cell is short."""
    n = values.size
    t, n_t = _codes(targets, n)
    r, n_r = _codes(runs, n)
    cell = r * n_t + t
    counts = np.bincount(cell, minlength=n_r * n_t)
    out = np.full((n_r * n_t, max(1, int(counts.max()))), np.nan)
    slot = np.zeros(n_r * n_t, dtype=np.int64)
    for i in range(n):
        out[cell[i], slot[cell[i]]] = values[i]
        slot[cell[i]] += 1
    return out.reshape(n_r, n_t, -1)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` indices was drawn, per resample: ``[B, k] -> [B, n]``."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, idx.shape[-1])
    out = np.zeros((idx.shape[0], n))
    np.add.at(out, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    return out


def _cluster_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_targets: int,
    n_runs: int,
    n_boot: int,
    seed: int,
) -> tuple[float, float]:
    """Percentile CI of a statistic of resampled targets (and, when there are several,
    runs, drawn independently), by :func:`scipy.stats.bootstrap` on the indices.

    :param statistic: ``(target counts [B, n_targets], run counts [B, n_runs]) -> [B]``,
        the statistic of each resample given how often each target and run was drawn.
    """
    if n_targets < 2:
        return math.nan, math.nan
    data: tuple[np.ndarray, ...]
    if n_runs >= 2:
        data = (np.arange(n_targets), np.arange(n_runs))

        def stat(t: np.ndarray, r: np.ndarray, axis: int = -1) -> np.ndarray:
            out = statistic(_counts(t, n_targets), _counts(r, n_runs))
            return out.reshape(t.shape[:-1])
    else:
        data = (np.arange(n_targets),)

        def stat(t: np.ndarray, axis: int = -1) -> np.ndarray:  # type: ignore[misc]
            w = _counts(t, n_targets)
            return statistic(w, np.ones((w.shape[0], 1))).reshape(t.shape[:-1])

    with warnings.catch_warnings():  # constant data: a degenerate (zero-width) interval
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            data,
            stat,
            n_resamples=n_boot,
            vectorized=True,
            paired=False,
            confidence_level=CONFIDENCE,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def _weighted_iqm(sorted_x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """IQM of each resample given integer weights of the sorted values, ``[B, N] -> [B]``:
    exactly :func:`scipy.stats.trim_mean` (``0.25``) of the values repeated by weight."""
    total = w.sum(1, keepdims=True)
    cut = np.floor(0.25 * total)
    hi_c = np.cumsum(w, 1)
    lo_c = hi_c - w
    kept = np.clip(np.minimum(hi_c, total - cut) - np.maximum(lo_c, cut), 0.0, None)
    return (kept * sorted_x).sum(1) / np.maximum(kept.sum(1), 1e-300)


def _mean_statistic(
    x: np.ndarray, t_code: np.ndarray, r_code: np.ndarray, n_t: int, n_r: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The mean over the episodes of resampled (run, target) cells, as a statistic of
    :func:`_cluster_bootstrap` (each cell's sum and count computed once)."""
    cell_sum = np.zeros((n_r, n_t))
    cell_n = np.zeros((n_r, n_t))
    np.add.at(cell_sum, (r_code, t_code), x)
    np.add.at(cell_n, (r_code, t_code), 1.0)

    def mean_stat(wt: np.ndarray, wr: np.ndarray) -> np.ndarray:
        num = np.einsum("br,rt,bt->b", wr, cell_sum, wt)
        return num / np.einsum("br,rt,bt->b", wr, cell_n, wt)

    return mean_stat


def _finite_episodes(
    values: Sequence[float] | np.ndarray,
    targets: Sequence[object] | np.ndarray,
    runs: Sequence[object] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-episode values with their targets and runs, non-finite values dropped."""
    x = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(x)
    run = None if runs is None else np.asarray(runs)[keep]
    return x[keep], np.asarray(targets)[keep], run


def summarize(
    values: Sequence[float],
    targets: Sequence[object],
    runs: Sequence[object] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> MetricSummary:
    """Mean and IQM with 95 % bootstrap CIs clustered by target (and training run).

    A resample draws targets with replacement — all episodes of a drawn target come
    along — and, with several runs, runs with replacement independently; the statistic
    is computed over every episode of the drawn (run, target) cells.

    :param values: per-episode values (non-finite ones dropped).
    :param targets: per-episode target (the cluster).
    :param runs: per-episode training run (None: one run).
    :param n_boot: bootstrap resamples.
    :param seed: resampling seed.
    """
    x, tgt, run = _finite_episodes(values, targets, runs)
    if x.size == 0:
        return MetricSummary(math.nan, math.nan, math.nan, 0, method="none")
    t_code, n_t = _codes(tgt, x.size)
    r_code, n_r = _codes(run, x.size)
    order = np.argsort(x, kind="stable")
    xs, ts, rs = x[order], t_code[order], r_code[order]

    def iqm_stat(wt: np.ndarray, wr: np.ndarray) -> np.ndarray:
        return _weighted_iqm(xs, wt[:, ts] * wr[:, rs])

    lo, hi = _cluster_bootstrap(
        _mean_statistic(x, t_code, r_code, n_t, n_r), n_t, n_r, n_boot, seed
    )
    ilo, ihi = _cluster_bootstrap(iqm_stat, n_t, n_r, n_boot, seed)
    return MetricSummary(
        float(x.mean()),
        lo,
        hi,
        int(x.size),
        iqm(x),
        ilo,
        ihi,
        n_t,
        n_r,
        "cluster-bootstrap" if n_t >= 2 else "none",
    )


def compare(
    x: Sequence[float],
    y: Sequence[float],
    targets: Sequence[object],
    metric: str = "",
    higher_is_better: bool = True,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Comparison:
    """Agent X against agent Y on the same episodes.

    ``x[i]`` and ``y[i]`` must be the same episode (same target, same seed). The
    difference ``x − y`` is averaged over episodes; its 95 % CI resamples targets (all
    episodes of a target together). The probability of improvement follows rliable:
    per target, the share of (X episode, Y episode) pairs where X is better (ties
    count ½), averaged over targets; its CI resamples targets too.

    :param x: per-episode values of X (for several training runs of one agent, the mean
        over runs of each episode).
    :param y: per-episode values of Y, aligned with ``x``.
    :param targets: per-episode target.
    :param metric: name recorded in the result.
    :param higher_is_better: direction of the metric.
    :param n_boot: bootstrap resamples.
    :param seed: resampling seed.
    :raises ValueError: arrays of different lengths.
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.size != len(targets):
        raise ValueError(
            f"compare needs aligned episodes: got {xa.size} values of X, {ya.size} of Y "
            f"and {len(targets)} targets"
        )
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya, tgt = xa[keep], ya[keep], np.asarray(targets)[keep]
    if xa.size == 0:
        nan = math.nan
        return Comparison(metric, nan, nan, nan, nan, nan, nan, 0, 0, "no clear difference")
    d = _cube(xa - ya, tgt, None)[0]  # [targets, repeats]
    cx, cy = _cube(xa, tgt, None)[0], _cube(ya, tgt, None)[0]
    sign = 1.0 if higher_is_better else -1.0
    # Per target: mean over (X episode, Y episode) pairs of [X better] + ½ [tie].
    gx, gy = sign * cx[:, :, None], sign * cy[:, None, :]
    wins = (gx > gy).astype(np.float64) + 0.5 * (gx == gy)
    wins[~(np.isfinite(gx) & np.isfinite(gy))] = np.nan
    poi_t = np.nanmean(wins.reshape(wins.shape[0], -1), 1)
    n_t = d.shape[0]

    d_sum, d_n = np.nansum(d, 1), np.isfinite(d).sum(1).astype(np.float64)

    def diff_stat(wt: np.ndarray, _: np.ndarray) -> np.ndarray:
        return (wt @ d_sum) / (wt @ d_n)

    def poi_stat(wt: np.ndarray, _: np.ndarray) -> np.ndarray:
        return (wt @ poi_t) / wt.sum(1)

    lo, hi = _cluster_bootstrap(diff_stat, n_t, 1, n_boot, seed)
    plo, phi = _cluster_bootstrap(poi_stat, n_t, 1, n_boot, seed)
    diff = float((xa - ya).mean())
    verdict = "no clear difference"
    if lo > 0 or hi < 0:
        better = (lo > 0) == higher_is_better
        verdict = "better" if better else "worse"
    return Comparison(
        metric, diff, lo, hi, float(poi_t.mean()), plo, phi, int(xa.size), n_t, verdict
    )


def normalized_score(
    values: Sequence[float] | np.ndarray,
    zero: Sequence[float] | np.ndarray,
    one: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Per-episode normalized score ``(zero − x) / (zero − one)`` against two reference
    results of the *same* episode: 0 = as good as the ``zero`` reference (doing nothing:
    the start distance, the static policy, the default gains), 1 = as good as the ``one``
    reference (the oracle). Either metric direction works (the sign follows the
    references). Episodes where the references coincide have no scale: NaN.

    :param values: the agent's per-episode metric.
    :param zero: the reference scored 0, per episode.
    :param one: the reference scored 1, per episode.
    :raises ValueError: arrays of different shapes.
    """
    x, z, o = (np.asarray(a, dtype=np.float64) for a in (values, zero, one))
    if not x.shape == z.shape == o.shape:
        raise ValueError(
            f"normalized_score needs aligned episodes, got shapes {x.shape}, {z.shape}, {o.shape}"
        )
    scale = z - o
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale != 0, (z - x) / np.where(scale != 0, scale, 1.0), np.nan)


#: Default thresholds τ of a performance profile on normalized scores.
PROFILE_TAUS: tuple[float, ...] = tuple(float(t) for t in np.round(np.linspace(0.0, 1.0, 21), 4))


@dataclass(frozen=True)
class PerformanceProfile:
    """rliable's score distribution: per threshold τ, the fraction of episodes whose
    score is ≥ τ, with a 95 % bootstrap band clustered by target (and training run).

    :param taus: the thresholds.
    :param fraction: fraction of episodes with score ≥ τ, per τ.
    :param low: lower end of its CI, per τ.
    :param high: upper end, per τ.
    :param n: episodes (finite scores).
    :param n_targets: targets (clusters).
    :param n_runs: training runs.
    """

    taus: tuple[float, ...]
    fraction: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    n: int
    n_targets: int
    n_runs: int = 1


def performance_profile(
    values: Sequence[float],
    targets: Sequence[object],
    taus: Sequence[float] = PROFILE_TAUS,
    runs: Sequence[object] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> PerformanceProfile:
    """Performance profile (Agarwal et al. 2021, rliable's ``create_performance_profile``
    on the score distribution): the fraction of episodes with score ≥ τ for each τ.

    rliable counts ``score > τ``; ≥ is used here so that an episode the oracle matches
    exactly (normalized score 1) counts at τ = 1. Each band is the clustered bootstrap of
    :func:`summarize` (targets, and runs, resampled) on the indicator ``score ≥ τ``; every
    τ uses the same resamples (same seed), so the bands are monotone in τ.

    :param values: per-episode scores (non-finite ones dropped).
    :param targets: per-episode target (the cluster).
    :param taus: thresholds.
    :param runs: per-episode training run (None: one run).
    :param n_boot: bootstrap resamples.
    :param seed: resampling seed.
    """
    x, tgt, run = _finite_episodes(values, targets, runs)
    tau = tuple(float(t) for t in taus)
    if x.size == 0:
        nan = tuple(math.nan for _ in tau)
        return PerformanceProfile(tau, nan, nan, nan, 0, 0)
    t_code, n_t = _codes(tgt, x.size)
    r_code, n_r = _codes(run, x.size)
    frac, low, high = [], [], []
    for t in tau:
        above = (x >= t).astype(np.float64)
        stat = _mean_statistic(above, t_code, r_code, n_t, n_r)
        lo, hi = _cluster_bootstrap(stat, n_t, n_r, n_boot, seed)
        frac.append(float(above.mean()))
        low.append(lo)
        high.append(hi)
    return PerformanceProfile(tau, tuple(frac), tuple(low), tuple(high), int(x.size), n_t, n_r)


def mean_ci(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> MetricSummary:
    """Mean and 95 % percentile-bootstrap CI over independent values (fixed seed).

    For episodes use :func:`summarize`, which resamples targets instead.

    :param values: values (non-finite ones are dropped).
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
