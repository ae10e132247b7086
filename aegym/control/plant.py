"""The AE plant, batched: filtered gradient step, shaped dither and local tests.

θ is ``[B, D]``: row b is one independent optimization (an episode's free knobs, one
parameter tensor flattened) with its own gains ``α_b, μ_b, σ_b``. One :func:`step`::

    h ← μ·h + (1 − μ)·g                                   (Φ)
    u = α·h                                   ("sgd")     (U)
    u = α·ĥ / (√v̂ + ε),  ĥ = h / (1 − Π_t μ_t),  v̂ = v / (1 − β2^t)     ("adam", β1 = μ)
    θ ← clamp(θ − u + s·η),   s = min(σ·D(θ), RMS(u)),   D(θ) = max(RMS(θ), dither_floor)
    θ ← clamp((1 − ρ)·θ + ρ·θ_best)   for rows whose best probe won a local test

Adam's bias correction is exact for a time-varying β1: each row keeps ``Π μ_t``.
The dither is shaped by the parameters' RMS but never larger (per row, in RMS) than the
gradient step it rides on: a random walk of at most the step's size cannot outrun the
descent (drift grows ∝ t, the walk ∝ √t), so raising σ on a plateau never turns a slow
descent into an ascent. Exploration at the parameters' scale is the local tests' job
(their probes only enter θ when they beat the loss).
A local test (:func:`local_test`) evaluates probes ``θ + probe_scale·D(θ)·η_i`` of
the θ its loss was measured at and declares a win when the best probe beats that loss.
Noise is an argument (callers own their random streams). Every function works on the
whole batch at once; a ``mask [B]`` leaves the other rows exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from aegym.control._rows import select_rows, where_rows
from aegym.control.config import AEConfig, UpdateRule

Tensor = torch.Tensor
#: Valid range of θ: a ``(low, high)`` pair, a callable returning the clamped copy, or None.
Bounds = tuple[float, float] | Callable[[Tensor], Tensor] | None
#: Evaluates probes ``[R, n, D]`` of the rows ``[R]`` (indices into the batch) -> ``[R, n]``.
ProbeEval = Callable[[Tensor, Tensor], Tensor]

# Keeps the bias-correction denominators away from 0 (first step with μ = 1).
_TINY = 1e-12


class PlantState(NamedTuple):
    """Optimizer memory of ``B`` rows.

    :param h: ``[B, D]`` filtered gradient (Φ's state; Adam's first moment, β1 = μ).
    :param v: ``[B, D]`` Adam's second moment; None for ``"sgd"``.
    :param bias1: ``[B]`` float64 ``Π μ_t`` (Adam's first bias correction); None for sgd.
    :param bias2: ``[B]`` float64 ``β2^t``; None for ``"sgd"``.
    """

    h: Tensor
    v: Tensor | None
    bias1: Tensor | None
    bias2: Tensor | None


class ProbeResult(NamedTuple):
    """Outcome of a local test on ``B`` rows (untested rows: no win, success 0).

    :param best: ``[B, D]`` best probe of each tested row (θ elsewhere).
    :param best_loss: ``[B]`` its loss (NaN where untested; inf if no probe was finite).
    :param win: ``[B]`` the best probe beat the loss at the probed θ.
    :param success: ``[B]`` fraction of probes that beat it.
    :param tested: ``[B]`` rows that ran the test.
    """

    best: Tensor
    best_loss: Tensor
    win: Tensor
    success: Tensor
    tested: Tensor


class PlantStep(NamedTuple):
    """One :func:`step`: the new θ and its parts (masked rows: θ unchanged, parts 0).

    :param theta: ``[B, D]`` θ_{t+1}, clamped, with the average-in applied.
    :param update: ``[B, D]`` the gradient update u_t (θ moves by −u).
    :param dither: ``[B, D]`` the dither min(σ·D(θ_t), RMS(u_t))·η_t.
    :param move: ``[B, D]`` ``dither − update``, before clamping and average-in.
    :param state: the plant's memory after the step.
    """

    theta: Tensor
    update: Tensor
    dither: Tensor
    move: Tensor
    state: PlantState


def _col(value: Tensor, dtype: torch.dtype) -> Tensor:
    """A per-row gain ``[B]`` as a ``[B, 1]`` column of θ's dtype."""
    return value.to(dtype)[:, None]


def init_plant(
    batch: int,
    dim: int,
    rule: UpdateRule = "adam",
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> PlantState:
    """Zero memory for ``batch`` rows of ``dim`` parameters."""
    h = torch.zeros(batch, dim, dtype=dtype, device=device)
    if rule == "sgd":
        return PlantState(h, None, None, None)
    ones = torch.ones(batch, dtype=torch.float64, device=device)
    return PlantState(h, torch.zeros_like(h), ones, ones.clone())


def reset_plant(state: PlantState, mask: Tensor) -> PlantState:
    """Zero the memory of the rows where ``mask`` (new episodes)."""
    fresh = PlantState(
        torch.zeros_like(state.h),
        None if state.v is None else torch.zeros_like(state.v),
        None if state.bias1 is None else torch.ones_like(state.bias1),
        None if state.bias2 is None else torch.ones_like(state.bias2),
    )
    return select_rows(mask, fresh, state)


def clamp(theta: Tensor, bounds: Bounds) -> Tensor:
    """Apply ``bounds`` (identity without bounds)."""
    if bounds is None:
        return theta
    if callable(bounds):
        return bounds(theta)
    return theta.clamp(*bounds)


def filtered_update(
    state: PlantState,
    grad: Tensor,
    alpha: Tensor,
    momentum: Tensor,
    cfg: AEConfig,
    mask: Tensor | None = None,
) -> tuple[PlantState, Tensor]:
    """Φ and U: update the memory with ``g [B, D]`` and return ``(state, u [B, D])``.

    ``cfg.update_rule`` picks the rule; ``cfg.adam_beta2`` and ``cfg.adam_eps`` are
    Adam's. Gains are ``[B]`` in any dtype (``1 − μ`` is formed in μ's dtype, then cast
    to θ's). Rows outside ``mask`` keep their memory and get ``u = 0``.
    """
    dtype = grad.dtype
    h = _col(momentum, dtype) * state.h + _col(1.0 - momentum, dtype) * grad
    if cfg.update_rule == "sgd":
        new = state._replace(h=h)
        update = _col(alpha, dtype) * h
    else:
        if state.v is None or state.bias1 is None or state.bias2 is None:
            raise ValueError("update_rule='adam' needs a PlantState with v, bias1, bias2")
        beta2 = cfg.adam_beta2
        v = beta2 * state.v + (1.0 - beta2) * grad * grad
        bias1 = state.bias1 * momentum.to(state.bias1.dtype)
        bias2 = state.bias2 * beta2
        h_hat = h / _col((1.0 - bias1).clamp_min(_TINY), dtype)
        v_hat = v / _col((1.0 - bias2).clamp_min(_TINY), dtype)
        update = _col(alpha, dtype) * h_hat / (v_hat.sqrt() + cfg.adam_eps)
        new = PlantState(h, v, bias1, bias2)
    if mask is None:
        return new, update
    return select_rows(mask, new, state), update.masked_fill(~mask[:, None], 0.0)


def dither_shape(theta: Tensor, floor: float) -> Tensor:
    """Shaping ``D(θ) = max(RMS(θ), floor)`` of each row ``[B]`` (RMS in >= float32)."""
    if theta.shape[-1] == 0:
        rms = theta.new_zeros(theta.shape[:-1])
    else:
        x = theta.detach().to(torch.promote_types(theta.dtype, torch.float32))
        rms = x.pow(2).mean(-1).sqrt().to(theta.dtype)
    return rms.clamp_min(floor)


def dither(
    theta: Tensor, sigma: Tensor, noise: Tensor, floor: float, update: Tensor | None = None
) -> Tensor:
    """The dither ``s·η`` of each row, ``[B, D]`` (η = ``noise``).

    ``s = σ·D(θ)``; with ``update`` (the step u ``[B, D]`` it is added to),
    ``s = min(σ·D(θ), RMS(u))``, so the dither is never larger than the step.
    """
    scale = sigma.to(theta.dtype) * dither_shape(theta, floor)
    if update is not None:
        scale = torch.minimum(scale, dither_shape(update, 0.0))
    return scale[:, None] * noise.to(theta.dtype)


def probe(theta: Tensor, noise: Tensor, cfg: AEConfig, bounds: Bounds = None) -> Tensor:
    """Local-test probes ``clamp(θ + probe_scale·D(θ)·η_i)``, ``[B, n, D]`` (η = ``noise``)."""
    scale = cfg.probe_scale * dither_shape(theta, cfg.dither_floor)
    return clamp(theta[:, None] + scale[:, None, None] * noise.to(theta.dtype), bounds)


class Verdict(NamedTuple):
    """:func:`judge`'s reading of ``[B, n]`` probe losses against the losses ``[B]``."""

    index: Tensor
    best_loss: Tensor
    win: Tensor
    success: Tensor


def judge(probe_losses: Tensor, loss: Tensor) -> Verdict:
    """Best probe per row (non-finite losses never win), whether it beat ``loss`` and
    the fraction of probes that did."""
    finite = torch.where(probe_losses.isfinite(), probe_losses, torch.inf)
    best_loss, index = finite.min(-1)
    loss = loss.to(finite.device)
    return Verdict(
        index=index,
        best_loss=best_loss,
        win=best_loss < loss,
        success=(finite < loss[:, None]).float().mean(-1),
    )


def dense_probes(device: torch.device | str) -> bool:
    """Whether local tests on ``device`` evaluate every row (masked afterwards) rather
    than gathering the tested rows: on accelerators, where gathering them
    (``nonzero``) and deciding whether any row tests would stop the host until the
    device catches up; on CPU that costs nothing and the untested rows' probe renders
    are skipped."""
    return torch.device(device).type != "cpu"


def local_test(
    theta: Tensor,
    loss: Tensor,
    noise: Tensor,
    evaluate: ProbeEval,
    cfg: AEConfig,
    bounds: Bounds = None,
    mask: Tensor | None = None,
    dense: bool | None = None,
) -> ProbeResult:
    """Probe ``θ [B, D]`` (whose loss is ``loss [B]``) with ``noise [B, n, D]``.

    Only the rows in ``mask`` are probed: ``evaluate`` gets their probes ``[R, n, D]``
    and row indices ``[R]`` (gathering them is a host sync). ``dense=True`` evaluates
    every row and keeps the verdicts of the tested ones (no host sync, the same
    result); ``None`` chooses by device (:func:`dense_probes`).
    """
    batch = theta.shape[0]
    dense = dense_probes(theta.device) if dense is None else dense
    if mask is None:
        tested = torch.ones(batch, dtype=torch.bool, device=theta.device)
    else:
        tested = mask.to(device=theta.device, dtype=torch.bool)
    best, best_loss = theta.clone(), torch.full((batch,), torch.nan, device=theta.device)
    win = torch.zeros(batch, dtype=torch.bool, device=theta.device)
    success = torch.zeros(batch, device=theta.device)
    if mask is None or dense:
        rows = torch.arange(batch, device=theta.device)
    else:
        rows = tested.nonzero().flatten()
        if rows.numel() == 0:
            return ProbeResult(best, best_loss, win, success, tested)
    probes = probe(theta[rows], noise[rows], cfg, bounds)
    verdict = judge(evaluate(probes, rows), loss[rows])
    picked = probes[torch.arange(rows.numel(), device=theta.device), verdict.index]
    result = ProbeResult(
        best=best.index_copy(0, rows, picked),
        best_loss=best_loss.index_copy(0, rows, verdict.best_loss.to(best_loss.dtype)),
        win=win.index_copy(0, rows, verdict.win),
        success=success.index_copy(0, rows, verdict.success),
        tested=tested,
    )
    if mask is None or not dense:
        return result
    return ProbeResult(  # untested rows as if never probed
        best=where_rows(tested, result.best, best),
        best_loss=torch.where(tested, result.best_loss, best_loss),
        win=result.win & tested,
        success=torch.where(tested, result.success, success),
        tested=tested,
    )


def average_in(theta: Tensor, probes: ProbeResult, rho: float, bounds: Bounds = None) -> Tensor:
    """``clamp((1 − ρ)·θ + ρ·θ_best)`` in the rows whose test won, θ elsewhere."""
    mixed = clamp((1.0 - rho) * theta + rho * probes.best.to(theta.dtype), bounds)
    return where_rows(probes.win, mixed, theta)


def step(
    state: PlantState,
    theta: Tensor,
    grad: Tensor,
    alpha: Tensor,
    momentum: Tensor,
    sigma: Tensor,
    cfg: AEConfig,
    *,
    noise: Tensor | None = None,
    bounds: Bounds = None,
    mask: Tensor | None = None,
    probes: ProbeResult | None = None,
) -> PlantStep:
    """One plant step on ``θ [B, D]`` with gradient ``g [B, D]`` and gains ``[B]``.

    ``θ ← clamp(θ + (min(σ·D(θ), RMS(u))·η − u))``, then the average-in of a won local test
    (``probes``, run at this θ) and a clamp. ``noise`` None means no dither (σ = 0).
    Rows outside ``mask`` keep θ and memory.
    """
    theta = theta.detach()
    state, update = filtered_update(state, grad, alpha, momentum, cfg, mask)
    if noise is None:
        shaped = torch.zeros_like(theta)
    else:
        shaped = dither(theta, sigma, noise, cfg.dither_floor, update)
        if mask is not None:
            shaped = shaped.masked_fill(~mask[:, None], 0.0)
    move = shaped - update
    new = clamp(theta + move, bounds)
    if probes is not None:
        new = average_in(new, probes, cfg.rho, bounds)
    if mask is not None:
        new = where_rows(mask, new, theta)
    return PlantStep(new, update, shaped, move, state)


__all__ = [
    "Bounds",
    "PlantState",
    "PlantStep",
    "ProbeEval",
    "ProbeResult",
    "Verdict",
    "average_in",
    "clamp",
    "dither",
    "dither_shape",
    "filtered_update",
    "init_plant",
    "judge",
    "local_test",
    "probe",
    "reset_plant",
    "step",
]
