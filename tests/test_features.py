import math

import pytest
import torch

from aegym import features
from aegym.features import (
    FeatureConfig,
    FeatureEncoder,
    _band_plan,
    _mel_power,
    _MelPower,
    rms_dbfs,
    spectral_distance,
)
from aegym.losses import MultiResolutionSpectralDistance

SR = 16_000


@pytest.fixture(scope="module")
def enc():
    return FeatureEncoder()


def tone(freq, n=SR, amp=1.0):
    t = torch.arange(n) / SR
    return amp * torch.sin(2 * math.pi * freq * t)


def test_shapes(enc):
    f = enc(torch.randn(3, 8000))
    assert len(f.mel) == 2
    for m, lm in zip(f.mel, f.log_mel, strict=True):
        assert m.shape == (3, 64, 1 + 8000 // 256) and lm.shape == m.shape
    for s in (f.centroid_hz, f.rolloff_hz, f.flatness, f.peakiness_db, f.loudness_db):
        assert s.shape == (3,)
    assert f.stats().shape == (3, 5) and torch.isfinite(f.stats()).all()


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_centroid_and_rolloff_of_a_sine(enc, freq):
    f = enc(tone(freq)[None])
    assert float(f.centroid_hz) == pytest.approx(freq, rel=0.03)
    # the Hann main lobe puts the 95 % point within two bins (2 x 15.6 Hz) above the tone
    assert freq <= float(f.rolloff_hz) <= freq + 2 * SR / 1024


def test_flatness_and_peakiness_order_noise_vs_sine(enc):
    f = enc(torch.stack([torch.randn(SR) * 0.3, tone(440.0)]))
    assert float(f.flatness[0]) > 0.5 > 0.01 > float(f.flatness[1])
    assert float(f.peakiness_db[1]) > float(f.peakiness_db[0]) + 10


def test_loudness_dbfs():
    assert float(rms_dbfs(tone(440.0)[None])) == pytest.approx(-3.01, abs=0.02)
    assert float(rms_dbfs(tone(440.0, amp=0.1)[None])) == pytest.approx(-23.01, abs=0.02)
    assert float(rms_dbfs(torch.zeros(1, 100))) < -150


def test_distance_zero_for_identical_and_grows(enc):
    x = tone(440.0)[None]
    fx = enc(x)
    assert float(spectral_distance(fx, fx)) == pytest.approx(0.0, abs=1e-6)
    near = spectral_distance(enc(tone(450.0)[None]), fx)
    far = spectral_distance(enc(tone(900.0)[None]), fx)
    assert 0 < float(near) < float(far)


def test_target_broadcasts_and_module_form(enc):
    x = torch.randn(4, 4000) * 0.1
    t = torch.randn(1, 4000) * 0.1
    d = spectral_distance(enc(x), enc(t))
    assert d.shape == (4,)
    loss = MultiResolutionSpectralDistance()
    assert torch.allclose(loss(x, t.expand(4, -1)), d, atol=1e-5)
    with pytest.raises(ValueError, match="lengths differ"):
        loss(x, t[:, :100])


def test_differentiable_and_batch_consistent(enc):
    x = (torch.randn(2, 4000) * 0.1).requires_grad_()
    f = enc(x)
    total = f.centroid_hz.sum() + f.rolloff_hz.sum() + f.flatness.sum() + f.peakiness_db.sum()
    total = total + f.loudness_db.sum() + sum(m.sum() for m in f.log_mel)
    total.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    single = enc(x[1:].detach())
    assert torch.allclose(single.log_mel[1][0], f.log_mel[1][1].detach(), atol=1e-4)


def test_silence_gives_finite_features(enc):
    f = enc(torch.zeros(1, 4000))
    for s in (f.centroid_hz, f.rolloff_hz, f.flatness, f.peakiness_db, f.loudness_db, f.stats()):
        assert torch.isfinite(s).all()


def test_bad_inputs(enc):
    with pytest.raises(ValueError, match="2 dims"):
        enc(torch.randn(100))
    with pytest.raises(ValueError, match="NaN"):
        enc(torch.full((1, 1000), float("nan")))
    audio = torch.zeros(2, 1000)
    audio[1, 7] = -float("inf")
    with pytest.raises(ValueError, match="inf"):
        enc(audio)
    with pytest.raises(ValueError, match="n_mels must be >= 2"):
        FeatureConfig(n_mels=0)
    with pytest.raises(ValueError, match="sample_rate"):
        FeatureConfig(sample_rate=-5)
    with pytest.raises(ValueError, match="at least one FFT size"):
        FeatureConfig(n_ffts=())


# --- the chunked STFT -> mel path and its hand-written backward -------------------------


def reference_mel(enc, audio, i):
    """``melfbᵀ |torch.stft|²`` and the frame-averaged power, through autograd."""
    power = enc.power_spectrogram(audio, i)
    return getattr(enc, f"melfb_{i}").T @ power, power.mean(-1)


# 0.25 s is shorter than the 4096-point window: frames are mostly padding.
@pytest.mark.parametrize("n_samples", [SR, 4000, 4001, 300])
def test_mel_path_equals_stft_reference_values_and_gradients(enc, n_samples):
    audio = (torch.randn(3, n_samples) * 0.3).requires_grad_()
    f = enc(audio)
    for i in range(len(enc.config.n_ffts)):
        window, melfb = getattr(enc, f"window_{i}"), getattr(enc, f"melfb_{i}")
        mel, mean_power = _mel_power(audio, window, melfb, 256, with_mean=True)
        mel_ref, mean_ref = reference_mel(enc, audio, i)
        scale = float(mel_ref.detach().max())
        torch.testing.assert_close(mel, mel_ref, rtol=1e-4, atol=1e-7 * scale)
        torch.testing.assert_close(f.mel[i], mel_ref, rtol=1e-4, atol=1e-7 * scale)
        torch.testing.assert_close(mean_power, mean_ref, rtol=1e-4, atol=1e-7 * scale)
        log_ref = torch.log(mel_ref + enc.config.log_eps)
        torch.testing.assert_close(f.log_mel[i], log_ref, rtol=1e-4, atol=1e-5)
        w_mel, w_mean = torch.randn_like(mel_ref), torch.randn_like(mean_ref)
        loss = (mel * w_mel).sum() + (mean_power * w_mean).sum()
        loss_ref = (mel_ref * w_mel).sum() + (mean_ref * w_mean).sum()
        (grad,) = torch.autograd.grad(loss, audio)
        (grad_ref,) = torch.autograd.grad(loss_ref, audio)
        torch.testing.assert_close(
            grad, grad_ref, rtol=1e-4, atol=1e-5 * float(grad_ref.abs().max())
        )


@pytest.mark.parametrize(
    "n_fft, hop, n_samples", [(16, 4, 21), (15, 4, 18), (12, 8, 29), (16, 16, 10)]
)
def test_mel_power_gradcheck(n_fft, hop, n_samples):
    """Float64 gradcheck of the single-inverse-FFT backward (even/odd FFT sizes, hops
    that do and do not divide the FFT size, audio shorter than a window), through both
    outputs and with chunking."""
    n_bins = n_fft // 2 + 1
    melfb = torch.rand(n_bins, 3, dtype=torch.float64)
    melfb[melfb < 0.3] = 0.0
    window = torch.hann_window(n_fft, dtype=torch.float64)
    audio = torch.randn(2, n_samples, dtype=torch.float64, requires_grad=True)
    plan = _band_plan(melfb)
    for chunk, keep, fast in ((2, True, False), (1, False, True)):

        def fn(x, chunk=chunk, keep=keep):
            return _MelPower.apply(x, window, melfb, plan, hop, chunk, keep, True)

        assert torch.autograd.gradcheck(fn, (audio,), fast_mode=fast)


def test_band_plan_covers_the_filterbank_exactly(enc):
    for i in range(len(enc.config.n_ffts)):
        fb = getattr(enc, f"melfb_{i}")
        plan = _band_plan(fb)
        covered = torch.zeros_like(fb, dtype=torch.bool)
        for m0, m1, k0, k1 in plan.groups:
            covered[k0:k1, m0:m1] = True
        assert bool(covered[fb != 0].all())
        assert [g[0] for g in plan.groups[1:]] == [g[1] for g in plan.groups[:-1]]
        covered.zero_()
        for k0, k1, m0, m1 in plan.segments:
            covered[k0:k1, m0:m1] = True
        assert bool(covered[fb != 0].all())
        assert plan.segments[0][0] == 0 and plan.segments[-1][1] == fb.shape[0]


def test_chunking_does_not_change_features(enc, monkeypatch):
    audio = torch.randn(5, 3000) * 0.2
    whole = enc(audio)
    monkeypatch.setattr(features, "_CHUNK_SAMPLES", 1)  # one sound per chunk
    chunked = enc(audio)
    for a, b in zip(whole.log_mel, chunked.log_mel, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(whole.stats(), chunked.stats())


def test_chunked_backward_twice_and_with_a_smaller_last_chunk(enc, monkeypatch):
    """Chunks share reused buffers (the last one smaller): gradients equal the single
    chunk's, and a second backward through the same graph (the kept spectra were used
    up by the first) gives the same gradient again."""
    audio = torch.randn(5, 3000) * 0.2
    target = enc(torch.randn(1, 3000) * 0.2)

    def gradient(retain: bool = False, x: torch.Tensor | None = None):
        x = audio.clone().requires_grad_() if x is None else x
        loss = spectral_distance(enc(x), target).sum()
        return x, loss, torch.autograd.grad(loss, x, retain_graph=retain)[0]

    _, _, whole = gradient()
    n_frames = features._stft_frame_count(3000, 4096, enc.config.hop_length)
    monkeypatch.setattr(features, "_CHUNK_SAMPLES", 2 * n_frames * 4096)  # 2 + 2 + 1
    x, loss, first = gradient(retain=True)
    (second,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(first, whole, rtol=1e-5, atol=1e-7)
    assert torch.equal(first, second)
