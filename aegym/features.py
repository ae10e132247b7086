"""Audio -> features: multi-resolution log-mel spectrograms and spectral statistics.

All functions are batched (``[B, T]`` audio), differentiable and device-agnostic.
The encoder is what rewards, losses and observations see of a sound.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torchaudio.functional as AF
from torch import nn
from torch.nn import functional as F

from aegym._checks import check_int, check_positive, check_range, check_tensor


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of the feature encoder.

    :param sample_rate: audio sample rate in Hz.
    :param n_ffts: FFT sizes of the resolutions (window = FFT size, Hann).
    :param hop_length: hop between frames in samples, shared by all resolutions.
    :param n_mels: mel bands per resolution.
    :param f_min_hz: lowest mel band edge.
    :param log_eps: ε in ``log(mel + ε)``.
    :param rolloff_fraction: energy fraction of the roll-off frequency (0.95).
    """

    sample_rate: int = 16_000
    n_ffts: tuple[int, ...] = (1024, 4096)
    hop_length: int = 256
    n_mels: int = 64
    f_min_hz: float = 20.0
    log_eps: float = 1e-5
    rolloff_fraction: float = 0.95

    def __post_init__(self) -> None:
        check_int("sample_rate", self.sample_rate, 1000)
        if not self.n_ffts:
            raise ValueError("n_ffts must name at least one FFT size")
        for n in self.n_ffts:
            check_int("n_ffts entry", n, 16)
        check_int("hop_length", self.hop_length, 1)
        check_int("n_mels", self.n_mels, 2)
        check_positive("f_min_hz", self.f_min_hz)
        if self.f_min_hz >= self.sample_rate / 2:
            raise ValueError(f"f_min_hz must be below Nyquist, got {self.f_min_hz}")
        check_positive("log_eps", self.log_eps)
        check_range("rolloff_fraction", self.rolloff_fraction, 0.5, 0.999)


class Features(NamedTuple):
    """Features of a batch of sounds.

    Shapes: ``mel[i]`` is ``[B, n_mels, frames_i]`` (linear mel power of resolution i);
    every statistic is ``[B]``.
    """

    mel: tuple[torch.Tensor, ...]
    log_mel: tuple[torch.Tensor, ...]
    centroid_hz: torch.Tensor
    rolloff_hz: torch.Tensor
    flatness: torch.Tensor
    peakiness_db: torch.Tensor
    loudness_db: torch.Tensor

    def stats(self) -> torch.Tensor:
        """Compact ``[B, 5]`` summary: centroid/rolloff in kHz-ish log units, flatness,
        peakiness/40, loudness/60 — all roughly O(1) for observations."""
        return torch.stack(
            [
                torch.log2(self.centroid_hz.clamp_min(20.0) / 1000.0),
                torch.log2(self.rolloff_hz.clamp_min(20.0) / 1000.0),
                self.flatness,
                self.peakiness_db / 40.0,
                self.loudness_db / 60.0,
            ],
            -1,
        )

    def mel_profile(self) -> torch.Tensor:
        """Time-averaged log-mel of the first resolution, ``[B, n_mels]``."""
        return self.log_mel[0].mean(-1)

    def index(self, idx: torch.Tensor | slice | int) -> Features:
        """The items ``idx`` of the batch (any tensor index: indices, a mask, a slice)."""
        return Features(
            mel=tuple(m[idx] for m in self.mel),
            log_mel=tuple(m[idx] for m in self.log_mel),
            centroid_hz=self.centroid_hz[idx],
            rolloff_hz=self.rolloff_hz[idx],
            flatness=self.flatness[idx],
            peakiness_db=self.peakiness_db[idx],
            loudness_db=self.loudness_db[idx],
        )


def rms_dbfs(audio: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RMS loudness in dBFS: ``20·log10(sqrt(mean(x²)) + eps)``. ``[B, T] -> [B]``."""
    return 20.0 * torch.log10(torch.sqrt(audio.pow(2).mean(-1) + eps * eps))


def spectral_centroid(power: torch.Tensor, freqs_hz: torch.Tensor) -> torch.Tensor:
    """Centroid ``Σ f·P(f) / Σ P(f)`` of ``[B, F]`` power spectra, in Hz."""
    return (power * freqs_hz).sum(-1) / power.sum(-1).clamp_min(1e-12)


def soft_rolloff(power: torch.Tensor, freqs_hz: torch.Tensor, fraction: float) -> torch.Tensor:
    """Differentiable roll-off frequency of ``[B, F]`` power spectra, in Hz.

    With cumulative energy fraction ``c_i`` at bin ``i``, the roll-off is where ``c``
    crosses ``fraction``, linearly interpolated between the two bins around it::

        f = f_{i-1} + (fraction - c_{i-1}) / (c_i - c_{i-1}) · Δf

    The bin index is chosen without gradient; the interpolation carries the gradient
    to every bin's power (unlike a hard arg-threshold, which has none).
    """
    c = torch.cumsum(power, -1) / power.sum(-1, keepdim=True).clamp_min(1e-12)
    idx = (c.detach() < fraction).sum(-1, keepdim=True).clamp(1, c.shape[-1] - 1)
    c_lo, c_hi = c.gather(-1, idx - 1), c.gather(-1, idx)
    width = freqs_hz[1] - freqs_hz[0]
    frac = ((fraction - c_lo) / (c_hi - c_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (freqs_hz[idx - 1] + frac * width).squeeze(-1)


def spectral_flatness(power: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Wiener entropy ``exp(mean log P) / mean P`` of ``[B, F]`` spectra, in (0, 1]."""
    p = power + eps
    return torch.exp(torch.log(p).mean(-1)) / p.mean(-1)


def spectral_peakiness_db(power: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Crest of the spectrum ``10·log10(max P / mean P)`` in dB (>= 0) for ``[B, F]``."""
    p = power + eps
    return 10.0 * torch.log10(p.amax(-1) / p.mean(-1))


# Frame samples (frames x FFT size) processed per chunk on CPU: the frames, their spectra
# and the mel projection stay in cache, which is several times faster than one pass over
# the whole batch (tens of MB per intermediate, every page freshly faulted in).
_CHUNK_SAMPLES = 1 << 19


def _stft_frame_count(n_samples: int, n_fft: int, hop_length: int) -> int:
    """Frames of ``torch.stft(center=True)``: the signal is padded by ``n_fft // 2``."""
    return 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop_length


class _Workspace:
    """Chunk-sized buffers reused across the chunks of one call (a fresh ~2 MB buffer per
    chunk and op costs page faults: ~1,100 per encoder call at N = 64, 0.25 s).
    ``get(name, shape, dtype, like)`` returns the first ``shape[0]`` rows of a buffer
    allocated for the largest chunk (contiguous: a slice of the first dimension)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.buffers: dict[str, torch.Tensor] = {}

    def get(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, like: torch.Tensor
    ) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None:
            buf = like.new_empty((self.rows, *shape[1:]), dtype=dtype)
            self.buffers[name] = buf
        return buf[: shape[0]]


def _overlap_add(
    frames: torch.Tensor,
    window: torch.Tensor,
    hop_length: int,
    length: int,
    work: _Workspace,
) -> torch.Tensor:
    """``Σ_j window · frames[:, j]`` placed at ``j·hop_length``: ``[C, F, N] -> [C, length]``
    (a view of ``work``'s buffer ``"sum"``, valid until the next call).

    The adjoint of windowed framing. With ``b = gcd(N, hop)`` both frames and signal are
    sequences of ``b``-sample blocks, so the sum is ``N / b`` strided in-place adds
    (unlike ``fold`` or the backward of ``unfold``/``as_strided``, no index scatter).
    """
    n_chunk, n_frames, n_fft = frames.shape
    b = math.gcd(n_fft, hop_length)
    q, s = n_fft // b, hop_length // b
    out = work.get("sum", (n_chunk, -(-length // b), b), frames.dtype, frames).zero_()
    parts, win = frames.view(n_chunk, n_frames, q, b), window.view(q, b)
    for k in range(q):
        out[:, k : k + s * (n_frames - 1) + 1 : s].addcmul_(parts[:, :, k], win[k])
    return out.view(n_chunk, -1)[:, :length]


class _BandPlan(NamedTuple):
    """Where a mel filterbank ``[K bins, M bands]`` is nonzero, for banded products.

    ``groups``: ``(m0, m1, k0, k1)``, bands ``m0:m1`` only read bins ``k0:k1`` (forward;
    the groups partition the bands). ``segments``: ``(k0, k1, m0, m1)``, bins ``k0:k1``
    only feed bands ``m0:m1`` (backward; the segments partition the bins). Triangular
    bands on a mel scale are narrow at low and wide at high frequency, so a few dense
    blocks cover them with several times fewer multiply-adds than the full matrix.
    """

    groups: tuple[tuple[int, int, int, int], ...]
    segments: tuple[tuple[int, int, int, int], ...]


# Cost of one extra block product, in multiply-adds per frame (call overhead).
_BLOCK_OVERHEAD = 3000


def _band_plan(melfb: torch.Tensor) -> _BandPlan:
    """Band groups minimising ``Σ (bins x bands) + overhead`` (exact dynamic programme
    over contiguous band ranges), and bin segments cut where each group's support
    starts."""
    nonzero = (melfb != 0).cpu()
    n_bins, n_bands = nonzero.shape
    bins = torch.arange(n_bins)[:, None].expand(n_bins, n_bands)
    lo = torch.where(nonzero, bins, n_bins).amin(0).tolist()  # per band
    hi = torch.where(nonzero, bins + 1, 0).amax(0).tolist()
    best, arg = [0.0] + [math.inf] * n_bands, [0] * (n_bands + 1)
    for end in range(1, n_bands + 1):
        k0, k1 = n_bins, 0
        for start in range(end - 1, -1, -1):
            k0, k1 = min(k0, lo[start]), max(k1, hi[start])
            cost = best[start] + max(k1 - k0, 0) * (end - start) + _BLOCK_OVERHEAD
            if cost < best[end]:
                best[end], arg[end] = cost, start
    groups = []
    end = n_bands
    while end > 0:
        start = arg[end]
        k0, k1 = min(lo[start:end]), max(hi[start:end])
        groups.append((start, end, min(k0, k1), k1))
        end = start
    groups.reverse()
    cuts = sorted({0, n_bins, *(g[2] for g in groups[1:])})
    band_idx = torch.arange(n_bands)
    segments = []
    for k0, k1 in itertools.pairwise(cuts):
        used = nonzero[k0:k1].any(0)
        m0 = int(band_idx[used].min()) if used.any() else 0
        m1 = int(band_idx[used].max()) + 1 if used.any() else 0
        segments.append((k0, k1, m0, m1))
    return _BandPlan(tuple(groups), tuple(segments))


def _windowed_spectra(
    audio: torch.Tensor,
    window: torch.Tensor,
    hop_length: int,
    work: _Workspace,
) -> torch.Tensor:
    """``rfft`` of the centered, zero-padded, windowed frames: ``[C, T] -> [C, F, K]``
    (the windowed frames go to ``work``'s buffer ``"frames"``)."""
    pad = window.shape[0] // 2
    frames = F.pad(audio, (pad, pad)).unfold(-1, window.shape[0], hop_length)
    windowed = torch.mul(frames, window, out=work.get("frames", frames.shape, frames.dtype, audio))
    return torch.fft.rfft(windowed)  # (with out= the FFT runs ~9 % slower here)


class _MelPower(torch.autograd.Function):
    """Mel band powers of the centered (zero-padded) windowed STFT, and optionally the
    frame-averaged power spectrum: ``audio [B, T] -> (mel [B, M, F], mean_power [B, K])``
    (``mean_power`` is ``[B, 0]`` unless ``with_mean``).

    Equal to ``melfbᵀ |torch.stft(audio, center=True, pad_mode="constant")|²`` but
    computed in cache-sized chunks of the batch, with banded mel products (see
    :class:`_BandPlan`) and a hand-written backward: for ``P_k = |X_k|²``, ``X = rfft(x)``
    of a real frame of length ``N``, the gradient ``G = dL/dP`` pulls back to
    ``dL/dx_n = Σ_k 2 G_k Re(X_k e^{2πikn/N})`` over the one-sided bins, which is ONE
    inverse real FFT::

        dL/dx = N · irfft(Y, n=N),  Y_k = G_k X_k, except Y_k = 2 G_k X_k at k = 0
                                    and (N even) at the Nyquist bin k = N/2,

    because ``irfft`` counts the interior bins twice (conjugate symmetry) and the two
    real bins once. Windowing and framing pull back by overlap-add. The spectra are kept
    for backward only if ``keep_spectra`` (else recomputed). No gradient flows to
    ``window`` or ``melfb``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        audio: torch.Tensor,
        window: torch.Tensor,
        melfb: torch.Tensor,
        plan: _BandPlan,
        hop_length: int,
        chunk: int,
        keep_spectra: bool,
        with_mean: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, n_samples = audio.shape
        n_bins, n_bands = melfb.shape
        n_frames = _stft_frame_count(n_samples, window.shape[0], hop_length)
        mel = audio.new_empty(bsz, n_bands, n_frames)
        mean_power = audio.new_empty(bsz, n_bins if with_mean else 0)
        # |X|² = re² + im²: square the interleaved (re, im) pairs (one contiguous pass)
        # and let the mel product sum each pair, with every filterbank row doubled.
        fb2_t = melfb.T.repeat_interleave(2, dim=1)
        spectra = []
        work = _Workspace(chunk)
        for i in range(0, bsz, chunk):
            spec = _windowed_spectra(audio[i : i + chunk], window, hop_length, work)
            if keep_spectra:
                spectra.append(spec)
            parts = torch.view_as_real(spec)
            squares = torch.square(parts, out=work.get("squares", parts.shape, parts.dtype, audio))
            rows = squares.view(-1, 2 * n_bins)
            mel_t = torch.cat(
                [
                    fb2_t[m0:m1, 2 * k0 : 2 * k1] @ rows[:, 2 * k0 : 2 * k1].T
                    for m0, m1, k0, k1 in plan.groups
                ]
            )
            mel[i : i + chunk] = mel_t.view(n_bands, -1, n_frames).transpose(0, 1)
            if with_mean:
                torch.sum(squares.mean(1), -1, out=mean_power[i : i + chunk])
        ctx.save_for_backward(audio, window, melfb)
        ctx.spectra = spectra
        ctx.plan, ctx.hop_length, ctx.chunk = plan, hop_length, chunk
        ctx.set_materialize_grads(False)
        return mel, mean_power

    @staticmethod
    def backward(
        ctx: Any, grad_mel: torch.Tensor | None, grad_mean: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        nones = (None,) * 7
        if not ctx.needs_input_grad[0] or (grad_mel is None and grad_mean is None):
            return (None, *nones)
        audio, window, melfb = ctx.saved_tensors
        plan, hop_length, chunk, spectra = ctx.plan, ctx.hop_length, ctx.chunk, ctx.spectra
        n_fft = window.shape[0]
        bsz, n_samples = audio.shape
        n_bands = melfb.shape[1]
        pad = n_fft // 2
        n_frames = _stft_frame_count(n_samples, n_fft, hop_length)
        # N · (2 at DC and Nyquist, 1 elsewhere), folded into the mel pull-back.
        scale = torch.full_like(melfb[:, 0], float(n_fft))
        scale[0] *= 2.0
        if n_fft % 2 == 0:
            scale[-1] *= 2.0
        fb_t = (melfb * scale[:, None]).T
        if grad_mean is not None:
            grad_mean = grad_mean * (scale / n_frames)
        grad = torch.empty_like(audio)
        work = _Workspace(chunk)
        for j, i in enumerate(range(0, bsz, chunk)):
            # A kept spectrum is not needed after its chunk: it takes the product in place.
            spec = (
                spectra[j]
                if spectra
                else _windowed_spectra(audio[i : i + chunk], window, hop_length, work)
            )
            if grad_mel is None:
                assert grad_mean is not None
                grad_power = grad_mean[i : i + chunk, None].expand(-1, n_frames, -1)
            else:
                g_rows = grad_mel[i : i + chunk].transpose(1, 2).reshape(-1, n_bands)
                grad_power = torch.cat(
                    [g_rows[:, m0:m1] @ fb_t[m0:m1, k0:k1] for k0, k1, m0, m1 in plan.segments],
                    -1,
                ).view(spec.shape)
                if grad_mean is not None:
                    grad_power += grad_mean[i : i + chunk, None]
            grad_frames = torch.fft.irfft(spec.mul_(grad_power), n=n_fft)
            padded = _overlap_add(grad_frames, window, hop_length, n_samples + 2 * pad, work)
            grad[i : i + chunk] = padded[:, pad : pad + n_samples]
            if spectra:
                spectra[j] = None  # freed as soon as used
        ctx.spectra = []
        return (grad, *nones)


def _mel_power(
    audio: torch.Tensor,
    window: torch.Tensor,
    melfb: torch.Tensor,
    hop_length: int,
    with_mean: bool = False,
    plan: _BandPlan | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel band powers ``[B, M, F]`` of the centered, zero-padded STFT of ``audio [B, T]``
    with ``window [N]`` (FFT size ``N``) and filterbank ``melfb [N//2+1, M]``, and the
    frame-averaged power spectrum ``[B, N//2+1]`` (``[B, 0]`` unless ``with_mean``).

    Same values as ``|torch.stft(...)|²`` projected on ``melfb``; see :class:`_MelPower`
    for the faster, chunked forward and the single-inverse-FFT backward. ``plan`` is
    :func:`_band_plan` of ``melfb`` (computed here if not given).
    """
    n_fft = window.shape[0]
    n_frames = _stft_frame_count(audio.shape[-1], n_fft, hop_length)
    chunk = audio.shape[0]
    if audio.device.type == "cpu":
        chunk = max(1, _CHUNK_SAMPLES // (n_frames * n_fft))
    keep = torch.is_grad_enabled() and audio.requires_grad
    plan = plan or _band_plan(melfb)
    return _MelPower.apply(audio, window, melfb, plan, hop_length, chunk, keep, with_mean)


class FeatureEncoder(nn.Module):
    """Multi-resolution log-mel + spectral statistics, batched and differentiable.

    Shape: ``audio [B, T] -> Features`` (see :class:`Features`). Windows and mel
    filterbanks are registered buffers, so ``.to(device)`` moves them.

    The mel spectrograms equal ``melfbᵀ |torch.stft(center=True)|²`` (what
    :meth:`power_spectrogram` computes) but are computed by :class:`_MelPower`: chunked
    over the batch, banded mel products, and a backward of one inverse FFT per frame.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config or FeatureConfig()
        cfg = self.config
        for i, n_fft in enumerate(cfg.n_ffts):
            self.register_buffer(f"window_{i}", torch.hann_window(n_fft), persistent=False)
            fb = AF.melscale_fbanks(
                n_freqs=n_fft // 2 + 1,
                f_min=cfg.f_min_hz,
                f_max=cfg.sample_rate / 2,
                n_mels=cfg.n_mels,
                sample_rate=cfg.sample_rate,
                norm="slaney",
                mel_scale="htk",
            )
            self.register_buffer(f"melfb_{i}", fb, persistent=False)
        self._band_plans = tuple(
            _band_plan(getattr(self, f"melfb_{i}")) for i in range(len(cfg.n_ffts))
        )
        n0 = cfg.n_ffts[0]
        freqs = torch.linspace(0, cfg.sample_rate / 2, n0 // 2 + 1)
        self.register_buffer("freqs_hz", freqs, persistent=False)

    def power_spectrogram(self, audio: torch.Tensor, i: int) -> torch.Tensor:
        """``[B, T] -> [B, n_fft/2+1, frames]`` power of resolution ``i`` (the plain
        ``torch.stft`` definition, also the tests' reference for the fast path)."""
        n_fft = self.config.n_ffts[i]
        spec = torch.stft(
            audio,
            n_fft,
            self.config.hop_length,
            window=getattr(self, f"window_{i}"),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return spec.real.square() + spec.imag.square()

    def forward(self, audio: torch.Tensor) -> Features:
        check_tensor("audio", audio, ndim=2, finite=False)
        if audio.numel():  # one reduction, ~20x cheaper than isfinite(audio).all()
            lo, hi = torch.aminmax(audio.detach())  # NaN propagates, inf shows up
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError("audio contains NaN or inf values")
        cfg = self.config
        mels, log_mels = [], []
        avg_power = audio.new_empty(0)
        for i in range(len(cfg.n_ffts)):
            mel, mean_power = _mel_power(
                audio,
                getattr(self, f"window_{i}"),
                getattr(self, f"melfb_{i}"),
                cfg.hop_length,
                with_mean=i == 0,
                plan=self._band_plans[i],
            )
            if i == 0:
                avg_power = mean_power  # [B, F], energy-weighted over time
            mels.append(mel)
            log_mels.append(torch.log(mel + cfg.log_eps))
        return Features(
            mel=tuple(mels),
            log_mel=tuple(log_mels),
            centroid_hz=spectral_centroid(avg_power, self.freqs_hz),
            rolloff_hz=soft_rolloff(avg_power, self.freqs_hz, cfg.rolloff_fraction),
            flatness=spectral_flatness(avg_power),
            peakiness_db=spectral_peakiness_db(avg_power),
            loudness_db=rms_dbfs(audio),
        )


def log_mel_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute log-mel difference ``mean|log S_p - log S_t|`` per item, ``[B]``."""
    return (pred - target).abs().flatten(1).mean(-1)


def spectral_convergence(pred_mel: torch.Tensor, target_mel: torch.Tensor) -> torch.Tensor:
    """``‖√S_t - √S_p‖_F / ‖√S_t‖_F`` per item on mel power ``[B, M, N]`` -> ``[B]``."""
    p, t = pred_mel.clamp_min(0).sqrt(), target_mel.clamp_min(0).sqrt()
    num = (t - p).flatten(1).norm(dim=-1)
    return num / t.flatten(1).norm(dim=-1).clamp_min(1e-8)


def spectral_distance(pred: Features, target: Features) -> torch.Tensor:
    """Multi-resolution spectral distance, ``[B]``, 0 for identical sounds.

    ``d = (1/R) Σ_r [ mean|log S_p,r - log S_t,r| + SC(S_p,r, S_t,r) ]`` over the R
    resolutions. Both feature sets must come from the same encoder settings and audio
    length; ``target`` may have batch 1 (broadcast).
    """
    if len(pred.mel) != len(target.mel):
        raise ValueError("pred and target features have different resolutions")
    total = 0.0
    for pm, tm, plm, tlm in zip(pred.mel, target.mel, pred.log_mel, target.log_mel, strict=True):
        if pm.shape[1:] != tm.shape[1:]:
            raise ValueError(
                f"feature shapes differ: pred {tuple(pm.shape)} vs target {tuple(tm.shape)}; "
                "encode sounds of the same length with the same encoder"
            )
        tm_b, tlm_b = tm.expand_as(pm), tlm.expand_as(plm)
        total = total + log_mel_l1(plm, tlm_b) + spectral_convergence(pm, tm_b)
    return total / len(pred.mel)


def frame_count(n_samples: int, hop_length: int) -> int:
    """Frames produced by the centered STFT for ``n_samples`` samples."""
    return 1 + n_samples // hop_length


def db_to_amplitude(db: torch.Tensor | float) -> torch.Tensor:
    """``10 ** (db / 20)``."""
    return torch.pow(10.0, torch.as_tensor(db) / 20.0)


__all__ = [
    "FeatureConfig",
    "FeatureEncoder",
    "Features",
    "db_to_amplitude",
    "frame_count",
    "log_mel_l1",
    "rms_dbfs",
    "soft_rolloff",
    "spectral_centroid",
    "spectral_convergence",
    "spectral_distance",
    "spectral_flatness",
    "spectral_peakiness_db",
]
