"""Shaped PPO: exact PPO equivalence with shaping off, and what each switch does."""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv

import aegym  # noqa: F401
from aegym.envs.sound_match import SOUND_MATCH_TERMS
from agents.baselines import AdamBaseline, AEBaseline, StaticBaseline
from agents.common.envs import (
    FAST_ENV_KWARGS,
    distance_obs_index,
    env_core,
    make_env,
    make_vec_env,
)
from agents.hyperparams import AlgoSettings
from agents.shaped_ppo import (
    AEGYM_TERMS,
    POTENTIAL,
    RESIDUAL,
    MultiHeadActorCriticPolicy,
    ShapedPPO,
    ShapedRolloutBuffer,
    ShapingConfig,
    active_channels,
    combine_advantages,
    distance_potential,
    gae,
    normalization_scales,
    potential_shaping,
    reference_kl,
    reward_channels,
    true_next_observations,
)

# the module, not agents.train (the package re-exports the function of that name)
train_mod = importlib.import_module("agents.train")
SM = "AEGym/SoundMatch-Easy-v1"
SMALL = {"n_steps": 16, "batch_size": 16, "n_epochs": 2, "policy_kwargs": {"net_arch": [16]}}


def _venv(n: int = 2, seed: int = 0):
    return make_vec_env(SM, n, seed=seed, native=True, target="train", **FAST_ENV_KWARGS[SM])


def _random_buffers(n_channels: int, seed: int = 0):
    """Identical random rollouts in a RolloutBuffer and a 1-channel ShapedRolloutBuffer."""
    rng = np.random.default_rng(seed)
    obs_space = spaces.Box(-1, 1, (3,), np.float32)
    act_space = spaces.Box(-1, 1, (2,), np.float32)
    t, n = 32, 3
    std = RolloutBuffer(t, obs_space, act_space, "cpu", gae_lambda=0.9, gamma=0.97, n_envs=n)
    shp = ShapedRolloutBuffer(
        t, obs_space, act_space, "cpu", gae_lambda=0.9, gamma=0.97, n_envs=n, n_channels=n_channels
    )
    for _ in range(t):
        obs = rng.normal(size=(n, 3)).astype(np.float32)
        act = rng.normal(size=(n, 2)).astype(np.float32)
        term_r = rng.normal(size=(n, n_channels)).astype(np.float32)
        term_v = th.as_tensor(rng.normal(size=(n, n_channels)).astype(np.float32))
        start = rng.random(n) < 0.1
        logp = th.as_tensor(rng.normal(size=n).astype(np.float32))
        std.add(obs, act, term_r.sum(-1), start, term_v.sum(-1), logp)
        shp.add(obs, act, term_r.sum(-1), start, term_v.sum(-1), logp)
        shp.add_channels(term_r, term_v, None)
    last = th.as_tensor(rng.normal(size=(n, n_channels)).astype(np.float32))
    dones = rng.random(n) < 0.3
    std.compute_returns_and_advantage(last.sum(-1), dones)
    shp.compute_returns_and_advantage(last, dones)
    return std, shp


def test_one_channel_gae_is_sb3_bit_for_bit() -> None:
    std, shp = _random_buffers(1)
    np.testing.assert_array_equal(shp.advantages, std.advantages)
    np.testing.assert_array_equal(shp.returns, std.returns)


def test_per_term_gae_sums_to_total_gae() -> None:
    """GAE is linear: Σ_k A_k equals GAE of Σ_k r_k with V = Σ_k V_k."""
    std, shp = _random_buffers(4)
    np.testing.assert_allclose(shp.term_advantages.sum(-1), std.advantages, atol=1e-4)
    np.testing.assert_allclose(shp.returns, std.returns, atol=1e-4)


def test_gae_function_matches_manual_recursion() -> None:
    r = np.array([[1.0], [0.0], [2.0]], np.float32)
    v = np.array([[0.5], [0.25], [1.0]], np.float32)
    starts = np.array([[1.0], [0.0], [1.0]], np.float32)
    adv, ret = gae(r, v, starts, np.array([3.0], np.float32), np.array([False]), 0.5, 1.0)
    # step 2: 2 + .5*3 - 1 = 2.5; step 1 ends before a start: 0 - .25 = -.25;
    # step 0: 1 + .5*.25 - .5 + .5*(-.25) = 0.5
    np.testing.assert_allclose(adv[:, 0], [0.5, -0.25, 2.5])
    np.testing.assert_allclose(ret, adv + v)


def test_shaping_off_rollout_equals_ppo() -> None:
    """Same seed, same env: ShapedPPO(off) collects PPO's rollout and advantages exactly,
    and one update leaves the same parameters."""
    models = []
    for cls, extra in ((PPO, {}), (ShapedPPO, {"shaping": ShapingConfig.off()})):
        venv = _venv()
        model = cls("MlpPolicy", venv, seed=3, device="cpu", **SMALL, **extra)
        model.learn(32)
        models.append(model)
        venv.close()
    ppo, shaped = models
    assert isinstance(shaped.policy, MultiHeadActorCriticPolicy)
    np.testing.assert_array_equal(shaped.rollout_buffer.rewards, ppo.rollout_buffer.rewards)
    np.testing.assert_array_equal(shaped.rollout_buffer.advantages, ppo.rollout_buffer.advantages)
    np.testing.assert_array_equal(shaped.rollout_buffer.returns, ppo.rollout_buffer.returns)
    for (name, p), (_, q) in zip(
        ppo.policy.state_dict().items(), shaped.policy.state_dict().items(), strict=True
    ):
        th.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def _infos(terms: list[dict[str, float]]) -> list[dict]:
    return [{"reward_terms": t} for t in terms]


def test_reward_channels_and_residual() -> None:
    cfg = ShapingConfig(term_names=("aud/mel", "pen/slew"))
    assert cfg.channels == ("aud/mel", "pen/slew", RESIDUAL)
    out = reward_channels(
        np.array([1.0, -1.5]), _infos([{"aud/mel": 0.7, "pen/slew": -0.2}, {}]), cfg
    )
    np.testing.assert_allclose(out, [[0.7, -0.2, 0.5], [0.0, 0.0, -1.5]], rtol=1e-6)
    np.testing.assert_allclose(out.sum(-1), [1.0, -1.5], rtol=1e-6)
    off = reward_channels(np.array([1.0]), _infos([{"aud/mel": 3.0}]), ShapingConfig.off())
    np.testing.assert_array_equal(off, [[1.0]])


def test_zero_weight_removes_a_term() -> None:
    """With w = 0 on a term, the advantage equals the one computed without that term."""
    _, shp = _random_buffers(3, seed=4)
    keep = shp.term_advantages.copy()
    shp.combine(np.array([1.0, 0.0, 2.0]), np.ones(3), np.ones(3, bool))
    with_zero = shp.advantages.copy()
    shp.term_advantages = keep.copy()
    shp.term_advantages[..., 1] = 123.0  # whatever the term's advantage, it is gone
    shp.combine(np.array([1.0, 0.0, 2.0]), np.ones(3), np.ones(3, bool))
    np.testing.assert_array_equal(shp.advantages, with_zero)
    np.testing.assert_allclose(with_zero, keep[..., 0] + 2.0 * keep[..., 2], rtol=1e-6)
    cfg = ShapingConfig(term_names=("aud/mel", "pen/slew"), term_weights={"pen": 0.0, "aud/mel": 2})
    np.testing.assert_array_equal(cfg.weights, [2.0, 0.0, 1.0])


def test_potential_term_is_exactly_gamma_phi_next_minus_phi() -> None:
    phi_s, phi_n = np.array([-2.0, -1.0, -3.0]), np.array([-1.5, -0.5, -9.0])
    f = potential_shaping(phi_s, phi_n, np.array([False, False, True]), gamma=0.9)
    np.testing.assert_allclose(f, [0.9 * -1.5 + 2.0, 0.9 * -0.5 + 1.0, 3.0], rtol=1e-6)
    obs = np.array([[0.1, 4.0, 0.2]])
    np.testing.assert_array_equal(distance_potential(obs, 1), [-4.0])


def test_potential_channel_in_rollout() -> None:
    """In a real rollout the potential channel holds γΦ(s′) − Φ(s) at every step that
    does not end an episode, and the other channels still sum to the env reward."""
    cfg = ShapingConfig(potential_coef=0.5, normalize_terms=False)
    venv = _venv()
    model = ShapedPPO("MlpPolicy", venv, shaping=cfg, seed=0, device="cpu", gamma=0.9, **SMALL)
    model.learn(32)
    buf = model.rollout_buffer
    k = model.shaping.channels.index(POTENTIAL)
    assert buf.generator_ready  # train() flattened observations to [N*T, D]: undo it
    obs = buf.observations.reshape(2, 16, -1).swapaxes(0, 1)
    phi = -0.5 * obs[..., distance_obs_index(venv)]  # the distance column, not the last
    term_r = buf.term_rewards
    for t in range(15):
        for i in range(2):
            if buf.episode_starts[t + 1, i]:
                continue
            assert term_r[t, i, k] == pytest.approx(0.9 * phi[t + 1, i] - phi[t, i], abs=1e-5)
    venv.close()


def test_true_next_observations_use_terminal_ones() -> None:
    new_obs = np.zeros((3, 2), np.float32)
    infos = [
        {},
        {"terminal_observation": np.ones(2), "TimeLimit.truncated": True},
        {"terminal_observation": np.full(2, 2.0)},
    ]
    next_obs, terminated = true_next_observations(new_obs, np.array([0, 1, 1], bool), infos)
    np.testing.assert_array_equal(next_obs, [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(terminated, [False, False, True])
    assert not new_obs.any()  # the step's observations are left alone


def test_normalization_mask_and_combination() -> None:
    scales = normalization_scales(np.array([4.0, 1e-8, 0.25]), floor=0.01)
    np.testing.assert_allclose(scales, [2.0, 0.01, 0.5])
    assert scales.dtype == np.float32
    term_rewards = np.zeros((2, 1, 3), np.float32)
    term_rewards[1, 0, 0], term_rewards[0, 0, 2] = 1.0, -0.5
    active = active_channels(term_rewards)
    np.testing.assert_array_equal(active, [True, False, True])
    adv = np.array([[[2.0, 5.0, 1.0]], [[4.0, 5.0, -1.0]]], np.float32)
    combined = combine_advantages(adv, np.array([1.0, 1.0, 0.5]), scales, active)
    np.testing.assert_allclose(combined, [[2.0 / 2.0 + 0.5 * 1.0 / 0.5], [4.0 / 2.0 - 1.0]])


def test_kl_zero_at_reference_and_pulls_mean() -> None:
    ref = th.tensor([[0.3, -0.2]])
    mean = ref.clone().requires_grad_(True)
    log_std = th.log(th.tensor([0.3, 0.3]))
    assert reference_kl(mean, log_std, ref, 0.3).item() == 0.0
    full = reference_kl(mean, log_std, ref, 0.3, full=True)
    assert full.item() == pytest.approx(0.0, abs=1e-6)
    away = th.tensor([[0.8, 0.4]], requires_grad=True)
    kl = reference_kl(away, log_std, ref, 0.3)
    kl.sum().backward()
    step = -away.grad  # gradient descent direction
    assert th.all(th.sign(step) == th.sign(ref - away.detach()))
    assert kl.item() == pytest.approx(((0.5**2 + 0.6**2) / (2 * 0.09)), rel=1e-6)


def test_kl_term_pulls_policy_mean_toward_reference() -> None:
    """An update driven by the KL alone (no advantage signal) moves the policy mean
    toward the reference's action; without the KL it would not move it at all."""
    venv = _venv()
    obs = venv.reset()
    shaping = ShapingConfig(
        kl_coef=10.0,
        kl_ref_std=0.3,
        normalize_terms=False,
        term_weights={g: 0.0 for g in ("aud", "opt", "pol", "pen", "other")},
    )
    ref = StaticBaseline(venv.observation_space, venv.action_space)  # reference action 0
    model = ShapedPPO(
        "MlpPolicy",
        venv,
        shaping=shaping,
        reference=ref,
        seed=0,
        device="cpu",
        learning_rate=1e-2,
        normalize_advantage=False,
        vf_coef=0.0,
        **SMALL,
    )
    with th.no_grad():
        model.policy.action_net.bias.fill_(0.8)  # start far from the reference
    t_obs = th.as_tensor(obs)
    before = model.policy.get_distribution(t_obs).distribution.mean.abs().mean().item()
    model.learn(32)
    after = model.policy.get_distribution(t_obs).distribution.mean.abs().mean().item()
    assert after < 0.5 * before
    venv.close()


def test_kl_needs_reference_and_ae_reference_runs() -> None:
    venv = _venv()
    model = ShapedPPO("MlpPolicy", venv, shaping={"kl_coef": 0.1}, seed=0, device="cpu", **SMALL)
    with pytest.raises(ValueError, match="no reference policy"):
        model.learn(32)
    model.set_reference(AEBaseline(venv))
    model._last_obs = None
    model.learn(32)
    assert np.abs(model.rollout_buffer.ref_actions).max() > 0
    venv.close()


def test_save_load_keeps_heads_and_normalizer(tmp_path) -> None:
    venv = _venv()
    model = ShapedPPO("MlpPolicy", venv, seed=0, device="cpu", **SMALL)
    model.learn(32)
    model.save(tmp_path / "m.zip")
    loaded = ShapedPPO.load(tmp_path / "m.zip", env=venv, device="cpu")
    assert loaded.shaping == model.shaping
    assert loaded.policy.n_value_heads == len(model.shaping.channels)
    np.testing.assert_array_equal(loaded.term_rms.var, model.term_rms.var)
    obs = venv.reset()
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )
    venv.close()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="kl_coef must be"):
        ShapingConfig(kl_coef=-1.0)
    with pytest.raises(ValueError, match="reserved channel"):
        ShapingConfig(term_names=("other",))
    with pytest.raises(ValueError, match="kl_ref_std"):
        ShapingConfig(kl_ref_std=0.0)


def _short_episode_venv(n: int = 2, limit: int = 5) -> DummyVecEnv:
    """SoundMatch-Easy cut to ``limit``-step episodes by a TimeLimit: they truncate."""
    venv = DummyVecEnv(
        [
            lambda: gym.wrappers.TimeLimit(
                make_env(SM, target="train", **FAST_ENV_KWARGS[SM]), limit
            )
            for _ in range(n)
        ]
    )
    venv.seed(0)
    return venv


def _collect(model: ShapedPPO) -> ShapedRolloutBuffer:
    """One rollout, not flattened by train()."""
    _, callback = model._setup_learn(model.n_steps * model.n_envs, callback=None)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def test_dead_channel_contributes_nothing_despite_timeout_bootstrap() -> None:
    """A channel the env never pays gets γ·V_k(s_T) added at every truncation; it must
    still count as dead, so its value head's noise never reaches the policy."""
    absent = next(t for t in AEGYM_TERMS if t not in SOUND_MATCH_TERMS)
    cfg = ShapingConfig(term_names=(*SOUND_MATCH_TERMS, absent), normalize_terms=False)
    venv = _short_episode_venv()
    model = ShapedPPO("MlpPolicy", venv, shaping=cfg, seed=0, device="cpu", **SMALL)
    buf = _collect(model)
    k = model.shaping.channels.index(absent)
    truncated = buf.episode_starts[1:].any()
    assert truncated  # 16 steps of 5-step episodes
    assert np.abs(buf.term_rewards[..., k]).max() > 0  # the bootstrap is there ...
    combined = buf.advantages.copy()
    buf.term_advantages[..., k] = 1e3  # ... yet whatever A_k is, A is unchanged
    model._combine_advantages(buf)
    np.testing.assert_array_equal(buf.advantages, combined)
    assert not buf.channel_paid[k]
    venv.close()


def test_unnormalized_unit_weights_give_ppo_advantage_on_total_reward() -> None:
    """``normalize_terms=False`` with weights 1 is return-preserving: the combined
    advantage is GAE on the total reward (timeout bootstrap included) with V = Σ_k V_k."""
    cfg = ShapingConfig(term_names=("aud/mel", "pen/time"), normalize_terms=False)
    venv = _short_episode_venv()
    model = ShapedPPO("MlpPolicy", venv, shaping=cfg, seed=1, device="cpu", **SMALL)
    buf = _collect(model)
    assert buf.channel_paid.all()  # every channel paid: none is masked
    with th.no_grad():
        last = model.policy.predict_values(obs_as_tensor(model._last_obs, "cpu")).sum(-1)
    total_adv, _ = gae(
        buf.rewards,
        buf.values,
        buf.episode_starts,
        last.numpy(),
        np.asarray(model._last_episode_starts),
        model.gamma,
        model.gae_lambda,
    )
    np.testing.assert_allclose(buf.advantages, total_adv, rtol=1e-5, atol=1e-5)
    venv.close()


def test_term_names_default_to_the_env_terms() -> None:
    venv = _venv()
    model = ShapedPPO("MlpPolicy", venv, seed=0, device="cpu", **SMALL)
    assert model.shaping.term_names == tuple(env_core(venv).reward_fn.terms)
    assert model.shaping.term_names == SOUND_MATCH_TERMS
    assert model.policy.n_value_heads == len(SOUND_MATCH_TERMS) + 1
    explicit = ShapedPPO(
        "MlpPolicy", venv, shaping={"term_names": ["aud/mel"]}, seed=0, device="cpu", **SMALL
    )
    assert explicit.shaping.channels == ("aud/mel", RESIDUAL)
    with pytest.raises(ValueError, match="resolved from the env"):
        ShapingConfig().channels  # noqa: B018
    assert ShapingConfig.off().channels == ("total",)
    venv.close()


def test_kl_reference_by_name(monkeypatch) -> None:
    with pytest.raises(ValueError, match="kl_reference must be one of"):
        ShapingConfig(kl_reference="sac")
    assert not ShapingConfig(kl_coef=0.1, kl_reference="none").kl_active
    venv = _venv()
    settings = AlgoSettings(2, dict(SMALL), ShapingConfig(kl_coef=0.1, kl_reference="ae"))
    model = train_mod.build_model("shaped_ppo", venv, settings, seed=0)
    assert isinstance(model.reference, AEBaseline)
    off = AlgoSettings(2, dict(SMALL), ShapingConfig(kl_coef=0.1, kl_reference="none"))
    model = train_mod.build_model("shaped_ppo", venv, off, seed=0)
    assert model.reference is None
    model.learn(16)  # kl_coef > 0 but no reference: the KL is off, not an error

    def no_baseline(name, env, *a, **k):
        raise ValueError(f"no {name} here")

    monkeypatch.setattr(train_mod, "make_baseline", no_baseline)
    adam = AlgoSettings(2, dict(SMALL), ShapingConfig(kl_coef=0.1, kl_reference="adam"))
    with pytest.raises(
        train_mod.ReferenceUnavailableError, match=f"'adam' is not available for {SM}"
    ):
        train_mod.build_model("shaped_ppo", venv, adam, seed=0, env_id=SM)
    venv.close()


def test_kl_reference_adam_on_scheduler_gains() -> None:
    sg = "AEGym/SchedulerGains-v1"
    args = train_mod.TrainArgs(env_id=sg, algo="shaped_ppo", shaping={"kl_reference": "adam"})
    settings = train_mod.resolve_settings(args)
    assert settings.shaping.kl_reference == "adam" and settings.shaping.kl_active
    venv = make_vec_env(sg, 1, seed=0, native=False, target="train", **FAST_ENV_KWARGS[sg])
    assert isinstance(train_mod.make_reference("adam", venv, sg), AdamBaseline)
    assert isinstance(train_mod.make_reference("ae", venv, sg), AEBaseline)
    assert train_mod.make_reference("none", venv, sg) is None
    venv.close()
