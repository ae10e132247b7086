"""Baselines: SB3 predict shapes, the AE baseline equals the controller's law, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

import aegym  # noqa: F401  (registers the ids)
from aegym.envs.policies import AEGradientPolicy
from aegym.envs.scheduler import SIGNAL_NAMES, ae_law_action
from agents.baselines import (
    AdamBaseline,
    AEBaseline,
    RandomBaseline,
    StaticBaseline,
    make_baseline,
)
from agents.common.envs import FAST_ENV_KWARGS, make_vec_env

SM = "AEGym/SoundMatch-Easy-v1"
SG = "AEGym/SchedulerGains-v1"
LIVE = "AEGym/SoundMatchLive-v1"


def _kw(env_id: str) -> dict:
    return {**FAST_ENV_KWARGS[env_id], "target": "test"}


def test_ae_scheduler_single_env_equals_law() -> None:
    env = gym.make(SG, **_kw(SG))
    agent = AEBaseline(env)
    obs, _ = env.reset(seed=3)
    for _ in range(6):
        action, state = agent.predict(obs, episode_start=np.array([False]))
        assert state is None
        assert action.shape == (4,)
        np.testing.assert_array_equal(action, ae_law_action(obs, env.unwrapped.config)[0])
        obs, *_ = env.step(action)
    env.close()


@pytest.mark.parametrize("native", [False, True])
def test_ae_scheduler_vec_env_equals_law(native: bool) -> None:
    venv = make_vec_env(SG, 2, seed=1, native=native, **_kw(SG))
    agent = AEBaseline(venv)
    obs = venv.reset()
    config = (venv.unwrapped.core if native else venv.envs[0].unwrapped).config
    starts = np.ones(2, dtype=bool)
    for _ in range(4):
        action, _ = agent.predict(obs, episode_start=starts)
        assert action.shape == (2, 4)
        np.testing.assert_array_equal(action, ae_law_action(obs, config))
        obs, _, starts, _ = venv.step(action)
    venv.close()


@pytest.mark.parametrize("env_id", [SM, LIVE])
def test_ae_knob_single_env_equals_gradient_policy(env_id: str) -> None:
    """AEBaseline on one env takes the actions AEGradientPolicy takes on a twin env."""
    env_a, env_b = gym.make(env_id, **_kw(env_id)), gym.make(env_id, **_kw(env_id))
    agent = AEBaseline(env_a, alpha0=0.05, seed=0)
    law = AEGradientPolicy(env_b.unwrapped.core, alpha0=0.05, seed=0)
    obs_a, _ = env_a.reset(seed=5, options={"target_index": 2})
    obs_b, _ = env_b.reset(seed=5, options={"target_index": 2})
    start = True
    for _ in range(5):
        act_a, _ = agent.predict(obs_a, episode_start=np.array([start]))
        act_b = law(obs_b, np.array([start]))
        start = False
        assert act_a.shape == env_a.action_space.shape
        np.testing.assert_array_equal(act_a, act_b)
        assert np.abs(act_a).max() > 0  # it does move the knobs
        obs_a, *_ = env_a.step(act_a)
        obs_b, *_ = env_b.step(act_b)
        np.testing.assert_array_equal(obs_a, obs_b)


def test_ae_knob_dummy_vec_env_one_policy_per_env() -> None:
    kw = _kw(SM)
    venv = DummyVecEnv([lambda: gym.make(SM, **kw) for _ in range(2)])
    venv.seed(11)
    obs = venv.reset()
    agent = AEBaseline(venv)
    laws = [AEGradientPolicy(e.unwrapped.core, seed=i) for i, e in enumerate(venv.envs)]
    starts = np.ones(2, dtype=bool)
    for _ in range(3):
        act, _ = agent.predict(obs, episode_start=starts)
        expected = np.concatenate(
            [law(obs[i : i + 1], starts[i : i + 1]) for i, law in enumerate(laws)]
        )
        np.testing.assert_array_equal(act, expected)
        obs, _, starts, _ = venv.step(act)
    with pytest.raises(ValueError, match="acts on the 2 episode"):
        agent.predict(obs[:1])


def test_ae_knob_native_vec_env() -> None:
    venv = make_vec_env(SM, 3, seed=0, native=True, **_kw(SM))
    agent = AEBaseline(venv)
    obs = venv.reset()
    act, _ = agent.predict(obs, episode_start=np.ones(3, dtype=bool))
    assert act.shape == (3, 4) and act.dtype == np.float32
    assert np.all(np.abs(act) <= 1.0)
    venv.close()


def test_random_and_static_shapes() -> None:
    env = gym.make(SM, **_kw(SM))
    rnd = RandomBaseline(env.observation_space, env.action_space, seed=0)
    obs, _ = env.reset(seed=0)
    a, _ = rnd.predict(obs)
    assert a.shape == (4,) and env.action_space.contains(a)
    batch, _ = rnd.predict(np.stack([obs, obs, obs]))
    assert batch.shape == (3, 4)
    rnd.reset()
    again, _ = RandomBaseline(env.observation_space, env.action_space, seed=0).predict(obs)
    np.testing.assert_array_equal(rnd.predict(obs)[0], again)
    static = StaticBaseline(env.observation_space, env.action_space)
    np.testing.assert_array_equal(static.predict(obs)[0], np.zeros(4, np.float32))
    start = env.unwrapped.core.knobs.clone()
    env.step(static.predict(obs)[0])
    assert bool((env.unwrapped.core.knobs == start).all())


def test_adam_baseline_holds_constant_lr_and_no_dither() -> None:
    env = gym.make(SG, **_kw(SG))
    agent = AdamBaseline(env.observation_space, env.action_space, lr_multiplier=4.0)
    obs, _ = env.reset(seed=0)
    cfg = env.unwrapped.config
    for _ in range(8):
        action, _ = agent.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            break
    assert info["gains"]["alpha"] == pytest.approx(4.0 * cfg.alpha0, rel=1e-5)
    assert info["gains"]["momentum"] == pytest.approx(cfg.law.momentum0, rel=1e-6)
    assert info["gains"]["sigma"] == pytest.approx(cfg.sigma_range[0], rel=1e-5)
    assert action[3] == -1.0  # never runs local tests
    assert obs[SIGNAL_NAMES.index("alpha")] == pytest.approx(2.0, abs=1e-5)


def test_make_baseline_errors() -> None:
    env = gym.make(SM, **_kw(SM))
    with pytest.raises(ValueError, match=r"unknown baseline 'nope'.*ae, random, static, adam"):
        make_baseline("nope", env)
    with pytest.raises(ValueError, match="only exists for AEGym/SchedulerGains-v1"):
        make_baseline("adam", env)
    with pytest.raises(ValueError, match="lr_multiplier must be"):
        AdamBaseline(env.observation_space, env.action_space, lr_multiplier=0.0)
    with pytest.raises(TypeError, match="aegym env"):
        AEBaseline(gym.make("CartPole-v1"))
    assert isinstance(make_baseline("static", env), StaticBaseline)
