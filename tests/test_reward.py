"""Tests for aegym.reward: bounds, monotonicity, breakdown, rankings, errors, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aegym.features import FeatureEncoder, Features
from aegym.reward import (
    AUDIO_TERMS,
    SUCCESS_TERM,
    TERM_NAMES,
    CompositeReward,
    RewardConfig,
    audio_terms,
    diversity_score,
    grad_norm_score,
    optimizer_terms,
    penalties,
    periodicity_score,
    policy_terms,
    resonance_factors,
    resonance_score,
    update_norm_score,
)

SR = 16_000
N_SAMPLES = 4096
CFG = RewardConfig()
#: A reward with only the terms that need no optional input (audio as a cost).
AUDIO_ONLY = (*AUDIO_TERMS, "pen/loudness", "pen/time")


def audio_similarity(pred: Features, target: Features) -> torch.Tensor:
    """``Σ_i c_i·s_i``: the audio group's weighted similarity, in [0, w_aud]."""
    reward = CompositeReward(CFG, AUDIO_ONLY)
    scores = reward.audio_scores(pred, target)
    return sum(reward.coefficients[n] * scores[n] for n in AUDIO_TERMS)


def all_inputs(b: int, g: torch.Generator, scale: float = 1.0) -> dict:
    """Every optional input of the full reward, random, batch ``b``."""
    return dict(
        previous_audio={n: torch.rand(b, generator=g) for n in AUDIO_TERMS},
        success=torch.rand(b, generator=g) < 0.5,
        grad_norms=scale * torch.rand(b, 8, generator=g),
        updates=scale * torch.randn(b, 8, 3, generator=g),
        knob_trajectory=torch.rand(b, 8, 2, generator=g),
        knob_delta=scale * torch.randn(b, 2, generator=g),
        diverged=torch.rand(b, generator=g) < 0.5,
    )


PROPERTY = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def encoder() -> FeatureEncoder:
    return FeatureEncoder()


def _t() -> torch.Tensor:
    return torch.arange(N_SAMPLES) / SR


def sine(freq_hz: float, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq_hz * _t())


def saw(freq_hz: float, amp: float = 0.5) -> torch.Tensor:
    return amp * (2 * ((freq_hz * _t()) % 1) - 1)


def synthetic_features(batch: int, seed: int, mel_scale: float, stats: list[float]) -> Features:
    """Features with random mel power and given (possibly extreme) statistics."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, 8, 5, generator=g) * mel_scale
    centroid, rolloff, flatness, peakiness, loudness = (torch.full((batch,), s) for s in stats)
    return Features(
        mel=(mel,),
        log_mel=(torch.log(mel + 1e-5),),
        centroid_hz=centroid,
        rolloff_hz=rolloff,
        flatness=flatness,
        peakiness_db=peakiness,
        loudness_db=loudness,
    )


def oscillation(w: int = 32, period: float = 8.0, growth: float = 1.0, amp: float = 0.01):
    """``[1, W, 5]`` update vectors ``amp · growth^t · cos(2πt/P) · v``."""
    t = torch.arange(w, dtype=torch.float32)
    v = torch.tensor([1.0, -0.5, 0.3, 0.8, -0.2])
    return (amp * growth**t * torch.cos(2 * math.pi * t / period))[None, :, None] * v


def assert_unit(x: torch.Tensor, upper_open: bool = False) -> None:
    assert torch.isfinite(x).all()
    assert (x >= 0).all()
    assert (x < 1).all() if upper_open else (x <= 1).all()


# ---------------------------------------------------------------------------------------
# bounds under random and adversarial inputs

stat_values = st.floats(0.0, 1e30) | st.sampled_from([0.0, 1e-30, 1.0, 1e30])


@PROPERTY
@given(
    seed=st.integers(0, 2**16),
    mel_scales=st.tuples(*[st.sampled_from([0.0, 1e-20, 1.0, 1e10, 1e30])] * 2),
    pred_stats=st.lists(stat_values, min_size=5, max_size=5),
    target_stats=st.lists(stat_values, min_size=5, max_size=5),
)
def test_audio_terms_bounded(seed, mel_scales, pred_stats, target_stats):
    pred = synthetic_features(3, seed, mel_scales[0], pred_stats)
    target = synthetic_features(1, seed + 1, mel_scales[1], target_stats)
    terms = audio_terms(pred, target, CFG)
    assert list(terms) == list(AUDIO_TERMS)
    for value in terms.values():
        assert value.shape == (3,)
        assert_unit(value)


any_float = st.floats(allow_nan=True, allow_infinity=True, width=32)
extreme_float = any_float | st.sampled_from([0.0, -0.0, 1e-38, 1e30, -1e30])


@PROPERTY
@given(data=st.data(), w=st.integers(4, 12), d=st.integers(1, 3), fill=extreme_float)
def test_optimizer_terms_bounded(data, w, d, fill):
    values = data.draw(st.lists(extreme_float, min_size=2 * w * d, max_size=2 * w * d))
    updates = torch.tensor(values).view(2, w, d)
    grad_norms = torch.tensor(values[: 2 * w]).view(2, w)
    for u in (updates, updates.norm(dim=-1), torch.full((2, w, d), fill)):
        terms = optimizer_terms(grad_norms, u, CFG)
        for value in terms.values():
            assert value.shape == (2,)
            assert_unit(value)
        for factor in resonance_factors(u, CFG):
            assert_unit(factor)


@PROPERTY
@given(
    data=st.data(),
    w=st.integers(4, 12),
    k=st.integers(1, 3),
    magnitude=st.sampled_from([0.0, 1e-6, 1.0, 1e6]),
)
def test_policy_terms_bounded(data, w, k, magnitude):
    values = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=2 * w * k, max_size=2 * w * k))
    trajectory = magnitude * torch.tensor(values).view(2, w, k)
    for value in policy_terms(trajectory, CFG).values():
        assert value.shape == (2,)
        assert_unit(value)


@PROPERTY
@given(
    loudness=st.lists(any_float, min_size=3, max_size=3),
    delta=st.lists(st.floats(-1e30, 1e30), min_size=6, max_size=6),
)
def test_penalties_bounded(loudness, delta):
    out = penalties(torch.tensor(loudness), torch.tensor(delta).view(3, 2), CFG)
    assert list(out) == ["pen/loudness", "pen/slew"]
    for value in out.values():
        assert value.shape == (3,)
        assert_unit(value)


@PROPERTY
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([0.0, 1e-3, 1.0, 1e3]))
def test_total_within_bounds_and_sums(seed, scale):
    g = torch.Generator().manual_seed(seed)
    reward = CompositeReward()
    pred = synthetic_features(4, seed, scale, [100.0, 3000.0, 0.1, 20.0, 3.0])
    target = synthetic_features(4, seed + 1, 1.0, [500.0, 2000.0, 0.5, 10.0, -20.0])
    out = reward(pred, target, **all_inputs(4, g, scale))
    low, high = reward.bounds()
    assert torch.isfinite(out.total).all()
    assert (out.total >= low).all() and (out.total <= high).all()
    assert torch.allclose(torch.stack(list(out.terms.values())).sum(0), out.total)


# ---------------------------------------------------------------------------------------
# audio reward


def test_identical_sound_gives_maximal_audio_reward(encoder):
    audio = torch.stack([sine(440.0), saw(220.0), 0.3 * torch.randn(N_SAMPLES)])
    feats = encoder(audio)
    out = CompositeReward(RewardConfig(audio_mode="cost"), AUDIO_ONLY)(feats, feats)
    for name in ("aud/mel", "aud/centroid", "aud/rolloff", "aud/flatness", "aud/peakiness"):
        assert torch.allclose(out.raw[name], torch.ones(3)), name
    assert (out.group_total("aud") == 0).all()  # no shortfall: the best the cost can be
    assert torch.allclose(audio_similarity(feats, feats), torch.full((3,), CFG.w_aud))


def test_audio_reward_rises_toward_target_pitch(encoder):
    target = encoder(sine(440.0)[None])
    octaves_off = [2.0, 1.0, 0.5, 0.1, 0.0]
    pred = encoder(torch.stack([sine(440.0 * 2**x) for x in octaves_off]))
    r_aud = audio_similarity(pred, target)
    assert (r_aud.diff() > 0).all(), r_aud
    assert r_aud[-1] == pytest.approx(CFG.w_aud)


def test_audio_reward_rises_as_mix_approaches_target(encoder):
    noise = 0.3 * torch.randn(N_SAMPLES, generator=torch.Generator().manual_seed(0))
    target = encoder(saw(220.0)[None])
    mixes = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
    pred = encoder(torch.stack([(1 - a) * noise + a * saw(220.0) for a in mixes]))
    r_aud = audio_similarity(pred, target)
    assert (r_aud.diff() > 0).all(), r_aud


def test_silence_is_handled(encoder):
    silence = torch.zeros(2, N_SAMPLES)
    reward = CompositeReward(RewardConfig(audio_mode="cost"), AUDIO_ONLY)
    assert torch.allclose(
        audio_similarity(encoder(silence), encoder(silence[:1])), torch.full((2,), CFG.w_aud)
    )
    vs_sine = reward(encoder(silence), encoder(sine(440.0)[None]))
    low, high = reward.bounds()
    assert torch.isfinite(vs_sine.total).all()
    assert ((vs_sine.total >= low) & (vs_sine.total < high)).all()


def test_audio_reward_gradient_flows(encoder):
    audio = (0.3 * torch.randn(2, N_SAMPLES)).requires_grad_()
    reward = CompositeReward(RewardConfig(audio_mode="cost"), AUDIO_ONLY)
    out = reward(encoder(audio), encoder(sine(440.0)[None]))
    out.group_total("aud").sum().backward()
    assert audio.grad is not None
    assert torch.isfinite(audio.grad).all()
    assert audio.grad.abs().sum() > 0


def test_float64_features(encoder):
    audio = torch.stack([sine(440.0), saw(110.0)]).double()
    reward = CompositeReward(RewardConfig(audio_mode="cost"), AUDIO_ONLY)
    out = reward(encoder.double()(audio), encoder(audio[:1]))
    assert out.total.dtype == torch.float64
    encoder.float()


# ---------------------------------------------------------------------------------------
# optimizer terms


def test_resonance_ranks_coherent_above_stagnant_and_diverging():
    coherent = oscillation()
    damped = oscillation(growth=0.97)
    stagnant = oscillation(amp=1e-7)
    zeros = torch.zeros_like(coherent)
    diverging = oscillation(growth=1.2)
    updates = torch.cat([coherent, damped, stagnant, zeros, diverging])
    for seq in (updates, updates.norm(dim=-1)):  # update vectors and update norms
        score = resonance_score(seq, CFG)
        assert score[0] > 0.8 and score[1] > 0.8
        assert score[0] > 10 * score[2:].max(), score


def test_resonance_factors_identify_the_failure():
    f = resonance_factors(torch.cat([oscillation(amp=1e-7), oscillation(growth=1.2)]), CFG)
    assert f.activity[0] < 1e-3 and f.boundedness[0] > 0.99  # stagnation
    assert f.boundedness[1] < 1e-3 and f.activity[1] > 0.99  # divergence
    steady = resonance_factors(torch.full((1, 32, 5), 0.01), CFG)  # steady descent
    assert steady.coherence[0] < 1e-3


def test_grad_norm_score_is_a_decreasing_sigmoid():
    norms = torch.tensor([0.0, 0.01, 0.1, 1.0, 10.0, 1e6, math.inf, math.nan])[:, None]
    score = grad_norm_score(norms, CFG)
    assert (score[:-2].diff() < 0).all()
    assert score[3] == pytest.approx(0.5)
    assert score[-2] < 1e-6 and score[-1] < 1e-6


def test_update_norm_score_prefers_small_updates():
    score = update_norm_score(torch.tensor([0.0, 0.01, 0.1, 1.0])[:, None].expand(4, 8), CFG)
    assert score[0] == 1.0 and (score.diff() < 0).all()


# ---------------------------------------------------------------------------------------
# policy terms


def test_periodicity_ranks_periodic_above_random_walk():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(32, dtype=torch.float32)[:, None]
    periodic = 0.5 + 0.3 * torch.sin(2 * math.pi * t / 10 + torch.arange(3))
    walks = (0.5 + 0.05 * torch.randn(16, 32, 3, generator=g).cumsum(1)).clamp(0, 1)
    ramp = torch.linspace(0, 1, 32)[:, None].expand(32, 3)
    score = periodicity_score(torch.cat([periodic[None], ramp[None], walks]), CFG)
    assert score[0] > 0.9
    assert score[0] > score[1:].max() + 0.3, score


def test_diversity_grows_with_spread():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 16, 3, generator=g) - 0.5
    spreads = torch.tensor([0.0, 0.01, 0.1, 0.5])[:, None, None]
    score = diversity_score(0.5 + spreads * base, CFG)
    assert score[0] == 0.0 and (score.diff() > 0).all()


# ---------------------------------------------------------------------------------------
# penalties


def test_loudness_penalty_zero_inside_cap_and_growing_outside():
    cap = CFG.loudness_cap_dbfs
    inside = torch.tensor([-160.0, -60.0, cap - 1.0, cap])
    outside = cap + torch.tensor([0.1, 1.0, 3.0, 6.0, 12.0])
    assert (penalties(inside, None, CFG)["pen/loudness"] == 0).all()
    pen = penalties(outside, None, CFG)["pen/loudness"]
    assert (pen > 0).all() and (pen.diff() > 0).all() and (pen < 1).all()
    far = penalties(torch.tensor([cap + 40.0, 1e30]), None, CFG)["pen/loudness"]
    assert (far >= pen[-1]).all() and (far <= 1).all()  # saturates at 1


def test_slew_penalty_zero_inside_limit_and_growing_outside():
    limit = CFG.slew_limit_unit
    loud = torch.full((4,), -30.0)
    inside = torch.tensor([[0.0, 0.0], [limit, -limit], [-0.5 * limit, 0.9 * limit], [0, -limit]])
    assert (penalties(loud, inside, CFG)["pen/slew"] == 0).all()
    moves = limit + torch.tensor([0.01, 0.05, 0.1, 0.3])
    outside = torch.stack([moves, torch.zeros(4)], -1)
    pen = penalties(loud, -outside, CFG)["pen/slew"]
    assert (pen > 0).all() and (pen.diff() > 0).all() and (pen < 1).all()


def test_violation_counts_only_above_the_tolerance(encoder):
    """Float rounding at the slew limit is no violation; a real excess is (v0 counted
    |term| <= 7.5e-14 as violations)."""
    reward = CompositeReward(RewardConfig(audio_mode="cost"), (*AUDIO_ONLY, "pen/slew"))
    feats = encoder(torch.stack([sine(440.0, amp=0.1)] * 3))
    limit = CFG.slew_limit_unit
    delta = torch.tensor([[limit + 1e-7, 0.0], [limit + 1e-4, 0.0], [limit + 0.05, 0.0]])
    out = reward(feats, feats, knob_delta=delta)
    assert out.raw["pen/slew"][0] > 0  # the penalty itself is not hidden
    assert out.violation.tolist() == [False, False, True]
    loud = encoder(torch.stack([sine(440.0, amp=1.0)] * 3))  # −3 dBFS, over the cap
    assert reward(loud, loud, knob_delta=torch.zeros(3, 2)).violation.all()


# ---------------------------------------------------------------------------------------
# composite breakdown


def test_breakdown_sums_to_total_and_matches_coefficients(encoder):
    g = torch.Generator().manual_seed(1)
    loud = torch.stack([sine(440.0, amp=1.0), 0.9 * torch.randn(N_SAMPLES, generator=g)])
    reward = CompositeReward()
    inputs = all_inputs(2, g)
    inputs["knob_delta"] = torch.tensor([[0.0, 0.5], [0.01, 0.0]])
    inputs["success"] = torch.tensor([True, False])
    pred, target = encoder(loud), encoder(sine(330.0)[None])
    out = reward(pred, target, **inputs)
    assert list(out.terms) == list(TERM_NAMES) == list(out.raw)
    assert torch.allclose(torch.stack(list(out.terms.values())).sum(0), out.total)
    c = CFG.term_coefficients
    scores = reward.audio_scores(pred, target)
    for name in AUDIO_TERMS:  # improvement; a success step counts as a perfect match
        prev = inputs["previous_audio"][name]
        now = torch.stack([torch.tensor(1.0), scores[name][1]])
        assert torch.allclose(out.terms[name], c[name] * (now - prev)), name
    assert out.terms[SUCCESS_TERM].tolist() == [CFG.success_bonus, 0.0]
    for name in ("opt/grad_norm", "opt/resonance", "opt/update_norm", "pol/periodicity"):
        assert torch.allclose(out.terms[name], -c[name] * (1 - out.raw[name])), name
        assert (out.terms[name] <= 0).all()
    for name in ("pen/loudness", "pen/slew", "pen/divergence", "pen/time"):
        assert torch.allclose(out.terms[name], -c[name] * out.raw[name]), name
    assert (out.terms["pen/loudness"] < 0).all()  # both are over the −6 dBFS cap
    assert out.terms["pen/slew"][0] < 0 and out.terms["pen/slew"][1] == 0
    groups = sum(out.group_total(g_) for g_ in ("aud", "opt", "pol", "pen"))
    assert torch.allclose(groups, out.total)


def test_a_term_set_holds_only_its_terms_and_requires_its_inputs(encoder):
    feats = encoder(torch.stack([sine(440.0), saw(110.0)]))
    terms = (*AUDIO_TERMS, "opt/update_norm", "pen/time")
    reward = CompositeReward(RewardConfig(audio_mode="cost"), terms)
    out = reward(feats, feats, updates=torch.zeros(2, 8))
    assert tuple(out.terms) == terms
    # the group weight is the group's whole budget even with one of its terms
    assert reward.coefficients["opt/update_norm"] == pytest.approx(CFG.w_opt)
    with pytest.raises(ValueError, match="updates is required"):
        reward(feats, feats)
    with pytest.raises(ValueError, match="knob_delta was given but no reward term reads it"):
        reward(feats, feats, updates=torch.zeros(2, 8), knob_delta=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="previous_audio is required"):
        CompositeReward(CFG, terms)(feats, feats, updates=torch.zeros(2, 8))
    with pytest.raises(ValueError, match="unknown reward terms"):
        CompositeReward(CFG, (*AUDIO_TERMS, "pen/kl"))
    with pytest.raises(ValueError, match="every audio term"):
        CompositeReward(CFG, ("aud/mel",))


def test_improvement_telescopes_and_success_dominates_hovering(encoder):
    """Over any sequence of states the improvement terms sum to the last minus the first
    score, so wiggling earns nothing; with a success at T the bonus beats any
    hovering return within T* = aligned_steps()."""
    reward = CompositeReward(CFG, (*AUDIO_TERMS, SUCCESS_TERM, "pen/loudness", "pen/time"))
    target = encoder(saw(220.0)[None])
    freqs = [330.0, 240.0, 300.0, 230.0, 260.0, 225.0, 250.0]  # near, never on
    states = [encoder(saw(f)[None]) for f in freqs]
    prev = reward.audio_scores(states[0], target)
    total = 0.0
    for st_ in states[1:]:
        out = reward(st_, target, previous_audio=prev, success=torch.tensor([False]))
        total += float(out.group_total("aud"))
        prev = out.audio_scores
    first = audio_similarity(states[0], target)
    last = audio_similarity(states[-1], target)
    assert total == pytest.approx(float(last - first), abs=1e-5)
    t_star = reward.aligned_steps()
    assert t_star == pytest.approx(CFG.success_bonus / CFG.w_pen_loudness)
    low, high = reward.bounds()
    assert high == pytest.approx(CFG.w_aud + CFG.success_bonus - CFG.w_pen_time)
    assert low == pytest.approx(-(CFG.w_aud + CFG.w_pen_loudness + CFG.w_pen_time))


def test_bounds_follow_weights():
    cfg = RewardConfig(w_aud=2.0, w_opt=0.0, w_pol=1.0, w_pen_slew=0.25, w_pol_diversity=0.0)
    low, high = CompositeReward(cfg).bounds()
    coeffs = cfg.term_coefficients
    assert high == pytest.approx(2.0 + cfg.success_bonus - cfg.w_pen_time)
    pens = cfg.w_pen_loudness + 0.25 + cfg.w_pen_divergence + cfg.w_pen_time
    assert low == pytest.approx(-(2.0 + 1.0 + pens))
    assert coeffs["pol/periodicity"] == pytest.approx(1.0) and coeffs["pol/diversity"] == 0
    assert coeffs["aud/mel"] == pytest.approx(2.0 * 2.0 / 5.0)
    cost = CompositeReward(RewardConfig(audio_mode="cost"), AUDIO_ONLY).bounds()
    assert cost.high == pytest.approx(-CFG.w_pen_time)


# ---------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("w_aud", -1.0),
        ("w_pen_time", math.inf),
        ("success_bonus", -1.0),
        ("violation_tolerance", 2.0),
        ("w_aud_mel", -0.5),
        ("mel_distance_scale", 0.0),
        ("centroid_scale_oct", -1.0),
        ("grad_norm_threshold", math.nan),
        ("flatness_floor", 2.0),
        ("resonance_max_lag_fraction", 1.0),
        ("periodicity_max_lag_fraction", 0.0),
        ("loudness_cap_dbfs", 100.0),
        ("slew_limit_unit", -0.1),
    ],
)
def test_bad_config_raises_naming_field(field, value):
    with pytest.raises(ValueError, match=field) as info:
        RewardConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_wrong_shapes_raise(encoder):
    feats = encoder(torch.stack([sine(440.0), saw(110.0)]))
    reward = CompositeReward()
    good_w = torch.rand(2, 8)
    good = all_inputs(2, torch.Generator().manual_seed(0))
    bad_calls = {
        "grad_norms": dict(grad_norms=torch.rand(2)),
        "updates": dict(updates=torch.rand(2, 3)),  # window < 4
        "updates ": dict(updates=torch.rand(2, 8, 3, 1)),
        "updates  ": dict(updates=torch.rand(3, 8)),  # batch
        "knob_trajectory": dict(knob_trajectory=good_w),
        "knob_trajectory ": dict(knob_trajectory=torch.rand(2, 3, 2)),
        "knob_delta": dict(knob_delta=torch.rand(3, 2)),
        "knob_delta ": dict(knob_delta=torch.rand(2)),
        "success": dict(success=torch.ones(2, 1, dtype=torch.bool)),
        "diverged": dict(diverged=torch.ones(3, dtype=torch.bool)),
    }
    for key, kwargs in bad_calls.items():
        with pytest.raises(ValueError, match=key.strip()):
            reward(feats, feats, **{**good, **kwargs})
    with pytest.raises(ValueError, match="batch"):
        reward(feats, encoder(torch.zeros(3, N_SAMPLES)), **good)
    with pytest.raises(ValueError, match="knob_trajectory"):
        reward(feats, feats, **{**good, "knob_trajectory": torch.full((2, 8, 2), math.nan)})
