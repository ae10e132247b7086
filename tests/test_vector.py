import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO

import aegym  # noqa: F401
from aegym.envs.policies import AEGradientPolicy
from aegym.vector import AEGymSB3VecEnv, AEGymVectorEnv, make_sb3_vec_env

CASES = {
    "AEGym/SoundMatch-Easy-v1": {"duration_s": 0.25, "max_episode_steps": 4},
    "AEGym/SoundMatch-Medium-v1": {"duration_s": 0.25, "max_episode_steps": 4},
    "AEGym/SoundMatch-Full-v1": {"duration_s": 0.25, "max_episode_steps": 4, "target": "test"},
    "AEGym/SoundMatchLive-v1": {"max_episode_steps": 4},
    "AEGym/SchedulerGains-v1": {"duration_s": 0.25, "inner_steps": 4, "episode_steps": 3},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def native(env_id, n=3, **kw):
    return gym.make_vec(
        env_id, num_envs=n, vectorization_mode="vector_entry_point", **{**CASES[env_id], **kw}
    )


@pytest.mark.parametrize("env_id", list(CASES))
def test_native_equals_sync_vector_env_through_autoresets(env_id):
    nat = native(env_id)
    syn = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", **CASES[env_id])
    assert isinstance(nat, AEGymVectorEnv)
    assert nat.single_observation_space == syn.single_observation_space
    o1, _i1 = nat.reset(seed=5)
    o2, _ = syn.reset(seed=5)
    np.testing.assert_allclose(o1, o2, atol=1e-5)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(9):
        act = rng.uniform(-1, 1, size=nat.action_space.shape).astype(np.float32)
        r1, r2 = nat.step(act), syn.step(act)
        for a, b in zip(r1[:4], r2[:4], strict=True):
            np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-4)
        np.testing.assert_allclose(r1[4]["distance"], r2[4]["distance"], atol=1e-4)
        ended += int((r1[2] | r1[3]).sum())
    assert ended > 0  # the comparison went through at least one autoreset


def test_sub_envs_are_seeded_apart_and_reproducibly():
    a, _ = native("AEGym/SoundMatch-Easy-v1").reset(seed=1)
    b, _ = native("AEGym/SoundMatch-Easy-v1").reset(seed=1)
    c, _ = native("AEGym/SoundMatch-Easy-v1").reset(seed=[1, 2, 3])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.allclose(a[0], a[1])


def test_same_step_autoreset_reports_final_observation():
    env = native("AEGym/SoundMatch-Easy-v1", autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    for _ in range(4):
        obs, _rew, _term, trunc, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert trunc.all() and info["_final_obs"].all()
    assert info["final_obs"].shape == obs.shape and not np.allclose(info["final_obs"], obs)


def test_batched_info_layout_and_reward_terms():
    env = native("AEGym/SchedulerGains-v1")
    env.reset(seed=0)
    _, rew, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["distance"].shape == (3,) and info["_distance"].all()
    terms = info["reward_terms"]
    total = sum(v for k, v in terms.items() if not k.startswith("_"))
    np.testing.assert_allclose(total, rew, atol=1e-5)


def test_bad_actions_and_arguments():
    env = native("AEGym/SoundMatch-Easy-v1")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full((3, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="seed list"):
        env.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="num_envs"):
        native("AEGym/SoundMatch-Easy-v1", n=0)


def test_sb3_adapter_infos_and_episode_statistics():
    venv = make_sb3_vec_env(
        "AEGym/SoundMatch-Easy-v1", 2, seed=3, duration_s=0.25, max_episode_steps=3
    )
    assert isinstance(venv, AEGymSB3VecEnv)
    obs = venv.reset()
    assert obs.shape == (2, 79)  # 4 knobs + 43 + 8 moves x 4 knobs
    for _ in range(3):
        venv.step_async(np.zeros((2, 4), np.float32))
        obs, _rew, done, infos = venv.step_wait()
    assert done.all()
    for info in infos:
        assert info["TimeLimit.truncated"] and info["episode"]["l"] == 3
        assert info["terminal_observation"].shape == (79,)
        assert set(info) >= {"distance", "is_success", "reward_terms", "safety_violation"}


def test_sb3_ppo_trains_on_the_native_env_and_ae_policy_reads_its_core():
    venv = make_sb3_vec_env("AEGym/SoundMatch-Easy-v1", 4, seed=0, duration_s=0.25)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=32)
    assert model.num_timesteps >= 32
    policy = AEGradientPolicy(venv.core)
    obs = venv.reset()
    act = policy(obs, np.ones(4, bool))
    assert act.shape == (4, 4) and np.isfinite(act).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    env = native("AEGym/SoundMatch-Easy-v1", device="cuda")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
    assert np.isfinite(obs).all()


def test_sb3_adapter_takes_per_env_seeds_and_target_options():
    venv = make_sb3_vec_env("AEGym/SoundMatch-Easy-v1", 2, seed=0, duration_s=0.25)
    venv._seeds = [11, 12]
    venv.set_options([{"target_index": 5}, {"target_index": 7}])
    venv.reset()
    assert venv.core.target_idx.tolist() == [5, 7]
    ref = gym.make("AEGym/SoundMatch-Easy-v1", duration_s=0.25)
    obs_ref, _ = ref.reset(seed=12, options={"target_index": 7})
    venv._seeds = [11, 12]
    venv.set_options([{"target_index": 5}, {"target_index": 7}])
    np.testing.assert_allclose(venv.reset()[1], obs_ref, atol=1e-5)
    with pytest.raises(ValueError, match="every sub-env"):
        venv.set_options([{"target_index": 1}, {}])
        venv.reset()


def test_target_index_options_are_validated_not_coerced():
    env = native("AEGym/SoundMatch-Easy-v1", n=4)
    env.reset(seed=0)
    n = len(env.core.targets)
    cases = {
        "floats": [1.5, 2.7, 3.9, 0.2],
        "bools": [True, False, True, False],
        "strings": ["1", "2", "3", "0"],
        "out of range": [0, 1, 2, n],
    }
    for bad in cases.values():
        with pytest.raises(ValueError, match=r"target_index\'\]\[\d\] must be an int"):
            env.reset(options={"target_index": bad})
    for bad in ([1, 2], [[1, 2], [3, 4]], np.arange(5)):
        with pytest.raises(ValueError, match="one per sub-env"):
            env.reset(options={"target_index": bad})
    with pytest.raises(ValueError, match="target_index"):
        env.reset(options={"target_index": 2.0})
    with pytest.raises(ValueError, match="options must be a dict"):
        env.reset(options=[1, 2, 3, 4])
    _, info = env.reset(seed=0, options={"target_index": np.array([3, 2, 1, 0])})
    np.testing.assert_array_equal(env.core.target_idx.numpy(), [3, 2, 1, 0])
    assert np.isfinite(info["distance"]).all()


def test_a_failed_reset_leaves_the_sub_env_rngs_alone():
    a, b = native("AEGym/SoundMatch-Easy-v1"), native("AEGym/SoundMatch-Easy-v1")
    a.reset(seed=3)
    b.reset(seed=3)
    with pytest.raises(ValueError, match="target_index"):
        a.reset(seed=99, options={"target_index": [0.5, 1, 2]})
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])


def test_bad_action_types_name_the_argument():
    env = native("AEGym/SoundMatch-Easy-v1")
    env.reset(seed=0)
    for bad in ("left", {"a": 1}, [["x"] * 4] * 3):
        with pytest.raises(ValueError, match=r"actions must be a finite float array"):
            env.step(bad)
    with pytest.raises(ValueError, match="requires_grad"):
        env.step(torch.zeros(3, 4, requires_grad=True))
    obs, *_ = env.step(torch.zeros(3, 4))
    assert np.isfinite(obs).all()


def test_to_host_packs_every_dtype_exactly_into_fresh_arrays():
    from aegym.vector.env import to_host

    src = {
        "obs": torch.randn(3, 5),
        "reward": torch.tensor([1.5, -2.0, float("nan")]),
        "done": torch.tensor([True, False, True]),
        "steps": torch.tensor([1, 2, 3], dtype=torch.int64),
        "wide": torch.randn(3, dtype=torch.float64).requires_grad_(),
        "strided": torch.randn(5, 3).T,  # not contiguous
    }
    out = to_host(src)
    assert list(out) == list(src)
    for name, t in src.items():
        ref = t.detach().numpy()
        assert out[name].dtype == ref.dtype and out[name].shape == ref.shape
        np.testing.assert_array_equal(out[name], ref)
        assert out[name].flags.writeable and out[name].flags.aligned
    out["obs"][0, 0] = 123.0  # a copy, not a view of the tensor
    assert float(src["obs"][0, 0]) != 123.0
