"""The AE adaptive law as pure functions on batched tensors.

Every signal and gain is a ``[B]`` tensor: row b is one independent controller (an
episode, a target, an optimizer). Nothing here loops over rows or reads a value back
to the host (no ``float()``/``bool()``/``.item()``): branches of the law are
``torch.where``, so one call adapts a whole batch and works the same on any device.
The law runs in float64 (its signals are a few scalars per row).

Signals, with ``EMA_β`` an exponential moving average::

    ℓ̄_t = EMA_β(ℓ_t),  r̄_t = EMA_β(r_t),  v_t = VarWindow(ℓ_{t-k+1..t})
    Δℓ_t = ℓ̄_{t-1} − ℓ̄_t (positive = improving),  Δr_t = r̄_t − r̄_{t-1}

Law (:func:`alpha_factor`, :func:`next_alpha`, :func:`next_momentum`, :func:`next_sigma`)::

    α_{t+1} = clip(α_t·f_α),   f_α = u if Δℓ_t > ε else d / (1 + λ·v_t)
    μ_{t+1} = clip(μ_t + δμ) if Δr_t > 0 else clip(μ_t − κμ·μ_t)
    σ_{t+1} = clip(σ_t·f_σ)    (raised only on plateaus, cut by variance and by a low
                                local-test success rate)

:class:`LawState` holds one batch of controllers; :func:`observe` is one step of all of
them, :func:`record_local_test`, :func:`cut_alpha` and :func:`observe_update` feed the
other inputs. The scalar API (:class:`aegym.control.controller.AEController` and the
float versions of these functions) is this module at ``B = 1``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from aegym.control._rows import select_rows
from aegym.control.config import AEConfig

Tensor = torch.Tensor

# Guards divisions by a loss level that may be exactly zero (relative signals).
TINY = 1e-12
DTYPE = torch.float64


# --------------------------------------------------------------------------------------
# Pure functions of the law
# --------------------------------------------------------------------------------------


def ema(prev: Tensor, x: Tensor, beta: float, first: Tensor | None = None) -> Tensor:
    """``x̄_t = β·x̄_{t-1} + (1 − β)·x_t``; rows where ``first`` start the filter at ``x``."""
    new = beta * prev + (1.0 - beta) * x
    return new if first is None else torch.where(first, x, new)


def _nonnegative(value: Tensor) -> Tensor:
    """Clamp a variance-like value to [0, inf]; NaN (unknown, e.g. overflow) counts as inf."""
    return value.nan_to_num(math.inf, math.inf, -math.inf).clamp_min(0.0)


def _damping(gain: float, variance: Tensor) -> Tensor:
    """Denominator ``1 + gain·v`` (``v`` cleaned by :func:`_nonnegative`); 1 when gain = 0."""
    if gain == 0.0:
        return torch.ones_like(variance)
    return 1.0 + gain * _nonnegative(variance)


def _clip(value: Tensor, low: Tensor | float, high: Tensor | float) -> Tensor:
    """``min(max(value, low), high)``; NaN goes to ``low`` (the safe side of every gain)."""
    # NaN -> -inf, which the clamp sends to ``low``; ±inf stay and clamp as usual.
    return value.nan_to_num(-math.inf, math.inf, -math.inf).clamp(low, high)


def window_variance(window: Tensor, count: Tensor) -> Tensor:
    """Population variance ``v = (1/n)·Σ (ℓ_i − mean ℓ)²`` of each row's last ``n`` values.

    :param window: ``[B, k]`` recent values, oldest first; only the last ``count`` of a
        row are valid.
    :param count: ``[B]`` number of valid values, in [0, k].
    :returns: ``[B]``; 0 where n < 2, inf where the sums overflow.
    """
    k = window.shape[-1]
    valid = torch.arange(k, device=window.device) >= (k - count)[:, None]
    n = count.to(window.dtype)
    mean = window.masked_fill(~valid, 0.0).sum(-1) / n
    dev = (window - mean[:, None]).masked_fill_(~valid, 0.0)
    var = (dev * dev).sum(-1) / n
    # Inputs are finite: NaN means overflow (inf).
    return var.nan_to_num_(math.inf, math.inf, -math.inf).masked_fill_(count < 2, 0.0)


def relative_signals(delta_loss: Tensor, variance: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
    """Scale-free signals ``(Δℓ / s, v / s²)`` with ``s = max(|ℓ̄_{t-1}|, 1e-12)``."""
    scale = level.abs().clamp_min(TINY)
    return delta_loss / scale, variance / (scale * scale)


def alpha_factor(delta_loss: Tensor, variance: Tensor, cfg: AEConfig) -> Tensor:
    """Learning-rate factor ``f_α``.

    ``f_α = u`` if ``Δℓ > ε`` (improving), else ``d / (1 + λ·v)`` (damp, more so
    when the loss is noisy).
    """
    # Not ``cfg.down / tensor``: torch evaluates that as ``down · (1 / tensor)``.
    damp = _damping(cfg.var_damping, variance)
    damped = torch.full_like(damp, cfg.down) / damp
    return torch.where(delta_loss > cfg.eps, cfg.up, damped)


def cosine_envelope(step: Tensor, cfg: AEConfig) -> Tensor:
    """Macro-schedule ``e(t) = f + (1 − f)·½·(1 + cos(π·min(t, T)/T))``; 1 when off.

    ``f`` is ``cfg.cosine_floor`` and ``T`` is ``cfg.total_steps``; e(0) = 1, e(T) = f.
    ``step`` is an integer tensor ``[B]``; the result is float64.
    """
    if not cfg.cosine_envelope or cfg.total_steps is None:
        return torch.ones(step.shape, dtype=DTYPE, device=step.device)
    frac = step.clamp(0, cfg.total_steps).to(DTYPE) / cfg.total_steps
    return cfg.cosine_floor + (1.0 - cfg.cosine_floor) * 0.5 * (1.0 + torch.cos(math.pi * frac))


def next_alpha(
    alpha: Tensor, factor: Tensor | float, alpha0: Tensor, cfg: AEConfig, step: Tensor
) -> Tensor:
    """``α_{t+1} = clip(α_t·f_α, a_min·α0·e(t), a_max·α0·e(t))``.

    ``a_min``/``a_max`` are ``cfg.alpha_min_factor``/``cfg.alpha_max_factor`` and
    ``e(t)`` the optional :func:`cosine_envelope`: the envelope moves the clip window
    (so α itself keeps adapting inside it) and α always stays in ``[a_min, a_max]·α0``.
    """
    env = cosine_envelope(step, cfg)
    low = cfg.alpha_min_factor * alpha0 * env
    high = cfg.alpha_max_factor * alpha0 * env
    return _clip(alpha * factor, low, high)


def next_momentum(mu: Tensor, delta_reward: Tensor, cfg: AEConfig) -> Tensor:
    """``μ_{t+1} = clip(μ_t + δμ, 0, μmax)`` if ``Δr > 0`` else ``clip(μ_t − κμ·μ_t, 0, μmax)``."""
    mu = torch.where(delta_reward > 0, mu + cfg.momentum_step, mu - cfg.momentum_decay * mu)
    return _clip(mu, 0.0, cfg.momentum_max)


def window_descending(window: Tensor, count: Tensor, z: float) -> Tensor:
    """Whether each row's last ``n`` values descend significantly: ``[B]`` bool.

    Least-squares line ``ℓ_i ≈ a + b·i`` through the valid values; the descent is
    significant when ``−b > z·SE(b)`` with ``SE(b)² = Σ r_i² / ((n − 2)·Σ (i − ī)²)``
    (a t-test of the slope). A clean slow descent (no noise: SE = 0) is significant
    however slow; an exactly flat window (b = 0) is not; n < 3 never is.

    :param window: ``[B, k]`` recent values, oldest first (as :func:`window_variance`).
    :param count: ``[B]`` number of valid values, in [0, k].
    :param z: the threshold in standard errors, >= 0.
    """
    k = window.shape[-1]
    valid = torch.arange(k, device=window.device) >= (k - count)[:, None]
    n = count.to(window.dtype).clamp_min(1.0)
    x = torch.arange(k, device=window.device, dtype=window.dtype).expand_as(window)
    x_mean = x.masked_fill(~valid, 0.0).sum(-1) / n
    y_mean = window.masked_fill(~valid, 0.0).sum(-1) / n
    dx = (x - x_mean[:, None]).masked_fill(~valid, 0.0)
    dy = (window - y_mean[:, None]).masked_fill(~valid, 0.0)
    sxx = (dx * dx).sum(-1).clamp_min(TINY)
    slope = (dx * dy).sum(-1) / sxx
    resid = (dy - slope[:, None] * dx).masked_fill(~valid, 0.0)
    se = ((resid * resid).sum(-1) / ((n - 2.0).clamp_min(1.0) * sxx)).sqrt()
    return (-slope > z * se) & (count >= 3) & slope.isfinite()


def next_plateau_count(
    count: Tensor, delta_loss: Tensor, cfg: AEConfig, descending: Tensor | None = None
) -> Tensor:
    """Consecutive plateau steps: ``count + 1`` if the step is flat, else 0.

    Flat means ``|Δℓ| <= plateau_tol`` and, where ``descending`` is given (see
    :func:`window_descending`), no significant descent over the variance window — so
    a slow but steady descent is not a plateau however small its steps.
    """
    flat = delta_loss.abs() <= cfg.plateau_tol
    if descending is not None:
        flat = flat & ~descending
    return (count + 1).masked_fill_(~flat, 0)


def success_factor(success_rate: Tensor, pending: Tensor, cfg: AEConfig) -> Tensor:
    """Local-test feedback ``exp(γ·(s − s*))`` where a result is ``pending``, else 1.

    Above the target rate s* probing pays off (factor > 1), below it σ shrinks.
    """
    factor = torch.exp(cfg.success_gain * (success_rate - cfg.success_target))
    return factor.masked_fill_(~pending, 1.0)


def next_sigma(
    sigma: Tensor,
    plateau_count: Tensor,
    variance: Tensor,
    success_rate: Tensor,
    pending: Tensor,
    cfg: AEConfig,
) -> Tensor:
    """Dither law ``σ_{t+1} = clip(σ_t·f_σ, σ_min, σ_max)``.

    With ``s = success_factor(success_rate, pending)`` and ``c = 1 / (1 + λσ·v)``:

    * plateau (``plateau_count >= p``): ``f_σ = b·s·c`` (b = plateau boost);
    * otherwise: ``f_σ = min(1, s)·c``, then, if above σ0, σ relaxes back toward σ0:
      ``σ ← max(σ0, σ·sigma_decay)``.

    So σ is raised **only** on plateaus, cut when the loss is noisy and scaled by the
    local-test success rate.
    """
    damp = _damping(cfg.sigma_var_damping, variance)
    s = success_factor(success_rate, pending, cfg)
    boosted = sigma * cfg.plateau_boost * s / damp
    calm = sigma * s.clamp_max(1.0) / damp
    calm = torch.where(calm > cfg.sigma0, (calm * cfg.sigma_decay).clamp_min(cfg.sigma0), calm)
    new = torch.where(plateau_count >= cfg.plateau_steps, boosted, calm)
    return _clip(new, cfg.sigma_min, cfg.sigma_max)


# --------------------------------------------------------------------------------------
# Batched controller state
# --------------------------------------------------------------------------------------


class LawState(NamedTuple):
    """``B`` AE controllers: gains, filtered signals and monitors, each ``[B]``.

    Float fields are float64, counters int64. ``loss``, ``reward``, ``loss_ema`` and
    ``reward_ema`` are NaN before a row's first observation (``step == 0``).

    :param alpha0: α0, the reference learning rate of each row.
    :param alpha: α for the next update.
    :param momentum: μ for the next update.
    :param sigma: σ for the next update.
    :param step: observations so far.
    :param loss: raw loss ℓ_t.
    :param reward: raw reward r_t (−ℓ_t when none was given).
    :param loss_ema: ℓ̄_t.
    :param reward_ema: r̄_t.
    :param delta_loss: Δℓ_t as the law saw it (relative when ``cfg.relative``).
    :param delta_reward: Δr_t.
    :param variance: v_t as the law saw it (relative when ``cfg.relative``).
    :param plateau_count: consecutive flat steps (:func:`next_plateau_count`).
    :param grad_norm: ‖g_t‖₂ as reported (not used by the law).
    :param update_norm: ‖u_t‖₂ of the last gradient update.
    :param success_rate: EMA of the local-test success fraction.
    :param success_pending: a local-test result waits for the next σ update.
    :param lyapunov: EMA of ℓ_t − ℓ_{t-1}.
    :param update_autocorr: EMA of cos(u_t, u_{t-1}).
    :param flip_rate: EMA of the fraction of update signs that flipped.
    :param window: ``[B, k]`` the last k raw losses, oldest first.
    :param window_count: how many of the ``window`` values are valid, in [0, k].
    """

    alpha0: Tensor
    alpha: Tensor
    momentum: Tensor
    sigma: Tensor
    step: Tensor
    loss: Tensor
    reward: Tensor
    loss_ema: Tensor
    reward_ema: Tensor
    delta_loss: Tensor
    delta_reward: Tensor
    variance: Tensor
    plateau_count: Tensor
    grad_norm: Tensor
    update_norm: Tensor
    success_rate: Tensor
    success_pending: Tensor
    lyapunov: Tensor
    update_autocorr: Tensor
    flip_rate: Tensor
    window: Tensor
    window_count: Tensor


def _column(value: Tensor | float, like: Tensor) -> Tensor:
    """``value`` as a float64 ``[B]`` tensor on ``like``'s device (broadcast if scalar)."""
    out = torch.as_tensor(value, dtype=DTYPE, device=like.device)
    return out.expand(like.shape[0]).clone() if out.ndim == 0 else out


def init_state(
    batch: int,
    alpha0: Tensor | float,
    cfg: AEConfig,
    device: torch.device | str | None = None,
) -> LawState:
    """Fresh controllers: ``α = α0``, ``μ = μ0``, ``σ = σ0``, empty filters.

    :param batch: B, number of rows.
    :param alpha0: α0 per row ``[B]`` or one number for all.
    :param cfg: the law's constants.
    :param device: where the state lives (that of ``alpha0`` if it is a tensor).
    """
    if device is None and isinstance(alpha0, Tensor):
        device = alpha0.device
    zeros = torch.zeros(batch, dtype=DTYPE, device=device)
    nan = torch.full_like(zeros, math.nan)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    return LawState(
        alpha0=_column(alpha0, zeros),
        alpha=_column(alpha0, zeros),
        momentum=zeros + cfg.momentum0,
        sigma=zeros + cfg.sigma0,
        step=count,
        loss=nan,
        reward=nan,
        loss_ema=nan,
        reward_ema=nan,
        delta_loss=zeros,
        delta_reward=zeros,
        variance=zeros,
        plateau_count=count,
        grad_norm=zeros,
        update_norm=zeros,
        success_rate=zeros + cfg.success_target,
        success_pending=torch.zeros(batch, dtype=torch.bool, device=device),
        lyapunov=zeros,
        update_autocorr=zeros,
        flip_rate=zeros,
        window=torch.zeros(batch, cfg.var_window, dtype=DTYPE, device=device),
        window_count=count,
    )


def reset_state(state: LawState, mask: Tensor, cfg: AEConfig) -> LawState:
    """Fresh controllers (as :func:`init_state`, same α0) in the rows where ``mask``."""
    fresh = init_state(state.step.shape[0], state.alpha0, cfg)
    return select_rows(mask.to(state.step.device), fresh, state)


def _masked(mask: Tensor | None, new: LawState, old: LawState) -> LawState:
    """``new`` in the rows of ``mask``; fields ``new`` did not replace are left as they are."""
    if mask is None:
        return new
    mask = mask.to(old.step.device)
    changed = {
        name: torch.where(mask.view(-1, *([1] * (n.ndim - 1))), n, o)
        for name, n, o in zip(LawState._fields, new, old, strict=True)
        if n is not o
    }
    return old._replace(**changed)


def observe(
    state: LawState,
    loss: Tensor,
    reward: Tensor | None,
    cfg: AEConfig,
    mask: Tensor | None = None,
    grad_norm: Tensor | None = None,
    *,
    adapt: bool = True,
) -> LawState:
    """Feed one step's loss (and reward) to every row where ``mask`` and adapt the gains.

    Per row this is the seed's law: update ``ℓ̄, r̄, v, Δℓ, Δr``, the plateau counter and
    the Lyapunov monitor, then :func:`next_alpha`, :func:`next_momentum` and
    :func:`next_sigma` (which consumes a pending local-test result). A row's first
    observation only initializes its filters (there is no trend yet).

    :param loss: ℓ_t ``[B]``, finite where ``mask``.
    :param reward: r_t ``[B]``, or None for ``r_t = −ℓ_t`` (so that Δr = raw Δℓ).
    :param mask: ``[B]`` rows to update (all if None); other rows are returned unchanged.
    :param grad_norm: ‖g_t‖₂ ``[B]`` for the log (0 if None).
    :param adapt: False updates the filters only and leaves α, μ, σ (and a pending
        local-test result) alone — for callers that set the gains themselves.
    """
    loss = loss.to(DTYPE)
    reward = -loss if reward is None else reward.to(DTYPE)
    beta = cfg.beta
    first = state.step == 0
    seen = torch.ones_like(first) if mask is None else mask.to(first.device)
    adapting = seen & ~first  # rows whose trend exists: the law moves their gains
    loss_ema = ema(state.loss_ema, loss, beta, first)
    reward_ema = ema(state.reward_ema, reward, beta, first)
    window = torch.cat([state.window[:, 1:], loss[:, None]], 1)
    count = (state.window_count + 1).clamp_max_(state.window.shape[1])
    lyapunov = ema(state.lyapunov, loss - state.loss, beta, state.step == 1)
    raw_variance = window_variance(window, count)

    delta, variance = state.loss_ema - loss_ema, raw_variance
    if cfg.relative:
        delta, variance = relative_signals(delta, variance, state.loss_ema)
    delta_reward = reward_ema - state.reward_ema
    descending = (
        None
        if cfg.plateau_trend_z is None
        else window_descending(window, count, cfg.plateau_trend_z)
    )
    plateau = next_plateau_count(state.plateau_count, delta, cfg, descending)
    gains = state.alpha, state.momentum, state.sigma, state.success_pending
    if adapt:
        gains = (
            next_alpha(
                state.alpha, alpha_factor(delta, variance, cfg), state.alpha0, cfg, state.step
            ),
            next_momentum(state.momentum, delta_reward, cfg),
            next_sigma(
                state.sigma, plateau, variance, state.success_rate, state.success_pending, cfg
            ),
            state.success_pending & ~adapting,
        )
    alpha, momentum, sigma, pending = gains

    def observed(new: Tensor, old: Tensor) -> Tensor:
        return torch.where(seen, new, old)

    def adapted(new: Tensor, old: Tensor, initial: float | None = None) -> Tensor:
        if new is old:
            return old
        out = torch.where(adapting, new, old)
        # A first observation sets the trend signals to their initial value.
        return out if initial is None else out.masked_fill_(seen & first, initial)

    return state._replace(
        alpha=adapted(alpha, state.alpha),
        momentum=adapted(momentum, state.momentum),
        sigma=adapted(sigma, state.sigma),
        step=state.step + seen,
        loss=observed(loss, state.loss),
        reward=observed(reward, state.reward),
        loss_ema=observed(loss_ema, state.loss_ema),
        reward_ema=observed(reward_ema, state.reward_ema),
        delta_loss=adapted(delta, state.delta_loss, 0.0),
        delta_reward=adapted(delta_reward, state.delta_reward, 0.0),
        variance=torch.where(adapting, variance, observed(raw_variance, state.variance)),
        plateau_count=adapted(plateau, state.plateau_count),
        grad_norm=observed(
            torch.zeros_like(loss) if grad_norm is None else grad_norm.to(DTYPE),
            state.grad_norm,
        ),
        success_pending=pending,
        lyapunov=adapted(lyapunov, state.lyapunov),
        window=torch.where(seen[:, None], window, state.window),
        window_count=observed(count, state.window_count),
    )


def observe_update(
    state: LawState,
    cfg: AEConfig,
    update_norm: Tensor,
    update_cosine: Tensor | None = None,
    sign_flip: Tensor | None = None,
    mask: Tensor | None = None,
) -> LawState:
    """Feed the resonance monitors with the update just applied.

    :param update_norm: ‖u_t‖₂ ``[B]`` (gradient part of the step).
    :param update_cosine: cos(u_t, u_{t-1}) ``[B]``; NaN where undefined (first step).
    :param sign_flip: fraction of coordinates with ``sign(u_t) ≠ sign(u_{t-1})`` ``[B]``;
        NaN where undefined.
    :param mask: ``[B]`` rows to update (all if None).
    """

    def monitor(prev: Tensor, x: Tensor | None) -> Tensor:
        if x is None:
            return prev
        x = x.to(DTYPE)
        return torch.where(x.isnan(), prev, ema(prev, x, cfg.beta))

    new = state._replace(
        update_norm=update_norm.to(DTYPE),
        update_autocorr=monitor(state.update_autocorr, update_cosine),
        flip_rate=monitor(state.flip_rate, sign_flip),
    )
    return _masked(mask, new, state)


def record_local_test(
    state: LawState, success_fraction: Tensor, cfg: AEConfig, mask: Tensor | None = None
) -> LawState:
    """Feed one local test's success fraction (share of probes that beat ℓ_t) per row.

    ``s ← EMA_{β_s}(s, fraction)``; the next :func:`observe` passes ``s`` to
    :func:`next_sigma` once.
    """
    new = state._replace(
        success_rate=ema(state.success_rate, success_fraction.to(DTYPE), cfg.success_beta),
        success_pending=torch.ones_like(state.success_pending),
    )
    return _masked(mask, new, state)


def cut_alpha(
    state: LawState, cfg: AEConfig, factor: float | None = None, mask: Tensor | None = None
) -> LawState:
    """Multiply α by ``factor`` (default ``rollback_alpha_cut``), within the bounds."""
    factor = cfg.rollback_alpha_cut if factor is None else factor
    alpha = next_alpha(state.alpha, factor, state.alpha0, cfg, state.step)
    return _masked(mask, state._replace(alpha=alpha), state)


def divergence_threshold(state: LawState, factor: float) -> Tensor:
    """Loss above which a step counts as diverged: ``ℓ̄ + (factor − 1)·|ℓ̄|`` per row.

    ``inf`` before a row's first observation (only non-finite losses diverge then).
    """
    level = state.loss_ema
    threshold = level + (factor - 1.0) * level.abs()
    return torch.where(state.step == 0, math.inf, threshold)


# --------------------------------------------------------------------------------------
# Reading one row
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


_INT_SIGNALS = ("step", "plateau_count")


def signals_at(state: LawState, row: int) -> AESignals:
    """Row ``row``'s signals as Python numbers (one host transfer)."""
    names = [n for n in AESignals._fields if n not in _INT_SIGNALS]
    floats = torch.stack([getattr(state, n) for n in names], -1)[row].tolist()
    ints = torch.stack([getattr(state, n) for n in _INT_SIGNALS], -1)[row].tolist()
    values = dict(zip(names, floats, strict=True)) | dict(zip(_INT_SIGNALS, ints, strict=True))
    return AESignals(**values)


__all__ = [
    "AESignals",
    "LawState",
    "alpha_factor",
    "cosine_envelope",
    "cut_alpha",
    "divergence_threshold",
    "ema",
    "init_state",
    "next_alpha",
    "next_momentum",
    "next_plateau_count",
    "next_sigma",
    "observe",
    "observe_update",
    "record_local_test",
    "relative_signals",
    "reset_state",
    "signals_at",
    "success_factor",
    "window_descending",
    "window_variance",
]
