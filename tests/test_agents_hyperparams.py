"""agents.hyperparams: the shipped defaults are the tuned ones and are consistent."""

from __future__ import annotations

import pytest

from agents.hyperparams import HYPERPARAMS, PPO_TUNED_EASY, get_settings

KNOB_ENVS = [env_id for env_id in HYPERPARAMS if "SchedulerGains" not in env_id]


@pytest.mark.parametrize("algo", ["ppo", "shaped_ppo"])
def test_easy_ppo_defaults_are_the_tuned_values(algo):
    kwargs = get_settings("AEGym/SoundMatch-Easy-v1", algo).kwargs
    for key, value in PPO_TUNED_EASY.items():
        got = kwargs["policy_kwargs"][key] if key == "log_std_init" else kwargs[key]
        assert got == value, key


@pytest.mark.parametrize("env_id", KNOB_ENVS)
@pytest.mark.parametrize("algo", ["ppo", "shaped_ppo"])
def test_knob_env_ppo_carries_the_tuned_optimizer_settings(env_id, algo):
    settings = get_settings(env_id, algo)
    kwargs = settings.kwargs
    for key in ("learning_rate", "n_epochs", "gae_lambda", "clip_range", "ent_coef"):
        assert kwargs[key] == PPO_TUNED_EASY[key]
    # every rollout splits into whole minibatches (SB3 warns otherwise)
    assert (kwargs["n_steps"] * settings.n_envs) % kwargs["batch_size"] == 0


def test_unknown_env_or_algo_is_a_clear_error():
    with pytest.raises(ValueError, match="nope"):
        get_settings("nope", "ppo")
    with pytest.raises(ValueError, match="dqn"):
        get_settings("AEGym/SoundMatch-Easy-v1", "dqn")
