import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import aegym  # noqa: F401
from aegym.audio_io import load_audio, write_wav
from aegym.envs import SUCCESS_DISTANCE
from aegym.envs.live import LIVE_TERMS, LiveConfig
from aegym.reward import RewardConfig
from aegym.targets import TargetSet, load_wav_targets, make_target_set

pytestmark = pytest.mark.usefixtures("one_thread")

LIVE = "AEGym/SoundMatchLive-v1"
SR = 16_000


def mixed_set(n_in=3, n_out=3) -> TargetSet:
    """In-domain patches first, then out-of-domain sounds, 1 s each."""
    return make_target_set("mix", duration_s=1.0, n_in_domain=n_in, n_out_of_domain=n_out)


def tone_wav(path, seconds=3, freqs=(220.0, 330.0, 440.0, 550.0)):
    """A tone whose pitch changes every second."""
    t = np.arange(SR) / SR
    audio = np.concatenate([0.5 * np.sin(2 * np.pi * freqs[i] * t) for i in range(seconds)])
    write_wav(path, audio, SR)
    return path


def wav_and_patches(path) -> TargetSet:
    """Three in-domain patches and the WAV file (cut to 1 s in the set)."""
    patches = mixed_set(3, 0)
    wav = load_wav_targets(path, SR, 1.0)[0]
    return TargetSet("wav+patches", "custom", "custom", (*patches.targets, wav))


def window_at(audio, k, hop, window):
    """``audio[k·hop − window + hop : k·hop + hop]``, zeros outside the recording."""
    padded = torch.cat([torch.zeros(window), audio, torch.zeros(2 * hop)])
    return padded[k * hop + hop : k * hop + hop + window]


def test_windows_overlap_and_stream_continues():
    env = gym.make(LIVE, window_s=0.5, hop_s=0.125)
    env.reset(seed=0)
    core = env.unwrapped.core
    before = core.agent_buf.clone()
    env.step(np.zeros(4, np.float32))
    torch.testing.assert_close(core.agent_buf[:, : -core.hop], before[:, core.hop :])


def test_default_set_is_in_domain_and_other_kinds_need_target_kinds_none():
    env = gym.make(LIVE)
    assert all(t.kind == "in_domain" for t in env.unwrapped.targets)
    assert env.unwrapped.config.target_kinds == ("in_domain",)
    assert gym.spec(LIVE).kwargs["success_distance"] == SUCCESS_DISTANCE["live_easy"]
    with pytest.raises(ValueError, match="target_kinds=None"):
        gym.make(LIVE, target=mixed_set())
    full = gym.make(LIVE, target=mixed_set(), target_kinds=None).unwrapped.targets
    assert [t.kind for t in full] == ["in_domain"] * 3 + ["out_of_domain"] * 3


def test_glides_visit_only_targets_with_knobs_and_knobs_follow_the_target():
    env = gym.make(LIVE, target=mixed_set(), target_kinds=None, segment_steps=1)
    core = env.unwrapped.core
    knob_rows = {0, 1, 2}
    for seed in range(4):
        _, info = env.reset(seed=seed, options={"target_index": seed % 3})
        assert not core.streaming[0]
        for _ in range(12):
            assert set(core.wp_idx[0].tolist()) <= knob_rows
            _, _, term, trunc, info = env.step(np.zeros(4, np.float32))
            assert info["target_index"] in knob_rows and not term and not trunc
        fixed = torch.ones(len(core.space), dtype=torch.bool)
        fixed[core.free_idx] = False
        torch.testing.assert_close(core.knobs[0, fixed], core.target_knobs()[0, fixed])
    # An episode on an out-of-domain sound streams it whole (1 s: ceil(16000/2048) - 1
    # = 7 steps), with its fixed knobs, and ends with it.
    env.reset(seed=0, options={"target_index": 4})
    sound = core.targets[4].audio
    assert core.streaming[0]
    torch.testing.assert_close(core.knobs[0, fixed], core.fixed_knobs_per_target()[4, fixed])
    ends = [env.step(np.zeros(4, np.float32))[3] for _ in range(7)]
    assert ends == [False] * 6 + [True]
    torch.testing.assert_close(core.target_buf[0], window_at(sound, 7, core.hop, core.window))


def test_a_wav_is_streamed_whole_then_the_episode_truncates(tmp_path):
    path = tone_wav(tmp_path / "tone.wav")
    env = gym.make(LIVE, target=wav_and_patches(path), target_kinds=None)
    core = env.unwrapped.core
    hop, window = core.hop, core.window
    audio = load_audio(path, SR)  # the file as rendered: 3 s, not cut to the set's 1 s
    assert audio.numel() == 3 * SR
    _, info = env.reset(seed=0, options={"target_index": 3})
    n_steps = math.ceil(3 * SR / hop) - 1  # the last step hears the last sample
    for k in range(n_steps + 1):
        if k:
            _, _, term, trunc, info = env.step(env.action_space.sample())
            assert not term and trunc == (k == n_steps)
        expected = window_at(audio, k, hop, window)
        torch.testing.assert_close(core.target_buf[0], expected, rtol=0, atol=0)
        assert info["target_name"] == "tone.wav" and info["target_index"] == 3
        assert info["stream_position_s"] == pytest.approx((k + 1) * hop / SR)
    # The last window holds the last second's pitch (550 Hz never was in the file).
    spec = torch.fft.rfft(core.target_buf[0, -hop:] * torch.hann_window(hop)).abs()
    peak_hz = float(spec.argmax()) * SR / hop
    assert abs(peak_hz - 440.0) < 10.0


def test_native_vector_env_truncates_per_episode_and_equals_single_envs(tmp_path):
    path = tone_wav(tmp_path / "short.wav", seconds=1)
    kw = {"target": wav_and_patches(path), "target_kinds": None, "max_episode_steps": 12}
    nat = gym.make_vec(LIVE, num_envs=2, vectorization_mode="vector_entry_point", **kw)
    singles = [gym.make(LIVE, **kw) for _ in range(2)]
    o1, _ = nat.reset(seed=1, options={"target_index": [3, 0]})
    o2 = [
        e.reset(seed=1 + i, options={"target_index": (3, 0)[i]})[0] for i, e in enumerate(singles)
    ]
    np.testing.assert_allclose(o1, np.stack(o2), atol=1e-5)
    rng = np.random.default_rng(0)
    done, truncs = [False, False], []
    for _ in range(11):
        act = rng.uniform(-1, 1, size=nat.action_space.shape).astype(np.float32)
        obs, rew, term, trunc, _ = nat.step(act)
        for i, env in enumerate(singles):  # Gymnasium's next-step autoreset, by hand
            if done[i]:
                ref = (env.reset()[0], 0.0, False, False)
            else:
                ref = env.step(act[i])[:4]
            np.testing.assert_allclose(obs[i], ref[0], atol=1e-4)
            assert rew[i] == pytest.approx(ref[1], abs=1e-4)
            assert (term[i], trunc[i]) == (ref[2], ref[3])
            done[i] = ref[2] or ref[3]
        truncs.append(trunc.tolist())
    # The 1 s recording ends after 7 steps while the glide goes on; sub-env 0 then
    # resets alone (a new note) and still matches its single env.
    assert truncs[6] == [True, False] and not any(t[1] for t in truncs)


def test_reward_terms_sum_to_the_reward_and_on_target_pays_the_bonus():
    env = gym.make(LIVE)
    core = env.unwrapped.core
    assert core.reward_fn.terms == LIVE_TERMS
    assert "pen/time" not in LIVE_TERMS and "pen/slew" in LIVE_TERMS
    assert tuple(core.reward_fn.bounds()) == pytest.approx((-1.11, 1.5))
    env.reset(seed=0)
    seen = set()
    for _ in range(14):
        truth = core.next_target_knobs()[0, core.free_idx]
        act = ((truth - core.free_knobs[0]) / 0.1).clamp(-1, 1).numpy()
        _, rew, _, _, info = env.step(act)
        terms = info["reward_terms"]
        assert set(terms) == set(LIVE_TERMS)
        assert sum(terms.values()) == pytest.approx(rew, abs=1e-5)
        assert info["on_target"] == (info["distance"] < 0.54)
        assert terms["aud/success"] == (1.5 if info["on_target"] else 0.0)
        assert (rew > 0) == info["on_target"]  # a step on target beats any step off it
        seen.add(info["on_target"])
    assert seen == {True, False}


def episode_return(policy: str, seed: int, steps: int = 24) -> float:
    env = gym.make(LIVE, max_episode_steps=steps)
    env.reset(seed=seed)
    core = env.unwrapped.core
    total = 0.0
    for _ in range(steps):
        truth = core.next_target_knobs()[0, core.free_idx]
        goal = {"track": truth, "hover": (truth + 0.05).clamp(0, 1)}.get(policy)
        if goal is None:  # static
            act = np.zeros(4, np.float32)
        else:
            act = ((goal - core.free_knobs[0]) / core.config.max_move).clamp(-1, 1).numpy()
        total += env.step(act)[1]
    return total


def test_tracking_the_true_knobs_beats_hovering_and_standing_still():
    for seed in (1, 2):
        track, hover, static = (episode_return(p, seed) for p in ("track", "hover", "static"))
        assert track > hover > static, (seed, track, hover, static)


def test_slew_penalty_only_for_moves_above_the_limit():
    env = gym.make(LIVE)  # max_move 0.1, slew_limit_unit 0.05
    core = env.unwrapped.core
    env.reset(seed=0, options={"target_index": 0})
    core.knobs[0, core.free_idx] = 0.5  # room to move either way
    for a in (0.0, 0.2, -0.45, 0.49, -0.3):  # moves up to 0.049
        info = env.step(np.full(4, a, np.float32))[4]
        assert info["reward_terms"]["pen/slew"] == 0.0 and not info["safety_violation"]
    for a in (0.6, -0.8, 1.0):  # moves of 0.06 and more
        info = env.step(np.full(4, a, np.float32))[4]
        assert info["reward_terms"]["pen/slew"] < 0.0
    one = np.zeros(4, np.float32)
    one[0] = 1.0
    assert env.step(one)[4]["safety_violation"]


def test_bad_reward_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="slew_limit_unit"):
        gym.make(
            LIVE,
            reward_config=RewardConfig(audio_mode="cost", success_bonus=1.5, slew_limit_unit=0.1),
        )
    with pytest.raises(ValueError, match="slew_limit_unit"):
        gym.make(LIVE, max_move=0.04)
    with pytest.raises(ValueError, match="success_bonus"):
        gym.make(LIVE, reward_config=RewardConfig(audio_mode="cost", success_bonus=1.1))
    with pytest.raises(ValueError, match="audio_mode"):
        gym.make(LIVE, reward_config=RewardConfig(success_bonus=1.5))
    with pytest.raises(ValueError, match="success_distance"):
        gym.make(LIVE, success_distance=0.0)
    with pytest.raises(ValueError, match="target_kinds"):
        LiveConfig(target_kinds=("nope",))


def test_observation_has_the_move_history():
    env = gym.make(LIVE)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (4 + 43 + 8 * 4,) and obs.shape == (79,)
    act = np.array([0.5, -0.5, 0.25, 0.0], np.float32)
    obs = env.step(act)[0]
    core = env.unwrapped.core
    np.testing.assert_allclose(obs[-4:], core.moves[0, -1].numpy() / 0.1, atol=1e-6)
    assert env.observation_space.contains(obs)


def test_never_terminates_and_truncates_at_horizon():
    env = gym.make(LIVE, max_episode_steps=4)
    env.reset(seed=0)
    out = [env.step(env.action_space.sample())[2:4] for _ in range(4)]
    assert all(not t for t, _ in out) and out[-1][1]
    assert gym.spec(LIVE).max_episode_steps == 64


def test_bad_window():
    with pytest.raises(ValueError, match="window_s"):
        gym.make(LIVE, window_s=2.0)
    with pytest.raises(ValueError, match="hop_s"):
        gym.make(LIVE, window_s=0.25, hop_s=0.5)


def test_max_move_is_validated_like_sound_match():
    for env_id in (LIVE, "AEGym/SoundMatch-Easy-v1"):
        for bad in (1e6, 2.0, 0.0, -0.1):
            with pytest.raises(
                ValueError, match=r"max_move must be a finite number in \[0.0001, 1"
            ):
                gym.make(env_id, max_move=bad)


def test_hop_is_rounded_to_control_blocks_and_reported():
    env = gym.make(LIVE, hop_s=0.125)
    cfg = env.unwrapped.config
    assert cfg.hop_samples == 2048 and cfg.hop_samples / cfg.sample_rate == 0.128
    assert env.unwrapped.core.hop == cfg.hop_samples
    assert gym.make(LIVE, hop_s=0.128).unwrapped.config.hop_samples == 2048
    assert gym.make(LIVE, hop_s=0.001).unwrapped.config.hop_samples == 128


@pytest.mark.parametrize("target_kinds", [("in_domain",), None])
def test_distance_at_predicts_the_distance_the_step_reports(tmp_path, target_kinds):
    """The gradient policies descend ``distance_at``: at the knobs after a move it must be
    the distance the step then reports (the next target window, not the current one)."""
    kw = {"target": wav_and_patches(tone_wav(tmp_path / "t.wav"))} if target_kinds is None else {}
    env = gym.make(LIVE, target_kinds=target_kinds, segment_steps=4, **kw)
    core = env.unwrapped.core
    rng = np.random.default_rng(0)
    for seed, idx in ((0, 0), (1, 3 if target_kinds is None else 1)):
        env.reset(seed=seed, options={"target_index": idx})
        for _ in range(6):
            action = rng.uniform(-1, 1, 4).astype(np.float32)
            free = (core.free_knobs + torch.from_numpy(action) * core.config.max_move).clamp(0, 1)
            predicted = float(core.distance_at(free)[0])
            _, _, _, trunc, info = env.step(action)
            assert predicted == pytest.approx(info["distance"], rel=1e-4, abs=1e-5)
            if trunc:
                break
