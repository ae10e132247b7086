"""The scalar AE law: :class:`AEController` and float versions of the law's functions.

Everything here is :mod:`aegym.control.law` at ``B = 1``: the functions wrap their
numbers into one-row float64 tensors, call the batched law and read the result back,
so the scalar and the batched law cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch

from aegym.control import law
from aegym.control.config import AEConfig
from aegym.control.law import AESignals


def _row(value: float | int | bool, dtype: torch.dtype = law.DTYPE) -> torch.Tensor:
    return torch.tensor([value], dtype=dtype)


# --------------------------------------------------------------------------------------
# The law on floats
# --------------------------------------------------------------------------------------


def ema(prev: float | None, x: float, beta: float) -> float:
    """Exponential moving average ``x̄_t = β·x̄_{t-1} + (1 − β)·x_t``.

    The first sample initializes the filter: ``ema(None, x, β) = x``.
    """
    first = _row(prev is None, torch.bool)
    prev_t = _row(math.nan if prev is None else prev)
    return law.ema(prev_t, _row(x), beta, first).item()


def window_variance(history: Iterable[float]) -> float:
    """Population variance of a window ``v = (1/n)·Σ (ℓ_i − mean(ℓ))²``; 0 if n < 2."""
    values = [float(x) for x in history]
    window = torch.tensor([values], dtype=law.DTYPE).reshape(1, len(values))
    return law.window_variance(window, _row(len(values), torch.long)).item()


def alpha_factor(delta_loss: float, variance: float, cfg: AEConfig) -> float:
    """Learning-rate factor ``f_α``.

    ``f_α = u`` if ``Δℓ > ε`` (improving), else ``d / (1 + λ·v)`` (damp, more so
    when the loss is noisy).
    """
    return law.alpha_factor(_row(delta_loss), _row(variance), cfg).item()


def cosine_envelope(step: int, cfg: AEConfig) -> float:
    """Macro-schedule ``e(t) = f + (1 − f)·½·(1 + cos(π·min(t, T)/T))``; 1 when off.

    ``f`` is ``cfg.cosine_floor`` and ``T`` is ``cfg.total_steps``; e(0) = 1, e(T) = f.
    """
    return law.cosine_envelope(_row(step, torch.long), cfg).item()


def next_alpha(alpha: float, factor: float, alpha0: float, cfg: AEConfig, step: int = 0) -> float:
    """``α_{t+1} = clip(α_t·f_α, a_min·α0·e(t), a_max·α0·e(t))`` (see :func:`law.next_alpha`)."""
    out = law.next_alpha(_row(alpha), _row(factor), _row(alpha0), cfg, _row(step, torch.long))
    return out.item()


def next_momentum(mu: float, delta_reward: float, cfg: AEConfig) -> float:
    """``μ_{t+1} = clip(μ_t + δμ, 0, μmax)`` if ``Δr > 0`` else ``clip(μ_t − κμ·μ_t, 0, μmax)``."""
    return law.next_momentum(_row(mu), _row(delta_reward), cfg).item()


def next_plateau_count(count: int, delta_loss: float, cfg: AEConfig) -> int:
    """Consecutive plateau steps by the ``|Δℓ| <= plateau_tol`` test alone (the window's
    trend test, :func:`aegym.control.law.window_descending`, needs the loss window)."""
    return int(law.next_plateau_count(_row(count, torch.long), _row(delta_loss), cfg).item())


def success_factor(success_rate: float | None, cfg: AEConfig) -> float:
    """Local-test feedback ``exp(γ·(s − s*))``; 1 when no test result is pending (None).

    Above the target rate s* probing pays off (factor > 1), below it σ shrinks.
    """
    pending = _row(success_rate is not None, torch.bool)
    rate = _row(cfg.success_target if success_rate is None else success_rate)
    return law.success_factor(rate, pending, cfg).item()


def next_sigma(
    sigma: float,
    plateau_count: int,
    variance: float,
    success_rate: float | None,
    cfg: AEConfig,
) -> float:
    """Dither law ``σ_{t+1} = clip(σ_t·f_σ, σ_min, σ_max)`` (see :func:`law.next_sigma`);
    ``success_rate`` None means no local-test result is pending."""
    pending = _row(success_rate is not None, torch.bool)
    rate = _row(cfg.success_target if success_rate is None else success_rate)
    out = law.next_sigma(
        _row(sigma), _row(plateau_count, torch.long), _row(variance), rate, pending, cfg
    )
    return out.item()


# --------------------------------------------------------------------------------------
# Scalar controller
# --------------------------------------------------------------------------------------


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


# Fields of the JSON state (and readable attributes) with their Python type; the ones
# marked optional are None before the first observation.
_STATE_KEYS: dict[str, type] = {
    "alpha0": float,
    "alpha": float,
    "momentum": float,
    "sigma": float,
    "step": int,
    "loss": float,
    "reward": float,
    "loss_ema": float,
    "reward_ema": float,
    "delta_loss": float,
    "delta_reward": float,
    "variance": float,
    "plateau_count": int,
    "grad_norm": float,
    "update_norm": float,
    "success_rate": float,
    "success_pending": bool,
    "lyapunov": float,
    "update_autocorr": float,
    "flip_rate": float,
}
_OPTIONAL = ("loss", "reward", "loss_ema", "reward_ema")


def _field(name: str) -> property:
    kind = _STATE_KEYS[name]

    def get(self: AEController) -> Any:
        value = kind(getattr(self.state, name).item())
        if name in _OPTIONAL and self.state.step.item() == 0:
            return None
        return value

    return property(get, doc=f"Row 0's ``{name}`` (see :class:`~aegym.control.law.LawState`).")


class AEController:
    """The scalar AE law: filters ``(ℓ, r)`` and adapts the gains ``(α, μ, σ)``.

    Each :meth:`observe` call (one per step, with the loss at the current θ) updates
    ``ℓ̄, r̄, v, Δℓ, Δr``, the plateau counter and the Lyapunov monitor, then applies
    :func:`next_alpha`, :func:`next_momentum` and :func:`next_sigma`. The first
    observation only initializes the filters (there is no trend yet).

    A one-row :class:`~aegym.control.law.LawState` (attribute ``state``) holds
    everything; this class validates inputs and reads values back as Python numbers.

    :param alpha0: α0, the initial and reference learning rate (bounds are multiples).
    :param config: law constants; ``AEConfig()`` by default.
    """

    alpha0 = _field("alpha0")
    alpha = _field("alpha")
    momentum = _field("momentum")
    sigma = _field("sigma")
    step = _field("step")
    loss = _field("loss")
    reward = _field("reward")
    loss_ema = _field("loss_ema")
    reward_ema = _field("reward_ema")
    delta_loss = _field("delta_loss")
    delta_reward = _field("delta_reward")
    variance = _field("variance")
    plateau_count = _field("plateau_count")
    grad_norm = _field("grad_norm")
    update_norm = _field("update_norm")
    success_rate = _field("success_rate")
    success_pending = _field("success_pending")
    lyapunov = _field("lyapunov")
    update_autocorr = _field("update_autocorr")
    flip_rate = _field("flip_rate")

    def __init__(self, alpha0: float, config: AEConfig | None = None) -> None:
        if isinstance(alpha0, bool) or not isinstance(alpha0, (int, float)):
            raise TypeError(f"alpha0 must be a number > 0, got {alpha0!r}")
        if not math.isfinite(alpha0) or alpha0 <= 0:
            raise ValueError(f"alpha0 must be a finite number > 0, got {alpha0!r}")
        self.config = config or AEConfig()
        self.state = law.init_state(1, float(alpha0), self.config)

    @property
    def history(self) -> list[float]:
        """The recent raw losses of the variance window, oldest first."""
        count = int(self.state.window_count.item())
        return self.state.window[0, self.state.window.shape[1] - count :].tolist()

    @property
    def gains(self) -> Gains:
        """Current ``(alpha, momentum, sigma)``."""
        s = self.state
        return Gains(*torch.cat([s.alpha, s.momentum, s.sigma]).tolist())

    @property
    def signals(self) -> AESignals:
        """The latest filtered feedback (NaN/0 before the first observation)."""
        return law.signals_at(self.state, 0)

    def divergence_threshold(self) -> float:
        """Loss above which a step counts as diverged: ``ℓ̄ + (factor − 1)·|ℓ̄|``.

        ``inf`` before the first observation (only non-finite losses diverge then).
        """
        return law.divergence_threshold(self.state, self.config.divergence_factor).item()

    def observe(
        self, loss: float, reward: float | None = None, *, grad_norm: float = 0.0
    ) -> AESignals:
        """Feed one step's loss (and reward) and adapt the gains.

        :param loss: ℓ_t, finite (non-finite raises ValueError: roll back first).
        :param reward: r_t, finite; None uses ``r_t = −ℓ_t`` so that Δr = raw Δℓ.
        :param grad_norm: ‖g_t‖₂ for the log (not used by the law).
        :returns: the updated :class:`AESignals` (gains for the next update).
        """
        loss = _require_finite("loss", loss)
        reward = None if reward is None else _require_finite("reward", reward)
        grad_norm = _require_finite("grad_norm", grad_norm)
        self.state = law.observe(
            self.state,
            _row(loss),
            None if reward is None else _row(reward),
            self.config,
            grad_norm=_row(grad_norm),
        )
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
        norm = _require_finite("update_norm", update_norm)
        cosine = None if update_cosine is None else _require_finite("update_cosine", update_cosine)
        flip = None if sign_flip is None else _require_finite("sign_flip", sign_flip)
        self.state = law.observe_update(
            self.state,
            self.config,
            _row(norm),
            None if cosine is None else _row(cosine),
            None if flip is None else _row(flip),
        )
        return self.signals

    def record_local_test(self, success_fraction: float) -> float:
        """Feed one local test's success fraction (share of probes that beat ℓ_t).

        ``s ← EMA_{β_s}(s, fraction)``; the next :meth:`observe` passes ``s`` to
        :func:`next_sigma` once. Returns the updated success rate.
        """
        frac = _require_finite("success_fraction", success_fraction)
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"success_fraction must be in [0, 1], got {frac!r}")
        self.state = law.record_local_test(self.state, _row(frac), self.config)
        return self.success_rate

    def cut_alpha(self, factor: float | None = None) -> float:
        """Multiply α by ``factor`` (default ``rollback_alpha_cut``), within the bounds."""
        self.state = law.cut_alpha(self.state, self.config, factor)
        return self.alpha

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable state (floats, ints, bools, None, a list; no NaN)."""
        state: dict[str, Any] = {key: getattr(self, key) for key in _STATE_KEYS}
        state["history"] = self.history
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; continuation is then identical."""
        missing = [k for k in (*_STATE_KEYS, "history") if k not in state]
        if missing:
            raise ValueError(f"controller state is missing keys: {missing}")
        values: dict[str, torch.Tensor] = {}
        for key, kind in _STATE_KEYS.items():
            value = state[key]
            if kind is float:
                values[key] = _row(math.nan if value is None else float(value))
            else:
                values[key] = _row(kind(value), torch.long if kind is int else torch.bool)
        k = self.config.var_window
        history = [float(x) for x in state["history"]][-k:]
        window = torch.zeros(1, k, dtype=law.DTYPE)
        if history:
            window[0, k - len(history) :] = torch.tensor(history, dtype=law.DTYPE)
        self.state = law.LawState(
            **values, window=window, window_count=_row(len(history), torch.long)
        )


__all__ = [
    "AEController",
    "AESignals",
    "Gains",
    "alpha_factor",
    "cosine_envelope",
    "ema",
    "next_alpha",
    "next_momentum",
    "next_plateau_count",
    "next_sigma",
    "success_factor",
    "window_variance",
]
