import gymnasium as gym
import numpy as np
import pytest
import torch

import aegym  # noqa: F401
from aegym.envs.policies import AEGradientPolicy

pytestmark = pytest.mark.usefixtures("one_thread")


def make(**kw):
    return gym.make("AEGym/SoundMatch-Easy-v1", duration_s=0.25, **kw)


def test_spaces_and_observation_slices():
    env = make()
    obs, info = env.reset(seed=0)
    core = env.unwrapped.core
    f, w = core.n_free, env.unwrapped.config.history
    assert env.action_space.shape == (4,) and obs.shape == (f + 43 + w * f,)
    np.testing.assert_allclose(obs[:f], core.knobs[0, core.free_idx].numpy(), atol=1e-6)
    assert obs[f + 42] == pytest.approx(info["distance"], rel=1e-5)
    assert (obs[f + 43 :] == 0).all()  # no moves yet
    action = np.array([1.0, -0.5, 0.25, 0.0], np.float32)
    before = core.free_knobs.clone()
    obs, *_ = env.step(action)
    applied = (core.free_knobs - before)[0].numpy() / env.unwrapped.config.max_move
    np.testing.assert_allclose(obs[-f:], applied, atol=1e-5)  # newest move last
    assert env.observation_space.contains(obs)


def test_the_reward_reads_only_what_the_observation_holds():
    """Markov: R_opt and R_pol read the move history and the knob trajectory, which
    are recovered exactly from the observation (knobs + move history)."""
    from aegym.envs.sound_match import knob_trajectory

    env = make()
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    core = env.unwrapped.core
    cfg = env.unwrapped.config
    f, w = core.n_free, cfg.history
    for _ in range(2 * w):
        obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        moves = torch.from_numpy(obs[-w * f :]).view(1, w, f) * cfg.max_move
        torch.testing.assert_close(moves, core.moves, atol=1e-6, rtol=0)
        free = torch.from_numpy(obs[:f])[None]
        torch.testing.assert_close(knob_trajectory(free, moves), core.trajectory, atol=1e-5, rtol=0)


def test_tiers_are_registered_with_their_knobs_thresholds_and_targets():
    from aegym.envs import SUCCESS_DISTANCE

    for tier, preset, n in (("Easy", "easy", 4), ("Medium", "medium", 10), ("Full", "all", 20)):
        env = gym.make(f"AEGym/SoundMatch-{tier}-v1", duration_s=0.25)
        assert env.action_space.shape == (n,)
        assert env.unwrapped.config.success_distance == SUCCESS_DISTANCE[preset]
        assert env.spec.reward_threshold == 1.0
    assert gym.spec("AEGym/SoundMatch-Easy-v1").max_episode_steps == 50
    easy = make(target="test").unwrapped
    assert {t.kind for t in easy.targets} == {"in_domain"}
    full = gym.make("AEGym/SoundMatch-Full-v1", duration_s=0.25, target="test").unwrapped
    assert {t.kind for t in full.targets} == {"in_domain", "out_of_domain"}


def test_easy_and_medium_refuse_unreachable_targets(tmp_path):
    from aegym.audio_io import write_wav

    path = tmp_path / "tone.wav"
    t = np.arange(4000) / 16000
    write_wav(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    for tier in ("Easy", "Medium"):
        with pytest.raises(ValueError, match="SoundMatch-Full-v1"):
            gym.make(f"AEGym/SoundMatch-{tier}-v1", duration_s=0.25, target=str(path))
    env = gym.make("AEGym/SoundMatch-Full-v1", duration_s=0.25, target=str(path))
    env.reset(seed=0)


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
    _, reward, terminated, truncated, info = env.step(np.array([true - now], np.float32))
    assert info["distance"] < 1e-3 and terminated and info["is_success"] and not truncated
    assert info["reward_terms"]["aud/success"] == env.unwrapped.config.reward.success_bonus
    assert reward > env.spec.reward_threshold


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


# ---------------------------------------------------------------------------------------
# alignment: scripted policies on in-domain test targets


def _returns(policy, horizon: int, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """First-episode return and success of ``policy(core, t) -> actions`` on the first
    ``n`` in-domain test targets, in one native vector env."""
    venv = gym.make_vec(
        "AEGym/SoundMatch-Easy-v1",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        duration_s=0.25,
        target="test",
        max_episode_steps=horizon,
    )
    venv.reset(seed=0, options={"target_index": list(range(n))})
    core = venv.unwrapped.core
    ret, done, success = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    for t in range(horizon):
        _, r, term, trunc, _ = venv.step(policy(core, t))
        ret += np.where(done, 0.0, r)
        success |= term & ~done
        done |= term | trunc
        if done.all():
            break
    venv.close()
    return ret, success


def _toward(core, goal: torch.Tensor, speed: float = 1.0) -> np.ndarray:
    step = (goal - core.free_knobs) / core.config.max_move
    return (step.clamp(-1, 1) * speed).numpy().astype(np.float32)


def _truth(core) -> torch.Tensor:
    return core.target_base[core.target_idx][:, core.free_idx]


def _parked(core) -> torch.Tensor:
    """The truth moved 0.12 on every free knob and 0.25 (6 dB) on the gain, inward at an
    edge: near the target, not on it."""
    truth = _truth(core)
    off = torch.tensor([0.12, 0.12, 0.12, 0.25])  # cutoff, resonance, shape, gain
    return torch.where(truth > 0.5, truth - off, truth + off)


def direct(core, t):
    return _toward(core, _truth(core))


def slow(core, t):
    return _toward(core, _truth(core), 0.25)


def park_and_wiggle(core, t):
    goal = _parked(core).clone()
    goal[:, 1] += 0.03 * (-1) ** t  # wiggle the resonance around the parking spot
    action = _toward(core, goal)
    gain_off = (core.free_knobs[:, 3] - goal[:, 3]).abs() > 1e-4
    action[gain_off.numpy(), :3] = 0.0  # the gain (6 dB off) first: never passes the truth
    return action


def idle(core, t):
    return np.zeros((core.batch, core.n_free), np.float32)


@pytest.mark.parametrize("horizon", [50, 200])
def test_solving_fast_earns_more_than_hovering_near_the_target(horizon):
    """v0 paid ~57 for parking near the target and wiggling vs ~5 for solving it."""
    results = {p.__name__: _returns(p, horizon) for p in (direct, slow, park_and_wiggle, idle)}
    (g_direct, s_direct), (g_slow, s_slow) = results["direct"], results["slow"]
    g_park, s_park = results["park_and_wiggle"]
    assert s_direct.all() and s_slow.all() and not s_park.any()
    assert (g_direct > g_slow).all()  # faster is better
    assert (g_slow > g_park).all() and (g_slow > results["idle"][0]).all()
    threshold = gym.spec("AEGym/SoundMatch-Easy-v1").reward_threshold
    assert (g_direct > threshold).all() and (g_park < threshold).all()
    assert (results["idle"][0] < threshold).all()


def test_knob_error_is_reported_where_the_truth_is_known(tmp_path):
    env = make(target="test")
    _, info = env.reset(seed=0, options={"target_index": 3})
    core = env.unwrapped.core
    truth = core.targets[3].unit_knobs[core.free_idx]
    expected = float((core.free_knobs[0] - truth).abs().mean())
    assert info["knob_error"] == pytest.approx(expected, abs=1e-6)
    _, _, _, _, info = env.step(np.ones(4, np.float32))
    expected = float((core.free_knobs[0] - truth).abs().mean())
    assert info["knob_error"] == pytest.approx(expected, abs=1e-6)
    full = gym.make("AEGym/SoundMatch-Full-v1", free_knobs="easy", duration_s=0.25, target="test")
    _, info = full.reset(seed=0, options={"target_index": len(full.unwrapped.targets) - 1})
    assert "knob_error" not in info  # an out-of-domain sound: no true knobs
    venv = gym.make_vec(
        "AEGym/SoundMatch-Full-v1",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        free_knobs="easy",
        duration_s=0.25,
        target="test",
    )
    last = len(venv.unwrapped.core.targets) - 1
    _, vinfo = venv.reset(seed=0, options={"target_index": [3, last]})
    assert vinfo["_knob_error"].tolist() == [True, False]
    assert np.isfinite(vinfo["knob_error"]).all()
