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
without a Python loop over blocks:

1. *Zero-state pass*: every block is filtered from rest, all blocks in parallel. Within
   a block the filter is LTI, so any realization gives this response; we use the FIR
   numerator ``(1 + z⁻¹)⁴`` and two all-pole biquads (one per conjugate pole pair: well
   conditioned at any resonance), both sections' unit-DC gains applied in front.
2. *State hand-over in TPT coordinates*: the TPT state (four integrator states at signal
   level, whatever the cutoff) is what carries a note across a coefficient change. A
   state is matched to another realization by its *free-response numerator*: with the
   input stopped, the output is ``n(z) / D(z)`` with ``n`` of degree 3. For the cascade,
   ``n`` follows from the FIR tail and the sections' histories; for the TPT ladder,
   ``n = c Σ_i σ_i Q^{3-i} P^i`` (``Q = G(1 + z⁻¹)``, ``P = 1 - p z⁻¹``), which inverts in
   closed form (:func:`_tpt_from_numerator`). So each block's zero-state end state maps to
   TPT coordinates, the TPT transition ``A_k^N`` propagates it, and a scan over blocks
   gives every block's start state. (Carrying direct-form histories instead blows up
   when the cutoff jumps: a history is re-read as a much larger oscillation under the
   new poles.)
3. *Corrected pass*: each block's start state, converted back to section histories (a
   triangular solve of the same numerator identity), enters as the history of each
   section.

Layout and kernels. Blocks are stored time-major, ``[N, B·K]`` (sample n of every block
is one contiguous row). On CPU an all-pole section runs as one vectorised step per
sample (:func:`_allpole_loop`, fused multiply-adds, N steps whatever the batch); few
rows are split into shorter sub-blocks first (:func:`_sub_blocks`), so the loop stays
short. On GPU torchaudio's compiled row loop runs the rows in parallel. Both sit in
:class:`_AllPole`, whose backward is the same recursion run backwards in time. The
per-block algebra is float64 and rows-last (``[4, 4, B·K]``), so every op is
elementwise over contiguous rows; the block scan is sequential (:class:`_AffineScan`) or
log-depth (:func:`_prefix_scan`) for a few voices.

Cost: four all-pole passes plus O(blocks) algebra; differentiable in the input,
cutoff and resonance. Cutoffs are soft-limited below ``0.45·fs`` by :func:`clamp_cutoff`
(unchanged up to ``0.43·fs``, a smooth knee above), so the gradient in the cutoff never
vanishes, however far an envelope pushes it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from aegym.synth import _compiled
from aegym.synth._grad import straight_through_clamp

try:  # torchaudio's compiled all-pole loop (the one behind lfilter)
    from torchaudio.functional.filtering import (
        _IS_TORCHAUDIO_EXT_AVAILABLE,
        _lfilter_core_loop,
    )
except ImportError:  # pragma: no cover - other torchaudio layouts
    _IS_TORCHAUDIO_EXT_AVAILABLE = False
if not _IS_TORCHAUDIO_EXT_AVAILABLE:  # pragma: no cover - only a slow Python fallback
    _lfilter_core_loop = None

# Feedback k = K_MIN + (K_MAX - K_MIN) · resonance. K_MIN > 0 keeps the k^{1/4} in the
# pole formula differentiable at resonance 0; K_MAX < 4 keeps every pole inside the
# unit circle, so the filter stays bounded at maximum resonance.
K_MIN = 1e-3
K_MAX = 3.9
# Cutoff limits. The BLT maps fs/2 to infinity, so cutoffs stay below
# MAX_CUTOFF_FRACTION·fs; cutoffs up to CUTOFF_KNEE_FRACTION·fs (the voice's cutoff knob
# stops there) pass unchanged, above it a smooth knee approaches the limit. Likewise
# cutoffs down to MIN_CUTOFF_HZ pass unchanged and lower ones approach MIN_CUTOFF_HZ / 2.
MAX_CUTOFF_FRACTION = 0.45
CUTOFF_KNEE_FRACTION = 0.43
MIN_CUTOFF_HZ = 10.0
_LOW_KNEE_WIDTH = math.log(2.0)  # natural-log width of the lower knee (one octave)
_HIGH_KNEE_WIDTH = math.log(MAX_CUTOFF_FRACTION / CUTOFF_KNEE_FRACTION)
_LOG_FLOOR_HZ = 1e-6  # log-domain guard for zero or negative cutoffs


def resonance_to_feedback(resonance: torch.Tensor) -> torch.Tensor:
    """Map resonance in [0, 1] to ladder feedback ``k = K_MIN + (K_MAX - K_MIN)·r``
    (resonance clamped straight-through: the gradient survives at 0 and 1)."""
    return K_MIN + (K_MAX - K_MIN) * straight_through_clamp(resonance)


def _knee(over: torch.Tensor, width: float) -> torch.Tensor:
    """How far a log-cutoff ``over`` the knee (``>= 0``) is pulled back: ``w x²/(1+x)``
    with ``x = over / w``. ``over - knee`` rises from 0 with slope 1 towards ``w`` with
    slope ``1/(1+x)²`` (algebraic, so the gradient never underflows to 0)."""
    x = over / width
    return width * x * x / (1.0 + x)


def clamp_cutoff(cutoff_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Soft-limit cutoffs to ``(MIN_CUTOFF_HZ / 2, 0.45·fs)``, where the discretisation
    is valid, with a strictly positive derivative everywhere.

    Cutoffs in ``[MIN_CUTOFF_HZ, 0.43·fs]`` are returned unchanged (bit for bit). Above,
    in log-frequency ``L``, the knee ``L - w x²/(1+x)`` (``x = (L - L_knee)/w``,
    ``w = ln(0.45/0.43)``) is C¹ at the knee and tends to ``ln(0.45·fs)``: a filter
    envelope pushing the cutoff by several octaves past the top still has a gradient
    (a hard clamp has none). Below ``MIN_CUTOFF_HZ`` the mirrored knee (one octave wide)
    tends to ``MIN_CUTOFF_HZ / 2``.
    """
    knee_hi = CUTOFF_KNEE_FRACTION * sample_rate
    inside = (cutoff_hz >= MIN_CUTOFF_HZ) & (cutoff_hz <= knee_hi)
    # The knees in float64 (control-rate sized): monotone after rounding to float32, and
    # the same values in the float32 coefficients and the float64 hand-over.
    log_f = torch.log(cutoff_hz.to(torch.float64).clamp_min(_LOG_FLOOR_HZ))
    over = (log_f - math.log(knee_hi)).clamp_min(0.0)
    under = (math.log(MIN_CUTOFF_HZ) - log_f).clamp_min(0.0)
    soft = torch.exp(log_f - _knee(over, _HIGH_KNEE_WIDTH) + _knee(under, _LOW_KNEE_WIDTH))
    return torch.where(inside, cutoff_hz, soft.to(cutoff_hz.dtype))


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
    beta = b0 * straight_through_clamp(feedback, K_MIN, None) ** 0.25
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
        fc = float(clamp_cutoff(torch.tensor(float(cutoff_hz), dtype=torch.float64), sample_rate))
        g = math.tan(math.pi * fc / sample_rate)
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


def _tpt_step_parts(
    s: list[torch.Tensor] | tuple[torch.Tensor, ...],
    x: torch.Tensor,
    g: torch.Tensor,
    k: torch.Tensor,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`tpt_step` on the four state components given apart (broadcastable)."""
    big_g = g / (1 + g)
    sigma = (big_g**3 * s[0] + big_g**2 * s[1] + big_g * s[2] + s[3]) / (1 + g)
    y4 = (big_g**4 * x + sigma) / (1 + k * big_g**4)
    u = x - k * y4
    new = []
    for i in range(4):
        v = (u - s[i]) * big_g
        out = v + s[i]
        new.append(out + v)
        u = out
    return new, u


def tpt_step(
    s: torch.Tensor, x: torch.Tensor, g: torch.Tensor, k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample of the zero-delay-feedback ladder: ``(state [..., 4], x) -> (state', y)``.

    Each stage is a TPT one-pole ``v = (u - s)·G``, ``y = v + s``, ``s ← y + v`` with
    ``G = g/(1+g)``; the feedback loop ``u = x - k·y4`` is solved in closed form:
    ``y4 = (G⁴ x + Σ) / (1 + k G⁴)`` with ``Σ = (G³ s1 + G² s2 + G s3 + s4)/(1+g)``.
    """
    new, y = _tpt_step_parts(s.unbind(-1), x, g, k)
    return torch.stack(new, -1), y


# The hand-over algebra works on many tiny matrices. They are stored rows-last,
# ``[n, m, R]`` for R matrices of n x m: every elementwise op then runs over contiguous
# rows, several times faster than batched 4x4 ``bmm`` or strided ``[..., 4, 4]`` slices.


def _rmm_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows-last matrix product ``[n, m, R] x [m, p, R] -> [n, p, R]`` (no autograd):
    m outer products for many rows, one broadcast product and sum (fewer ops) for few."""
    if a[0, 0].numel() < 4096:
        return (a.unsqueeze(2) * b.unsqueeze(0)).sum(1)
    out = a[:, :1] * b[:1]
    for j in range(1, a.shape[1]):
        out.addcmul_(a[:, j : j + 1], b[j : j + 1])
    return out


class _RMatMul(torch.autograd.Function):
    """Rows-last matrix product; backward ``dA = G Bᵀ``, ``dB = Aᵀ G`` with the same
    kernel (autograd's broadcast-and-reduce backward is several times slower)."""

    @staticmethod
    def forward(ctx, a, b):  # type: ignore[override]
        ctx.save_for_backward(a, b)
        return _rmm_kernel(a, b)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        a, b = ctx.saved_tensors
        grad_a = _rmm_kernel(grad, b.transpose(0, 1)) if ctx.needs_input_grad[0] else None
        grad_b = _rmm_kernel(a.transpose(0, 1), grad) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def _rmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows-last matrix product ``[n, m, R] x [m, p, R] -> [n, p, R]``."""
    return _RMatMul.apply(a, b)


def _rmv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rows-last matrix-vector product ``[n, m, ...] x [m, ...] -> [n, ...]``."""
    return (a * v.unsqueeze(0)).sum(1)


def _rmatpow(m: torch.Tensor, n: int) -> torch.Tensor:
    """``m ** n`` for rows-last square matrices by repeated squaring."""
    result = None
    base = m
    while n:
        if n & 1:
            result = base if result is None else _rmm(result, base)
        n >>= 1
        if n:
            base = _rmm(base, base)
    assert result is not None
    return result


def _tpt_matrices(g: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TPT transition ``A`` and 4-sample observability ``O``, rows-last ``[4, 4, R]``.

    ``g, k [R]``; ``s' = A s`` and the zero-input outputs ``y[n] = (O s)_n``, n = 0..3.
    """
    eye = torch.eye(4, dtype=g.dtype, device=g.device)
    zero = g.new_zeros(())
    basis = [eye[i, :, None] for i in range(4)]  # component i of basis vectors j: [4, 1]
    state, rows, a_rows = basis, [], []
    for _ in range(4):
        state, y = _tpt_step_parts(state, zero, g, k)
        a_rows = a_rows or state  # one step from the basis: the columns of A
        rows.append(y)
    return torch.stack(a_rows), torch.stack(rows)


class _AffineScan(torch.autograd.Function):
    """States ``s_k = M_k s_{k-1} + e_k`` for k = 0..K-1 from ``s_{-1} = s0``.

    Rows-last: ``mats [K, D, D, B]``, ``vecs [K, D, B]``, ``s0 [D, B]`` -> ``[K, D, B]``.
    Sequential over K (one small op per step beats a log-depth parallel scan of 4x4
    products here). Backward is the adjoint recursion ``λ_k = g_k + M_{k+1}ᵀ λ_{k+1}``:
    ``dL/de_k = λ_k``, ``dL/dM_k = λ_k s_{k-1}ᵀ``, ``dL/ds0 = M_0ᵀ λ_0``.
    """

    @staticmethod
    def forward(ctx, mats, vecs, s0):  # type: ignore[override]
        if _compiled.enabled(vecs):
            out = _compiled.affine_scan(mats, vecs, s0)
        else:
            out = torch.empty_like(vecs)
            state = s0
            for m, e, o in zip(mats, vecs, out, strict=True):
                state = torch.add(_rmv(m, state), e, out=o)
        ctx.save_for_backward(mats, s0, out)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        mats, s0, out = ctx.saved_tensors
        if _compiled.enabled(grad):
            return _compiled.affine_scan_adjoint(mats, s0, out, grad)
        lam = torch.empty_like(grad)
        acc = grad[-1]
        lam[-1] = acc
        for k in range(grad.shape[0] - 2, -1, -1):
            acc = torch.add(grad[k], (mats[k + 1] * acc.unsqueeze(1)).sum(0), out=lam[k])
        prev = torch.cat([s0[None], out[:-1]], 0)
        grad_mats = lam.unsqueeze(2) * prev.unsqueeze(1)
        grad_s0 = (mats[0] * lam[0].unsqueeze(1)).sum(0)
        return grad_mats, lam, grad_s0


def _prefix_scan(mats: torch.Tensor, vecs: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
    """:class:`_AffineScan` as a log-depth (Hillis–Steele) scan over the last dim:
    ``mats [D, D, B, K]``, ``vecs [D, B, K]``, ``s0 [D, B]`` -> ``[D, B, K]``. Fewer,
    larger steps than the sequential scan: faster for few voices."""
    m, e = mats, vecs
    d, n = 1, mats.shape[-1]
    while d < n:
        e = torch.cat([e[..., :d], _rmv(m[..., d:], e[..., :-d]) + e[..., d:]], -1)
        m = torch.cat([m[..., :d], _rmm(m[..., d:], m[..., :-d])], -1)
        d *= 2
    return e + _rmv(m, s0.unsqueeze(-1))


# Voices up to which the log-depth scan beats the sequential one under autograd.
_PARALLEL_SCAN_MAX_BATCH = 4


def _two_tap_sums(x: torch.Tensor, pad_front: bool) -> torch.Tensor:
    """Four rounds of ``y[n] = x[n+1] + x[n]`` along dim 0 of ``[x zero-padded by 4 rows]``
    (in front: the FIR ``(1 + z⁻¹)⁴`` from rest; behind: its transpose), in two buffers."""
    n = x.shape[0]
    a = x.new_zeros(n + 4, *x.shape[1:])
    if pad_front:
        a[4:] = x
    else:
        a[:n] = x
    b = x.new_empty(n + 3, *x.shape[1:])
    src, dst = a, b
    for rows in range(n + 3, n - 1, -1):
        torch.add(src[1 : rows + 1], src[:rows], out=dst[:rows])
        src, dst = dst, src
    return src[:n]


class _BinomialFIR(torch.autograd.Function):
    """``(1 + z⁻¹)⁴ x`` along dim 0 (time) from rest, as four two-tap sums; the backward
    is the time-reversed FIR (autograd would materialise eight padded slice gradients)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return _two_tap_sums(x, pad_front=True)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return _two_tap_sums(grad, pad_front=False)


def _binomial_fir(x: torch.Tensor) -> torch.Tensor:
    """``(1 + z⁻¹)⁴ x`` along dim 0 (time) from rest (unscaled; the ladder uses the
    fused :class:`_ScaledFIR`)."""
    return _BinomialFIR.apply(x)


def _allpole_loop(
    x: torch.Tensor,
    a1: torch.Tensor,
    a2: torch.Tensor,
    h1: torch.Tensor,
    h2: torch.Tensor,
    fused: bool = False,
) -> torch.Tensor:
    """``y[n] = x[n] - a1 y[n-1] - a2 y[n-2]`` along dim 0, ``y[-1] = h1``, ``y[-2] = h2``.

    One vectorised step per sample over all rows (``x [N, R]``, the rest ``[R]``): with
    many rows each step is cheap, and time-major rows keep every access contiguous.
    Unless ``fused``, products and differences are rounded separately in lfilter's
    order ``(x - a2 y[n-2]) - a1 y[n-1]``; ``fused`` uses multiply-adds (half the ops).
    """
    y = torch.empty_like(x)
    if fused:
        prev2, prev1 = h2, h1
        for xn, yn in zip(x.unbind(0), y.unbind(0), strict=True):
            torch.addcmul(xn, a2, prev2, value=-1.0, out=yn)
            yn.addcmul_(a1, prev1, value=-1.0)
            prev2, prev1 = prev1, yn
        return y
    tmp = torch.empty_like(h1)
    ys = y.unbind(0)
    # First sample: the history enters as in the head correction (a1 term first).
    torch.sub(x[0], torch.mul(a1, h1, out=tmp), out=ys[0]).sub_(torch.mul(a2, h2, out=tmp))
    prev2, prev1 = h1, ys[0]
    for xn, yn in zip(x.unbind(0)[1:], ys[1:], strict=True):
        torch.sub(xn, torch.mul(a2, prev2, out=tmp), out=yn).sub_(torch.mul(a1, prev1, out=tmp))
        prev2, prev1 = prev1, yn
    return y


# Rows from which the time-step loop beats torchaudio's row-by-row lfilter loop (whose
# per-sample cost is a dependent chain; the step loop's is one op over all rows).
_STEP_LOOP_MIN_ROWS = 1024


def _fused_loops(x: torch.Tensor) -> bool:
    """:class:`_AllPole` runs the fused step loop (CPU), else :func:`_allpole` (GPU)."""
    return x.device.type == "cpu" or _lfilter_core_loop is None


def _use_step_loop(x: torch.Tensor) -> bool:
    """Step loop for many rows on CPU; the compiled row loop otherwise (on GPU it runs
    the rows in parallel)."""
    if _lfilter_core_loop is None:
        return True
    return x.device.type == "cpu" and x.shape[1] >= _STEP_LOOP_MIN_ROWS


def _allpole_rowwise(x: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """lfilter's all-pole loop from rest on time-major ``x [N, R]`` (for few rows)."""
    a_flipped = torch.stack([a2, a1, torch.ones_like(a1)], -1)
    padded = x.new_zeros(1, x.shape[1], x.shape[0] + 2)
    _lfilter_core_loop(x.T.contiguous()[None], a_flipped, padded)
    return padded[0, :, 2:].T


def _allpole(
    x: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor
) -> torch.Tensor:
    """``y[n] = x[n] - a1 y[n-1] - a2 y[n-2]`` along dim 0 of ``x [N, R]``, history
    ``y[-1] = h1``, ``y[-2] = h2``; same rounding whichever loop runs it."""
    if _use_step_loop(x):
        return _allpole_loop(x, a1, a2, h1, h2)
    # The history enters as corrections of the first two inputs (exact for all-pole).
    x = x.clone()
    x[0] -= a1 * h1
    x[0] -= a2 * h2
    if x.shape[0] > 1:
        x[1] -= a2 * h1
    return _allpole_rowwise(x, a1, a2)


def _last_two(y: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
    """``(y[N-1], y[N-2]) [2, R]`` of ``y [N, R]``, with ``y[-1] = h1``."""
    if y.shape[0] > 1:
        return y[-2:].flip(0)
    return torch.stack([y[0], h1])


def _reverse_fused_loop(
    grad: torch.Tensor | None,
    grad_tail: torch.Tensor | None,
    a1: torch.Tensor,
    a2: torch.Tensor,
    n: int,
) -> torch.Tensor:
    """``λ[m] = g[m] - a1 λ[m+1] - a2 λ[m+2]`` backwards from ``λ[n] = λ[n+1] = 0``,
    where ``g`` is ``grad`` (``None`` = zeros, never materialised) plus ``grad_tail``
    ``[2, R]`` at samples ``n-1``, ``n-2`` (the gradient of :func:`_last_two`)."""
    lam = a1.new_empty(n, *a1.shape)
    zero = a1.new_zeros(())
    prev2 = prev1 = zero
    rows = lam.unbind(0)
    inputs = grad.unbind(0) if grad is not None else None
    for m in range(n - 1, -1, -1):
        src = inputs[m] if inputs is not None else zero
        if grad_tail is not None and m >= n - 2:
            src = src + grad_tail[n - 1 - m]
        out = rows[m]
        torch.addcmul(src.expand_as(out), a2, prev2, value=-1.0, out=out)
        out.addcmul_(a1, prev1, value=-1.0)
        prev2, prev1 = prev1, out
    return lam


class _AllPole(torch.autograd.Function):
    """Row-wise all-pole biquad ``y[n] = x[n] - a1 y[n-1] - a2 y[n-2]`` along dim 0.

    ``x [N, R]`` (time-major), ``a1, a2 [R]``, history ``h1 = y[-1]``, ``h2 = y[-2]``
    ``[R]`` -> ``(y, (y[N-1], y[N-2]))``: the end state comes out separately, so that a
    zero-state pass read only there backpropagates without a full-size zero gradient.
    Backward is the transposed recursion run backwards in time,
    ``λ[n] = g[n] - a1 λ[n+1] - a2 λ[n+2]``, giving ``dL/dx = λ``,
    ``dL/da_j = -Σ_n λ[n] y[n-j]`` and the history gradients from ``λ[0]``, ``λ[1]``.
    """

    @staticmethod
    def forward(ctx, x, a1, a2, h1, h2):  # type: ignore[override]
        if _compiled.enabled(x):
            y = _compiled.allpole(x, a1, a2, h1, h2)
        elif _fused_loops(x):
            y = _allpole_loop(x, a1, a2, h1, h2, fused=True)
        else:
            y = _allpole(x, a1, a2, h1, h2)
        ctx.save_for_backward(a1, a2, h1, h2, y)
        ctx.set_materialize_grads(False)
        return y, _last_two(y, h1)

    @staticmethod
    def backward(ctx, grad, grad_tail):  # type: ignore[override]
        a1, a2, h1, h2, y = ctx.saved_tensors
        n = y.shape[0]
        if grad is None and grad_tail is None:
            return (None,) * 5
        grad_h1_tail = None
        if grad_tail is not None and n == 1:  # the tail's second entry is h1
            grad_h1_tail, grad_tail = grad_tail[1], torch.stack([grad_tail[0], 0 * grad_tail[0]])
        if grad is not None:
            grad = grad.contiguous()  # the loops step over contiguous rows
        if _compiled.enabled(y):
            lam, sum1, sum2 = _compiled.allpole_adjoint(grad, grad_tail, a1, a2, y)
            return lam, *_coefficient_grads(lam, a1, a2, h1, h2, sum1, sum2, grad_h1_tail)
        if _fused_loops(y):
            lam = _reverse_fused_loop(grad, grad_tail, a1, a2, n)
        else:
            full = torch.zeros_like(y) if grad is None else grad.clone()
            if grad_tail is not None:
                full[-2:] += grad_tail[: min(2, n)].flip(0)
            lam = _allpole_rowwise(full.flip(0), a1, a2).flip(0)
        sum1, sum2 = (lam[1:] * y[:-1]).sum(0), (lam[2:] * y[:-2]).sum(0)
        return lam, *_coefficient_grads(lam, a1, a2, h1, h2, sum1, sum2, grad_h1_tail)


def _coefficient_grads(
    lam: torch.Tensor,
    a1: torch.Tensor,
    a2: torch.Tensor,
    h1: torch.Tensor,
    h2: torch.Tensor,
    sum1: torch.Tensor,
    sum2: torch.Tensor,
    grad_h1_tail: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The end of :class:`_AllPole`'s backward, shared by both loops, from the adjoint
    ``λ`` and ``sum_j = Σ_{n>=j} λ[n] y[n-j]``: ``dL/da_j = -Σ_n λ[n] y[n-j]`` with
    ``y[-1] = h1``, ``y[-2] = h2`` -> ``(dL/da1, dL/da2, dL/dh1, dL/dh2)``."""
    grad_a1 = -sum1 - lam[0] * h1
    grad_a2 = -sum2 - lam[0] * h2
    grad_h1 = -a1 * lam[0]
    if lam.shape[0] > 1:
        grad_a2 = grad_a2 - lam[1] * h1
        grad_h1 = grad_h1 - a2 * lam[1]
    if grad_h1_tail is not None:
        grad_h1 = grad_h1 + grad_h1_tail
    grad_h2 = -a2 * lam[0]
    return grad_a1, grad_a2, grad_h1, grad_h2


def _section(
    w: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, hist: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All-pole biquad per block: ``y[n] = w[n] - a1 y[n-1] - a2 y[n-2]`` -> ``(y, end)``.

    ``w [N, R]`` (time-major, one row per voice and block), ``a1, a2 [R]``;
    ``hist [2, R]`` = (y[-1], y[-2]) of each block (``None`` = from rest); ``end [2, R]``
    = (y[N-1], y[N-2]).
    """
    if hist is None:
        zero = torch.zeros_like(a1)
        return _AllPole.apply(w, a1, a2, zero, zero)
    return _AllPole.apply(w, a1, a2, hist[0], hist[1])


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
    # Time-major blocks [N, B·K]: every recursion step is one contiguous row.
    xt = x.reshape(bsz * nblk, block_size).T.contiguous()
    y, state = _ladder_filter_blocks(xt, cutoff_hz, resonance, sample_rate, state)
    return y.T.reshape(bsz, t), state


def _tpt_transition(g: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """One-sample TPT transition ``A`` (zero input), rows-last ``[4, 4, R]``.

    Stepping :func:`tpt_step` with ``x = 0`` gives, stage by stage,
    ``s_i' = p s_i + 2G (input of stage i)`` with the loop input
    ``u = -(k c / a0) Σ_j G^{3-j} s_j`` (``c = 1/(1+g)``, ``a0 = 1 + k G⁴``), so ``A`` is
    Toeplitz: ``A[i, j] = d[i - j]`` with
    ``d[δ] = -2 k c G^{4+δ} / a0 + 2c G^δ [δ > 0] + p [δ = 0]``.
    """
    c = 1.0 / (1.0 + g)
    big_g = g * c
    powers = [torch.ones_like(g), big_g]
    for _ in range(6):
        powers.append(powers[-1] * big_g)
    loop = (-2.0 * c) * k / (1.0 + k * powers[4])
    diag = [loop * powers[4 + d] for d in range(-3, 4)]
    for d in range(1, 4):
        diag[3 + d] = diag[3 + d] + 2.0 * c * powers[d]
    diag[3] = diag[3] + (1.0 - g) * c
    index = torch.arange(4, device=g.device)
    return torch.stack(diag)[index[:, None] - index[None, :] + 3]


class _HandOver(NamedTuple):
    """Per-row constants of the TPT <-> direct-form hand-over (see :func:`_tpt_from_numerator`).

    ``p`` is the one-pole pole ``(1-g)/(1+g)``, ``cube = 8 c³`` with ``c = 1/(1+g)``, and
    ``scale [4, R]`` holds ``c G^{3-i} / a0`` (``G = g/(1+g)``, ``a0 = 1 + k G⁴``).
    """

    p: torch.Tensor
    cube: torch.Tensor
    scale: torch.Tensor


def _hand_over(g: torch.Tensor, k: torch.Tensor) -> _HandOver:
    c = 1.0 / (1.0 + g)
    big_g = g * c
    a0 = 1.0 + k * big_g**4
    scale = torch.stack([big_g**3, big_g**2, big_g, torch.ones_like(g)]) * (c / a0)
    return _HandOver((1.0 - g) * c, 8.0 * c**3, scale)


# Future section-1 input from the last four inputs of a block, w_f[j] = Σ_m taps[j, m] x[N-1-m]
# (the tail of the binomial FIR (1 + z⁻¹)⁴ once the input stops).
_FIR_TAIL = ((4.0, 6.0, 4.0, 1.0), (6.0, 4.0, 1.0, 0.0), (4.0, 1.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0))


def _numerator_from_df(
    x_end: torch.Tensor,
    v_end: torch.Tensor,
    y_end: torch.Tensor,
    gain: torch.Tensor,
    a1: torch.Tensor,
    a2: torch.Tensor,
) -> torch.Tensor:
    """Free-response numerator ``n(z) = n0 + n1 z⁻¹ + n2 z⁻² + n3 z⁻³`` of the cascade's
    state at the end of a block: the output after the block, with the input stopped, is
    ``n(z) / (D1(z) D2(z))``.

    ``x_end [4, R]`` = ``x[N-1], ..., x[N-4]``, ``v_end``/``y_end [2, R]`` = the sections'
    last two outputs (``[N-1], [N-2]``), ``gain [R]`` the section-1 input gain, ``a1``/``a2``
    ``[2, R]``. Section 1 sees ``W(z) + E(z)`` (the FIR tail plus its history as input
    corrections), section 2 sees ``V(z) + F(z)``, so ``n = W + E + F·D1``.
    """
    taps = x_end.new_tensor(_FIR_TAIL)
    wf = (taps @ x_end) * gain  # [4, R]
    e0 = -(a1[0] * v_end[0] + a2[0] * v_end[1])
    e1 = -a2[0] * v_end[0]
    f0 = -(a1[1] * y_end[0] + a2[1] * y_end[1])
    f1 = -a2[1] * y_end[0]
    return torch.stack(
        [
            wf[0] + e0 + f0,
            wf[1] + e1 + f1 + a1[0] * f0,
            wf[2] + a1[0] * f1 + a2[0] * f0,
            wf[3] + a2[0] * f1,
        ]
    )


def _tpt_from_numerator(n: torch.Tensor, hand: _HandOver) -> torch.Tensor:
    """TPT state ``σ [4, R]`` whose zero-input response has free-response numerator ``n``.

    From the state, the TPT ladder's zero-input output is ``N_σ(z) / D(z)`` with
    ``N_σ = c Σ_i σ_i Q^{3-i} P^i``, ``Q = G (1 + z⁻¹)``, ``P = 1 - p z⁻¹`` and
    ``D = P⁴ + k Q⁴ = a0 D1 D2``. With ``τ_i = c G^{3-i} σ_i / a0`` this reads
    ``Σ_i τ_i (1 + z⁻¹)^{3-i} (1 - p z⁻¹)^i = n(z)``; substituting
    ``u = (1 - p z⁻¹)/(1 + z⁻¹)`` turns it into the cubic
    ``Σ_i τ_i u^i = Σ_j n_j (1 - u)^j (u + p)^{3-j} / (1 + p)³``, read off coefficient by
    coefficient (``1 + p = 2c``): no solve, and well conditioned for any cutoff.
    """
    p = hand.p
    p2 = p * p
    n0, n1, n2, n3 = n
    tau = torch.stack(
        [
            p2 * p * n0 + p2 * n1 + p * n2 + n3,
            3.0 * p2 * n0 + (2.0 * p - p2) * n1 + (1.0 - 2.0 * p) * n2 - 3.0 * n3,
            3.0 * p * n0 + (1.0 - 2.0 * p) * n1 + (p - 2.0) * n2 + 3.0 * n3,
            n0 - n1 + n2 - n3,
        ]
    )
    return tau / (hand.cube * hand.scale)


def _numerator_from_tpt(sigma: torch.Tensor, hand: _HandOver) -> torch.Tensor:
    """Inverse of :func:`_tpt_from_numerator`: ``n = Σ_i τ_i (1 + z⁻¹)^{3-i} (1 - p z⁻¹)^i``."""
    p = hand.p
    p2 = p * p
    t0, t1, t2, t3 = sigma * hand.scale
    return torch.stack(
        [
            t0 + t1 + t2 + t3,
            3.0 * t0 + (2.0 - p) * t1 + (1.0 - 2.0 * p) * t2 - 3.0 * p * t3,
            3.0 * t0 + (1.0 - 2.0 * p) * t1 + (p2 - 2.0 * p) * t2 + 3.0 * p2 * t3,
            t0 - p * t1 + p2 * t2 - p2 * p * t3,
        ]
    )


def _histories_from_numerator(n: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """Section histories ``(v[-1], v[-2], y[-1], y[-2]) [4, R]`` (input history zero)
    whose free response has numerator ``n``: :func:`_numerator_from_df` solved backwards,
    ``n3 = a2 f1``, ``n2 = a1 f1 + a2 f0``, ``n1 = e1 + f1 + a1 f0``, ``n0 = e0 + f0``."""
    n0, n1, n2, n3 = n
    f1 = n3 / a2[0]
    f0 = (n2 - a1[0] * f1) / a2[0]
    e1 = n1 - f1 - a1[0] * f0
    e0 = n0 - f0
    v1 = -e1 / a2[0]
    y1 = -f1 / a2[1]
    return torch.stack([v1, -(e0 + a1[0] * v1) / a2[0], y1, -(f0 + a1[1] * y1) / a2[1]])


# Lags and taps of (1 + z⁻¹)⁴ after the first (1).
_BINOMIAL_TAPS = ((1, 4.0), (2, 6.0), (3, 4.0), (4, 1.0))


class _ScaledFIR(torch.autograd.Function):
    """``gain · (1 + z⁻¹)⁴ x`` along dim 0 (time) from rest, ``x [N, R]``, ``gain [R]``:
    five multiply-adds into one buffer; the backward is the time-reversed FIR. Also
    returns the input's last four samples ``x[N-1], ..., x[N-4]`` ``[4, R]`` (zeros
    before the block), the FIR's end state."""

    @staticmethod
    def forward(ctx, x, gain):  # type: ignore[override]
        out = torch.mul(x, gain)
        n = x.shape[0]
        for lag, tap in _BINOMIAL_TAPS:
            if lag < n:
                out[lag:].addcmul_(x[:-lag], gain, value=tap)
        ctx.save_for_backward(x, gain)
        ctx.set_materialize_grads(False)
        tail = x[-4:].flip(0)
        return out, torch.nn.functional.pad(tail, (0, 0, 0, 4 - tail.shape[0]))

    @staticmethod
    def backward(ctx, grad, grad_tail):  # type: ignore[override]
        x, gain = ctx.saved_tensors
        n = x.shape[0]
        if grad is None:
            acc = torch.zeros_like(x)
        else:
            acc = grad.clone(memory_format=torch.contiguous_format)
            for lag, tap in _BINOMIAL_TAPS:
                if lag < n:
                    acc[:-lag].add_(grad[lag:], alpha=tap)
        grad_gain = (acc * x).sum(0) if ctx.needs_input_grad[1] and grad is not None else None
        grad_x = acc.mul_(gain) if ctx.needs_input_grad[0] else None
        if grad_x is not None and grad_tail is not None:
            rows = min(4, n)
            grad_x[-rows:] += grad_tail[:rows].flip(0)
        return grad_x, grad_gain


# On CPU, short loops over few rows cost their per-step overhead: control blocks are cut
# into sub-blocks (same coefficients, 2x, 4x, ... the rows) until the loops run over
# this many rows, down to sub-blocks of _MIN_SUB_BLOCK samples.
_MIN_LOOP_ROWS = 2048
_MIN_SUB_BLOCK = 16


def _sub_blocks(block_size: int, rows: int, x: torch.Tensor) -> int:
    """Sub-blocks per control block for :func:`_ladder_filter_blocks` (a power of two)."""
    m = 1
    if not _fused_loops(x) or _compiled.enabled(x):  # no per-step cost to amortise
        return m
    while (
        rows * m < _MIN_LOOP_ROWS
        and block_size % (2 * m) == 0
        and block_size // (2 * m) >= _MIN_SUB_BLOCK
    ):
        m *= 2
    return m


def _ladder_filter_blocks(
    xt: torch.Tensor,
    cutoff_hz: torch.Tensor,
    resonance: torch.Tensor,
    sample_rate: float,
    state: FilterState | None = None,
    input_gain: torch.Tensor | None = None,
) -> tuple[torch.Tensor, FilterState]:
    """:func:`ladder_filter` on time-major blocks: ``xt [N, B·K]`` (column ``b·K + k`` is
    block k of voice b), ``cutoff_hz``/``resonance`` ``[B, K]`` -> (``[N, B·K]``, state).
    ``input_gain [B]`` filters ``input_gain · x`` (folded into the filter's own gain)."""
    block_size, rows = xt.shape
    bsz, nblk = cutoff_hz.shape
    row_gain = None
    if input_gain is not None:
        row_gain = input_gain[:, None].expand(bsz, nblk).reshape(rows)
    m = _sub_blocks(block_size, rows, xt)
    if m == 1:
        return _ladder_core(xt, cutoff_hz, resonance, sample_rate, state, row_gain)
    # Few rows: m sub-blocks per block, rows (b, k, j); coefficients repeated.
    sub = block_size // m
    xs = xt.view(m, sub, rows).permute(1, 2, 0).reshape(sub, rows * m)
    ys, state = _ladder_core(
        xs,
        cutoff_hz.repeat_interleave(m, 1),
        resonance.repeat_interleave(m, 1),
        sample_rate,
        state,
        None if row_gain is None else row_gain.repeat_interleave(m),
    )
    return ys.view(sub, rows, m).permute(2, 0, 1).reshape(block_size, rows), state


def _ladder_core(
    xt: torch.Tensor,
    cutoff_hz: torch.Tensor,
    resonance: torch.Tensor,
    sample_rate: float,
    state: FilterState | None = None,
    row_gain: torch.Tensor | None = None,
) -> tuple[torch.Tensor, FilterState]:
    """:func:`_ladder_filter_blocks` without sub-blocks (``row_gain [B·K]``)."""
    block_size, rows = xt.shape
    bsz, nblk = cutoff_hz.shape
    state = state or FilterState.zeros(bsz, xt.device, xt.dtype)
    feedback = resonance_to_feedback(resonance)
    coef = ladder_coefficients(cutoff_hz, feedback, sample_rate)
    # Per-row coefficients as contiguous [2 sections, R] rows, like the signal.
    a1 = coef.a1.reshape(rows, 2).T.contiguous()
    a2 = coef.a2.reshape(rows, 2).T.contiguous()
    unit_dc = 1.0 + a1 + a2
    # Both sections' unit-DC gains go in front (the cascade is linear): section 2 then
    # filters section 1's output as is.
    gain = coef.gain.reshape(rows) * unit_dc[0] * unit_dc[1]
    if row_gain is not None:
        gain = gain * row_gain
    w, x_end = _ScaledFIR.apply(xt, gain)
    # 1. zero-state pass, every block from rest: only its end state is used (without
    # gradients, the compiled kernel keeps nothing else).
    needs_grad = torch.is_grad_enabled() and (
        w.requires_grad or a1.requires_grad or a2.requires_grad
    )
    if _compiled.enabled(w) and not needs_grad:
        v_end, y_end = _compiled.zero_state_ends(w, a1[0], a2[0], a1[1], a2[1])
    else:
        v_zs, v_end = _section(w, a1[0], a2[0])
        _, y_end = _section(v_zs, a1[1], a2[1])
    # 2. hand-over in TPT coordinates, in float64 (tiny: O(rows)).
    f64 = torch.float64
    g = torch.tan(math.pi * clamp_cutoff(cutoff_hz.to(f64), sample_rate) / sample_rate)
    g, k = g.reshape(rows), feedback.to(f64).reshape(rows)
    hand = _hand_over(g, k)
    a1d, a2d = a1.to(f64), a2.to(f64)
    ends_df = (t.to(f64) for t in (x_end, v_end, y_end))
    num = _numerator_from_df(*ends_df, gain.to(f64), a1d, a2d)
    e = _tpt_from_numerator(num, hand).reshape(4, bsz, nblk)
    step = _rmatpow(_tpt_transition(g, k), block_size).reshape(4, 4, bsz, nblk)
    s0 = state.tpt.to(f64).T  # [4, B]
    # TPT state leaving each block, [K, 4, B]: the log-depth scan (fewer, larger steps)
    # for a few voices, the sequential one beyond.
    if bsz <= _PARALLEL_SCAN_MAX_BATCH:
        ends = _prefix_scan(step, e, s0).permute(2, 0, 1)
    else:
        ends = _AffineScan.apply(step.permute(3, 0, 1, 2).contiguous(), e.permute(2, 0, 1), s0)
    starts = torch.cat([s0[None], ends[:-1]], 0).permute(1, 2, 0).reshape(4, rows)
    # 3. corrected pass: each block from its TPT start state, as section histories.
    hists = _histories_from_numerator(_numerator_from_tpt(starts, hand), a1d, a2d)
    hists = hists.to(xt.dtype)
    if _compiled.enabled(w) and not (needs_grad or hists.requires_grad):
        y = _compiled.cascade(w, a1[0], a2[0], a1[1], a2[1], hists)
    else:
        v, _ = _section(w, a1[0], a2[0], hists[0:2])
        y, _ = _section(v, a1[1], a2[1], hists[2:4])
    return y, FilterState(ends[-1].T.to(xt.dtype))


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
