import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import aegym  # noqa: F401
from aegym.controller import alpha_factor, next_alpha, next_momentum, next_sigma
from aegym.envs import SUCCESS_DISTANCE
from aegym.envs import scheduler as sched
from aegym.envs.policies import AELawPolicy
from aegym.envs.scheduler import (
    HOLD_ACTION,
    SCHEDULER_TERMS,
    SIGNAL_NAMES,
    Gains,
    SchedulerConfig,
    SchedulerCore,
    apply_gain_action,
    decode_observation,
    draw_starts,
    run_constant_gains,
    symexp,
    symlog,
)
from aegym.reward import OPTIMIZER_TERMS

pytestmark = pytest.mark.usefixtures("one_thread")

ENV_ID = "AEGym/SchedulerGains-v1"
HOLD = np.array(HOLD_ACTION, np.float32)
COL = {n: i for i, n in enumerate(SIGNAL_NAMES)}


def make(**kw):
    kw.setdefault("duration_s", 0.25)
    return gym.make(ENV_ID, **kw)


def test_gain_actions_follow_their_formulas():
    cfg = SchedulerConfig()
    g = Gains(torch.tensor([0.1]), torch.tensor([0.9]), torch.tensor([1e-3]))
    new = apply_gain_action(g, torch.tensor([[1.0, 1.0, -1.0, 0.0]]), cfg)
    assert float(new.alpha) == pytest.approx(0.2)
    assert float(new.momentum) == pytest.approx(0.95)
    assert float(new.sigma) == pytest.approx(2.5e-4)
    clipped = apply_gain_action(g, torch.tensor([[50.0, -50.0, 50.0, 0.0]]), cfg)
    assert float(clipped.alpha) == pytest.approx(0.2) and float(clipped.sigma) == pytest.approx(
        4e-3
    )


def test_symlog_round_trip():
    x = torch.tensor([-1e3, -0.01, 0.0, 1e-6, 0.5, 1e4], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x, 100.0), 100.0), x)


def test_v1_defaults_and_spec():
    env = make()
    cfg = env.unwrapped.config
    assert cfg.success_distance == SUCCESS_DISTANCE["easy"]
    assert env.unwrapped.core.reward_fn.terms == SCHEDULER_TERMS
    assert not any(t.startswith("pol/") or t == "pen/slew" for t in SCHEDULER_TERMS)
    assert env.spec.reward_threshold == 1.0 and env.spec.max_episode_steps == 20
    assert env.observation_space.shape == (len(SIGNAL_NAMES),)


def test_alpha0_is_drawn_per_episode_from_the_env_rng():
    env = make()
    cfg = env.unwrapped.config
    lo, hi = (cfg.alpha0 * m for m in cfg.alpha0_range)
    draws = []
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        a0 = info["alpha0_ep"]
        assert lo <= a0 <= hi and info["gains"]["alpha"] == pytest.approx(a0)
        # The alpha column stays relative to the reference α0.
        assert obs[COL["alpha"]] == pytest.approx(math.log2(a0 / cfg.alpha0), abs=1e-5)
        draws.append(a0)
    assert max(draws) / min(draws) > 10  # spread over more than a decade
    assert env.reset(seed=3)[1]["alpha0_ep"] == draws[3]
    # alpha_range must contain the drawn range.
    with pytest.raises(ValueError, match="contain"):
        SchedulerConfig(alpha0_range=(0.1, 20.0))
    fixed = make(alpha0_range=(1.0, 1.0))
    assert fixed.reset(seed=0)[1]["alpha0_ep"] == pytest.approx(0.1)


def test_observation_decodes_to_the_env_signals():
    env = make()
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, _, _, _, info = env.step(np.array([0.5, -0.3, 0.2, 1.0], np.float32))
    d = decode_observation(obs, env.unwrapped.config)
    sig, gains = info["signals"], info["gains"]
    assert obs.shape == (len(SIGNAL_NAMES),)
    assert float(d.alpha[0]) == pytest.approx(gains["alpha"], rel=1e-5)
    assert float(d.momentum[0]) == pytest.approx(gains["momentum"], rel=1e-4)
    assert float(d.sigma[0]) == pytest.approx(gains["sigma"], rel=1e-4)
    assert float(d.delta_loss[0]) == pytest.approx(sig["delta_loss"], rel=1e-3, abs=1e-7)
    assert float(d.variance[0]) == pytest.approx(sig["variance"], rel=1e-3, abs=1e-9)
    assert int(d.plateau_count[0]) == sig["plateau_count"]


def test_reward_terms_sum_to_the_reward_and_are_read_from_the_observation():
    """Markov: the opt terms read this step's inner steps only, summarized in the obs;
    the audio terms are the change of the observed audio score."""
    env = make(success_distance=1e-6)
    core = env.unwrapped.core
    cfg = env.unwrapped.config
    seen = []
    real = core.reward_fn

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def __call__(self, *args, **kw):
            seen.append((kw["grad_norms"].shape, kw["updates"].shape))
            return real(*args, **kw)

    core.reward_fn = Spy()
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            prev = obs
            obs, reward, _, _, info = env.step(HOLD)
            terms = info["reward_terms"]
            assert set(terms) == set(SCHEDULER_TERMS)
            assert reward == pytest.approx(sum(terms.values()), abs=1e-5)
            audio = sum(v for k, v in terms.items() if k.startswith("aud/"))
            score = obs[COL["audio_score"]] - prev[COL["audio_score"]]
            assert audio == pytest.approx(score, abs=1e-5)
            opt = sum(terms[n] for n in OPTIMIZER_TERMS)
            w_opt = cfg.reward.w_opt
            assert opt == pytest.approx(-w_opt * (1 - obs[COL["opt_health"]]), abs=1e-6)
    finally:
        core.reward_fn = real
    assert seen == [((1, cfg.inner_steps), (1, cfg.inner_steps, core.n_free))] * 3
    with pytest.raises(ValueError, match="inner_steps"):
        SchedulerConfig(inner_steps=3)


def test_law_policy_matches_the_controller_law_on_recorded_signals():
    env = make()
    cfg = env.unwrapped.config
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        obs, _, _, _, info = env.step(np.zeros(4, np.float32))
    sig, g = info["signals"], info["gains"]
    act = AELawPolicy(cfg)(obs)
    law = cfg.law
    a_new = next_alpha(
        g["alpha"], alpha_factor(sig["delta_loss"], sig["variance"], law), cfg.alpha0, law
    )
    mu_new = next_momentum(g["momentum"], sig["delta_reward"], law)
    s_new = next_sigma(g["sigma"], sig["plateau_count"], sig["variance"], sig["success_rate"], law)
    expected = [
        math.log2(a_new / g["alpha"]),
        -math.log2((1 - mu_new) / (1 - g["momentum"])),
        math.log(s_new / g["sigma"]) / math.log(4.0),
    ]
    np.testing.assert_allclose(act[:3], np.clip(expected, -1, 1), atol=2e-3)


def test_ae_law_lowers_distance_and_random_does_worse():
    """With an aggressive start (α = α0 = 0.3, no α0 draw) the law's job is to tame the
    rate (the regime the law is designed for)."""
    env = make(success_distance=1e-3, alpha0=0.3, alpha0_range=(1.0, 1.0))
    law = AELawPolicy(env.unwrapped.config)
    finals = {"law": [], "random": []}
    starts = []
    for ep in range(6):
        for name in finals:
            obs, info = env.reset(seed=100 + ep)
            env.action_space.seed(ep)
            if name == "law":
                starts.append(info["distance"])
            for _ in range(10):
                act = law(obs) if name == "law" else env.action_space.sample()
                obs, _, _, _, info = env.step(act)
            finals[name].append(info["distance"])
    assert np.mean(finals["law"]) < 0.5 * np.mean(starts)
    assert np.mean(finals["law"]) < 0.75 * np.mean(finals["random"])


def episode_return(env, seed, hover_at=None):
    """Return and success of a scripted episode: hold the gains (α = α0), or, with
    ``hover_at``, halve α every step once the distance is below ``hover_at·success``."""
    sd = env.unwrapped.config.success_distance
    _, info = env.reset(seed=seed)
    total, slow = 0.0, np.array([-1.0, 0.0, 0.0, -1.0], np.float32)
    while True:
        near = hover_at is not None and info["distance"] < hover_at * sd
        _, r, term, trunc, info = env.step(slow if near else HOLD)
        total += r
        if term or trunc:
            return total, info["is_success"]


def test_finishing_on_success_earns_more_than_hovering():
    env = make(alpha0_range=(1.0, 1.0))
    threshold = env.spec.reward_threshold
    fast, fast_ok = episode_return(env, 0)
    hover, hover_ok = episode_return(env, 0, hover_at=5.0)  # slows before it gets there
    assert fast_ok and not hover_ok
    assert fast > hover
    assert fast >= threshold > hover
    bound = env.unwrapped.core.reward_fn
    assert bound.aligned_steps() > env.spec.max_episode_steps


def test_local_test_compares_probes_with_the_loss_at_the_same_theta(monkeypatch):
    """The env path: every local test gets the distance of the θ it probes."""
    env = make(inner_steps=4)
    core = env.unwrapped.core
    real = sched.plant.local_test
    calls = []

    def spy(theta, loss, noise, evaluate, cfg, bounds=None, mask=None):
        fresh = core.render_distance(theta)[0]
        calls.append((loss.clone(), fresh))
        return real(theta, loss, noise, evaluate, cfg, bounds=bounds, mask=mask)

    monkeypatch.setattr(sched.plant, "local_test", spy)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    assert len(calls) == 3  # one per env step, in its last inner step
    for loss, fresh in calls:
        torch.testing.assert_close(loss, fresh, rtol=1e-5, atol=1e-6)


def test_dense_local_tests_give_the_same_episodes(monkeypatch):
    """The accelerator path (every episode's probes rendered in the last inner step,
    verdicts masked, no host sync) plays the same episodes as the CPU path."""
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 3, 4)).astype(np.float32)
    actions[:, 0, 3] = -1.0  # a step where no episode tests

    def play():
        envs = gym.make_vec(
            ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", duration_s=0.25
        )
        obs, _ = envs.reset(seed=5)
        out = [obs]
        for a in actions:
            obs, reward, *_ = envs.step(a)
            out += [obs, reward]
        envs.close()
        return out

    sparse = play()
    asked = []
    monkeypatch.setattr(sched.plant, "dense_probes", lambda device: asked.append(device) or True)
    dense = play()
    assert len(asked) >= 2 * len(actions)  # the env step and its local tests asked
    for a, b in zip(sparse, dense, strict=True):
        np.testing.assert_array_equal(a, b)


def test_truncates_after_episode_steps():
    env = make(episode_steps=2, inner_steps=4, success_distance=1e-6)
    env.reset(seed=0)
    assert env.step(HOLD)[3] is False
    _, _, term, trunc, _ = env.step(HOLD)
    assert trunc and not term


def test_nan_loss_diverges_rolls_back_and_never_leaks_nan():
    env = make(inner_steps=4, success_distance=1e-6)
    obs, _ = env.reset(seed=0)
    core = env.unwrapped.core
    env.step(HOLD)
    good_knobs = core.knobs.clone()
    real_render = core.render_distance

    def nan_render(free, rows=None):
        loss, audio, feats = real_render(free, rows)
        return loss * float("nan"), audio, feats

    core.render_distance = nan_render
    obs, reward, term, trunc, info = env.step(HOLD)
    core.render_distance = real_render
    assert info["diverged"] and term and not trunc and not info["is_success"]
    assert np.isfinite(obs).all() and np.isfinite(reward)
    torch.testing.assert_close(core.knobs, good_knobs)  # rolled back, not NaN
    terms = info["reward_terms"]
    assert terms["pen/divergence"] == pytest.approx(-env.unwrapped.config.reward.w_pen_divergence)
    assert reward == pytest.approx(sum(terms.values()), abs=1e-5)


def test_loss_spike_counts_as_divergence():
    env = make(inner_steps=4, success_distance=1e-6)
    env.reset(seed=0)
    core = env.unwrapped.core
    env.step(HOLD)
    real_render = core.render_distance
    factor = env.unwrapped.config.divergence_factor

    def spiking_render(free, rows=None):
        loss, audio, feats = real_render(free, rows)
        return loss * (10 * factor), audio, feats

    core.render_distance = spiking_render
    info = env.step(HOLD)[4]
    core.render_distance = real_render
    assert info["diverged"] and info["reward_terms"]["pen/divergence"] < 0


def test_local_test_action_feeds_the_success_rate():
    env = make()
    env.reset(seed=0)
    before = env.step(HOLD)[4]["signals"]["success_rate"]
    after = env.step(np.array([0, 0, 0, 1.0], np.float32))[4]["signals"]["success_rate"]
    assert after != before


def test_constant_gain_runs_reuse_the_env_dynamics():
    """run_constant_gains (batched, the headroom script's and the oracle's engine) gives
    the single env's episode for the same seed and α."""
    env = make(episode_steps=3, success_distance=1e-6)
    cfg, targets = env.unwrapped.config, env.unwrapped.targets
    core = SchedulerCore(cfg, targets, 2)
    starts = draw_starts(core, [4, 5], [1, 2])
    res = run_constant_gains(cfg, targets, starts, [0.05, 0.2], max_batch=3)
    assert res.distance.shape == (2, 2)
    for g, alpha in enumerate([0.05, 0.2]):
        for e, seed in enumerate([4, 5]):
            _, info = env.reset(seed=seed, options={"target_index": e + 1})
            assert info["alpha0_ep"] == pytest.approx(float(starts.alpha0_ep[e]))
            env.unwrapped.core.gains = env.unwrapped.core.gains._replace(
                alpha=torch.tensor([alpha])
            )
            total = 0.0
            for _ in range(3):
                _, r, _, _, info = env.step(HOLD)
                total += r
            assert float(res.distance[g, e]) == pytest.approx(info["distance"], abs=1e-4)
            assert float(res.returns[g, e]) == pytest.approx(total, abs=1e-4)
    default = run_constant_gains(cfg, targets, starts)
    assert default.distance.shape == (1, 2)


def test_bad_config():
    with pytest.raises(ValueError, match="inner_steps"):
        make(inner_steps=0)
    with pytest.raises(ValueError, match="alpha_range"):
        SchedulerConfig(alpha_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="divergence_factor"):
        SchedulerConfig(divergence_factor=0.5)
