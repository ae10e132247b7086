"""Composite reward: bounded, aligned, batched and broken down into named terms.

The reward of the AE-DDSP design (seed §6)::

    R = w_aud · R_aud + w_opt · R_opt + w_pol · R_pol − P

* ``R_aud`` — how close a sound is to its target in feature space: log-mel similarity,
  centroid and roll-off closeness (in octaves), flatness and peakiness match; plus a
  success bonus ``aud/success``.
* ``R_opt`` — health of an optimizer: gradient norm under a threshold, "deep
  resonance" (bounded, coherent ringing of the updates, seed §5) and small updates.
* ``R_pol`` — shape of a knob trajectory: periodicity and diversity of visited states.
* ``P`` — penalties: RMS loudness over a cap, knob slew over a limit (the two *safety*
  terms), divergence of an inner optimizer, and a constant cost per step.

Every sub-score ``s`` lies in ``[0, 1]`` (1 = best) and every penalty ``p`` in ``[0, 1]``
(0 = inside its limit, saturating toward 1), built from exponentials, sigmoids and
``tanh`` so they are bounded and smooth.

**Alignment (v1).** A benchmark reward must pay most for solving the task fastest, never
for hovering near the goal. So the terms enter the total as follows (``c_i`` the term's
coefficient, :attr:`RewardConfig.term_coefficients`):

=====================  =====================================  ===================
term                   contribution per step                  range
=====================  =====================================  ===================
``aud/*`` improvement  ``c_i · (s_i(t) − s_i(t−1))``           ``[−c_i, c_i]``
``aud/*`` cost         ``c_i · (s_i(t) − 1)``                  ``[−c_i, 0]``
``aud/success``        ``success_bonus`` on a success step     ``{0, bonus}``
``opt/*``, ``pol/*``   ``−c_i · (1 − s_i)`` (a shortfall)      ``[−c_i, 0]``
``pen/*``              ``−w_pen · p``                          ``[−w_pen, 0]``
``pen/time``           ``−w_pen_time``                         constant
=====================  =====================================  ===================

In ``audio_mode="improvement"`` (episodic envs that terminate on success) the audio
terms are a potential difference: they telescope to ``w_aud · (S_T − S_0)`` over an
episode, and a success step counts ``S = 1``, so every successful episode collects the
same ``w_aud · (1 − S_0)``. Hovering or wiggling near the target earns nothing from them,
and every other term is a cost. A policy that succeeds at step ``T`` therefore earns more
than any policy that never succeeds within the same horizon whenever
``success_bonus > (a − w_pen_time) · T``, with ``a`` the largest cost per step
(:meth:`CompositeReward.max_step_cost`): :meth:`CompositeReward.aligned_steps` gives that
``T``. Among successful policies the faster one wins (fewer costly steps).

In ``audio_mode="cost"`` (tracking envs with no termination) the audio terms are a
shortfall from a perfect match and ``aud/success`` pays on every step on target; when
``success_bonus > w_aud + a`` a step on target always beats a step off it.

The breakdown stores each weighted contribution under the term's name, so the terms add
up to the total. An env chooses which terms it uses (``terms=``): the reward never holds
a term that is always 0.

All functions take ``[B, ...]`` tensors and return ``[B]`` tensors on the inputs'
device. Non-finite optimizer statistics (a diverged inner optimizer) count as the worst
case instead of propagating NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

import torch

from aegym._checks import check_positive, check_range, check_tensor
from aegym.features import Features, spectral_distance

#: Names of every term, in the order they are stored and summed.
AUDIO_TERMS = ("aud/mel", "aud/centroid", "aud/rolloff", "aud/flatness", "aud/peakiness")
SUCCESS_TERM = "aud/success"
OPTIMIZER_TERMS = ("opt/grad_norm", "opt/resonance", "opt/update_norm")
POLICY_TERMS = ("pol/periodicity", "pol/diversity")
#: Penalties that mark an unsafe sound or move (what counts as a safety violation).
SAFETY_TERMS = ("pen/loudness", "pen/slew")
PENALTY_TERMS = (*SAFETY_TERMS, "pen/divergence", "pen/time")
TERM_NAMES = (*AUDIO_TERMS, SUCCESS_TERM, *OPTIMIZER_TERMS, *POLICY_TERMS, *PENALTY_TERMS)

AudioMode = Literal["improvement", "cost"]

#: Shortest window (steps) for the autocorrelation-based scores.
MIN_WINDOW = 4

_MIN_FREQ_HZ = 20.0  # centroid/roll-off floor: silence has centroid 0 Hz
_HUGE = 1e12  # optimizer statistics are clamped to ±_HUGE (squares stay finite in fp32)
_TINY = 1e-30  # inside logs and square roots only


def _check_nonneg(name: str, value: float) -> float:
    return check_range(name, value, 0.0, math.inf)


@dataclass(frozen=True)
class RewardConfig:
    """Weights and scales of the composite reward (see the module docstring).

    How the terms enter the total:

    :param audio_mode: ``"improvement"`` (audio terms as the change of each sub-score,
        episodic envs) or ``"cost"`` (as its shortfall from 1, tracking envs); see the
        module docstring.
    :param success_bonus: ``aud/success`` on a success step (>= 0).

    Group weights (>= 0): the largest amount a group can pay (improvement) or cost per
    step:

    :param w_aud: weight of ``R_aud``.
    :param w_opt: weight of ``R_opt`` (a cost: the shortfall of its sub-scores from 1).
    :param w_pol: weight of ``R_pol`` (a cost, likewise).

    Relative sub-term weights inside a group (>= 0; normalized by the group's sum):

    :param w_aud_mel: log-mel similarity.
    :param w_aud_centroid: spectral centroid closeness.
    :param w_aud_rolloff: roll-off closeness.
    :param w_aud_flatness: flatness match.
    :param w_aud_peakiness: peakiness match.
    :param w_opt_grad_norm: gradient norm under threshold.
    :param w_opt_resonance: deep resonance (coherent, bounded, alive updates).
    :param w_opt_update_norm: small update norm.
    :param w_pol_periodicity: periodicity of the knob trajectory.
    :param w_pol_diversity: diversity of visited knob states.

    Penalty weights (>= 0, absolute):

    :param w_pen_loudness: RMS loudness over the cap.
    :param w_pen_slew: knob slew over the limit.
    :param w_pen_divergence: an inner optimizer diverged this step.
    :param w_pen_time: constant cost of every step (the clock).
    :param violation_tolerance: a safety penalty (:data:`SAFETY_TERMS`) counts as a
        violation only when its raw value exceeds this (1e-3: loudness more than
        0.19 dB over the cap, a knob move 0.0032 over the slew limit at the default
        softness), so float rounding at a limit is never a violation.

    Scales:

    :param mel_distance_scale: ``d`` at which the mel similarity ``exp(−d/scale)`` is
        ``1/e`` (``d`` = :func:`aegym.features.spectral_distance`; a sine one octave off
        its target is at ``d ≈ 3``).
    :param centroid_scale_oct: centroid error in octaves where closeness is ``1/e``.
    :param rolloff_scale_oct: roll-off error in octaves where closeness is ``1/e``.
    :param flatness_floor: flatness below this counts as fully tonal (pure tones sit at
        1e-5..1e-4, a sawtooth near 0.03, white noise near 1).
    :param flatness_scale_dec: flatness error in decades where the match is ``1/e``.
    :param peakiness_scale_db: peakiness error in dB where the match is ``1/e``.
    :param grad_norm_threshold: gradient norm where the stability score is 0.5.
    :param grad_norm_softness_dec: width of the stability sigmoid in decades of norm.
    :param update_norm_scale: RMS update norm where the small-update score is ``1/e``.
    :param stagnation_norm: RMS update norm where the resonance "activity" factor is
        ``1 − 1/e``; updates far below it count as stagnation. Also the amplitude floor of
        the update autocorrelation.
    :param growth_scale_per_step: log-growth of the update norm per step where the
        resonance "boundedness" factor is ``1/e`` (0.05 ≈ 5 % growth per step).
    :param resonance_max_lag_fraction: largest autocorrelation lag of the updates, as a
        fraction of the window (periods up to this many steps are detected).
    :param periodicity_max_lag_fraction: same for the knob trajectory.
    :param periodicity_floor_unit: oscillation amplitude (norm of the detrended knob
        vector, normalized knob units) below which a trajectory counts as still.
    :param diversity_scale_unit: RMS per-knob standard deviation (normalized knob units)
        where the diversity score is ``1 − 1/e``.
    :param loudness_cap_dbfs: RMS loudness cap in dBFS (a full-scale sine is −3 dBFS).
    :param loudness_softness_db: loudness excess in dB where the penalty is ``tanh(1)``.
    :param slew_limit_unit: largest per-step knob move (normalized knob units) that is
        free.
    :param slew_softness_unit: slew excess where a single knob's penalty is ``tanh(1)``.
    """

    audio_mode: AudioMode = "improvement"
    success_bonus: float = 10.0

    w_aud: float = 1.0
    w_opt: float = 0.02
    w_pol: float = 0.02

    w_aud_mel: float = 2.0
    w_aud_centroid: float = 1.0
    w_aud_rolloff: float = 1.0
    w_aud_flatness: float = 0.5
    w_aud_peakiness: float = 0.5
    w_opt_grad_norm: float = 1.0
    w_opt_resonance: float = 1.0
    w_opt_update_norm: float = 1.0
    w_pol_periodicity: float = 1.0
    w_pol_diversity: float = 1.0

    w_pen_loudness: float = 0.05
    w_pen_slew: float = 0.02
    w_pen_divergence: float = 1.0
    w_pen_time: float = 0.01
    violation_tolerance: float = 1e-3

    mel_distance_scale: float = 3.0
    centroid_scale_oct: float = 1.0
    rolloff_scale_oct: float = 1.0
    flatness_floor: float = 1e-3
    flatness_scale_dec: float = 1.0
    peakiness_scale_db: float = 10.0
    grad_norm_threshold: float = 1.0
    grad_norm_softness_dec: float = 0.25
    update_norm_scale: float = 0.1
    stagnation_norm: float = 1e-4
    growth_scale_per_step: float = 0.05
    resonance_max_lag_fraction: float = 0.5
    periodicity_max_lag_fraction: float = 0.5
    periodicity_floor_unit: float = 1e-3
    diversity_scale_unit: float = 0.15
    loudness_cap_dbfs: float = -6.0
    loudness_softness_db: float = 6.0
    slew_limit_unit: float = 0.05
    slew_softness_unit: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name.startswith("w_"):
                _check_nonneg(f.name, getattr(self, f.name))
        for name in (
            "mel_distance_scale",
            "centroid_scale_oct",
            "rolloff_scale_oct",
            "flatness_scale_dec",
            "peakiness_scale_db",
            "grad_norm_threshold",
            "grad_norm_softness_dec",
            "update_norm_scale",
            "stagnation_norm",
            "growth_scale_per_step",
            "periodicity_floor_unit",
            "diversity_scale_unit",
            "loudness_softness_db",
            "slew_softness_unit",
        ):
            check_positive(name, getattr(self, name))
        check_range("flatness_floor", self.flatness_floor, 1e-12, 0.5)
        check_range("resonance_max_lag_fraction", self.resonance_max_lag_fraction, 0.1, 0.9)
        check_range("periodicity_max_lag_fraction", self.periodicity_max_lag_fraction, 0.1, 0.9)
        check_range("loudness_cap_dbfs", self.loudness_cap_dbfs, -120.0, 20.0)
        _check_nonneg("slew_limit_unit", self.slew_limit_unit)
        _check_nonneg("success_bonus", self.success_bonus)
        check_range("violation_tolerance", self.violation_tolerance, 0.0, 1.0)
        if self.audio_mode not in ("improvement", "cost"):
            raise ValueError(f"audio_mode must be 'improvement' or 'cost', got {self.audio_mode!r}")

    def coefficients(self, terms: Sequence[str] = TERM_NAMES) -> dict[str, float]:
        """``c_name`` (>= 0) of every term in ``terms``: how much it can pay or cost.

        Groups: ``c = w_g · w_g,i / Σ_j w_g,j`` with the sum over the group's terms that
        are in ``terms`` (0 when those weights sum to 0), so ``w_g`` stays the group's
        largest contribution per step whichever of its terms an env uses. Penalties:
        ``c = w_pen_i``; ``aud/success``: ``success_bonus``.
        """
        check_terms(terms)
        groups = {"aud": (self.w_aud, AUDIO_TERMS), "opt": (self.w_opt, OPTIMIZER_TERMS)}
        groups["pol"] = (self.w_pol, POLICY_TERMS)
        coeffs: dict[str, float] = {}
        for w_group, names in groups.values():
            used = [n for n in names if n in terms]
            sub = [getattr(self, "w_" + n.replace("/", "_")) for n in used]
            total = sum(sub)
            for name, w in zip(used, sub, strict=True):
                coeffs[name] = w_group * w / total if total > 0 else 0.0
        for name in PENALTY_TERMS:
            if name in terms:
                coeffs[name] = getattr(self, "w_" + name.replace("/", "_"))
        if SUCCESS_TERM in terms:
            coeffs[SUCCESS_TERM] = self.success_bonus
        return {n: coeffs[n] for n in TERM_NAMES if n in terms}

    @property
    def term_coefficients(self) -> dict[str, float]:
        """:meth:`coefficients` of every term."""
        return self.coefficients()


def check_terms(terms: Sequence[str]) -> tuple[str, ...]:
    """``terms`` validated: known names (:data:`TERM_NAMES`), no duplicates, every
    audio sub-score (they form one similarity)."""
    names = tuple(terms)
    unknown = [t for t in names if t not in TERM_NAMES]
    if unknown:
        raise ValueError(f"unknown reward terms {unknown}; known: {list(TERM_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"reward terms have duplicates: {names}")
    missing = [t for t in AUDIO_TERMS if t not in names]
    if missing:
        raise ValueError(f"reward terms must include every audio term, missing {missing}")
    return names


class RewardBounds(NamedTuple):
    """Range of the total reward: ``low <= total <= high``."""

    low: float
    high: float


class RewardOutput(NamedTuple):
    """Result of :class:`CompositeReward`.

    :param total: ``[B]`` total reward, equal to the sum of ``terms``.
    :param terms: weighted contribution of every term the reward uses (in the order of
        :data:`TERM_NAMES`), ``[B]`` each; costs and penalties are <= 0.
    :param raw: unweighted values of the same terms, ``[B]`` each: sub-scores in
        ``[0, 1]`` (1 = best), penalties in ``[0, 1]`` (0 = inside the limit),
        ``aud/success`` and ``pen/divergence`` 0 or 1, ``pen/time`` 1.
    :param audio_scores: the audio sub-scores of this state (``aud/*`` in ``[0, 1]``),
        what the next step's improvement is measured from.
    :param violation: ``[B]`` bool, a safety penalty (:data:`SAFETY_TERMS`) above
        ``violation_tolerance``.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    raw: dict[str, torch.Tensor]
    audio_scores: dict[str, torch.Tensor]
    violation: torch.Tensor

    def group_total(self, group: str) -> torch.Tensor:
        """Sum of the weighted terms of one group (``"aud"``, ``"opt"``, ``"pol"``,
        ``"pen"``), ``[B]``."""
        names = [n for n in self.terms if n.split("/")[0] == group]
        if not names:
            groups = sorted({n.split("/")[0] for n in self.terms})
            raise ValueError(f"group must be one of {groups}; got {group!r}")
        return torch.stack([self.terms[n] for n in names]).sum(0)


# ---------------------------------------------------------------------------------------
# helpers


def _float(x: torch.Tensor) -> torch.Tensor:
    """Promote half precision to float32 (squares of update norms overflow fp16)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _unit(score: torch.Tensor) -> torch.Tensor:
    """Clamp a score to ``[0, 1]``; NaN (from non-finite inputs) becomes 0 (worst)."""
    return torch.nan_to_num(score, nan=0.0).clamp(0.0, 1.0)


def _sanitize_stat(x: torch.Tensor) -> torch.Tensor:
    """Optimizer statistics: NaN/inf count as divergence, clamped to ``±_HUGE``."""
    x = _float(x)
    return torch.nan_to_num(x, nan=_HUGE, posinf=_HUGE, neginf=-_HUGE).clamp(-_HUGE, _HUGE)


def _check_batch(name: str, x: torch.Tensor, batch: int | None) -> None:
    if batch is not None and x.shape[0] != batch:
        raise ValueError(f"{name} must have batch size {batch}, got shape {tuple(x.shape)}")


def _check_window(name: str, x: torch.Tensor) -> None:
    if x.shape[1] < MIN_WINDOW:
        raise ValueError(
            f"{name} needs a window of at least {MIN_WINDOW} steps (dim 1), "
            f"got shape {tuple(x.shape)}"
        )


def _as_sequence(name: str, x: torch.Tensor) -> torch.Tensor:
    """``[B, W]`` or ``[B, W, D]`` -> ``[B, W, D]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 2:
        x = x.unsqueeze(-1)
    if x.ndim != 3 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [B, W] or [B, W, D], got {tuple(x.shape)}")
    check_tensor(name, x, ndim=3, finite=False)
    return x


def detrend(x: torch.Tensor) -> torch.Tensor:
    """Remove the least-squares line over time from ``[B, W, D]`` sequences.

    ``x̃_t = x_t − x̄ − β (t − t̄)`` with ``β = Σ_t (t − t̄)(x_t − x̄) / Σ_t (t − t̄)²``,
    per batch item and dimension.
    """
    w = x.shape[1]
    t = torch.arange(w, dtype=x.dtype, device=x.device)
    tc = (t - t.mean()).view(1, w, 1)
    xc = x - x.mean(1, keepdim=True)
    slope = (tc * xc).sum(1, keepdim=True) / tc.square().sum()
    return xc - slope * tc


def lagged_correlation(x: torch.Tensor, max_lag: int, floor: float) -> torch.Tensor:
    """Normalized autocorrelation of ``[B, W, D]`` sequences at lags ``1..max_lag``.

    ``ρ_k = Σ_t ⟨x_t, x_{t+k}⟩ / (√(Σ_t ‖x_t‖²) · √(Σ_t ‖x_{t+k}‖²) + (W − k) · a²)``
    with sums over the ``W − k`` overlapping steps and amplitude floor ``a = floor``.
    By Cauchy–Schwarz ``ρ_k ∈ (−1, 1)``; a periodic sequence of period ``P`` with
    amplitude ``≫ a`` gives ``ρ_P ≈ 1``, and sequences with amplitude ``≪ a`` give
    ``ρ ≈ 0``. Returns ``[B, max_lag]``.
    """
    w = x.shape[1]
    rhos = []
    for k in range(1, max_lag + 1):
        a, b = x[:, : w - k], x[:, k:]
        num = (a * b).sum((1, 2))
        den = (a.square().sum((1, 2)) + _TINY).sqrt() * (b.square().sum((1, 2)) + _TINY).sqrt()
        rhos.append(num / (den + (w - k) * floor * floor))
    return torch.stack(rhos, -1)


def rebound_coherence(x: torch.Tensor, max_lag_fraction: float, floor: float) -> torch.Tensor:
    """Periodicity of ``[B, W, D]`` sequences from their autocorrelation, ``[B]`` in [0, 1].

    After :func:`detrend`, with ``ρ_k`` from :func:`lagged_correlation` for
    ``k = 1..K`` (``K = clamp(⌊f·W⌋, 2, W − 1)``, ``f = max_lag_fraction``)::

        C = max_k (ρ_k − min_{j<=k} ρ_j) / 2

    the height of the highest autocorrelation peak *after* its deepest preceding dip,
    as in autocorrelation pitch detection. A sinusoid or alternating sequence (period
    ``<= K``) dips to ≈ −1 at half a period and rebounds to ≈ 1 at a period, so
    ``C ≈ 1``; a trend, a smooth drift or a random walk decays without rebounding
    (``C`` small); white noise gives ``C`` of order ``1/√W``.
    """
    w = x.shape[1]
    max_lag = min(max(int(max_lag_fraction * w), 2), w - 1)
    rho = lagged_correlation(detrend(x), max_lag, floor)
    running_min = torch.cummin(rho, dim=-1).values
    return _unit(0.5 * (rho - running_min).amax(-1))


# ---------------------------------------------------------------------------------------
# audio terms


def octave_closeness(
    pred_hz: torch.Tensor, target_hz: torch.Tensor, scale_oct: float
) -> torch.Tensor:
    """``exp(−(log2(f_p / f_t))² / s²)`` with both frequencies floored at 20 Hz, in (0, 1]."""
    ratio_oct = torch.log2(pred_hz.clamp_min(_MIN_FREQ_HZ)) - torch.log2(
        target_hz.clamp_min(_MIN_FREQ_HZ)
    )
    return _unit(torch.exp(-(ratio_oct / scale_oct).square()))


def audio_terms(pred: Features, target: Features, cfg: RewardConfig) -> dict[str, torch.Tensor]:
    """Feature-space similarity of ``pred`` to ``target``; every score in [0, 1], 1 = equal.

    * ``aud/mel``       ``exp(−d / mel_distance_scale)``, ``d`` = :func:`spectral_distance`
    * ``aud/centroid``  ``exp(−(log2(c_p / c_t))² / centroid_scale_oct²)``
    * ``aud/rolloff``   ``exp(−(log2(r_p / r_t))² / rolloff_scale_oct²)``
    * ``aud/flatness``  ``exp(−(log10 φ_p − log10 φ_t)² / flatness_scale_dec²)`` with
      ``φ = clamp(flatness, flatness_floor, 1)``
    * ``aud/peakiness`` ``exp(−(π_p − π_t)² / peakiness_scale_db²)``

    Centroid and roll-off are floored at 20 Hz (silence has centroid 0). Identical
    features give exactly 1 everywhere.

    Shape: ``pred`` batch ``B``; ``target`` batch ``B`` or 1 (broadcast) -> ``[B]`` each.
    """
    batch = pred.centroid_hz.shape[0]
    for name in ("centroid_hz", "rolloff_hz", "flatness", "peakiness_db", "loudness_db"):
        p, t = getattr(pred, name), getattr(target, name)
        if p.ndim != 1 or t.ndim != 1:
            raise ValueError(f"features.{name} must be [B], got {tuple(p.shape)}, {tuple(t.shape)}")
        if t.shape[0] not in (1, batch):
            raise ValueError(
                f"target features must have batch 1 or {batch}, got {name} {tuple(t.shape)}"
            )
    d = spectral_distance(pred, target)
    log_flat_p = torch.log10(pred.flatness.clamp(cfg.flatness_floor, 1.0))
    log_flat_t = torch.log10(target.flatness.clamp(cfg.flatness_floor, 1.0))
    peak_err = (pred.peakiness_db - target.peakiness_db) / cfg.peakiness_scale_db
    terms = {
        "aud/mel": _unit(torch.exp(-d.clamp_min(0.0) / cfg.mel_distance_scale)),
        "aud/centroid": octave_closeness(
            pred.centroid_hz, target.centroid_hz, cfg.centroid_scale_oct
        ),
        "aud/rolloff": octave_closeness(pred.rolloff_hz, target.rolloff_hz, cfg.rolloff_scale_oct),
        "aud/flatness": _unit(
            torch.exp(-((log_flat_p - log_flat_t) / cfg.flatness_scale_dec).square())
        ),
        "aud/peakiness": _unit(torch.exp(-peak_err.clamp(-1e6, 1e6).square())),
    }
    return {k: v.expand(batch) for k, v in terms.items()}


# ---------------------------------------------------------------------------------------
# optimizer terms


def grad_norm_score(grad_norms: torch.Tensor, cfg: RewardConfig) -> torch.Tensor:
    """Stability: gradient norms under the threshold, ``[B, W] -> [B]`` in [0, 1].

    ``S = mean_t σ((log10 τ − log10(g_t + ε)) / softness)`` with
    ``τ = grad_norm_threshold`` and ``softness = grad_norm_softness_dec``: ≈1 for norms a
    decade below ``τ``, 0.5 at ``τ``, ≈0 a decade above. NaN/inf norms count as huge.
    """
    check_tensor("grad_norms", grad_norms, ndim=2, finite=False)
    g = _sanitize_stat(grad_norms).clamp_min(0.0)
    z = (math.log10(cfg.grad_norm_threshold) - torch.log10(g + _TINY)) / cfg.grad_norm_softness_dec
    return _unit(torch.sigmoid(z).mean(-1))


def _mean_sq_norm(u: torch.Tensor) -> torch.Tensor:
    """``[B, W, D] -> [B, W]`` squared norms ``‖u_t‖²``."""
    return u.square().sum(-1)


class ResonanceFactors(NamedTuple):
    """The three factors of :func:`resonance_score`, ``[B]`` each in [0, 1]."""

    coherence: torch.Tensor
    boundedness: torch.Tensor
    activity: torch.Tensor


def resonance_factors(updates: torch.Tensor, cfg: RewardConfig) -> ResonanceFactors:
    """Factors of the deep-resonance score of an update sequence.

    ``updates``: ``[B, W]`` update norms ``‖u_t‖`` or ``[B, W, D]`` update vectors
    ``u_t`` over the last ``W >= 4`` steps. With ``E(·)`` the mean of ``‖u_t‖²`` over a
    set of steps and ``h = ⌊W/2⌋``:

    * coherence ``C`` — :func:`rebound_coherence` of the sequence (vectors or norms),
      amplitude floor ``stagnation_norm``: coherent ringing → 1, drift/noise → small.
    * boundedness ``Bd = exp(−(relu(γ) / growth_scale_per_step)²)`` with the log-growth
      per step ``γ = ½ (log E(last h) − log E(first h)) / (W − h)``: steady or decaying
      updates → 1, exponential growth (divergence) → 0.
    * activity ``A = 1 − exp(−E(all) / stagnation_norm²)``: stagnation (near-zero
      updates) → 0.
    """
    x = _sanitize_stat(_as_sequence("updates", updates))
    _check_window("updates", x)
    w = x.shape[1]
    h = w // 2
    sq = _mean_sq_norm(x)
    energy_early = sq[:, :h].mean(-1)
    energy_late = sq[:, w - h :].mean(-1)
    growth = 0.5 * (torch.log(energy_late + _TINY) - torch.log(energy_early + _TINY)) / (w - h)
    boundedness = torch.exp(-(torch.relu(growth) / cfg.growth_scale_per_step).square())
    activity = 1.0 - torch.exp(-sq.mean(-1) / cfg.stagnation_norm**2)
    coherence = rebound_coherence(x, cfg.resonance_max_lag_fraction, cfg.stagnation_norm)
    return ResonanceFactors(coherence, _unit(boundedness), _unit(activity))


def resonance_score(updates: torch.Tensor, cfg: RewardConfig) -> torch.Tensor:
    """Deep resonance (seed §5): bounded, coherent ringing of the updates, ``[B]`` in [0, 1].

    ``R_res = C · Bd · A`` (coherence × boundedness × activity, see
    :func:`resonance_factors`): high only when updates oscillate coherently, do not grow
    exponentially and are not vanishingly small.
    """
    f = resonance_factors(updates, cfg)
    return _unit(f.coherence * f.boundedness * f.activity)


def update_norm_score(updates: torch.Tensor, cfg: RewardConfig) -> torch.Tensor:
    """Small updates: ``exp(−mean_t ‖u_t‖² / update_norm_scale²)``, ``[B]`` in [0, 1].

    ``updates``: ``[B, W]`` norms or ``[B, W, D]`` vectors (``W >= 1``).
    """
    x = _sanitize_stat(_as_sequence("updates", updates))
    return _unit(torch.exp(-_mean_sq_norm(x).mean(-1) / cfg.update_norm_scale**2))


def optimizer_terms(
    grad_norms: torch.Tensor, updates: torch.Tensor, cfg: RewardConfig
) -> dict[str, torch.Tensor]:
    """``opt/grad_norm`` (:func:`grad_norm_score`), ``opt/resonance``
    (:func:`resonance_score`) and ``opt/update_norm`` (:func:`update_norm_score`).

    Shape: ``grad_norms [B, W']``, ``updates [B, W]`` or ``[B, W, D]`` -> ``[B]`` each.
    """
    grad = grad_norm_score(grad_norms, cfg)
    _check_batch("updates", updates, grad_norms.shape[0])
    return {
        "opt/grad_norm": grad,
        "opt/resonance": resonance_score(updates, cfg),
        "opt/update_norm": update_norm_score(updates, cfg),
    }


# ---------------------------------------------------------------------------------------
# policy terms


def periodicity_score(knob_trajectory: torch.Tensor, cfg: RewardConfig) -> torch.Tensor:
    """Periodicity of a knob trajectory ``[B, W, K]`` (normalized knobs) -> ``[B]`` in [0, 1].

    :func:`rebound_coherence` of the trajectory with lags up to
    ``periodicity_max_lag_fraction · W`` and amplitude floor ``periodicity_floor_unit``:
    a trajectory that returns to where it was (an LFO-like sweep) scores ≈1, a random
    walk, a ramp or a still trajectory scores low.
    """
    check_tensor("knob_trajectory", knob_trajectory, ndim=3)
    _check_window("knob_trajectory", knob_trajectory)
    x = _float(knob_trajectory)
    return rebound_coherence(x, cfg.periodicity_max_lag_fraction, cfg.periodicity_floor_unit)


def diversity_score(knob_trajectory: torch.Tensor, cfg: RewardConfig) -> torch.Tensor:
    """Spread of visited knob states ``[B, W, K]`` -> ``[B]`` in [0, 1].

    ``D = 1 − exp(−mean_k Var_t(x_{t,k}) / diversity_scale_unit²)``. The mean pairwise
    squared distance of the visited states is ``2 · Σ_k Var_k``, so this is a smooth,
    saturating function of it; a still trajectory scores 0.
    """
    check_tensor("knob_trajectory", knob_trajectory, ndim=3)
    if knob_trajectory.shape[1] < 2:
        raise ValueError(
            f"knob_trajectory needs at least 2 steps, got shape {tuple(knob_trajectory.shape)}"
        )
    x = _float(knob_trajectory)
    var = x.var(1, unbiased=False).mean(-1)
    return _unit(1.0 - torch.exp(-var / cfg.diversity_scale_unit**2))


def policy_terms(knob_trajectory: torch.Tensor, cfg: RewardConfig) -> dict[str, torch.Tensor]:
    """``pol/periodicity`` (:func:`periodicity_score`) and ``pol/diversity``
    (:func:`diversity_score`) of ``knob_trajectory [B, W, K]``, ``[B]`` each."""
    return {
        "pol/periodicity": periodicity_score(knob_trajectory, cfg),
        "pol/diversity": diversity_score(knob_trajectory, cfg),
    }


# ---------------------------------------------------------------------------------------
# penalties


def penalties(
    loudness_db: torch.Tensor, knob_delta: torch.Tensor | None, cfg: RewardConfig
) -> dict[str, torch.Tensor]:
    """Safety penalties, each ``[B]`` in [0, 1]: exactly 0 inside the limit, growing
    smoothly (zero slope at the limit) and monotonically outside it.

    * ``pen/loudness`` ``tanh((relu(L − loudness_cap_dbfs) / loudness_softness_db)²)``
      for the RMS loudness ``L`` in dBFS (``loudness_db [B]``).
    * ``pen/slew`` ``tanh(Σ_k (relu(|δ_k| − slew_limit_unit) / slew_softness_unit)²)``
      for this step's knob move ``δ`` (``knob_delta [B, K]``, normalized units); left
      out when ``knob_delta`` is None.

    Non-finite loudness counts as maximal (penalty → 1).
    """
    check_tensor("loudness_db", loudness_db, ndim=1, finite=False)
    batch = loudness_db.shape[0]
    loud = torch.nan_to_num(_float(loudness_db), nan=_HUGE, posinf=_HUGE, neginf=-_HUGE)
    excess_db = torch.relu(loud - cfg.loudness_cap_dbfs).clamp_max(_HUGE)
    out = {"pen/loudness": torch.tanh((excess_db / cfg.loudness_softness_db).square())}
    if knob_delta is not None:
        check_tensor("knob_delta", knob_delta, ndim=2)
        _check_batch("knob_delta", knob_delta, batch)
        excess = torch.relu(_float(knob_delta).abs() - cfg.slew_limit_unit)
        out["pen/slew"] = torch.tanh((excess / cfg.slew_softness_unit).square().sum(-1))
    return {k: torch.nan_to_num(v, nan=1.0).clamp(0.0, 1.0) for k, v in out.items()}


# ---------------------------------------------------------------------------------------
# composite


#: The input each term reads; an env that uses a term must pass it on every call.
TERM_INPUTS: dict[str, str] = {
    SUCCESS_TERM: "success",
    "opt/grad_norm": "grad_norms",
    "opt/resonance": "updates",
    "opt/update_norm": "updates",
    "pol/periodicity": "knob_trajectory",
    "pol/diversity": "knob_trajectory",
    "pen/slew": "knob_delta",
    "pen/divergence": "diverged",
}


class CompositeReward:
    """``R = w_aud·R_aud + w_opt·R_opt + w_pol·R_pol − P``, batched, with a breakdown.

    :param config: weights, scales and the audio mode; defaults to ``RewardConfig()``.
    :param terms: the terms this reward uses (:data:`TERM_NAMES` order is kept); every
        audio sub-score is required. Each other term reads one input of :meth:`__call__`
        (:data:`TERM_INPUTS`), which must then be given on every call.

    ========================  ================  ==========================================
    input                     shape             terms
    ========================  ================  ==========================================
    ``pred_features``         batch ``B``       ``aud/*``, ``pen/loudness`` (its RMS)
    ``target_features``       batch ``B`` or 1  ``aud/*``
    ``previous_audio``        ``[B]`` each      ``aud/*`` in improvement mode: the
                                                previous state's :attr:`~RewardOutput.
                                                audio_scores` (or :meth:`audio_scores`)
    ``success``               ``[B]`` bool      ``aud/success``
    ``grad_norms``            ``[B, W]``        ``opt/grad_norm``
    ``updates``               ``[B, W(, D)]``   ``opt/resonance``, ``opt/update_norm``
    ``knob_trajectory``       ``[B, W, K]``     ``pol/periodicity``, ``pol/diversity``
    ``knob_delta``            ``[B, K]``        ``pen/slew``
    ``diverged``              ``[B]`` bool      ``pen/divergence``
    ========================  ================  ==========================================

    ``updates`` are update norms ``[B, W]`` or update vectors ``[B, W, D]`` over the last
    ``W >= 4`` steps; ``knob_trajectory`` needs ``W >= 4`` and normalized knob units, as
    does ``knob_delta``.
    """

    def __init__(self, config: RewardConfig | None = None, terms: Sequence[str] = TERM_NAMES):
        self.config = config or RewardConfig()
        if not isinstance(self.config, RewardConfig):
            raise TypeError(f"config must be a RewardConfig, got {type(self.config).__name__}")
        self.terms = tuple(n for n in TERM_NAMES if n in check_terms(terms))
        self.coefficients = self.config.coefficients(self.terms)

    def audio_scores(self, pred: Features, target: Features) -> dict[str, torch.Tensor]:
        """The audio sub-scores ``aud/*`` of ``pred`` against ``target`` (see
        :func:`audio_terms`), the potential that improvement mode differences."""
        return audio_terms(pred, target, self.config)

    def max_step_cost(self) -> float:
        """``a``: the most the non-audio terms can cost in one step of an episode that
        does not diverge (``opt/*``, ``pol/*``, safety penalties and ``pen/time``)."""
        skip = (*AUDIO_TERMS, SUCCESS_TERM, "pen/divergence")
        return float(sum(c for n, c in self.coefficients.items() if n not in skip))

    def aligned_steps(self) -> float:
        """``T*``: a policy that succeeds within ``T*`` steps earns more than any policy
        that does not succeed within the same horizon (improvement mode, see the module
        docstring): ``success_bonus / (a − w_pen_time)``, ``inf`` when nothing but the
        clock costs. Without ``aud/success`` or in cost mode the bound does not apply."""
        if SUCCESS_TERM not in self.terms or self.config.audio_mode != "improvement":
            raise ValueError("aligned_steps needs aud/success and audio_mode='improvement'")
        clock = self.coefficients.get("pen/time", 0.0)
        extra = self.max_step_cost() - clock
        return math.inf if extra <= 0 else self.config.success_bonus / extra

    def bounds(self) -> RewardBounds:
        """Range of one step's total: every cost at its maximum and the audio at its
        worst (``low``), the audio at its best with the success bonus (``high``)."""
        c = self.coefficients
        costs = sum(v for n, v in c.items() if n != SUCCESS_TERM)
        audio = sum(c[n] for n in AUDIO_TERMS)
        gain = audio if self.config.audio_mode == "improvement" else 0.0
        high = gain + c.get(SUCCESS_TERM, 0.0) - c.get("pen/time", 0.0)
        return RewardBounds(-float(costs), float(high))

    def __call__(
        self,
        pred_features: Features,
        target_features: Features,
        *,
        previous_audio: dict[str, torch.Tensor] | None = None,
        success: torch.Tensor | None = None,
        grad_norms: torch.Tensor | None = None,
        updates: torch.Tensor | None = None,
        knob_trajectory: torch.Tensor | None = None,
        knob_delta: torch.Tensor | None = None,
        diverged: torch.Tensor | None = None,
    ) -> RewardOutput:
        cfg = self.config
        given = {
            "success": success,
            "grad_norms": grad_norms,
            "updates": updates,
            "knob_trajectory": knob_trajectory,
            "knob_delta": knob_delta,
            "diverged": diverged,
        }
        for name, value in given.items():
            users = [t for t in self.terms if TERM_INPUTS.get(t) == name]
            if users and value is None:
                raise ValueError(f"{name} is required by the reward terms {users}")
            if value is not None and not users:
                raise ValueError(
                    f"{name} was given but no reward term reads it (terms: {list(self.terms)})"
                )
        scores = audio_terms(pred_features, target_features, cfg)
        batch = scores["aud/mel"].shape[0]
        zeros = scores["aud/mel"].new_zeros(batch)
        for name in ("grad_norms", "updates", "knob_trajectory"):
            value = given[name]
            if value is not None:
                if not isinstance(value, torch.Tensor) or value.ndim < 2:
                    raise ValueError(f"{name} must be a [B, W, ...] tensor")
                _check_batch(name, value, batch)
        flags = {}
        for name in ("success", "diverged"):
            value = given[name]
            if value is not None:
                if not isinstance(value, torch.Tensor) or value.ndim != 1:
                    raise ValueError(f"{name} must be a [B] bool tensor, got {value!r}")
                _check_batch(name, value, batch)
                flags[name] = value.to(device=zeros.device, dtype=torch.bool)

        raw: dict[str, torch.Tensor] = dict(scores)
        if SUCCESS_TERM in self.terms:
            raw[SUCCESS_TERM] = flags["success"].to(zeros.dtype)
        if grad_norms is not None:
            raw["opt/grad_norm"] = grad_norm_score(grad_norms, cfg)
        if updates is not None:
            raw["opt/resonance"] = resonance_score(updates, cfg)
            raw["opt/update_norm"] = update_norm_score(updates, cfg)
        if knob_trajectory is not None:
            raw.update(policy_terms(knob_trajectory, cfg))
        raw.update(penalties(pred_features.loudness_db, knob_delta, cfg))
        if "pen/divergence" in self.terms:
            raw["pen/divergence"] = flags["diverged"].to(zeros.dtype)
        raw["pen/time"] = torch.ones_like(zeros)

        c = self.coefficients
        terms: dict[str, torch.Tensor] = {}
        if cfg.audio_mode == "improvement":
            if previous_audio is None:
                raise ValueError("previous_audio is required in audio_mode='improvement'")
            # A success step counts as a perfect match: every successful episode
            # collects the same audio total, so only speed and costs separate them.
            reached = flags.get("success")
            for n in AUDIO_TERMS:
                prev = previous_audio[n].to(zeros)
                now = scores[n] if reached is None else torch.where(reached, 1.0, scores[n])
                terms[n] = c[n] * (now - prev)
        else:
            for n in AUDIO_TERMS:
                terms[n] = c[n] * (scores[n] - 1.0)
        for n in self.terms:
            if n in AUDIO_TERMS:
                continue
            r = raw[n].to(zeros.dtype)
            if n == SUCCESS_TERM:
                terms[n] = c[n] * r
            elif n.startswith("pen/"):
                terms[n] = -c[n] * r
            else:
                terms[n] = -c[n] * (1.0 - r)
        terms = {n: terms[n] for n in self.terms}
        raw = {n: raw[n].to(zeros.dtype) for n in self.terms}
        total = torch.stack(list(terms.values())).sum(0)
        unsafe = [raw[n] > cfg.violation_tolerance for n in SAFETY_TERMS if n in raw]
        violation = torch.stack(unsafe).any(0) if unsafe else torch.zeros_like(zeros, dtype=bool)
        return RewardOutput(total, terms, raw, scores, violation)


__all__ = [
    "AUDIO_TERMS",
    "MIN_WINDOW",
    "OPTIMIZER_TERMS",
    "PENALTY_TERMS",
    "POLICY_TERMS",
    "SAFETY_TERMS",
    "SUCCESS_TERM",
    "TERM_INPUTS",
    "TERM_NAMES",
    "AudioMode",
    "CompositeReward",
    "ResonanceFactors",
    "RewardBounds",
    "RewardConfig",
    "RewardOutput",
    "audio_terms",
    "check_terms",
    "detrend",
    "diversity_score",
    "grad_norm_score",
    "lagged_correlation",
    "octave_closeness",
    "optimizer_terms",
    "penalties",
    "periodicity_score",
    "policy_terms",
    "rebound_coherence",
    "resonance_factors",
    "resonance_score",
    "update_norm_score",
]
