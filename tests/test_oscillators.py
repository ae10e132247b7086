import math

import pytest
import torch
from conftest import peak_frequency

from aegym.synth.oscillators import (
    build_tables,
    harmonic_taper,
    morph_oscillator,
    morph_weights,
    naive_saw,
    phase_ramp,
    read_noise,
)

SR = 16_000


def render(freq: float, shape: float, width: float = 0.5, n: int = SR, sr: int = SR):
    f = torch.tensor([freq])
    phase, _ = phase_ramp(f, n, sr)
    return morph_oscillator(phase, f, torch.tensor([shape]), torch.tensor([width]), sr)[0]


@pytest.mark.parametrize("shape", [0.0, 1 / 3, 2 / 3, 1.0])
@pytest.mark.parametrize("freq", [65.4, 220.0, 440.0, 1046.5])
def test_pitch_within_one_percent(shape, freq):
    audio = render(freq, shape)
    assert abs(peak_frequency(audio, SR) - freq) / freq < 0.01


def alias_ratio_db(x: torch.Tensor, f0: float, sr: int) -> float:
    """Energy outside the harmonics below Nyquist, relative to the total, in dB."""
    n = x.shape[-1]
    power = torch.fft.rfft(x.double() * torch.hann_window(n, dtype=torch.float64)).abs() ** 2
    freqs = torch.fft.rfftfreq(n, 1 / sr)
    mask = freqs > 20
    h = 1
    while h * f0 < sr / 2:
        mask &= (freqs - h * f0).abs() > 20
        h += 1
    return 10 * math.log10(float(power[mask].sum() / power.sum()))


@pytest.mark.parametrize("f0", [1990.0, 2050.0])
@pytest.mark.parametrize("shape", [2 / 3, 1.0])
def test_saw_and_pulse_alias_30db_below_naive(f0, shape):
    n = 2 * SR
    audio = render(f0, shape, width=0.3, n=n)
    phase, _ = phase_ramp(torch.tensor([f0]), n, SR)
    naive = naive_saw(phase)[0]
    assert alias_ratio_db(audio, f0, SR) <= alias_ratio_db(naive, f0, SR) - 30.0


def test_waveform_shapes_match_definitions_at_low_pitch():
    # At 50 Hz the band-limited waves are close to their ideal shapes.
    f = 50.0
    n = SR // 50 * 4
    phase, _ = phase_ramp(torch.tensor([f]), n, SR)
    sine = render(f, 0.0, n=n)
    assert torch.allclose(sine, torch.sin(2 * math.pi * phase[0]), atol=1e-3)
    tri = render(f, 1 / 3, n=n)
    assert torch.allclose(tri, 1 - 4 * (phase[0] - 0.5).abs(), atol=0.02)
    pulse = render(f, 1.0, width=0.25, n=n)
    # duty cycle: fraction of time above zero is 1 - width
    assert float((pulse > 0).float().mean()) == pytest.approx(0.75, abs=0.02)


def test_morph_weights_sum_to_one_and_hit_corners():
    s = torch.linspace(0, 1, 31)
    w = morph_weights(s)
    assert torch.allclose(w.sum(-1), torch.ones(31))
    assert torch.allclose(
        morph_weights(torch.tensor([2 / 3])), torch.tensor([[0.0, 0.0, 1.0, 0.0]]), atol=1e-6
    )


def test_phase_continuity_across_calls():
    f = torch.tensor([123.4, 987.6])
    full, _ = phase_ramp(f, 1000, SR)
    a, end = phase_ramp(f, 600, SR)
    b, _ = phase_ramp(f, 400, SR, end)
    assert torch.allclose(torch.cat([a, b], -1), full, atol=1e-5)


def test_gradients_wrt_frequency_shape_width_are_finite_nonzero():
    f = torch.tensor([220.0, 330.0], requires_grad=True)
    shape = torch.tensor([0.8, 0.9], requires_grad=True)  # both include some pulse
    width = torch.tensor([0.3, 0.6], requires_grad=True)
    phase, _ = phase_ramp(f, 4000, SR)
    out = morph_oscillator(phase, f, shape, width, SR)
    (out * torch.linspace(-1, 1, 4000)).sum().backward()
    for p in (f, shape, width):
        assert torch.isfinite(p.grad).all() and (p.grad.abs() > 0).all()


def test_noise_is_cyclic_and_offset():
    table = torch.arange(8.0)
    assert read_noise(table, 0, 4).tolist() == [0, 1, 2, 3]
    assert read_noise(table, 6, 4).tolist() == [6, 7, 0, 1]
    assert read_noise(table, 14, 12).tolist() == [6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1]


def test_morph_weights_keep_gradient_on_waves_and_ends():
    """Values as ``max(0, 1 - |s·3 - i|)``, but a shape on a wave (0, 1/3, 2/3, 1) keeps
    its one-sided gradient (abs and max have none there)."""
    s = torch.cat([torch.linspace(-0.5, 1.5, 41), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])])
    s.requires_grad_(True)
    w = morph_weights(s)
    pos = s.detach().clamp(0, 1)[:, None] * 3
    old = (1.0 - (pos - torch.arange(4.0)).abs()).clamp_min(0.0)
    assert torch.equal(w.detach(), old)
    jac = torch.stack(
        [torch.autograd.grad(w[:, i].sum(), s, retain_graph=True)[0] for i in range(4)]
    )
    assert bool((jac.abs().sum(0) > 0).all())  # every shape moves some weight
    assert torch.allclose(jac.sum(0), torch.zeros(45), atol=1e-6)  # weights still sum to 1


def test_tables_are_their_fourier_series():
    """Each table is the tapered Fourier series of its mix, summed directly in float64:
    sine, triangle (cosines), saw (sines) and the pulse ``saw(φ) - saw(φ + 1 - w) -
    (2w - 1)``."""
    gen = torch.Generator().manual_seed(0)
    freq = torch.tensor([55.0, 440.0, 3000.0, 7000.0])
    weights = morph_weights(torch.rand(4, generator=gen))
    width = 0.1 + 0.8 * torch.rand(4, generator=gen)
    size = 256
    tables = build_tables(freq, weights, width, SR, size=size)
    assert torch.equal(tables[:, -1], tables[:, 0])
    f64 = torch.float64
    h = torch.arange(1, size // 2, dtype=f64)  # harmonics 1 .. L/2 - 1
    phi = torch.arange(size, dtype=f64)[:, None] / size
    taper = harmonic_taper(freq.double(), SR, h.numel())
    tri = torch.where(h % 2 == 1, -(8 / math.pi**2) / h**2, torch.zeros_like(h))
    saw = -(2 / math.pi) / h
    for b in range(4):
        w0, w1, w2, w3 = weights[b].double()
        shift = 1.0 - float(width[b])
        terms = (
            w1 * tri * torch.cos(2 * math.pi * h * phi)
            + (w2 + w3) * saw * torch.sin(2 * math.pi * h * phi)
            - w3 * saw * torch.sin(2 * math.pi * h * (phi + shift))
        )
        terms[:, 0] += w0 * torch.sin(2 * math.pi * phi[:, 0])
        ref = (terms * taper[b]).sum(-1) - w3 * (2 * float(width[b]) - 1)
        torch.testing.assert_close(tables[b, :-1].double(), ref, atol=2e-6, rtol=0)
