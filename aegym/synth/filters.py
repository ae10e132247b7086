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
(the cutoff envelope is sampled once per block) and the result equals the TPT ladder
run sample by sample with those coefficients — including across abrupt cutoff jumps —
without a Python loop over samples or blocks:

1. *Zero-state pass*: every block is filtered from rest, all blocks in parallel as rows
   of one all-pole ``lfilter`` call per section. Within a block the filter is LTI, so
   any realization gives this response; we use the FIR numerator ``(1 + z⁻¹)⁴`` and two
   all-pole biquads (one per conjugate pole pair: well conditioned at any resonance).
2. *State hand-over in TPT coordinates*: the TPT state (four integrator states at signal
   level, whatever the cutoff) is what carries a note across a coefficient change. Per
   block, small float64 maps convert the direct-form end state of the zero-state pass to
   TPT coordinates (by matching 4 samples of zero-input response), and the TPT transition
   ``A_k^N`` propagates it; a parallel prefix scan over blocks gives every block's start
   state. (Carrying direct-form histories instead blows up when the cutoff jumps: a
   history is re-read as a much larger oscillation under the new poles.)
3. *Corrected pass*: each block's start state, converted to biquad output histories,
   enters as corrections of the first two input samples of each section (exact for an
   all-pole section).

Cost: about four ``lfilter`` passes plus O(blocks) 4x4 algebra; differentiable in the
input, cutoff and resonance.
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
    """Discrete ladder coefficients, each ``[...]`` matching cutoff's shape.

    ``a1``/``a2`` are ``[..., 2]``: the two biquads' denominators ``1 + a1 z⁻¹ + a2 z⁻²``.
    ``gain = 1 / (16 (1 + k))``: with each biquad scaled to unit DC gain (its input
    multiplied by ``1 + a1 + a2``) and the FIR ``(1 + z⁻¹)⁴`` (DC gain 16), this
    restores ``H(1) = 1/(1+k)``, because ``D(1) = 16 b0⁴ (1 + k)``.
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
    gain = 1.0 / (16.0 * (1.0 + feedback))
    return LadderCoefficients(gain, torch.stack(a1s, -1), torch.stack(a2s, -1))


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
    """Streaming state: the four TPT integrator states, ``[B, 4]``."""

    tpt: torch.Tensor

    @classmethod
    def zeros(cls, batch: int, device=None, dtype=torch.float32) -> FilterState:
        return cls(torch.zeros(batch, 4, device=device, dtype=dtype))

    def detach(self) -> FilterState:
        return FilterState(self.tpt.detach())


def tpt_step(
    s: torch.Tensor, x: torch.Tensor, g: torch.Tensor, k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample of the zero-delay-feedback ladder: ``(state [..., 4], x) -> (state', y)``.

    Each stage is a TPT one-pole ``v = (u - s)·G``, ``y = v + s``, ``s ← y + v`` with
    ``G = g/(1+g)``; the feedback loop ``u = x - k·y4`` is solved in closed form:
    ``y4 = (G⁴ x + Σ) / (1 + k G⁴)`` with ``Σ = (G³ s1 + G² s2 + G s3 + s4)/(1+g)``.
    """
    big_g = g / (1 + g)
    sigma = (big_g**3 * s[..., 0] + big_g**2 * s[..., 1] + big_g * s[..., 2] + s[..., 3]) / (1 + g)
    y4 = (big_g**4 * x + sigma) / (1 + k * big_g**4)
    u = x - k * y4
    new = []
    for i in range(4):
        v = (u - s[..., i]) * big_g
        out = v + s[..., i]
        new.append(out + v)
        u = out
    return torch.stack(new, -1), u


def _tpt_matrices(g: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TPT transition ``A [..., 4, 4]`` and 4-sample observability ``O [..., 4, 4]``.

    ``s' = A s`` and the zero-input outputs ``y[n] = (O s)_n``, n = 0..3.
    """
    eye = torch.eye(4, dtype=g.dtype, device=g.device).expand(*g.shape, 4, 4)
    gb, kb = g[..., None], k[..., None]
    state, rows = eye, []  # state[..., j, :] evolves from basis vector e_j
    for _ in range(4):
        state, y = tpt_step(state, torch.zeros_like(state[..., 0]), gb, kb)
        rows.append(y)
    obs = torch.stack(rows, -2)  # [..., n, j]
    a_cols, _ = tpt_step(eye, torch.zeros_like(eye[..., 0]), gb, kb)
    return a_cols.transpose(-1, -2), obs


def _df_observability(coef: LadderCoefficients) -> torch.Tensor:
    """Zero-input outputs (n = 0..3) of the direct-form cascade from its 8-dim state.

    State: ``(x[-1..-4], v[-1], v[-2], y[-1], y[-2])`` where ``v`` is section 1's output.
    Returns ``[..., 4, 8]``.
    """
    shape = coef.gain.shape
    st = torch.eye(8, dtype=coef.gain.dtype, device=coef.gain.device).expand(*shape, 8, 8)
    x1, x2, x3, x4, v1, v2, y1, y2 = st.unbind(-1)
    gain = coef.gain[..., None]
    a1, a2 = coef.a1[..., None, :], coef.a2[..., None, :]
    norm = 1.0 + a1 + a2
    rows = []
    for _ in range(4):
        w = gain * (4 * x1 + 6 * x2 + 4 * x3 + x4)
        v = norm[..., 0] * w - a1[..., 0] * v1 - a2[..., 0] * v2
        y = norm[..., 1] * v - a1[..., 1] * y1 - a2[..., 1] * y2
        rows.append(y)
        x4, x3, x2, x1 = x3, x2, x1, torch.zeros_like(x1)
        v2, v1, y2, y1 = v1, v, y1, y
    return torch.stack(rows, -2)


def _binomial_fir(x: torch.Tensor) -> torch.Tensor:
    """``(1 + z⁻¹)⁴ x`` along the last dim from rest (four two-tap sums)."""
    y = torch.nn.functional.pad(x, (4, 0))
    for _ in range(4):
        y = y[..., 1:] + y[..., :-1]
    return y


def _allpole(x: torch.Tensor, a_coeffs: torch.Tensor) -> torch.Tensor:
    """Row-wise all-pole recursion ``y = x / A(z)``: ``x [R, N]``, ``a_coeffs [R, 3]``."""
    if _IIR is not None:
        return _IIR.apply(x.unsqueeze(0).contiguous(), a_coeffs.contiguous())[0]
    b_coeffs = torch.zeros_like(a_coeffs)
    b_coeffs[:, 0] = 1.0
    return AF.lfilter(x, a_coeffs, b_coeffs, clamp=False, batching=True)


def _section(
    w: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, hist: torch.Tensor | None = None
) -> torch.Tensor:
    """Unit-DC-gain all-pole biquad per block: ``y = (1+a1+a2) w - a1 y[n-1] - a2 y[n-2]``.

    ``w [B, K, N]``, ``a1, a2 [B, K]``; ``hist [B, K, 2]`` = (y[-1], y[-2]) of each block
    enters as corrections of the first two inputs (``None`` = from rest).
    """
    w = w * (1.0 + a1 + a2)[..., None]
    if hist is not None:
        h1, h2 = hist[..., 0], hist[..., 1]
        head = torch.stack([w[..., 0] - a1 * h1 - a2 * h2, w[..., 1] - a2 * h1], -1)
        w = torch.cat([head, w[..., 2:]], -1)
    bsz, nblk, n = w.shape
    a_coeffs = torch.stack([torch.ones_like(a1), a1, a2], -1).reshape(bsz * nblk, 3)
    return _allpole(w.reshape(bsz * nblk, n), a_coeffs).reshape(bsz, nblk, n)


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

    ``mats [B, K, D, D]``, ``vecs [B, K, D]`` -> (``[B, K, D]``: maps 0..k composed and
    applied to a zero start, ``[B, K, D, D]``: the composed matrices). Hillis–Steele,
    log2(K) vectorised steps.
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


def ladder_filter(
    x: torch.Tensor,
    cutoff_hz: torch.Tensor,
    resonance: torch.Tensor,
    sample_rate: float,
    block_size: int = 128,
    state: FilterState | None = None,
) -> tuple[torch.Tensor, FilterState]:
    """Fast time-varying ladder low-pass (see the module docstring).

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
    feedback = resonance_to_feedback(resonance)
    coef = ladder_coefficients(cutoff_hz, feedback, sample_rate)
    a1, a2 = coef.a1.unbind(-1), coef.a2.unbind(-1)
    xb = x.reshape(bsz, nblk, block_size)
    w = _binomial_fir(xb) * coef.gain[..., None]
    # 1. zero-state pass, every block from rest.
    v_zs = _section(w, a1[0], a2[0])
    y_zs = _section(v_zs, a1[1], a2[1])
    # 2. hand-over in TPT coordinates (float64: the 4x4 maps are ill-conditioned at
    #    low cutoff, but tiny).
    f64 = torch.float64
    coef64 = LadderCoefficients(*(c.to(f64) for c in coef))
    g = torch.tan(math.pi * clamp_cutoff(cutoff_hz.to(f64), sample_rate) / sample_rate)
    trans, obs_tpt = _tpt_matrices(g, feedback.to(f64))
    obs_df = _df_observability(coef64)  # [B, K, 4, 8]
    end_df = torch.cat(
        [xb.flip(-1)[..., :4], v_zs.flip(-1)[..., :2], y_zs.flip(-1)[..., :2]], -1
    ).to(f64)
    to_tpt = torch.linalg.solve(obs_tpt, obs_df)  # DF state -> TPT state
    e = (to_tpt @ end_df[..., None])[..., 0]
    step = _matpow(trans, block_size)
    ends, prods = _prefix_scan(step, e)
    s0 = state.tpt.to(f64)
    ends = ends + (prods @ s0[:, None, :, None])[..., 0]
    starts = torch.cat([s0[:, None], ends[:, :-1]], 1)  # TPT state entering each block
    # 3. corrected pass: TPT start state -> section histories (zero input history).
    hists = torch.linalg.solve(obs_df[..., 4:], obs_tpt @ starts[..., None])[..., 0]
    hists = hists.to(x.dtype)
    v = _section(w, a1[0], a2[0], hists[..., 0:2])
    y = _section(v, a1[1], a2[1], hists[..., 2:4])
    return y.reshape(bsz, t), FilterState(ends[:, -1].to(x.dtype))


def ladder_reference(
    x: torch.Tensor,
    cutoff_hz: torch.Tensor,
    resonance: torch.Tensor,
    sample_rate: float,
    block_size: int = 1,
) -> torch.Tensor:
    """Zero-delay-feedback (TPT) ladder, sample by sample in float64. Slow; for tests.

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
        s, y[:, n] = tpt_step(s, x64[:, n], g_all[:, n // block_size], k_all[:, n // block_size])
    return y.to(x.dtype)
