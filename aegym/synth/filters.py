"""Resonant 4-pole ladder low-pass: a fast batched form and a time-domain reference.

The analog ladder is four one-pole low-passes ``G(s) = ωc / (s + ωc)`` in a loop with
feedback ``k``::

    H(s) = G(s)^4 / (1 + k·G(s)^4),      0 <= k < 4 (k = 4 self-oscillates).

Discretised with the bilinear transform prewarped at the cutoff (``g = tan(π fc / fs)``),
each stage becomes ``G(z) = b0 (1 + z⁻¹) / (1 - p z⁻¹)`` with ``b0 = g/(1+g)``,
``p = (1-g)/(1+g)``, and the whole filter is::

    H(z) = (b0⁴ / a0) (1 + z⁻¹)⁴ / Π_m (1 - z_m z⁻¹),   a0 = 1 + k b0⁴,

whose four poles are ``z_m = (p + c_m) / (1 - c_m)`` with
``c_m = b0 k^{1/4} e^{iπ(2m+1)/4}`` (two conjugate pairs). This is exactly what the
zero-delay-feedback (TPT) ladder computes, which :func:`ladder_reference` implements
sample by sample and the tests use to validate :func:`ladder_filter`.

Fast form. Coefficients are constant within control blocks of ``block_size`` samples
(the cutoff envelope is sampled once per block). The filter runs as the FIR numerator
``(1 + z⁻¹)⁴`` followed by two all-pole biquads (one per conjugate pole pair, which stays
well conditioned at any resonance). Each biquad is solved for *all blocks at once*:

1. a zero-state pass of every block in parallel (rows of one ``lfilter`` call);
2. the block-to-block recursion of the 2-sample output history
   ``h_k = C_k^N h_{k-1} + e_k`` (``C_k`` the companion matrix) by a parallel prefix scan;
3. a second parallel pass where each block's true initial history enters as a
   correction of its first two input samples (exact for an all-pole section).

The result equals the sample-by-sample recursion up to float rounding, costs about two
``lfilter`` passes, and is differentiable in the input, cutoff and resonance.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torchaudio.functional as AF

try:  # the all-pole recursion without lfilter's FIR convolution (b = [1, 0, 0] here)
    from torchaudio.functional.filtering import DifferentiableIIR as _IIR
except ImportError:  # pragma: no cover - other torchaudio layouts
    _IIR = None

# Feedback k = K_MIN + (K_MAX - K_MIN) · resonance. K_MIN > 0 keeps the k^{1/4} in the
# pole formula differentiable at resonance 0; K_MAX < 4 keeps every pole inside the
# unit circle, so the filter stays bounded at maximum resonance.
K_MIN = 1e-3
K_MAX = 3.9
# Upper cutoff limit as a fraction of the sample rate (the BLT maps fs/2 to infinity).
MAX_CUTOFF_FRACTION = 0.45
MIN_CUTOFF_HZ = 10.0


def resonance_to_feedback(resonance: torch.Tensor) -> torch.Tensor:
    """Map resonance in [0, 1] to ladder feedback ``k = K_MIN + (K_MAX - K_MIN)·r``."""
    return K_MIN + (K_MAX - K_MIN) * resonance.clamp(0.0, 1.0)


def clamp_cutoff(cutoff_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Clamp cutoffs to ``[MIN_CUTOFF_HZ, 0.45·fs]`` where the discretisation is valid."""
    return cutoff_hz.clamp(MIN_CUTOFF_HZ, MAX_CUTOFF_FRACTION * sample_rate)


class LadderCoefficients(NamedTuple):
    """Discrete ladder coefficients, each ``[..., ]`` matching cutoff's shape.

    ``gain = b0⁴/a0``; ``a1``/``a2`` are ``[..., 2]``: the two biquads' denominators
    ``1 + a1 z⁻¹ + a2 z⁻²``.
    """

    gain: torch.Tensor
    a1: torch.Tensor
    a2: torch.Tensor


def ladder_coefficients(
    cutoff_hz: torch.Tensor, feedback: torch.Tensor, sample_rate: float
) -> LadderCoefficients:
    """Biquad-cascade coefficients of the BLT ladder (see module docstring)."""
    g = torch.tan(math.pi * clamp_cutoff(cutoff_hz, sample_rate) / sample_rate)
    b0 = g / (1.0 + g)
    p = (1.0 - g) / (1.0 + g)
    beta = b0 * feedback.clamp_min(K_MIN) ** 0.25
    # c_m = beta·e^{iπ(2m+1)/4}; pair 0 uses m=0 (angle π/4), pair 1 uses m=1 (3π/4).
    s = math.sqrt(0.5)
    a1s, a2s = [], []
    for sign in (1.0, -1.0):
        cr, ci = sign * beta * s, beta * s
        # z = (p + c) / (1 - c), with complex arithmetic done in reals.
        nr, ni = p + cr, ci
        dr, di = 1.0 - cr, -ci
        den = dr * dr + di * di
        zr = (nr * dr + ni * di) / den
        zabs2 = (nr * nr + ni * ni) / den
        a1s.append(-2.0 * zr)
        a2s.append(zabs2)
    a0 = 1.0 + feedback * b0**4
    return LadderCoefficients(b0**4 / a0, torch.stack(a1s, -1), torch.stack(a2s, -1))


def ladder_response(
    freqs_hz: torch.Tensor, cutoff_hz: float, resonance: float, sample_rate: float | None = None
) -> torch.Tensor:
    """Complex response of the ladder at ``freqs_hz``.

    With ``sample_rate=None`` the analog prototype ``G⁴/(1+kG⁴)``, ``G = ωc/(jω+ωc)``;
    otherwise the discrete (BLT) filter evaluated on the unit circle.
    """
    k = float(resonance_to_feedback(torch.tensor(resonance)))
    if sample_rate is None:
        s = 1j * 2 * math.pi * freqs_hz.to(torch.complex128)
        gs = (2 * math.pi * cutoff_hz) / (s + 2 * math.pi * cutoff_hz)
    else:
        g = math.tan(math.pi * min(cutoff_hz, MAX_CUTOFF_FRACTION * sample_rate) / sample_rate)
        zinv = torch.exp(-1j * 2 * math.pi * freqs_hz.to(torch.complex128) / sample_rate)
        gs = g * (1 + zinv) / ((1 + g) - (1 - g) * zinv)
    return gs**4 / (1 + k * gs**4)


class FilterState(NamedTuple):
    """Streaming state: last 4 inputs and each biquad's last 2 outputs.

    ``x_hist``: ``[B, 4]`` as (x[-1], x[-2], x[-3], x[-4]); ``y_hist``: ``[B, 2, 2]`` as
    (section, (y[-1], y[-2])).
    """

    x_hist: torch.Tensor
    y_hist: torch.Tensor

    @classmethod
    def zeros(cls, batch: int, device=None, dtype=torch.float32) -> FilterState:
        return cls(
            torch.zeros(batch, 4, device=device, dtype=dtype),
            torch.zeros(batch, 2, 2, device=device, dtype=dtype),
        )

    def detach(self) -> FilterState:
        return FilterState(self.x_hist.detach(), self.y_hist.detach())


def _binomial_fir(x: torch.Tensor, x_hist: torch.Tensor) -> torch.Tensor:
    """``(1 + z⁻¹)⁴ x`` with the previous 4 input samples taken from ``x_hist``.

    Four cascaded two-tap sums (one add each), cheaper than a 5-tap convolution.
    """
    y = torch.cat([x_hist.flip(-1), x], -1)  # [B, 4 + T], oldest first
    for _ in range(4):
        y = y[:, 1:] + y[:, :-1]
    return y


def _allpole(x: torch.Tensor, a_coeffs: torch.Tensor) -> torch.Tensor:
    """Row-wise all-pole recursion ``y = x / A(z)``: ``x [R, N]``, ``a_coeffs [R, 3]``."""
    if _IIR is not None:
        return _IIR.apply(x.unsqueeze(0).contiguous(), a_coeffs.contiguous())[0]
    b_coeffs = torch.zeros_like(a_coeffs)
    b_coeffs[:, 0] = 1.0
    return AF.lfilter(x, a_coeffs, b_coeffs, clamp=False, batching=True)


def _matpow(m: torch.Tensor, n: int) -> torch.Tensor:
    """``m ** n`` for batched square matrices by repeated squaring."""
    result = None
    base = m
    while n:
        if n & 1:
            result = base if result is None else result @ base
        n >>= 1
        if n:
            base = base @ base
    assert result is not None
    return result


def _prefix_scan(mats: torch.Tensor, vecs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of affine maps ``h -> M_k h + e_k`` over dim 1.

    ``mats [B, K, 2, 2]``, ``vecs [B, K, 2]`` -> ``[B, K, 2]``: the composition of maps
    0..k applied to a zero start, and the composed matrices ``[B, K, 2, 2]``
    (Hillis–Steele, log2(K) vectorised steps).
    """
    m, e = mats, vecs
    d = 1
    n = m.shape[1]
    while d < n:
        m_new = m[:, d:] @ m[:, :-d]
        e_new = (m[:, d:] @ e[:, :-d].unsqueeze(-1)).squeeze(-1) + e[:, d:]
        m = torch.cat([m[:, :d], m_new], 1)
        e = torch.cat([e[:, :d], e_new], 1)
        d *= 2
    return e, m


def _allpole_biquad_blocks(
    w: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, y_hist0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``y[n] = w[n] - a1 y[n-1] - a2 y[n-2]`` with block-constant coefficients.

    ``w [B, K, N]``, ``a1, a2 [B, K]``, ``y_hist0 [B, 2]`` (y[-1], y[-2]) ->
    (``y [B, K, N]``, final history ``[B, 2]``). Exact; see the module docstring.
    """
    bsz, nblk, n = w.shape
    a_coeffs = torch.stack([torch.ones_like(a1), a1, a2], -1).reshape(bsz * nblk, 3)
    zs = _allpole(w.reshape(bsz * nblk, n), a_coeffs).reshape(bsz, nblk, n)
    # Companion matrix of the history (y[n-1], y[n-2]) and its N-th power.
    comp = torch.stack(
        [torch.stack([-a1, -a2], -1), torch.stack([torch.ones_like(a1), torch.zeros_like(a1)], -1)],
        -2,
    )
    transfer = _matpow(comp, n)  # [B, K, 2, 2]
    zs_tail = torch.stack([zs[..., -1], zs[..., -2]], -1)  # [B, K, 2]
    ends, prods = _prefix_scan(transfer, zs_tail)
    # History at the end of block k = P_k h0 + E_k; blocks start with the previous end.
    ends = ends + (prods @ y_hist0[:, None, :, None]).squeeze(-1)
    starts = torch.cat([y_hist0[:, None], ends[:, :-1]], 1)  # [B, K, 2]
    h1, h2 = starts[..., 0], starts[..., 1]
    corr0 = -(a1 * h1 + a2 * h2)
    corr1 = -(a2 * h1)
    w_corr = torch.cat(
        [(w[..., 0] + corr0)[..., None], (w[..., 1] + corr1)[..., None], w[..., 2:]], -1
    )
    y = _allpole(w_corr.reshape(bsz * nblk, n), a_coeffs)
    return y.reshape(bsz, nblk, n), ends[:, -1]


def ladder_filter(
    x: torch.Tensor,
    cutoff_hz: torch.Tensor,
    resonance: torch.Tensor,
    sample_rate: float,
    block_size: int = 128,
    state: FilterState | None = None,
) -> tuple[torch.Tensor, FilterState]:
    """Fast time-varying ladder low-pass.

    Shapes: ``x [B, T]`` with ``T`` a multiple of ``block_size``; ``cutoff_hz`` and
    ``resonance`` are ``[B]`` (static) or ``[B, T // block_size]`` (one value per control
    block). Returns ``(y [B, T], final state)`` for streaming continuation.
    """
    bsz, t = x.shape
    if t % block_size:
        raise ValueError(f"signal length {t} must be a multiple of block_size {block_size}")
    nblk = t // block_size
    if cutoff_hz.ndim == 1:
        cutoff_hz = cutoff_hz[:, None].expand(bsz, nblk)
    if resonance.ndim == 1:
        resonance = resonance[:, None].expand(bsz, nblk)
    if cutoff_hz.shape != (bsz, nblk) or resonance.shape != (bsz, nblk):
        raise ValueError(
            f"cutoff_hz/resonance must be [B] or [B, {nblk}], got "
            f"{tuple(cutoff_hz.shape)} and {tuple(resonance.shape)}"
        )
    state = state or FilterState.zeros(bsz, x.device, x.dtype)
    coef = ladder_coefficients(cutoff_hz, resonance_to_feedback(resonance), sample_rate)
    w = _binomial_fir(x, state.x_hist).reshape(bsz, nblk, block_size) * coef.gain[..., None]
    y_hists = []
    for sec in range(2):
        w, last = _allpole_biquad_blocks(
            w, coef.a1[..., sec], coef.a2[..., sec], state.y_hist[:, sec]
        )
        y_hists.append(last)
    new_state = FilterState(x[:, -4:].flip(-1), torch.stack(y_hists, 1))
    return w.reshape(bsz, t), new_state


def ladder_reference(
    x: torch.Tensor,
    cutoff_hz: torch.Tensor,
    resonance: torch.Tensor,
    sample_rate: float,
    block_size: int = 1,
) -> torch.Tensor:
    """Zero-delay-feedback (TPT) ladder, sample by sample. Slow; for tests.

    Each stage is a TPT one-pole ``v = (u - s)·G``, ``y = v + s``, ``s ← y + v`` with
    ``G = g/(1+g)``; the feedback loop ``u = x - k·y4`` is solved in closed form each
    sample: ``y4 = (G⁴ x + Σ) / (1 + k G⁴)`` with ``Σ = (G³ s1 + G² s2 + G s3 + s4)/(1+g)``.
    ``cutoff_hz``/``resonance`` are ``[B]`` or ``[B, T // block_size]``.
    """
    bsz, t = x.shape
    if cutoff_hz.ndim == 1:
        cutoff_hz = cutoff_hz[:, None].expand(bsz, t // block_size)
    if resonance.ndim == 1:
        resonance = resonance[:, None].expand(bsz, t // block_size)
    x64 = x.double()
    g_all = torch.tan(math.pi * clamp_cutoff(cutoff_hz.double(), sample_rate) / sample_rate)
    k_all = resonance_to_feedback(resonance.double())
    s = torch.zeros(bsz, 4, dtype=torch.float64, device=x.device)
    y = torch.empty(bsz, t, dtype=torch.float64, device=x.device)
    for n in range(t):
        g, k = g_all[:, n // block_size], k_all[:, n // block_size]
        big_g = g / (1 + g)
        sigma = (big_g**3 * s[:, 0] + big_g**2 * s[:, 1] + big_g * s[:, 2] + s[:, 3]) / (1 + g)
        y4 = (big_g**4 * x64[:, n] + sigma) / (1 + k * big_g**4)
        u = x64[:, n] - k * y4
        new_s = torch.empty_like(s)
        for i in range(4):
            v = (u - s[:, i]) * big_g
            out = v + s[:, i]
            new_s[:, i] = out + v
            u = out
        s = new_s
        y[:, n] = u
    return y.to(x.dtype)
