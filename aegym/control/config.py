"""Constants of the AE law, the plant and the optimizer: :class:`AEConfig` (validated)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

UpdateRule = Literal["sgd", "adam"]


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
    :param momentum_max: μmax, upper momentum bound, in [0, 1). On a steady descent
        Δr > 0 every step, so μ sits at μmax: it is the β1 the optimizer runs at
        (0.99, a 100-step horizon, left a drop-in Adam-rule AEOptimizer 20x behind
        Adam on an MLP regression; 0.95 is a 20-step one).

    Dither law

    :param sigma0: σ0, initial dither strength relative to D(θ), in [sigma_min, sigma_max].
    :param sigma_min: lower σ bound, in [0, 1].
    :param sigma_max: upper σ bound, in [sigma_min, 1].
    :param plateau_steps: p, plateau length (consecutive flat steps, see
        ``plateau_trend_z``) after which σ is boosted, in [1, 100000].
    :param plateau_tol: tolerance of "Δℓ ≈ 0", in [0, 1000].
    :param plateau_trend_z: a step is flat only if, besides ``|Δℓ| <= plateau_tol``,
        the last ``var_window`` losses show no significant descent (least-squares
        slope within ``plateau_trend_z`` standard errors, see
        :func:`aegym.control.law.window_descending`), so a slow steady descent never
        raises the dither; in [0, 1000], or None for the ``|Δℓ|`` test alone.
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
    momentum_max: float = 0.95
    sigma0: float = 1e-3
    sigma_min: float = 1e-6
    sigma_max: float = 1e-1
    plateau_steps: int = 5
    plateau_tol: float = 1e-3
    plateau_trend_z: float | None = 2.0
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
        if self.plateau_trend_z is not None:
            num("plateau_trend_z", self.plateau_trend_z, 0.0, 1000.0)
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


__all__ = ["AEConfig", "UpdateRule"]
