import gymnasium as gym
import numpy as np
import pytest
import torch

import aegym  # noqa: F401
from aegym.envs.policies import AEGradientPolicy

pytestmark = pytest.mark.usefixtures("one_thread")


def make(**kw):
    return gym.make("AEGym/SoundMatch-v0", duration_s=0.25, **kw)


def test_spaces_and_observation_slices():
    env = make()
    obs, info = env.reset(seed=0)
    core = env.unwrapped.core
    f = core.n_free
    assert env.action_space.shape == (4,) and obs.shape == (f + 43,)
    np.testing.assert_allclose(obs[:f], core.knobs[0, core.free_idx].numpy(), atol=1e-6)
    assert obs[-1] == pytest.approx(info["distance"], rel=1e-5)


def test_fixed_knobs_take_the_in_domain_targets_values():
    env = make(free_knobs=["cutoff_hz"])
    env.reset(seed=0, options={"target_index": 2})
    core = env.unwrapped.core
    target_knobs = core.targets[2].unit_knobs
    mask = torch.ones(len(core.space), dtype=torch.bool)
    mask[core.free_idx] = False
    torch.testing.assert_close(core.knobs[0, mask], target_knobs[mask])


def test_moving_to_the_true_knobs_terminates_with_success():
    env = make(free_knobs=["cutoff_hz"], max_move=1.0)
    env.reset(seed=0, options={"target_index": 1})
    core = env.unwrapped.core
    true = float(core.targets[1].unit_knobs[core.free_idx[0]])
    now = float(core.knobs[0, core.free_idx[0]])
    _, _, terminated, truncated, info = env.step(np.array([true - now], np.float32))
    assert info["distance"] < 1e-3 and terminated and info["is_success"] and not truncated


def test_truncation_by_time_limit():
    env = make(max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, np.float32))[2:4] for _ in range(3)]
    assert flags[-1] == (False, True) and flags[0] == (False, False)


def test_ae_gradient_baseline_lowers_distance_and_beats_random():
    env = make()
    finals = {"ae": [], "random": []}
    starts = []
    for ep in range(3):
        for name in finals:
            obs, info = env.reset(seed=ep)
            env.action_space.seed(ep)
            policy = AEGradientPolicy(env.unwrapped.core)
            if name == "ae":
                starts.append(info["distance"])
            for t in range(15):
                act = policy(obs, [t == 0]) if name == "ae" else env.action_space.sample()
                obs, _, term, _, info = env.step(act)
                if term:
                    break
            finals[name].append(info["distance"])
    assert np.mean(finals["ae"]) < 0.8 * np.mean(starts)
    assert np.mean(finals["ae"]) < np.mean(finals["random"])


def test_bad_config_values():
    with pytest.raises(ValueError, match="max_move"):
        make(max_move=0.0)
    with pytest.raises(ValueError, match="start"):
        make(start="middle")
    with pytest.raises(ValueError, match="success_distance"):
        make(success_distance=-1.0)
