import math

import pytest
import torch

from aegym.synth.filters import (
    CUTOFF_KNEE_FRACTION,
    MAX_CUTOFF_FRACTION,
    MIN_CUTOFF_HZ,
    clamp_cutoff,
    ladder_filter,
    ladder_reference,
    ladder_response,
)

SR = 16_000


def impulse_response(cutoff: float, res: float, n: int = 16384) -> torch.Tensor:
    x = torch.zeros(1, n, dtype=torch.float64)
    x[0, 0] = 1.0
    y, _ = ladder_filter(
        x, torch.tensor([cutoff], dtype=torch.float64), torch.tensor([res], dtype=torch.float64), SR
    )
    return y[0]


# The bilinear transform warps frequencies toward Nyquist; up to fs/8 the warp stays
# within 1 dB of the analog prototype below cutoff.
@pytest.mark.parametrize(
    "cutoff, res", [(200.0, 0.0), (1000.0, 0.5), (2000.0, 0.8), (2000.0, 0.0), (500.0, 0.95)]
)
def test_magnitude_within_1db_of_analog_below_cutoff(cutoff, res):
    h = impulse_response(cutoff, res)
    spec = torch.fft.rfft(h)
    freqs = torch.fft.rfftfreq(h.numel(), 1 / SR)
    band = (freqs >= 20) & (freqs <= cutoff)
    measured = 20 * torch.log10(spec[band].abs())
    analog = 20 * torch.log10(ladder_response(freqs[band], cutoff, res).abs())
    assert float((measured - analog).abs().max()) < 1.0


@pytest.mark.parametrize("cutoff, res", [(200.0, 0.0), (4000.0, 0.3), (6000.0, 0.9), (7000.0, 1.0)])
def test_magnitude_matches_discrete_analytic_response(cutoff, res):
    h = impulse_response(cutoff, res)
    spec = torch.fft.rfft(h)
    freqs = torch.fft.rfftfreq(h.numel(), 1 / SR)
    band = (freqs >= 20) & (freqs <= 0.9 * SR / 2)
    measured = 20 * torch.log10(spec[band].abs())
    analytic = 20 * torch.log10(ladder_response(freqs[band], cutoff, res, SR).abs())
    assert float((measured - analytic).abs().max()) < 0.1


@pytest.mark.parametrize("cutoff, res", [(100.0, 0.0), (1000.0, 0.5), (6000.0, 1.0)])
def test_fast_equals_reference_for_static_cutoff(cutoff, res):
    x = torch.randn(1, 2048)
    fast, _ = ladder_filter(x, torch.tensor([cutoff]), torch.tensor([res]), SR)
    ref = ladder_reference(x, torch.tensor([cutoff]), torch.tensor([res]), SR)
    assert float((fast - ref).norm() / ref.norm()) < 1e-3


def test_fast_equals_reference_under_envelope_modulation():
    # A decaying filter envelope (one octave sweep over 128 ms), two resonances.
    n, block = 4096, 128
    nb = n // block
    t = torch.arange(nb) * block / SR
    cutoff = (500.0 * torch.pow(2.0, torch.exp(-t / 0.05)))[None].repeat(2, 1)
    res = torch.tensor([[0.2], [0.9]]).expand(2, nb)
    x = torch.randn(2, n)
    fast, _ = ladder_filter(x, cutoff, res, SR, block)
    ref = ladder_reference(x, cutoff, res, SR, block)
    rel = (fast - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert (rel < 1e-3).all(), rel


@pytest.mark.parametrize("octaves", [1.0, 3.0, 6.0])
def test_abrupt_cutoff_jumps_stay_exact_and_bounded(octaves):
    # Cutoff alternates between 100 Hz and 100·2^octaves every 4 blocks: the state must
    # be handed over like the TPT ladder's, not re-read as a larger oscillation.
    n, block = 4096, 128
    nb = n // block
    cutoff = (100.0 * 2.0 ** (octaves * (torch.arange(nb) // 4 % 2)))[None].repeat(3, 1)
    res = torch.tensor([[0.05], [0.6], [0.97]]).expand(3, nb)
    x = torch.randn(3, n) * 0.5
    fast, _ = ladder_filter(x, cutoff, res, SR, block)
    ref = ladder_reference(x, cutoff, res, SR, block)
    assert float(((fast - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-3
    assert float(fast.abs().max()) < 2.0 * float(ref.abs().max()) + 1e-3


def test_streaming_state_continues_exactly():
    x = torch.randn(3, 2048)
    cutoff = torch.rand(3, 16) * 3000 + 100
    res = torch.rand(3, 16)
    full, _ = ladder_filter(x, cutoff, res, SR)
    a, state = ladder_filter(x[:, :768], cutoff[:, :6], res[:, :6], SR)
    b, _ = ladder_filter(x[:, 768:], cutoff[:, 6:], res[:, 6:], SR, state=state)
    assert torch.allclose(torch.cat([a, b], -1), full, atol=1e-5)


@pytest.mark.parametrize("cutoff", [60.0, 440.0, 3000.0, 7000.0])
def test_bounded_at_maximum_resonance(cutoff):
    x = torch.zeros(1, SR)
    x[0, :4000] = torch.randn(4000)
    y, _ = ladder_filter(x, torch.tensor([cutoff]), torch.tensor([1.0]), SR)
    assert torch.isfinite(y).all()
    assert float(y.abs().max()) < 50.0
    # after the input stops, the ringing decays instead of growing
    tail = y[0, 4000:].reshape(-1, 1000).pow(2).mean(-1)
    assert float(tail[-1]) < float(tail[0])


def test_gradients_wrt_input_cutoff_resonance():
    x = torch.randn(2, 1024, requires_grad=True)
    cutoff = torch.tensor([[300.0] * 8, [2000.0] * 8], requires_grad=True)
    res = torch.tensor([[0.0] * 8, [0.9] * 8], requires_grad=True)
    y, _ = ladder_filter(x, cutoff, res, SR)
    y.pow(2).mean().backward()
    for p in (x, cutoff, res):
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_gradient_matches_finite_difference():
    x = torch.randn(1, 512, dtype=torch.float64)
    c = torch.tensor([800.0], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)

    def loss(cc, rr):
        return ladder_filter(x, cc, rr, SR)[0].pow(2).mean()

    loss(c, r).backward()
    eps = 1e-3
    fd_c = (loss(c.detach() + eps, r.detach()) - loss(c.detach() - eps, r.detach())) / (2 * eps)
    fd_r = (loss(c.detach(), r.detach() + eps) - loss(c.detach(), r.detach() - eps)) / (2 * eps)
    assert float(c.grad) == pytest.approx(float(fd_c), rel=1e-4)
    assert float(r.grad) == pytest.approx(float(fd_r), rel=1e-4)


def test_length_must_be_block_multiple():
    with pytest.raises(ValueError, match="multiple of block_size"):
        ladder_filter(torch.randn(1, 100), torch.tensor([100.0]), torch.tensor([0.1]), SR)
    with pytest.raises(ValueError, match="cutoff_hz/resonance"):
        ladder_filter(torch.randn(1, 256), torch.ones(1, 3) * 100, torch.ones(1, 3), SR)


def test_dc_gain_is_one_over_one_plus_k():
    h = impulse_response(1000.0, 0.5)
    k = 1e-3 + (3.9 - 1e-3) * 0.5
    assert float(h.sum()) == pytest.approx(1 / (1 + k), rel=1e-3)
    assert math.isfinite(float(h.sum()))


@pytest.mark.parametrize("sr", [4000, 16000, 48000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cutoff_limit_is_exact_inside_and_smooth_outside(sr, dtype):
    """No hard clamp: identity on [MIN_CUTOFF_HZ, 0.43 fs], a knee with a positive
    derivative outside, and every output inside (MIN_CUTOFF_HZ / 2, 0.45 fs)."""
    f = torch.logspace(-1, 7, 4001, dtype=dtype).requires_grad_(True)
    out = clamp_cutoff(f, sr)
    (d,) = torch.autograd.grad(out.sum(), f)
    assert bool((d > 0).all()), f"zero derivative at {f[d <= 0][:5].tolist()}"
    assert bool((out < MAX_CUTOFF_FRACTION * sr).all() and (out > MIN_CUTOFF_HZ / 2).all())
    assert bool((out[1:] >= out[:-1]).all())  # monotone (strictly: d > 0)
    inside = (f >= MIN_CUTOFF_HZ) & (f <= CUTOFF_KNEE_FRACTION * sr)
    assert torch.equal(out[inside], f[inside]) and bool((d[inside] == 1).all())
    # C1 at the knees: just past them the cutoff barely moves and its slope is ~1.
    for knee in (MIN_CUTOFF_HZ, CUTOFF_KNEE_FRACTION * sr):
        near = torch.tensor([knee * 0.999, knee * 1.001], dtype=dtype, requires_grad=True)
        y = clamp_cutoff(near, sr)
        (dn,) = torch.autograd.grad(y.sum(), near)
        assert torch.allclose(y, near, rtol=1e-4) and torch.allclose(
            dn, torch.ones_like(dn), atol=0.05
        )


def test_envelope_pushing_past_the_top_keeps_a_cutoff_gradient():
    """A cutoff modulated far above 0.45 fs (where the old hard clamp sat) still moves
    the output, and the fast filter still matches the reference there."""
    sr = 4000
    torch.manual_seed(0)
    x = torch.randn(1, 1024, dtype=torch.float64)
    cutoff = (1500.0 * 2.0 ** torch.linspace(0.0, 6.0, 8, dtype=torch.float64))[None]
    cutoff.requires_grad_(True)
    res = torch.full((1, 8), 0.5, dtype=torch.float64)
    y, _ = ladder_filter(x, cutoff, res, sr)
    (g,) = torch.autograd.grad(y.pow(2).sum(), cutoff)
    assert bool((g != 0).all()), g
    ref = ladder_reference(x, cutoff.detach(), res, sr, block_size=128)
    assert torch.allclose(y.detach(), ref, atol=1e-9)
