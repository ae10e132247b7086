import math

import pytest
import torch

from aegym.features import (
    FeatureConfig,
    FeatureEncoder,
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
    with pytest.raises(ValueError, match="n_mels must be >= 2"):
        FeatureConfig(n_mels=0)
    with pytest.raises(ValueError, match="sample_rate"):
        FeatureConfig(sample_rate=-5)
    with pytest.raises(ValueError, match="at least one FFT size"):
        FeatureConfig(n_ffts=())
