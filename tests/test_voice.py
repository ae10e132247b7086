import pytest
import torch
from conftest import peak_frequency

from aegym.features import FeatureEncoder, spectral_distance
from aegym.synth import KnobSpace, Patch, SynthConfig, Voice, WindowedStream, cutoff_limit_hz

SR = 16_000


@pytest.fixture(scope="module")
def voice():
    return Voice(SynthConfig(sample_rate=SR, duration_s=0.5))


def sine_patch(**extra) -> Patch:
    values = dict(
        osc1_shape=0.0,
        osc2_shape=0.0,
        osc2_detune_cents=0.0,
        cutoff_hz=cutoff_limit_hz(SR),  # wide open: the voice's top cutoff at SR
        resonance=0.0,
        filter_env_octaves=0.0,
        drive_db=0.0,
    )
    values.update(extra)
    return Patch(values)


def test_shapes_and_finite(voice):
    u = torch.rand(5, voice.n_knobs)
    audio = voice(u)
    assert audio.shape == (5, voice.config.n_samples) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all()


@pytest.mark.parametrize("pitch", [45.0, 57.0, 69.0, 81.0])
def test_voice_pitch_matches_knob(voice, pitch):
    audio = voice.render_patch(sine_patch(pitch_midi=pitch))
    f0 = 440 * 2 ** ((pitch - 69) / 12)
    assert abs(peak_frequency(audio, SR) - f0) / f0 < 0.01


def test_adsr_timing_within_one_hop():
    hop = 256
    voice = Voice(SynthConfig(sample_rate=SR, duration_s=1.0, note_off_s=0.6))
    patch = sine_patch(
        pitch_midi=69.0, amp_attack_s=0.1, amp_decay_s=0.2, amp_sustain=0.5, amp_release_s=0.2
    )
    audio = voice.render_patch(patch)
    frames = audio[: SR // hop * hop].reshape(-1, hop).pow(2).mean(-1).sqrt()
    level = frames / frames.max()
    times = (torch.arange(level.numel()) + 0.5) * hop / SR
    peak_t = float(times[level.argmax()])
    assert abs(peak_t - 0.1) <= hop / SR + 1e-9
    sustain_reached = float(times[(level <= 0.5 * 1.05) & (times > 0.1)][0])
    assert abs(sustain_reached - 0.3) <= hop / SR + 1e-9
    silent = float(times[(level < 0.02) & (times > 0.6)][0])
    assert abs(silent - 0.8) <= hop / SR + 1e-9


def test_batch_equals_one_by_one(voice):
    u = torch.rand(4, voice.n_knobs)
    batch = voice(u)
    single = torch.cat([voice(u[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_deterministic_with_seed(voice):
    space = voice.knob_space
    u1 = space.random_unit(3, torch.Generator().manual_seed(7))
    u2 = space.random_unit(3, torch.Generator().manual_seed(7))
    assert torch.equal(u1, u2)
    assert torch.equal(voice(u1), voice(u2))


def test_out_of_range_knobs_are_clamped(voice):
    u = torch.rand(2, voice.n_knobs)
    over = u.clone()
    over[:, 3] = 5.0
    edge = u.clone()
    edge[:, 3] = 1.0
    assert torch.equal(voice(over), voice(edge))


def test_gradients_finite_and_nonzero_for_every_knob(voice):
    torch.manual_seed(3)
    enc = FeatureEncoder()
    target = voice(torch.rand(8, voice.n_knobs)).detach()
    u = torch.rand(8, voice.n_knobs, requires_grad=True)
    # Keep pulse and noise in play so every knob has something to act on.
    with torch.no_grad():
        u[:, voice.knob_space.index("osc1_shape")] = 0.9
        u[:, voice.knob_space.index("noise_level")] = 0.3
    loss = spectral_distance(enc(voice(u)), enc(target)).sum() + voice(u).pow(2).mean()
    loss.backward()
    assert torch.isfinite(u.grad).all()
    zero = [
        n
        for n, g in zip(voice.knob_space.names, u.grad.abs().sum(0), strict=True)
        if float(g) == 0.0
    ]
    assert not zero, f"knobs without gradient: {zero}"


def test_streaming_equals_one_shot_render():
    voice = Voice(SynthConfig(sample_rate=SR, duration_s=1.0))
    u = torch.rand(2, voice.n_knobs)
    whole, _ = voice.render(u, 4096)
    parts, state = [], None
    for _ in range(4):
        part, state = voice.render(u, 1024, state)
        parts.append(part)
    assert torch.allclose(torch.cat(parts, -1), whole, atol=1e-4)


def test_windowed_stream_overlaps_and_continues():
    voice = Voice(SynthConfig(sample_rate=SR))
    stream = WindowedStream(voice, batch=2, window_s=0.5, hop_s=0.125)
    u = torch.rand(2, voice.n_knobs)
    w1 = stream.step(u)
    w2 = stream.step(u)
    assert w1.shape == (2, stream.window) and stream.hop == 2048
    assert torch.equal(w2[:, : stream.window - stream.hop], w1[:, stream.hop :])
    whole, _ = voice.render(u, 2 * stream.hop)
    assert torch.allclose(w2[:, -2 * stream.hop :], whole, atol=1e-4)


def test_bad_inputs(voice):
    k = voice.n_knobs
    with pytest.raises(ValueError, match="NaN"):
        voice(torch.full((1, k), float("nan")))
    with pytest.raises(ValueError, match="last dim"):
        voice(torch.zeros(1, k + 1))
    with pytest.raises(ValueError, match="2 dims"):
        voice(torch.zeros(k))
    with pytest.raises(TypeError, match="floating"):
        voice(torch.zeros(1, k, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        voice([[0.5] * k])
    with pytest.raises(ValueError, match="sample_rate must be >= 4000"):
        SynthConfig(sample_rate=0)
    with pytest.raises(ValueError, match="duration_s must be a finite number > 0"):
        SynthConfig(duration_s=-1.0)
    with pytest.raises(ValueError, match="unknown knob"):
        voice.render_patch(Patch({"wobble": 1.0}))
    with pytest.raises(ValueError, match="state batch"):
        voice.render(torch.rand(2, k), 256, voice.initial_state(3))


def test_knob_space_is_default():
    assert Voice().knob_space.names == KnobSpace().names


def test_every_knob_has_gradient_on_its_bounds(voice):
    """A knob exactly at 0 or 1 (the others at their defaults) keeps its gradient."""
    space = voice.knob_space
    n = len(space)
    base = space.default_unit()
    # osc 2 mostly pulse, so pulse_width acts (the default saw has no pulse in it).
    base[space.index("osc2_shape")] = 0.9
    u = base.repeat(2 * n, 1)
    for i in range(n):
        u[2 * i, i], u[2 * i + 1, i] = 0.0, 1.0
    u.requires_grad_(True)
    enc = FeatureEncoder()
    other = space.random_unit(1, torch.Generator().manual_seed(11))  # a different patch
    target = voice(other.expand(2 * n, -1)).detach()
    audio = voice(u)
    loss = spectral_distance(enc(audio), enc(target)).sum()
    loss = loss + audio.pow(2).mean(-1).sum()
    (grad,) = torch.autograd.grad(loss, u)
    on_bound = torch.stack([grad[2 * i : 2 * i + 2, i] for i in range(n)])  # [K, 2]
    assert torch.isfinite(on_bound).all()
    dead = [
        f"{name}={bound}"
        for name, row in zip(space.names, on_bound.tolist(), strict=True)
        for bound, g in zip((0, 1), row, strict=True)
        if g == 0.0
    ]
    assert not dead, f"knobs without gradient on their bounds: {dead}"


@pytest.mark.parametrize("sr", [4000, 8000, 16000])
def test_cutoff_gradient_nonzero_across_its_whole_range(sr):
    voice = Voice(SynthConfig(sample_rate=sr, duration_s=0.25))
    space = voice.knob_space
    c = space.index("cutoff_hz")
    u = space.default_unit(21)
    u[:, c] = torch.linspace(0.0, 1.0, 21)
    u.requires_grad_(True)
    (grad,) = torch.autograd.grad(voice(u).pow(2).sum(), u)
    g = grad[:, c]
    assert torch.isfinite(g).all()
    dead = [round(float(v), 2) for v, gi in zip(u[:, c], g, strict=True) if gi == 0.0]
    assert not dead, f"cutoff knob values without gradient at {sr} Hz: {dead}"
