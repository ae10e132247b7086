"""Env construction for agents: id checks, vector envs, per-episode resets."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from aegym.envs import SUCCESS_DISTANCE
from aegym.envs.scheduler import SchedulerConfig
from aegym.envs.sound_match import SoundMatchConfig
from agents.common.envs import (
    ENV_IDS,
    FAST_ENV_KWARGS,
    check_env_id,
    env_config,
    env_family,
    episode_limit,
    is_native,
    make_env,
    make_vec_env,
    reset_episodes,
    success_distance,
)

SM = "AEGym/SoundMatch-Easy-v1"


def test_ids_and_families() -> None:
    assert set(ENV_IDS) == {
        "AEGym/SoundMatch-Easy-v1",
        "AEGym/SoundMatch-Medium-v1",
        "AEGym/SoundMatch-Full-v1",
        "AEGym/SoundMatchLive-v1",
        "AEGym/SchedulerGains-v1",
    }
    assert env_family(SM) == "knob" and env_family("AEGym/SchedulerGains-v1") == "scheduler"
    with pytest.raises(
        ValueError, match=r"unknown env id 'AEGym/Foo-v9'; allowed: AEGym/SoundMatch-Easy-v1"
    ):
        check_env_id("AEGym/Foo-v9")
    with pytest.raises(ValueError, match="n_envs must be a positive integer, got 0"):
        make_vec_env(SM, 0)


@pytest.mark.parametrize("native", [False, True])
def test_reset_episodes_gives_the_same_starts(native: bool) -> None:
    venv = make_vec_env(SM, 3, seed=0, native=native, target="test", **FAST_ENV_KWARGS[SM])
    assert is_native(venv) == native
    assert isinstance(venv, DummyVecEnv) != native
    first = reset_episodes(venv, [7, 8, 7], [5, 6, 5])
    np.testing.assert_array_equal(first[0], first[2])  # same seed and target: same start
    assert not np.array_equal(first[0], first[1])
    venv.step(np.ones((3, 4), np.float32))
    again = reset_episodes(venv, [7, 8, 7], [5, 6, 5])
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="one seed and one target index per sub-env"):
        reset_episodes(venv, [1], [1, 2, 3])
    venv.close()


def test_native_and_dummy_agree() -> None:
    kw = {"target": "test", **FAST_ENV_KWARGS[SM]}
    a = make_vec_env(SM, 2, native=True, **kw)
    b = make_vec_env(SM, 2, native=False, **kw)
    oa, ob = reset_episodes(a, [1, 2], [3, 4]), reset_episodes(b, [1, 2], [3, 4])
    np.testing.assert_allclose(oa, ob, rtol=1e-5, atol=1e-5)
    act = np.full((2, 4), 0.5, np.float32)
    (sa, ra, _, ia), (sb, rb, _, ib) = a.step(act), b.step(act)
    np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ra, rb, rtol=1e-4, atol=1e-4)
    assert set(ia[0]["reward_terms"]) == set(ib[0]["reward_terms"])


@pytest.mark.parametrize("native", [False, True])
def test_settings_are_read_from_the_created_envs_config(native: bool) -> None:
    sg, live = "AEGym/SchedulerGains-v1", "AEGym/SoundMatchLive-v1"
    kw = {sid: {"target": "test", **FAST_ENV_KWARGS[sid]} for sid in (SM, sg, live)}
    venv = make_vec_env(SM, 2, native=native, success_distance=0.7, **kw[SM])
    assert isinstance(env_config(venv), SoundMatchConfig)
    assert success_distance(venv) == 0.7
    venv.close()
    venv = make_vec_env(sg, 1, native=native, episode_steps=7, **kw[sg])
    assert isinstance(env_config(venv), SchedulerConfig)
    assert success_distance(venv) == SchedulerConfig().success_distance == SUCCESS_DISTANCE["easy"]
    assert episode_limit(sg, env_config(venv)) == 7
    venv.close()
    # The live env's calibrated threshold (a window on target).
    env = make_env(live, **kw[live])
    assert success_distance(env) == SUCCESS_DISTANCE["live_easy"]
    assert episode_limit(live, env_config(env)) == gym.spec(live).max_episode_steps
    env.close()


def test_env_config_needs_an_aegym_env() -> None:
    with pytest.raises(TypeError, match="CartPoleEnv is not an aegym env"):
        env_config(gym.make("CartPole-v1"))
