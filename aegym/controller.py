"""The adaptive-evolutionary (AE) controller: scalar law, optimizer and sound matching.

AE-DDSP treats an optimization run as a discrete-time control loop. The *plant* is a
differentiable system with parameters θ; the *controller* has two coupled parts:

1. **Adaptive (gradient) control.** Filtered gradients update θ with gains (learning
   rate α, momentum μ) that are tuned online from scalar feedback: the loss ℓ, an
   optional reward r, their trends and the loss variance. No gradient flows through
   the scheduler.
2. **Evolutionary dither.** Small, shaped Gaussian perturbations σ·D(θ)·η are added to
   θ (never to the gradient) every step, and sparse *local tests* evaluate a few
   perturbed copies θ + δ_i and average a fraction ρ of the best one in when it beats
   the current loss.

Signals (filtered feedback), with ``EMA_β`` an exponential moving average:

* ``ℓ̄_t = EMA_β(ℓ_t)``, ``r̄_t = EMA_β(r_t)``, ``v_t = VarWindow(ℓ_{t-k+1..t})``
* ``Δℓ_t = ℓ̄_{t-1} − ℓ̄_t`` (positive = improving), ``Δr_t = r̄_t − r̄_{t-1}``

Plant (per step)::

    h_{t+1} = μ_t·h_t + (1 − μ_t)·g_t                      (Φ, "sgd"; Adam moments for "adam")
    u_t     = α_t·h_{t+1}                                  (U, "sgd"; Adam step for "adam")
    θ_{t+1} = clamp(θ_t − u_t + σ_t·D(θ_t)·η_t),   η_t ~ N(0, I),  D = per-tensor RMS

Adaptive law (:func:`alpha_factor`, :func:`next_alpha`, :func:`next_momentum`,
:func:`next_sigma`)::

    α_{t+1} = clip(α_t·f_α),   f_α = u if Δℓ_t > ε else d / (1 + λ·v_t)
    μ_{t+1} = clip(μ_t + δμ) if Δr_t > 0 else clip(μ_t − κμ·μ_t)
    σ_{t+1} = clip(σ_t·f_σ)    (raised only on plateaus, cut by variance and by a low
                                local-test success rate)

Contents:

* :class:`AEConfig` — every constant of the law, validated.
* Pure law functions — :func:`ema`, :func:`window_variance`, :func:`alpha_factor`,
  :func:`cosine_envelope`, :func:`next_alpha`, :func:`next_momentum`,
  :func:`next_plateau_count`, :func:`success_factor`, :func:`next_sigma`.
* :class:`AEController` — the scalar law with its filters; ``observe(loss, reward)``.
* :class:`AEOptimizer` — a ``torch.optim.Optimizer`` running the whole loop on any
  parameters: filtered update, dither, local tests, clamping, divergence rollback.
* :func:`fit_patch` — the windowed sound-matching loop: fits synth knobs to a target.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, NamedTuple

import torch

from aegym.features import FeatureConfig, FeatureEncoder, spectral_distance
from aegym.synth import Patch, SynthConfig, Voice

# Guards divisions by a loss level that may be exactly zero (relative signals).
_TINY = 1e-12

UpdateRule = Literal["sgd", "adam"]
BatchedEval = Callable[[list[list[torch.Tensor]]], torch.Tensor]
Bounds = Callable[[torch.Tensor], torch.Tensor] | tuple[float, float]


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


def _check_number(
    name: str,
    value: Any,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise TypeError/ValueError unless ``value`` is a real number in the interval."""
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"AEConfig.{name} must be a number in {interval}, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if math.isnan(value) or too_low or too_high:
        raise ValueError(f"AEConfig.{name} must be in {interval}, got {value!r}")


def _check_integer(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"AEConfig.{name} must be an int in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"AEConfig.{name} must be in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class AEConfig:
    """Constants of the AE law, the optimizer and its stability monitors.

    Filters

    :param beta: EMA coefficient β of ``ℓ̄``, ``r̄``, the Lyapunov and resonance
        monitors, in [0, 1). ``x̄_t = β·x̄_{t-1} + (1 − β)·x_t``.
    :param var_window: k, number of recent raw losses in ``v_t``, in [2, 10000].
    :param relative: feed the law scale-free signals: ``Δℓ_t / |ℓ̄_{t-1}|`` and
        ``v_t / ℓ̄_{t-1}²`` (so ε, λ and the plateau tolerance mean the same for any
        loss scale). With False the law sees raw ``Δℓ_t`` and ``v_t``.

    Learning-rate law

    :param eps: ε, improvement threshold on Δℓ, in [0, 1000].
    :param up: u, factor when improving, in [1, 10].
    :param down: d, factor otherwise (before variance damping), in (0, 1].
    :param var_damping: λ, variance damping ``d / (1 + λ·v)``, in [0, 100].
    :param alpha_min_factor: lower α bound as a multiple of α0, in (0, 1].
    :param alpha_max_factor: upper α bound as a multiple of α0, in [1, 1000].
    :param cosine_envelope: overlay a cosine envelope on the α bounds (see
        :func:`cosine_envelope`); needs ``total_steps``.
    :param total_steps: T, length of the cosine envelope in law steps, >= 1 or None.
    :param cosine_floor: envelope value reached at step T, in [0, 1].

    Momentum law

    :param momentum0: μ0, initial momentum, in [0, momentum_max].
    :param momentum_step: δμ, added when the reward trend is positive, in [0, 1].
    :param momentum_decay: κμ, relative cut ``μ − κμ·μ`` otherwise, in [0, 1].
    :param momentum_max: μmax, upper momentum bound, in [0, 1).

    Dither law

    :param sigma0: σ0, initial dither strength relative to D(θ), in [sigma_min, sigma_max].
    :param sigma_min: lower σ bound, in [0, 1].
    :param sigma_max: upper σ bound, in [sigma_min, 1].
    :param plateau_steps: p, plateau length (steps with ``|Δℓ| <= plateau_tol``) after
        which σ is boosted, in [1, 100000].
    :param plateau_tol: tolerance of "Δℓ ≈ 0", in [0, 1000].
    :param plateau_boost: factor on σ per plateau step, in [1, 10].
    :param sigma_var_damping: λσ, variance cut ``σ / (1 + λσ·v)``, in [0, 100].
    :param sigma_decay: off plateaus σ relaxes back to σ0 by this factor per step
        (never below σ0 by this term), in (0, 1]; 1 disables.
    :param dither_floor: floor of the shaping ``D(θ) = max(RMS(θ), floor)``, so
        zero-initialised tensors are dithered too, in [0, 1e6].

    Local tests

    :param test_every: m, a local test runs every m optimizer steps, in [1, 100000].
    :param n_probes: n, perturbed copies per test, in [0, 4096]; 0 disables tests.
    :param probe_scale: probe size ``δ_i = probe_scale·D(θ)·η_i``, in [0, 1e3].
    :param rho: ρ, average-in fraction ``θ ← (1 − ρ)·θ + ρ·θ_best``, in [0, 1].
    :param success_beta: EMA coefficient of the success rate, in [0, 1).
    :param success_target: s*, success rate at which tests leave σ alone, in [0, 1].
    :param success_gain: γ in the success factor ``exp(γ·(s − s*))``, in [0, 100].

    Stability

    :param divergence_factor: a loss above ``ℓ̄ + (factor − 1)·|ℓ̄|`` (= factor·ℓ̄ for
        positive losses) or a non-finite loss/gradient is a divergence, in (1, inf].
    :param rollback_alpha_cut: α is multiplied by this on a divergence, in (0, 1].

    Update rule

    :param update_rule: ``"sgd"`` (EMA momentum) or ``"adam"`` (μ plays β1).
    :param adam_beta2: β2 of the Adam second moment, in [0, 1).
    :param adam_eps: ε of the Adam denominator, in (0, 1].
    :param seed: seed of the optimizer's dither/probe generator, or None (drawn from
        torch's global generator).
    """

    beta: float = 0.9
    var_window: int = 10
    relative: bool = True
    eps: float = 1e-4
    up: float = 1.02
    down: float = 0.8
    var_damping: float = 5.0
    alpha_min_factor: float = 0.3
    alpha_max_factor: float = 3.0
    cosine_envelope: bool = False
    total_steps: int | None = None
    cosine_floor: float = 0.0
    momentum0: float = 0.9
    momentum_step: float = 0.02
    momentum_decay: float = 0.1
    momentum_max: float = 0.99
    sigma0: float = 1e-3
    sigma_min: float = 1e-6
    sigma_max: float = 1e-1
    plateau_steps: int = 5
    plateau_tol: float = 1e-3
    plateau_boost: float = 1.5
    sigma_var_damping: float = 5.0
    sigma_decay: float = 0.9
    dither_floor: float = 1e-2
    test_every: int = 10
    n_probes: int = 4
    probe_scale: float = 0.05
    rho: float = 0.2
    success_beta: float = 0.8
    success_target: float = 0.2
    success_gain: float = 1.0
    divergence_factor: float = 10.0
    rollback_alpha_cut: float = 0.5
    update_rule: UpdateRule = "sgd"
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    seed: int | None = 0

    def __post_init__(self) -> None:
        num = _check_number
        num("beta", self.beta, 0.0, 1.0, high_open=True)
        _check_integer("var_window", self.var_window, 2, 10_000)
        if not isinstance(self.relative, bool):
            raise TypeError(f"AEConfig.relative must be a bool, got {self.relative!r}")
        num("eps", self.eps, 0.0, 1000.0)
        num("up", self.up, 1.0, 10.0)
        num("down", self.down, 0.0, 1.0, low_open=True)
        num("var_damping", self.var_damping, 0.0, 100.0)
        num("alpha_min_factor", self.alpha_min_factor, 0.0, 1.0, low_open=True)
        num("alpha_max_factor", self.alpha_max_factor, 1.0, 1000.0)
        if not isinstance(self.cosine_envelope, bool):
            raise TypeError(
                f"AEConfig.cosine_envelope must be a bool, got {self.cosine_envelope!r}"
            )
        if self.total_steps is not None:
            _check_integer("total_steps", self.total_steps, 1, 10**12)
        if self.cosine_envelope and self.total_steps is None:
            raise ValueError("AEConfig.total_steps must be an int >= 1 when cosine_envelope=True")
        num("cosine_floor", self.cosine_floor, 0.0, 1.0)
        num("momentum_max", self.momentum_max, 0.0, 1.0, high_open=True)
        num("momentum0", self.momentum0, 0.0, self.momentum_max)
        num("momentum_step", self.momentum_step, 0.0, 1.0)
        num("momentum_decay", self.momentum_decay, 0.0, 1.0)
        num("sigma_min", self.sigma_min, 0.0, 1.0)
        num("sigma_max", self.sigma_max, self.sigma_min, 1.0)
        num("sigma0", self.sigma0, self.sigma_min, self.sigma_max)
        _check_integer("plateau_steps", self.plateau_steps, 1, 100_000)
        num("plateau_tol", self.plateau_tol, 0.0, 1000.0)
        num("plateau_boost", self.plateau_boost, 1.0, 10.0)
        num("sigma_var_damping", self.sigma_var_damping, 0.0, 100.0)
        num("sigma_decay", self.sigma_decay, 0.0, 1.0, low_open=True)
        num("dither_floor", self.dither_floor, 0.0, 1e6)
        _check_integer("test_every", self.test_every, 1, 100_000)
        _check_integer("n_probes", self.n_probes, 0, 4096)
        num("probe_scale", self.probe_scale, 0.0, 1e3)
        num("rho", self.rho, 0.0, 1.0)
        num("success_beta", self.success_beta, 0.0, 1.0, high_open=True)
        num("success_target", self.success_target, 0.0, 1.0)
        num("success_gain", self.success_gain, 0.0, 100.0)
        num("divergence_factor", self.divergence_factor, 1.0, math.inf, low_open=True)
        num("rollback_alpha_cut", self.rollback_alpha_cut, 0.0, 1.0, low_open=True)
        if self.update_rule not in ("sgd", "adam"):
            raise ValueError(
                f"AEConfig.update_rule must be 'sgd' or 'adam', got {self.update_rule!r}"
            )
        num("adam_beta2", self.adam_beta2, 0.0, 1.0, high_open=True)
        num("adam_eps", self.adam_eps, 0.0, 1.0, low_open=True)
        if self.seed is not None:
            _check_integer("seed", self.seed, 0, 2**63 - 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown AEConfig fields: {sorted(unknown)}")
        return cls(**data)


# --------------------------------------------------------------------------------------
# Pure law functions
# --------------------------------------------------------------------------------------


def ema(prev: float | None, x: float, beta: float) -> float:
    """Exponential moving average ``x̄_t = β·x̄_{t-1} + (1 − β)·x_t``.

    The first sample initializes the filter: ``ema(None, x, β) = x``.
    """
    if prev is None:
        return float(x)
    return beta * prev + (1.0 - beta) * x


def _nonnegative(value: float) -> float:
    """Clamp a variance-like value to [0, inf]; NaN (unknown, e.g. overflow) counts as inf."""
    if math.isnan(value):
        return math.inf
    return max(value, 0.0)


def _damping(gain: float, variance: float) -> float:
    """Denominator ``1 + gain·v`` (``v`` cleaned by :func:`_nonnegative`); 1 when gain = 0."""
    if gain == 0.0:
        return 1.0
    return 1.0 + gain * _nonnegative(variance)


def _clip(value: float, low: float, high: float) -> float:
    """``min(max(value, low), high)``; NaN goes to ``low`` (the safe side of every gain)."""
    if math.isnan(value):
        return low
    return min(max(value, low), high)


def window_variance(history: Iterable[float]) -> float:
    """Population variance of a window ``v = (1/n)·Σ (ℓ_i − mean(ℓ))²``; 0 if n < 2."""
    values = list(history)
    n = len(values)
    if n < 2:
        return 0.0
    try:
        mean = math.fsum(values) / n
        return math.fsum((x - mean) * (x - mean) for x in values) / n
    except OverflowError:  # huge losses: the variance is effectively infinite
        return math.inf


def alpha_factor(delta_loss: float, variance: float, cfg: AEConfig) -> float:
    """Learning-rate factor ``f_α``.

    ``f_α = u`` if ``Δℓ > ε`` (improving), else ``d / (1 + λ·v)`` (damp, more so
    when the loss is noisy).
    """
    if delta_loss > cfg.eps:
        return cfg.up
    return cfg.down / _damping(cfg.var_damping, variance)


def cosine_envelope(step: int, cfg: AEConfig) -> float:
    """Macro-schedule ``e(t) = f + (1 − f)·½·(1 + cos(π·min(t, T)/T))``; 1 when off.

    ``f`` is ``cfg.cosine_floor`` and ``T`` is ``cfg.total_steps``; e(0) = 1, e(T) = f.
    """
    if not cfg.cosine_envelope or cfg.total_steps is None:
        return 1.0
    frac = min(max(step, 0), cfg.total_steps) / cfg.total_steps
    return cfg.cosine_floor + (1.0 - cfg.cosine_floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


def next_alpha(alpha: float, factor: float, alpha0: float, cfg: AEConfig, step: int = 0) -> float:
    """``α_{t+1} = clip(α_t·f_α, a_min·α0·e(t), a_max·α0·e(t))``.

    ``a_min``/``a_max`` are ``cfg.alpha_min_factor``/``cfg.alpha_max_factor`` and
    ``e(t)`` the optional :func:`cosine_envelope`: the envelope moves the clip window
    (so α itself keeps adapting inside it) and α always stays in ``[a_min, a_max]·α0``.
    """
    env = cosine_envelope(step, cfg)
    low = cfg.alpha_min_factor * alpha0 * env
    high = cfg.alpha_max_factor * alpha0 * env
    return _clip(alpha * factor, low, high)


def next_momentum(mu: float, delta_reward: float, cfg: AEConfig) -> float:
    """``μ_{t+1} = clip(μ_t + δμ, 0, μmax)`` if ``Δr > 0`` else ``clip(μ_t − κμ·μ_t, 0, μmax)``."""
    if delta_reward > 0:
        mu = mu + cfg.momentum_step
    else:
        mu = mu - cfg.momentum_decay * mu
    return _clip(mu, 0.0, cfg.momentum_max)


def next_plateau_count(count: int, delta_loss: float, cfg: AEConfig) -> int:
    """Consecutive plateau steps: ``count + 1`` if ``|Δℓ| <= plateau_tol`` else 0."""
    return count + 1 if abs(delta_loss) <= cfg.plateau_tol else 0


def success_factor(success_rate: float | None, cfg: AEConfig) -> float:
    """Local-test feedback ``exp(γ·(s − s*))``; 1 when no test result is pending (None).

    Above the target rate s* probing pays off (factor > 1), below it σ shrinks.
    """
    if success_rate is None:
        return 1.0
    return math.exp(cfg.success_gain * (success_rate - cfg.success_target))


def next_sigma(
    sigma: float,
    plateau_count: int,
    variance: float,
    success_rate: float | None,
    cfg: AEConfig,
) -> float:
    """Dither law ``σ_{t+1} = clip(σ_t·f_σ, σ_min, σ_max)``.

    With ``s = success_factor(success_rate)`` and ``c = 1 / (1 + λσ·v)``:

    * plateau (``plateau_count >= p``): ``f_σ = b·s·c`` (b = plateau boost);
    * otherwise: ``f_σ = min(1, s)·c``, then, if above σ0, σ relaxes back toward σ0:
      ``σ ← max(σ0, σ·sigma_decay)``.

    So σ is raised **only** on plateaus, cut when the loss is noisy and scaled by the
    local-test success rate.
    """
    damp = _damping(cfg.sigma_var_damping, variance)
    s = success_factor(success_rate, cfg)
    if plateau_count >= cfg.plateau_steps:
        new = sigma * cfg.plateau_boost * s / damp
    else:
        new = sigma * min(1.0, s) / damp
        if new > cfg.sigma0:
            new = max(cfg.sigma0, new * cfg.sigma_decay)
    return _clip(new, cfg.sigma_min, cfg.sigma_max)


# --------------------------------------------------------------------------------------
# Scalar controller
# --------------------------------------------------------------------------------------


class AESignals(NamedTuple):
    """Filtered feedback of one controller step (one name per signal, as in logs).

    :param step: number of observations so far (including this one).
    :param loss: raw loss ℓ_t.
    :param reward: raw reward r_t (−ℓ_t when none was given).
    :param loss_ema: ℓ̄_t.
    :param reward_ema: r̄_t.
    :param delta_loss: Δℓ_t = ℓ̄_{t-1} − ℓ̄_t as the law saw it (divided by |ℓ̄_{t-1}|
        when ``cfg.relative``); 0 on the first step.
    :param delta_reward: Δr_t = r̄_t − r̄_{t-1}; 0 on the first step.
    :param variance: v_t as the law saw it (divided by ℓ̄_{t-1}² when ``cfg.relative``).
    :param plateau_count: consecutive steps with ``|Δℓ| <= plateau_tol``.
    :param grad_norm: ‖g_t‖₂ as reported by the optimizer (0 if never given).
    :param update_norm: ‖u_t‖₂ of the gradient update (without dither).
    :param alpha: α for the next update.
    :param momentum: μ for the next update.
    :param sigma: σ for the next update.
    :param success_rate: EMA of the local-test success fraction.
    :param lyapunov: EMA of ℓ_{t} − ℓ_{t-1}; negative on average = descending
        (the Lyapunov heuristic ``E[ℓ_{t+1} − ℓ_t] < 0``).
    :param update_autocorr: EMA of cos(u_t, u_{t-1}), the lag-1 autocorrelation of the
        update direction: near 1 overdamped/coherent, near −1 ringing/oscillating.
    :param flip_rate: EMA of the fraction of coordinates whose update sign flipped.
    """

    step: int
    loss: float
    reward: float
    loss_ema: float
    reward_ema: float
    delta_loss: float
    delta_reward: float
    variance: float
    plateau_count: int
    grad_norm: float
    update_norm: float
    alpha: float
    momentum: float
    sigma: float
    success_rate: float
    lyapunov: float
    update_autocorr: float
    flip_rate: float


class Gains(NamedTuple):
    """The controller's gains: learning rate α, momentum μ and dither strength σ."""

    alpha: float
    momentum: float
    sigma: float


def _require_finite(name: str, value: float) -> float:
    if isinstance(value, torch.Tensor):
        value = value.detach().item()
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"{name} must be finite, got {value!r}; roll back divergent steps before "
            "calling observe (AEOptimizer does)"
        )
    return value


class AEController:
    """The scalar AE law: filters ``(ℓ, r)`` and adapts the gains ``(α, μ, σ)``.

    Each :meth:`observe` call (one per step, with the loss at the current θ) updates
    ``ℓ̄, r̄, v, Δℓ, Δr``, the plateau counter and the Lyapunov monitor, then applies
    :func:`next_alpha`, :func:`next_momentum` and :func:`next_sigma`. The first
    observation only initializes the filters (there is no trend yet).

    :param alpha0: α0, the initial and reference learning rate (bounds are multiples).
    :param config: law constants; ``AEConfig()`` by default.
    """

    def __init__(self, alpha0: float, config: AEConfig | None = None) -> None:
        if isinstance(alpha0, bool) or not isinstance(alpha0, (int, float)):
            raise TypeError(f"alpha0 must be a number > 0, got {alpha0!r}")
        if not math.isfinite(alpha0) or alpha0 <= 0:
            raise ValueError(f"alpha0 must be a finite number > 0, got {alpha0!r}")
        self.config = config or AEConfig()
        self.alpha0 = float(alpha0)
        cfg = self.config
        self.alpha = self.alpha0
        self.momentum = cfg.momentum0
        self.sigma = cfg.sigma0
        self.step = 0
        self.loss: float | None = None
        self.reward: float | None = None
        self.loss_ema: float | None = None
        self.reward_ema: float | None = None
        self.delta_loss = 0.0
        self.delta_reward = 0.0
        self.variance = 0.0
        self.plateau_count = 0
        self.grad_norm = 0.0
        self.update_norm = 0.0
        self.success_rate = cfg.success_target
        self.success_pending = False
        self.lyapunov = 0.0
        self.update_autocorr = 0.0
        self.flip_rate = 0.0
        self.history: deque[float] = deque(maxlen=cfg.var_window)

    @property
    def gains(self) -> Gains:
        """Current ``(alpha, momentum, sigma)``."""
        return Gains(self.alpha, self.momentum, self.sigma)

    @property
    def signals(self) -> AESignals:
        """The latest filtered feedback (NaN/0 before the first observation)."""
        return AESignals(
            step=self.step,
            loss=math.nan if self.loss is None else self.loss,
            reward=math.nan if self.reward is None else self.reward,
            loss_ema=math.nan if self.loss_ema is None else self.loss_ema,
            reward_ema=math.nan if self.reward_ema is None else self.reward_ema,
            delta_loss=self.delta_loss,
            delta_reward=self.delta_reward,
            variance=self.variance,
            plateau_count=self.plateau_count,
            grad_norm=self.grad_norm,
            update_norm=self.update_norm,
            alpha=self.alpha,
            momentum=self.momentum,
            sigma=self.sigma,
            success_rate=self.success_rate,
            lyapunov=self.lyapunov,
            update_autocorr=self.update_autocorr,
            flip_rate=self.flip_rate,
        )

    def divergence_threshold(self) -> float:
        """Loss above which a step counts as diverged: ``ℓ̄ + (factor − 1)·|ℓ̄|``.

        ``inf`` before the first observation (only non-finite losses diverge then).
        """
        if self.loss_ema is None:
            return math.inf
        level = self.loss_ema
        return level + (self.config.divergence_factor - 1.0) * abs(level)

    def observe(
        self, loss: float, reward: float | None = None, *, grad_norm: float = 0.0
    ) -> AESignals:
        """Feed one step's loss (and reward) and adapt the gains.

        :param loss: ℓ_t, finite (non-finite raises ValueError: roll back first).
        :param reward: r_t, finite; None uses ``r_t = −ℓ_t`` so that Δr = raw Δℓ.
        :param grad_norm: ‖g_t‖₂ for the log (not used by the law).
        :returns: the updated :class:`AESignals` (gains for the next update).
        """
        cfg = self.config
        loss = _require_finite("loss", loss)
        reward = -loss if reward is None else _require_finite("reward", reward)
        self.grad_norm = _require_finite("grad_norm", grad_norm)

        prev_loss_ema, prev_reward_ema = self.loss_ema, self.reward_ema
        self.loss_ema = ema(prev_loss_ema, loss, cfg.beta)
        self.reward_ema = ema(prev_reward_ema, reward, cfg.beta)
        self.history.append(loss)
        if self.loss is not None:
            self.lyapunov = ema(
                self.lyapunov if self.step > 1 else None, loss - self.loss, cfg.beta
            )
        self.loss, self.reward = loss, reward
        raw_variance = window_variance(self.history)

        if prev_loss_ema is None or prev_reward_ema is None:
            self.delta_loss, self.delta_reward, self.variance = 0.0, 0.0, raw_variance
        else:
            delta = prev_loss_ema - self.loss_ema
            variance = raw_variance
            if cfg.relative:
                scale = max(abs(prev_loss_ema), _TINY)
                delta, variance = delta / scale, variance / (scale * scale)
            self.delta_loss, self.variance = delta, variance
            self.delta_reward = self.reward_ema - prev_reward_ema
            self.plateau_count = next_plateau_count(self.plateau_count, delta, cfg)
            self.alpha = next_alpha(
                self.alpha, alpha_factor(delta, variance, cfg), self.alpha0, cfg, self.step
            )
            self.momentum = next_momentum(self.momentum, self.delta_reward, cfg)
            pending = self.success_rate if self.success_pending else None
            self.sigma = next_sigma(self.sigma, self.plateau_count, variance, pending, cfg)
            self.success_pending = False
        self.step += 1
        return self.signals

    def observe_update(
        self,
        update_norm: float,
        update_cosine: float | None = None,
        sign_flip: float | None = None,
    ) -> AESignals:
        """Feed the resonance monitors with the update just applied.

        :param update_norm: ‖u_t‖₂ (gradient part of the step).
        :param update_cosine: cos(u_t, u_{t-1}); None when undefined (first step).
        :param sign_flip: fraction of coordinates with ``sign(u_t) ≠ sign(u_{t-1})``.
        """
        beta = self.config.beta
        self.update_norm = _require_finite("update_norm", update_norm)
        if update_cosine is not None:
            self.update_autocorr = ema(
                self.update_autocorr, _require_finite("update_cosine", update_cosine), beta
            )
        if sign_flip is not None:
            self.flip_rate = ema(self.flip_rate, _require_finite("sign_flip", sign_flip), beta)
        return self.signals

    def record_local_test(self, success_fraction: float) -> float:
        """Feed one local test's success fraction (share of probes that beat ℓ_t).

        ``s ← EMA_{β_s}(s, fraction)``; the next :meth:`observe` passes ``s`` to
        :func:`next_sigma` once. Returns the updated success rate.
        """
        frac = _require_finite("success_fraction", success_fraction)
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"success_fraction must be in [0, 1], got {frac!r}")
        self.success_rate = ema(self.success_rate, frac, self.config.success_beta)
        self.success_pending = True
        return self.success_rate

    def cut_alpha(self, factor: float | None = None) -> float:
        """Multiply α by ``factor`` (default ``rollback_alpha_cut``), within the bounds."""
        factor = self.config.rollback_alpha_cut if factor is None else factor
        self.alpha = next_alpha(self.alpha, factor, self.alpha0, self.config, self.step)
        return self.alpha

    _STATE_KEYS = (
        "alpha0",
        "alpha",
        "momentum",
        "sigma",
        "step",
        "loss",
        "reward",
        "loss_ema",
        "reward_ema",
        "delta_loss",
        "delta_reward",
        "variance",
        "plateau_count",
        "grad_norm",
        "update_norm",
        "success_rate",
        "success_pending",
        "lyapunov",
        "update_autocorr",
        "flip_rate",
    )

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable state (floats, ints, bools, None, a list; no NaN)."""
        state: dict[str, Any] = {key: getattr(self, key) for key in self._STATE_KEYS}
        state["history"] = list(self.history)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; continuation is then identical."""
        missing = [k for k in (*self._STATE_KEYS, "history") if k not in state]
        if missing:
            raise ValueError(f"controller state is missing keys: {missing}")
        for key in self._STATE_KEYS:
            setattr(self, key, state[key])
        self.history = deque((float(x) for x in state["history"]), maxlen=self.config.var_window)


# --------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------


class AEStepLog(NamedTuple):
    """Everything one :meth:`AEOptimizer.step` did (flat, so ``_asdict()`` logs it).

    Gains are the ones the step used. ``loss`` is ℓ_t at θ_t (NaN/inf when it
    diverged); the filtered signals are the controller's after the step.
    """

    step: int
    loss: float
    reward: float
    alpha: float
    momentum: float
    sigma: float
    loss_ema: float
    reward_ema: float
    delta_loss: float
    delta_reward: float
    variance: float
    plateau_count: int
    grad_norm: float
    update_norm: float
    dither_norm: float
    success_rate: float
    lyapunov: float
    update_autocorr: float
    flip_rate: float
    probes: int
    probe_best_loss: float
    averaged_in: bool
    diverged: bool
    rolled_back: bool
    divergences: int


def _rms(t: torch.Tensor) -> torch.Tensor:
    """Root mean square of a tensor as a 0-d tensor (at least float32 precision)."""
    if t.numel() == 0:
        return t.new_zeros(())
    x = t.detach().to(torch.promote_types(t.dtype, torch.float32))
    return x.pow(2).mean().sqrt().to(t.dtype)


class AEOptimizer(torch.optim.Optimizer):
    """AE-DDSP optimizer: adaptive gains, dither in θ, local tests, rollback.

    One :meth:`step` runs the seed's loop (§7) on any torch parameters:

    1. evaluate ``ℓ_t`` (and ``g_t``) with the closure at θ_t;
    2. **stability**: a non-finite loss or gradient, or ``ℓ_t`` above
       :meth:`AEController.divergence_threshold`, restores the last good θ and
       optimizer state, cuts α by ``rollback_alpha_cut`` and stops the step — nothing
       non-finite reaches a filter;
    3. **scheduler**: ``controller.observe(ℓ_t, r_t)`` updates (α, μ, σ);
    4. every ``test_every`` steps, a **local test** evaluates ``n_probes`` copies
       ``θ_t + δ_i``, ``δ_i = probe_scale·D(θ_t)·η_i`` (with ``batched_eval`` in one
       call when given, else with the closure in a loop) and feeds the success rate;
    5. **gradient step + dither**: ``h ← μh + (1 − μ)g``, ``u = α·h`` (``"sgd"``) or the
       Adam step with β1 = μ (``"adam"``); ``θ ← θ − u + σ·D(θ_t)·η``, with
       ``D(θ) = max(RMS(θ), dither_floor)`` per tensor and η from the optimizer's
       seeded generator — the dither goes into θ, not the gradient;
    6. clamp with ``bounds``; if the best probe beat ℓ_t, average it in:
       ``θ ← (1 − ρ)·θ + ρ·θ_best`` and clamp again;
    7. log every signal in :attr:`last_log` (an :class:`AEStepLog`).

    Each group's ``lr`` is its α0; the controller's gain ``α_t/α0`` (one scalar law
    for the whole optimizer) scales every group alike. Parameters whose ``grad`` is
    None are left untouched (no update, dither or probe).

    :param params: parameters or parameter groups.
    :param lr: α0, the reference learning rate (bounds are multiples of it).
    :param config: law constants; ``AEConfig()`` by default.
    :param bounds: valid ranges, applied after every change of θ and to probes: a
        ``(low, high)`` pair, or a callable returning the clamped copy of a tensor
        (applied to every parameter), or None.
    :param batched_eval: evaluates probes at once: receives a list of candidates, each
        a list of tensors in parameter order (``[p for g in param_groups for p in
        g["params"]]``), and returns their ``[n]`` losses. Without it, probes are
        evaluated with the closure, one by one (gradients are restored afterwards).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        config: AEConfig | None = None,
        bounds: Bounds | None = None,
        batched_eval: BatchedEval | None = None,
    ) -> None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise TypeError(f"lr must be a number > 0, got {lr!r}")
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        super().__init__(params, {"lr": float(lr)})
        self.config = config or AEConfig()
        self.controller = AEController(float(lr), self.config)
        if bounds is not None and not callable(bounds):
            low, high = bounds
            if not low <= high:
                raise ValueError(f"bounds must be (low, high) with low <= high, got {bounds!r}")
        self.bounds = bounds
        self.batched_eval = batched_eval
        seed = self.config.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._snapshot: list[tuple[torch.Tensor, dict[str, Any]]] | None = None
        self.steps = 0
        self.divergences = 0
        self.last_log: AEStepLog | None = None

    # ---- helpers ---------------------------------------------------------------------

    def _all_params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def generator(self, device: torch.device | str) -> torch.Generator:
        """The seeded generator of ``device`` (created on first use)."""
        device = torch.device(device)
        key = str(device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed((self.seed + zlib.crc32(key.encode())) % 2**63)
            self._generators[key] = gen
        return self._generators[key]

    def _noise(self, p: torch.Tensor) -> torch.Tensor:
        return torch.randn(p.shape, generator=self.generator(p.device), device=p.device).to(p.dtype)

    def _shape(self, p: torch.Tensor) -> torch.Tensor:
        """Dither shaping ``D(θ) = max(RMS(θ), dither_floor)`` (a 0-d tensor)."""
        return _rms(p).clamp_min(self.config.dither_floor)

    def clamp(self, value: torch.Tensor) -> torch.Tensor:
        """Apply ``bounds`` to a tensor (returns a new tensor; identity without bounds)."""
        if self.bounds is None:
            return value
        if callable(self.bounds):
            return self.bounds(value)
        low, high = self.bounds
        return value.clamp(low, high)

    @torch.no_grad()
    def _clamp_params(self, params: list[torch.Tensor]) -> None:
        if self.bounds is None:
            return
        for p in params:
            p.copy_(self.clamp(p))

    def _take_snapshot(self) -> None:
        self._snapshot = [
            (p.detach().clone(), copy.deepcopy(self.state[p]) if p in self.state else {})
            for p in self._all_params()
        ]

    @torch.no_grad()
    def _restore_snapshot(self) -> bool:
        if self._snapshot is None:
            return False
        for p, (saved, state) in zip(self._all_params(), self._snapshot, strict=True):
            p.copy_(saved)
            self.state[p] = copy.deepcopy(state)
        return True

    def _evaluate(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    @staticmethod
    def _split_loss(out: Any) -> tuple[Any, float | None]:
        if isinstance(out, tuple):
            if len(out) != 2:
                raise ValueError("closure must return loss or (loss, reward)")
            loss, reward = out
            return loss, None if reward is None else float(reward)
        return out, None

    @torch.no_grad()
    def _probe_losses(
        self, candidates: list[list[torch.Tensor]], closure: Callable[[], Any] | None
    ) -> torch.Tensor:
        if self.batched_eval is not None:
            losses = torch.as_tensor(self.batched_eval(candidates)).detach().flatten().float()
            if losses.numel() != len(candidates):
                raise ValueError(
                    f"batched_eval returned {losses.numel()} losses for {len(candidates)} probes"
                )
            return losses.cpu()
        assert closure is not None
        params = self._all_params()
        saved = [p.detach().clone() for p in params]
        grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
        values = []
        try:
            for cand in candidates:
                for p, c in zip(params, cand, strict=True):
                    p.copy_(c)
                loss, _ = self._split_loss(self._evaluate(closure))
                values.append(float(loss))
        finally:
            for p, s, g in zip(params, saved, grads, strict=True):
                p.copy_(s)
                p.grad = g
        return torch.tensor(values)

    # ---- the step --------------------------------------------------------------------

    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        *,
        loss: float | torch.Tensor | None = None,
        reward: float | None = None,
    ) -> Any:
        """Run one AE step and return what the closure returned (or ``loss``).

        :param closure: clears gradients, computes the loss, calls ``backward()`` and
            returns the loss — or ``(loss, reward)``. It is also used for probes when
            no ``batched_eval`` is given (their gradients are discarded).
        :param loss: when there is no closure: the loss at θ_t, with gradients already
            in ``p.grad``. Local tests then need ``batched_eval`` (else they are skipped).
        :param reward: r_t for the momentum law; None uses the closure's reward or −ℓ_t.
        """
        if closure is None and loss is None:
            raise ValueError("AEOptimizer.step needs a closure or loss=... (the law needs ℓ_t)")
        cfg = self.config
        out = self._evaluate(closure)
        if closure is not None:
            loss, closure_reward = self._split_loss(out)
            reward = closure_reward if reward is None else reward
        else:
            out = loss
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().item()
        loss_value = float(loss)  # type: ignore[arg-type]
        if reward is not None:
            reward = _require_finite("reward", reward)

        params = self._all_params()
        active = [p.grad is not None for p in params]
        if cfg.update_rule == "adam":
            for k, p in enumerate(params):
                if p.grad is not None and p.grad.is_sparse:
                    raise ValueError(
                        f"AEOptimizer(update_rule='adam') needs dense gradients, parameter {k} "
                        f"(shape {tuple(p.shape)}) has a sparse grad; use update_rule='sgd' "
                        "or a dense layer (e.g. nn.Embedding(..., sparse=False))"
                    )
        grad_sq = 0.0
        for p, on in zip(params, active, strict=True):
            if on:
                grad_sq += float(p.grad.detach().double().pow(2).sum())  # type: ignore[union-attr]
        grad_norm = math.sqrt(grad_sq) if math.isfinite(grad_sq) else math.inf

        diverged = (
            not math.isfinite(loss_value)
            or not math.isfinite(grad_norm)
            or loss_value > self.controller.divergence_threshold()
        )
        if diverged:
            rolled_back = self._restore_snapshot()
            self.controller.cut_alpha()
            self.divergences += 1
            self._log(loss_value, reward, 0.0, 0, math.nan, False, True, rolled_back)
            self.steps += 1
            return out

        self._take_snapshot()
        self.controller.observe(loss_value, reward, grad_norm=grad_norm)
        alpha, mu, sigma = self.controller.gains
        scale = alpha / self.controller.alpha0

        # Local test at θ_t (probes see the parameters before this step's update).
        n_probes, best_loss, best = 0, math.nan, None
        if (
            cfg.n_probes > 0
            and (self.steps + 1) % cfg.test_every == 0
            and (self.batched_eval is not None or closure is not None)
        ):
            with torch.no_grad():
                candidates = [
                    [
                        self.clamp(p.detach() + cfg.probe_scale * self._shape(p) * self._noise(p))
                        if on
                        else p.detach().clone()
                        for p, on in zip(params, active, strict=True)
                    ]
                    for _ in range(cfg.n_probes)
                ]
            losses = self._probe_losses(candidates, closure)
            losses = torch.where(torch.isfinite(losses), losses, torch.full_like(losses, math.inf))
            n_probes = len(candidates)
            i_best = int(torch.argmin(losses))
            best_loss = float(losses[i_best])
            self.controller.record_local_test(float((losses < loss_value).float().mean()))
            if best_loss < loss_value:
                best = candidates[i_best]

        update_sq = dither_sq = dot = prev_sq = 0.0
        flips = count = 0
        with torch.no_grad():
            for group in self.param_groups:
                lr = scale * group["lr"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    update = self._update(p, p.grad.detach(), lr, mu)
                    state = self.state[p]
                    prev = state.get("prev_update")
                    if prev is not None:
                        dot += float((update * prev).sum())
                        prev_sq += float(prev.pow(2).sum())
                        flips += int(((update * prev) < 0).sum())
                        count += update.numel()
                    state["prev_update"] = update.clone()
                    update_sq += float(update.pow(2).sum())
                    if sigma > 0:
                        dither = sigma * self._shape(p) * self._noise(p)
                        dither_sq += float(dither.pow(2).sum())
                        p.add_(dither - update)
                    else:
                        p.sub_(update)
            # Only parameters with a gradient move: frozen ones (grad None) stay bit-exact.
            moving = [p for p, on in zip(params, active, strict=True) if on]
            self._clamp_params(moving)
            if best is not None:
                for p, c, on in zip(params, best, active, strict=True):
                    if on:
                        p.mul_(1.0 - cfg.rho).add_(c, alpha=cfg.rho)
                self._clamp_params(moving)

        cosine = None
        if prev_sq > 0 and update_sq > 0:
            cosine = max(-1.0, min(1.0, dot / math.sqrt(prev_sq * update_sq)))
        self.controller.observe_update(
            math.sqrt(update_sq), cosine, flips / count if count else None
        )
        self._log(
            loss_value,
            self.controller.reward,
            math.sqrt(dither_sq),
            n_probes,
            best_loss,
            best is not None,
            False,
            False,
            gains=(alpha, mu, sigma),
        )
        self.steps += 1
        return out

    def _update(self, p: torch.Tensor, grad: torch.Tensor, lr: float, mu: float) -> torch.Tensor:
        """Φ and U: update the moments of ``p`` and return ``u`` (not yet applied)."""
        state = self.state[p]
        if "h" not in state:
            state["h"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["t"] = 0
            if self.config.update_rule == "adam":
                state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["bias1"] = 1.0
                state["bias2"] = 1.0
        h = state["h"]
        h.mul_(mu).add_(grad, alpha=1.0 - mu)
        state["t"] += 1
        if self.config.update_rule == "sgd":
            return lr * h
        # Adam with time-varying β1 = μ_t: bias correction uses Π μ_t.
        beta2 = self.config.adam_beta2
        state["v"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        state["bias1"] *= mu
        state["bias2"] *= beta2
        m_hat = h / (1.0 - state["bias1"])
        v_hat = state["v"] / (1.0 - state["bias2"])
        return lr * m_hat / (v_hat.sqrt() + self.config.adam_eps)

    def _log(
        self,
        loss: float,
        reward: float | None,
        dither_norm: float,
        probes: int,
        probe_best_loss: float,
        averaged_in: bool,
        diverged: bool,
        rolled_back: bool,
        gains: tuple[float, float, float] | None = None,
    ) -> None:
        s = self.controller.signals
        alpha, momentum, sigma = gains if gains is not None else self.controller.gains
        self.last_log = AEStepLog(
            step=self.steps,
            loss=loss,
            reward=math.nan if reward is None else float(reward),
            alpha=alpha,
            momentum=momentum,
            sigma=sigma,
            loss_ema=s.loss_ema,
            reward_ema=s.reward_ema,
            delta_loss=s.delta_loss,
            delta_reward=s.delta_reward,
            variance=s.variance,
            plateau_count=s.plateau_count,
            grad_norm=s.grad_norm if not diverged else math.nan,
            update_norm=s.update_norm if not diverged else 0.0,
            dither_norm=dither_norm,
            success_rate=s.success_rate,
            lyapunov=s.lyapunov,
            update_autocorr=s.update_autocorr,
            flip_rate=s.flip_rate,
            probes=probes,
            probe_best_loss=probe_best_loss,
            averaged_in=averaged_in,
            diverged=diverged,
            rolled_back=rolled_back,
            divergences=self.divergences,
        )

    # ---- persistence -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Torch optimizer state plus ``"ae"``: controller, generators, counters and the
        last good snapshot, so a resumed run continues identically."""
        state = super().state_dict()
        snapshot = None
        if self._snapshot is not None:
            snapshot = [
                {"param": saved.clone(), "state": copy.deepcopy(st)} for saved, st in self._snapshot
            ]
        state["ae"] = {
            "controller": self.controller.state_dict(),
            "generators": {k: g.get_state().tolist() for k, g in self._generators.items()},
            "seed": self.seed,
            "steps": self.steps,
            "divergences": self.divergences,
            "snapshot": snapshot,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore a :meth:`state_dict` (tensors are copied, never shared)."""
        state_dict = copy.deepcopy(state_dict)
        if "ae" not in state_dict:
            raise ValueError("not an AEOptimizer state dict: missing the 'ae' entry")
        ae = state_dict.pop("ae")
        super().load_state_dict(state_dict)
        self.controller.load_state_dict(ae["controller"])
        self.seed = int(ae["seed"])
        self.steps = int(ae["steps"])
        self.divergences = int(ae["divergences"])
        self._generators = {}
        for key, gen_state in ae["generators"].items():
            self.generator(key).set_state(torch.tensor(gen_state, dtype=torch.uint8))
        if ae["snapshot"] is None:
            self._snapshot = None
        else:
            params = self._all_params()
            if len(params) != len(ae["snapshot"]):
                raise ValueError("snapshot does not match the optimizer's parameters")
            self._snapshot = [
                (
                    entry["param"].to(device=p.device, dtype=p.dtype),
                    {
                        k: v.to(p.device) if isinstance(v, torch.Tensor) else v
                        for k, v in entry["state"].items()
                    },
                )
                for p, entry in zip(params, ae["snapshot"], strict=True)
            ]


# --------------------------------------------------------------------------------------
# Sound matching (the seed's §7 windowed loop)
# --------------------------------------------------------------------------------------


class FitResult(NamedTuple):
    """Outcome of :func:`fit_patch` for ``B`` targets and ``K`` knobs.

    :param unit: best normalized knobs found per target, ``[B, K]``.
    :param physical: the same in physical units, ``[B, K]`` (order of ``knob_names``).
    :param best_loss: windowed spectral distance of ``unit`` per target, ``[B]``.
    :param initial_loss: distance of the starting knobs, ``[B]``.
    :param final_unit: knobs after the last step, ``[B, K]``.
    :param final_loss: distance of ``final_unit``, ``[B]``.
    :param item_losses: distance per target at each step's θ_t, ``[steps, B]``.
    :param log: one :class:`AEStepLog` per step (the law sees the summed loss).
    :param knob_names: names of the K knobs.
    :param free_knobs: names of the knobs that were optimized.
    """

    unit: torch.Tensor
    physical: torch.Tensor
    best_loss: torch.Tensor
    initial_loss: torch.Tensor
    final_unit: torch.Tensor
    final_loss: torch.Tensor
    item_losses: torch.Tensor
    log: list[AEStepLog]
    knob_names: tuple[str, ...]
    free_knobs: tuple[str, ...]

    def patches(self) -> list[Patch]:
        """The best knobs as one :class:`~aegym.synth.Patch` per target."""
        return [
            Patch(dict(zip(self.knob_names, row.tolist(), strict=True))) for row in self.physical
        ]


def _windows(audio: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """``[B, T] -> [B·W, window]`` overlapping frames (``W = 1 + (T − window)//hop``)."""
    return audio.unfold(-1, window, hop).reshape(-1, window)


def fit_patch(
    target: torch.Tensor,
    voice: Voice | None = None,
    *,
    steps: int = 100,
    lr: float = 0.02,
    init_unit: torch.Tensor | None = None,
    free_knobs: Sequence[str] | None = None,
    config: AEConfig | None = None,
    encoder: FeatureEncoder | None = None,
    window_s: float = 0.25,
    hop_s: float | None = None,
    reward_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Fit synth knobs to target sounds with the AE optimizer (sound matching).

    Each step renders the note from the current normalized knobs θ, slices it (and
    the target) into overlapping windows of ``window_s`` with hop ``hop_s``, and uses
    the windowed spectral distance ``d_b = mean_w spectral_distance(x_{b,w}, y_{b,w})``.
    The law sees the sum ``L = Σ_b d_b`` (so each target's knob gradient is ``∇d_b``
    whatever B): **one scalar law drives all B targets** — α, μ, σ are shared, while
    the knobs, gradients and best-so-far tracking are per target. Knobs are clamped to
    [0, 1]; local-test probes of all targets are rendered in ONE batched call
    (``[n_probes·B, K]``).

    :param target: target audio ``[T]`` or ``[B, T]``, ``T = voice.config.n_samples``.
    :param voice: the synth; ``Voice(SynthConfig(duration_s=T/16000))`` by default.
    :param steps: optimizer steps, >= 1.
    :param lr: α0 on normalized knobs.
    :param init_unit: starting knobs ``[K]`` or ``[B, K]``; the knob defaults if None.
    :param free_knobs: names of the knobs to optimize (others keep ``init_unit``);
        all knobs if None.
    :param config: AE constants; ``AEConfig(update_rule="adam")`` by default (Adam's
        per-knob normalization suits knobs whose gradients differ by decades).
    :param encoder: feature encoder; one at the voice's sample rate if None.
    :param window_s: analysis window in seconds (shortened to T if the note is shorter).
    :param hop_s: hop between windows in seconds; ``window_s / 2`` if None.
    :param reward_fn: optional ``audio [B, T] -> [B]`` reward; its mean is r_t
        (the momentum law's reward). Without it ``r_t = −L``.
    :returns: a :class:`FitResult` with best/final knobs, losses and the full step log.
    """
    if not isinstance(target, torch.Tensor) or not target.is_floating_point():
        raise TypeError("target must be a floating-point torch.Tensor of audio")
    if target.ndim == 1:
        target = target[None]
    if target.ndim != 2:
        raise ValueError(f"target must be [T] or [B, T] audio, got shape {tuple(target.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    batch, n_samples = target.shape
    if voice is None:
        voice = Voice(SynthConfig(duration_s=n_samples / SynthConfig().sample_rate))
    if voice.config.n_samples != n_samples:
        raise ValueError(
            f"target has {n_samples} samples but the voice renders {voice.config.n_samples}; "
            "match SynthConfig.duration_s to the target"
        )
    sr = voice.config.sample_rate
    device = voice.noise.device
    target = target.to(device)
    encoder = (encoder or FeatureEncoder(FeatureConfig(sample_rate=sr))).to(device)
    if encoder.config.sample_rate != sr:
        raise ValueError(
            f"encoder sample_rate {encoder.config.sample_rate} != voice sample_rate {sr}"
        )
    if window_s <= 0 or (hop_s is not None and hop_s <= 0):
        raise ValueError(f"window_s and hop_s must be > 0, got {window_s!r}, {hop_s!r}")
    window = min(n_samples, max(1, round(window_s * sr)))
    hop = max(1, round((window_s / 2 if hop_s is None else hop_s) * sr))

    space = voice.knob_space
    names = space.names
    free = tuple(names) if free_knobs is None else tuple(free_knobs)
    if not free:
        raise ValueError("free_knobs must name at least one knob")
    free_idx = torch.tensor(space.indices(free), device=device)
    if init_unit is None:
        base = space.default_unit(batch).to(device)
    else:
        base = init_unit.detach().to(device=device, dtype=torch.float32)
        base = base.expand(batch, -1).clone() if base.ndim == 1 else base.clone()
        if base.shape != (batch, len(space)):
            raise ValueError(
                f"init_unit must be [K] or [B, K] = [{batch}, {len(space)}], "
                f"got {tuple(init_unit.shape)}"
            )
    base = base.clamp(0.0, 1.0)
    theta = base[:, free_idx].clone().requires_grad_(True)

    with torch.no_grad():
        target_feat = encoder(_windows(target, window, hop))
    n_windows = target_feat.loudness_db.shape[0] // batch

    def knobs(free_values: torch.Tensor) -> torch.Tensor:
        rows = free_values.shape[0]
        full = base.repeat(rows // batch, 1)
        return full.index_copy(1, free_idx, free_values)

    def distances(free_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[R·B, F]`` free knobs -> (per-row windowed distance ``[R·B]``, audio)."""
        audio = voice(knobs(free_values))
        feats = encoder(_windows(audio, window, hop))
        rows = free_values.shape[0] // batch
        tf = type(target_feat)(*(_repeat_feature(x, rows) for x in target_feat))
        d = spectral_distance(feats, tf).reshape(-1, n_windows).mean(-1)
        return d, audio

    item_loss = torch.zeros(batch)

    def closure() -> tuple[torch.Tensor, float | None]:
        nonlocal item_loss
        optimizer.zero_grad()
        d, audio = distances(theta)
        total = d.sum()
        total.backward()
        item_loss = d.detach().cpu()
        reward = None
        if reward_fn is not None:
            with torch.no_grad():
                reward = float(reward_fn(audio.detach()).mean())
        return total, reward

    def batched_eval(candidates: list[list[torch.Tensor]]) -> torch.Tensor:
        stacked = torch.cat([c[0] for c in candidates], 0)
        with torch.no_grad():
            d, _ = distances(stacked)
        return d.reshape(len(candidates), batch).sum(-1)

    cfg = config or AEConfig(update_rule="adam")
    optimizer = AEOptimizer(
        [theta], lr=lr, config=cfg, bounds=(0.0, 1.0), batched_eval=batched_eval
    )

    best_loss = torch.full((batch,), math.inf)
    best_free = theta.detach().clone()
    history: list[torch.Tensor] = []
    log: list[AEStepLog] = []
    for _ in range(steps):
        evaluated = theta.detach().clone()
        optimizer.step(closure)
        assert optimizer.last_log is not None
        log.append(optimizer.last_log)
        if optimizer.last_log.diverged:
            history.append(torch.full((batch,), math.nan))
            continue
        history.append(item_loss.clone())
        better = item_loss < best_loss
        best_loss = torch.where(better, item_loss, best_loss)
        best_free[better.to(device)] = evaluated[better.to(device)]

    with torch.no_grad():
        final_free = theta.detach().clone()
        final_loss = distances(final_free)[0].cpu()
    better = final_loss < best_loss
    best_loss = torch.where(better, final_loss, best_loss)
    best_free[better.to(device)] = final_free[better.to(device)]
    item_losses = torch.stack(history)
    best_unit = knobs(best_free).detach()
    return FitResult(
        unit=best_unit,
        physical=space.to_physical(best_unit.cpu()),
        best_loss=best_loss,
        initial_loss=item_losses[0],
        final_unit=knobs(final_free).detach(),
        final_loss=final_loss,
        item_losses=item_losses,
        log=log,
        knob_names=names,
        free_knobs=free,
    )


def _repeat_feature(x: Any, rows: int) -> Any:
    """Tile a feature field (tensor or tuple of tensors) ``rows`` times along batch."""
    if isinstance(x, tuple):
        return tuple(_repeat_feature(t, rows) for t in x)
    return x if rows == 1 else x.repeat(rows, *([1] * (x.ndim - 1)))


__all__ = [
    "AEConfig",
    "AEController",
    "AEOptimizer",
    "AESignals",
    "AEStepLog",
    "FitResult",
    "Gains",
    "alpha_factor",
    "cosine_envelope",
    "ema",
    "fit_patch",
    "next_alpha",
    "next_momentum",
    "next_plateau_count",
    "next_sigma",
    "success_factor",
    "window_variance",
]
