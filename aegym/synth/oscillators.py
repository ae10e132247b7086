"""Oscillators: phase accumulation, band-limited wavetables, noise.

Pitch is constant within a render, so each voice's waveform is periodic and can be
band-limited exactly: one period is built by additive synthesis from its Fourier
series, keeping only harmonics below Nyquist, and read back at the running phase
with linear interpolation. Harmonics fade out linearly between 90 % and 100 % of
Nyquist, so the table (and the sound) is continuous — and differentiable — in pitch.

Fourier series used (phase φ in [0, 1)):

* sine      ``sin(2πφ)``
* triangle  ``1 - 4|φ - 1/2| = -(8/π²) Σ_{h odd} cos(2πhφ) / h²``
* saw       ``2φ - 1 = -(2/π) Σ_h sin(2πhφ) / h``
* pulse     ``saw(φ) - saw(φ + 1 - w) - (2w - 1)``: -1 for φ < w, +1 after.

All functions are batched over voices ``[B]`` and samples ``[B, T]``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from aegym.synth import _compiled
from aegym.synth._grad import straight_through_clamp

TABLE_SIZE = 2048
TAPER_START = 0.9  # fraction of Nyquist where harmonics start to fade


def phase_ramp(
    freq_hz: torch.Tensor, n_samples: int, sample_rate: float, phase0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised phase in [0, 1) for a constant frequency per voice.

    ``φ[n] = frac(φ0 + n·f/fs)`` for ``freq_hz [B]``, ``n = 0..T-1`` -> (``φ [B, T]``,
    the phase of the next sample ``[B]`` for streaming). The gradient w.r.t. frequency
    is ``n/fs``. In float32 the phase error after ``n·f/fs`` cycles is about
    ``6e-8·n·f/fs`` cycles (< 1e-4 for a one-second note), and streaming restarts the
    count every call, so long streams do not drift.
    """
    dt = (freq_hz / sample_rate)[:, None]
    n = torch.arange(n_samples, device=freq_hz.device, dtype=freq_hz.dtype)
    start = torch.zeros_like(dt) if phase0 is None else phase0[:, None]
    total = start + n * dt
    phase = total - total.detach().floor()
    return phase, _end_phase(start, dt, n_samples)


def _end_phase(start: torch.Tensor, dt: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Phase after ``n_samples`` (float64 sum, no gradient): ``[..., 1] -> [...]``."""
    end = (start.double() + n_samples * dt.double()).detach()
    end = end - end.floor()
    return end[..., 0].to(dt.dtype)


def harmonic_taper(freq_hz: torch.Tensor, sample_rate: float, n_harmonics: int) -> torch.Tensor:
    """Gain of harmonics ``h = 1..H`` of ``freq_hz [B]``: 1 below 0.9·Nyquist, 0 above
    Nyquist, linear in between -> ``[B, H]``."""
    nyq = sample_rate / 2
    h = torch.arange(1, n_harmonics + 1, device=freq_hz.device, dtype=freq_hz.dtype)
    fh = freq_hz[:, None] * h
    return ((nyq - fh) / ((1 - TAPER_START) * nyq)).clamp(0.0, 1.0)


def wave_spectra(n_harmonics: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sine coefficients ``s_h`` and cosine coefficients ``c_h`` of sine, triangle, saw.

    Returns ``[3, 2, H]``: wave (sine, triangle, saw) x (sin, cos) x harmonic.
    """
    h = torch.arange(1, n_harmonics + 1, device=device, dtype=dtype)
    out = torch.zeros(3, 2, n_harmonics, device=device, dtype=dtype)
    out[0, 0, 0] = 1.0
    odd = (h % 2 == 1).to(dtype)
    out[1, 1] = -(8 / math.pi**2) * odd / h**2
    out[2, 0] = -(2 / math.pi) / h
    return out


def build_tables(
    freq_hz: torch.Tensor,
    weights: torch.Tensor,
    width: torch.Tensor,
    sample_rate: float,
    size: int = TABLE_SIZE,
) -> torch.Tensor:
    """One band-limited period per voice, mixed in the spectral domain -> ``[B, size + 1]``.

    ``weights [B, 4]`` mixes sine, triangle, saw and pulse of duty ``width [B]``. The
    pulse ``saw(φ) - saw(φ + 1 - w) - (2w - 1)`` is formed from the saw's coefficients:
    a circular shift by ``s`` multiplies harmonic ``h`` by ``e^{2πihs}``. Harmonics are
    tapered near Nyquist. The last column repeats the first, so interpolating reads
    need no wrap-around.
    """
    n_h = size // 2 - 1
    spectra = wave_spectra(n_h, freq_hz.device, freq_hz.dtype)  # [3, 2, H]
    # x = dc + Σ_h (c_h cos + s_h sin)(2πhφ) = dc + Re Σ_h (c_h - i s_h) e^{2πihφ}, with
    # the waves' coefficients (sine: s_1; triangle: c_h; saw: s_h) mixed in real
    # arithmetic. The pulse's saw shifted by 1 - w multiplies the saw's -i s_h by
    # 1 - e^{iθ_h}, θ_h = 2πh(1 - w): real part -s_h sin θ_h, imaginary -s_h (1 - cos θ_h).
    h = torch.arange(1, n_h + 1, device=freq_hz.device, dtype=freq_hz.dtype)
    theta = (2 * math.pi * h) * (1.0 - width)[:, None]
    saw = spectra[2, 0]
    pulse = weights[:, 3:] * saw  # [B, H]
    # irfft(X)[n] = (1/L)(X_0 + 2 Re Σ_h X_h e^{2πihn/L}), so X_0 = L·dc, X_h = L/2·coef.
    gain = harmonic_taper(freq_hz, sample_rate, n_h) * (size / 2)
    real = (weights[:, 1:2] * spectra[1, 1] - pulse * torch.sin(theta)) * gain
    sines = weights[:, 0:1] * spectra[0, 0] + weights[:, 2:3] * saw
    imag = (-sines - pulse * (1.0 - torch.cos(theta))) * gain
    dc = -(weights[:, 3] * (2.0 * width - 1.0)) * size
    # Bins 0 (dc) and L/2 (Nyquist, no harmonic there) padded in as zeros.
    spec = torch.complex(F.pad(real, (1, 1)), F.pad(imag, (1, 1)))
    spec[:, 0] = dc
    table = torch.fft.irfft(spec, n=size)
    return torch.cat([table, table[:, :1]], -1)


def read_table(table: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Linear-interpolated lookup of ``table [B, L + 1]`` (last = first) at ``phase [B, T]``."""
    size = table.shape[-1] - 1
    pos = phase * size
    i0 = pos.detach().long().clamp_(0, size - 1)
    frac = pos - i0
    a = torch.gather(table, 1, i0)
    b = torch.gather(table, 1, i0 + 1)
    return torch.lerp(a, b, frac)


# Samples per chunk of the fused oscillator bank: its temporaries stay in cache.
_BANK_CHUNK_SAMPLES = 1 << 16


def _entry_pairs(tables: torch.Tensor) -> torch.Tensor:
    """``tables [B, V, L + 1]`` -> ``[B, V·L]`` words packing the two neighbours
    ``(t[i], t[i + 1])`` (float32 pairs as float64, float64 pairs as complex128): one
    ``index_select`` reads both."""
    pairs = torch.stack([tables[..., :-1], tables[..., 1:]], -1)
    if tables.dtype == torch.float32:
        words = pairs.view(torch.float64)[..., 0]
    else:
        words = torch.view_as_complex(pairs)
    return words.reshape(tables.shape[0], -1)


def _unpack_pairs(words: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`_entry_pairs` on gathered words -> ``(t[i], t[i + 1])``."""
    pairs = words.view(dtype) if dtype == torch.float32 else torch.view_as_real(words)
    pairs = pairs.view(*words.shape, 2)
    return pairs[..., 0], pairs[..., 1]


def _bank_positions(
    n: torch.Tensor, dt: torch.Tensor, start: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, frac)`` of :func:`read_table` at the phase of :func:`phase_ramp`, the
    index as a float: the same float ops, so the same values (the phase is >= 0, so
    floor is the truncation ``long()`` does, and float ops are faster than int64 ones).
    ``n`` and ``dt``/``start`` broadcast to the result's shape."""
    pos = torch.mul(n, dt).add_(start)
    pos.sub_(pos.floor()).mul_(size)
    index = pos.floor().clamp_(max=size - 1)
    return index, pos.sub_(index)


def _bank_chunks(n_osc: int, size: int, n_samples: int) -> int:
    """Voices per chunk: about _BANK_CHUNK_SAMPLES samples, and few enough tables that
    a flat entry index stays exact in float32 (< 2**24)."""
    return max(1, min(_BANK_CHUNK_SAMPLES // n_samples, (1 << 24) // (n_osc * (size + 1))))


def _chunk_offsets(rows: int, n_osc: int, stride: int, like: torch.Tensor) -> torch.Tensor:
    """``[rows, 1]`` start of table 0 of each voice of a chunk in its flat tables, where
    each table takes ``stride`` entries (add ``v·stride`` for oscillator v)."""
    return (torch.arange(rows, device=like.device, dtype=like.dtype) * (n_osc * stride))[:, None]


class _WavetableBank(torch.autograd.Function):
    """``Σ_v read_table(tables[:, v], phase_ramp(f_v, T, fs, φ0_v))``, computed over
    chunks of voices without keeping any ``[B, T]`` intermediate: the backward
    recomputes the reads. ``tables [B, V, L+1]``, ``dt = f/fs [B, V]``, ``start [B, V]``
    -> ``[B, T // block, block]`` stored time-major (``[block, B, T // block]`` in memory:
    the layout the block-parallel ladder filter runs on); ``block = T`` is plain ``[B, T]``.
    Both neighbours of a read come from one ``index_select`` of packed pairs
    (:func:`_entry_pairs`) at an int32 flat index.
    """

    @staticmethod
    def forward(ctx, tables, dt, start, n_samples, block):  # type: ignore[override]
        bsz, n_osc, size = tables.shape[0], tables.shape[1], tables.shape[-1] - 1
        n_blocks = n_samples // block
        n = torch.arange(n_samples, device=tables.device, dtype=tables.dtype)
        if n_blocks == 1:
            out = tables.new_empty(bsz, 1, n_samples)
        else:
            out = tables.new_empty(block, bsz, n_blocks).permute(1, 2, 0)
        ctx.save_for_backward(tables, dt, start)
        if _compiled.enabled(tables):  # one compiled loop, the same values
            _compiled.bank_forward(tables, dt, start, out)
            return out
        pairs = _entry_pairs(tables)
        step = _bank_chunks(n_osc, size, n_samples)
        for i in range(0, bsz, step):
            rows = slice(i, i + step)
            words_flat = pairs[rows].reshape(-1)
            offsets = _chunk_offsets(words_flat.numel() // (n_osc * size), n_osc, size, tables)
            acc = None
            for v in range(n_osc):
                index, frac = _bank_positions(n, dt[rows, v : v + 1], start[rows, v : v + 1], size)
                flat = index.add_(offsets).add_(v * size).to(torch.int32)
                words = torch.index_select(words_flat, 0, flat.view(-1)).view(flat.shape)
                a, b = _unpack_pairs(words, tables.dtype)
                if acc is None:
                    acc = torch.lerp(a, b, frac)
                else:
                    acc.add_(torch.lerp(a, b, frac))
            assert acc is not None
            out[rows] = acc.view(-1, n_blocks, block)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        tables, dt, start = ctx.saved_tensors
        if _compiled.enabled(grad):  # one compiled loop: no index or weight tensors
            return (*_compiled.bank_adjoint(tables, dt, start, grad), None, None)
        bsz, n_osc, size = tables.shape[0], tables.shape[1], tables.shape[-1] - 1
        n_samples = grad.shape[1] * grad.shape[2]
        n = torch.arange(n_samples, device=tables.device, dtype=tables.dtype)
        grad_tables = tables.new_zeros(tables.shape)  # contiguous: flat views per chunk
        grad_dt = torch.zeros_like(dt)
        grad_start = torch.zeros_like(start)
        pairs = _entry_pairs(tables)
        step = _bank_chunks(n_osc, size, n_samples)
        for i in range(0, bsz, step):
            rows = slice(i, i + step)
            g = grad[rows].reshape(-1, n_samples)  # a chunk-sized copy if time-major
            words_flat = pairs[rows].reshape(-1)
            grad_flat = grad_tables[rows].view(-1)
            offsets = _chunk_offsets(g.shape[0], n_osc, 1, tables)
            for v in range(n_osc):
                index, frac = _bank_positions(n, dt[rows, v : v + 1], start[rows, v : v + 1], size)
                flat = torch.add(index, offsets + v, alpha=size).to(torch.int32)
                words = torch.index_select(words_flat, 0, flat.view(-1)).view(flat.shape)
                a, b = _unpack_pairs(words, tables.dtype)
                # out = a + frac (b - a), frac = φ·L - index, φ = n·dt + start (mod 1)
                g_phase = torch.sub(b, a).mul_(g).mul_(size)
                grad_start[rows, v] = g_phase.sum(-1)
                grad_dt[rows, v] = torch.mv(g_phase, n)
                g_b = frac.mul_(g)
                # Entry i of table (voice, v) sits at (voice·V + v)·(L + 1) + i.
                flat = index.add_(offsets + v, alpha=size + 1).long().view(-1)
                grad_flat.scatter_add_(0, flat, torch.sub(g, g_b).view(-1))
                grad_flat[1:].scatter_add_(0, flat, g_b.view(-1))
        return grad_tables, grad_dt, grad_start, None, None


def wavetable_bank(
    tables: torch.Tensor,
    freq_hz: torch.Tensor,
    n_samples: int,
    sample_rate: float,
    phase0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of V table oscillators at constant pitch, fused: ``tables [B, V, L+1]``,
    ``freq_hz [B, V]``, ``phase0 [B, V]`` -> (``[B, T]``, next phases ``[B, V]``).

    Same values as ``Σ_v read_table(tables[:, v], phase_ramp(freq_hz[:, v], ...)[0])``
    (and the same end phases), but no ``[B, T]`` phase, index or weight tensor is kept
    for backward, and the work runs in cache-sized chunks of voices.
    """
    out, end = _wavetable_bank_blocks(tables, freq_hz, n_samples, sample_rate, phase0, n_samples)
    return out.view(-1, n_samples), end


def _wavetable_bank_blocks(
    tables: torch.Tensor,
    freq_hz: torch.Tensor,
    n_samples: int,
    sample_rate: float,
    phase0: torch.Tensor | None,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`wavetable_bank` as ``[B, T // block, block]`` blocks stored time-major
    (``block`` must divide ``T``)."""
    dt = freq_hz / sample_rate
    start = torch.zeros_like(dt) if phase0 is None else phase0
    out = _WavetableBank.apply(tables, dt, start, n_samples, block)
    return out, _end_phase(start[..., None], dt[..., None], n_samples)


def morph_weights(shape: torch.Tensor, n_waves: int = 4) -> torch.Tensor:
    """Triangular crossfade weights ``w_i = max(0, 1 - |s(n-1) - i|)`` -> ``[B, n_waves]``.

    ``shape`` in [0, 1] walks sine (0) -> triangle (1/3) -> saw (2/3) -> pulse (1);
    neighbouring weights sum to 1.
    """
    pos = straight_through_clamp(shape)[:, None] * (n_waves - 1)
    idx = torch.arange(n_waves, device=shape.device, dtype=shape.dtype)
    # The two waves around pos, lower = floor(pos) (the last segment holds pos = n - 1):
    # 1 - |pos - i| written per side, so the values equal max(0, 1 - |pos - i|) exactly
    # but a shape sitting on a wave (or on 0 or 1) keeps its one-sided gradient, where
    # abs and max would give 0.
    lower = pos.detach().floor().clamp(0, n_waves - 2)
    rising = 1.0 - (pos - idx)  # weight of the lower wave, i = lower
    falling = 1.0 - (idx - pos)  # weight of the upper wave, i = lower + 1
    zero = torch.zeros_like(rising)
    return torch.where(idx == lower, rising, torch.where(idx == lower + 1, falling, zero))


def morph_oscillator(
    phase: torch.Tensor,
    freq_hz: torch.Tensor,
    shape: torch.Tensor,
    width: torch.Tensor,
    sample_rate: float,
) -> torch.Tensor:
    """Band-limited morph sine -> triangle -> saw -> pulse by ``shape [B]`` in [0, 1].

    ``phase [B, T]``, ``freq_hz [B]``, pulse ``width [B]`` in (0, 1) -> ``[B, T]``.
    """
    table = build_tables(freq_hz, morph_weights(shape), width, sample_rate)
    return read_table(table, phase)


def sine(phase: torch.Tensor) -> torch.Tensor:
    """Naive ``sin(2πφ)`` (reference)."""
    return torch.sin(2 * math.pi * phase)


def naive_saw(phase: torch.Tensor) -> torch.Tensor:
    """Aliasing reference saw ``2φ - 1`` (for tests and comparisons)."""
    return 2.0 * phase - 1.0


def noise_table(n: int, seed: int = 0, device=None) -> torch.Tensor:
    """Fixed table of uniform white noise in [-1, 1) (reproducible frozen noise)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=gen) * 2.0 - 1.0).to(device)


def read_noise(table: torch.Tensor, offset: int, n_samples: int) -> torch.Tensor:
    """Read ``n_samples`` of cyclic noise from ``table`` starting at ``offset`` -> ``[T]``."""
    size = table.numel()
    offset %= size
    reps = -(-(offset + n_samples) // size)
    tiled = table if reps == 1 else table.repeat(reps)
    return tiled[offset : offset + n_samples]
