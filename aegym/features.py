"""Audio -> features: multi-resolution log-mel spectrograms and spectral statistics.

All functions are batched (``[B, T]`` audio), differentiable and device-agnostic.
The encoder is what rewards, losses and observations see of a sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torchaudio.functional as AF
from torch import nn

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


class FeatureEncoder(nn.Module):
    """Multi-resolution log-mel + spectral statistics, batched and differentiable.

    Shape: ``audio [B, T] -> Features`` (see :class:`Features`). Windows and mel
    filterbanks are registered buffers, so ``.to(device)`` moves them.
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
        n0 = cfg.n_ffts[0]
        freqs = torch.linspace(0, cfg.sample_rate / 2, n0 // 2 + 1)
        self.register_buffer("freqs_hz", freqs, persistent=False)

    def power_spectrogram(self, audio: torch.Tensor, i: int) -> torch.Tensor:
        """``[B, T] -> [B, n_fft/2+1, frames]`` power of resolution ``i``."""
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
        check_tensor("audio", audio, ndim=2)
        cfg = self.config
        mels, log_mels = [], []
        avg_power = None
        for i in range(len(cfg.n_ffts)):
            power = self.power_spectrogram(audio, i)
            if i == 0:
                avg_power = power.mean(-1)  # [B, F], energy-weighted over time
            mel = torch.matmul(power.transpose(-1, -2), getattr(self, f"melfb_{i}")).transpose(
                -1, -2
            )
            mels.append(mel)
            log_mels.append(torch.log(mel + cfg.log_eps))
        assert avg_power is not None
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
