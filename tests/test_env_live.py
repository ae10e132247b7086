import gymnasium as gym
import numpy as np
import pytest
import torch

import aegym  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_windows_overlap_and_stream_continues():
    env = gym.make("AEGym/SoundMatchLive-v0", window_s=0.5, hop_s=0.125)
    env.reset(seed=0)
    core = env.unwrapped.core
    before = core.agent_buf.clone()
    env.step(np.zeros(4, np.float32))
    torch.testing.assert_close(core.agent_buf[:, : -core.hop], before[:, core.hop :])


def test_target_moves_and_knobs_follow_it():
    env = gym.make("AEGym/SoundMatchLive-v0", segment_steps=4)
    env.reset(seed=0, options={"target_index": 0})
    core = env.unwrapped.core
    seen = []
    for _ in range(6):
        env.step(np.zeros(4, np.float32))
        seen.append(core.target_knobs()[0].clone())
    assert not torch.allclose(seen[0], seen[-1])
    fixed = torch.ones(len(core.space), dtype=torch.bool)
    fixed[core.free_idx] = False
    torch.testing.assert_close(core.knobs[0, fixed], core.target_knobs()[0, fixed])


def test_never_terminates_and_truncates_at_horizon():
    env = gym.make("AEGym/SoundMatchLive-v0", max_episode_steps=4)
    env.reset(seed=0)
    out = [env.step(env.action_space.sample())[2:4] for _ in range(4)]
    assert all(not t for t, _ in out) and out[-1][1]
    assert gym.spec("AEGym/SoundMatchLive-v0").max_episode_steps == 64


def test_slew_penalty_grows_with_the_move():
    env = gym.make("AEGym/SoundMatchLive-v0", max_move=0.5)
    env.reset(seed=0)
    still = env.step(np.zeros(4, np.float32))[4]["reward_terms"]["pen/slew"]
    env.reset(seed=0)
    jump = env.step(np.ones(4, np.float32))[4]["reward_terms"]["pen/slew"]
    assert still == 0.0 and jump < 0.0


def test_bad_window():
    with pytest.raises(ValueError, match="window_s"):
        gym.make("AEGym/SoundMatchLive-v0", window_s=2.0)
    with pytest.raises(ValueError, match="hop_s"):
        gym.make("AEGym/SoundMatchLive-v0", window_s=0.25, hop_s=0.5)


def test_max_move_is_validated_like_sound_match():
    for env_id in ("AEGym/SoundMatchLive-v0", "AEGym/SoundMatch-v0"):
        for bad in (1e6, 2.0, 0.0, -0.1):
            with pytest.raises(
                ValueError, match=r"max_move must be a finite number in \[0.0001, 1"
            ):
                gym.make(env_id, max_move=bad)


def test_hop_is_rounded_to_control_blocks_and_reported():
    env = gym.make("AEGym/SoundMatchLive-v0", hop_s=0.125)
    cfg = env.unwrapped.config
    assert cfg.hop_samples == 2048 and cfg.hop_samples / cfg.sample_rate == 0.128
    assert env.unwrapped.core.hop == cfg.hop_samples
    assert gym.make("AEGym/SoundMatchLive-v0", hop_s=0.128).unwrapped.config.hop_samples == 2048
    assert gym.make("AEGym/SoundMatchLive-v0", hop_s=0.001).unwrapped.config.hop_samples == 128
