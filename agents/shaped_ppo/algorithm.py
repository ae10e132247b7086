"""The algorithm: SB3's PPO with per-term advantages, potential shaping and a KL pull
toward a reference policy (see :mod:`agents.shaped_ppo`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from agents.common.envs import distance_obs_index, env_core
from agents.common.type_aliases import PredictPolicy
from agents.shaped_ppo.buffer import ShapedRolloutBuffer
from agents.shaped_ppo.config import ShapingConfig
from agents.shaped_ppo.policy import MultiHeadActorCriticPolicy
from agents.shaped_ppo.shaping import (
    distance_potential,
    normalization_scales,
    potential_shaping,
    reference_kl,
    reward_channels,
    true_next_observations,
)

#: A policy with SB3's ``predict`` that the KL penalty pulls toward.
ReferencePolicy = PredictPolicy


class ShapedPPO(PPO):
    """PPO with per-term advantages, potential shaping and a KL pull to a reference.

    Takes every argument of SB3's PPO plus:

    :param policy: ``"MlpPolicy"`` (a :class:`MultiHeadActorCriticPolicy`) or a subclass
        of it.
    :param env: the training VecEnv (or env / id).
    :param shaping: the switches (a :class:`ShapingConfig` or a dict of its fields);
        None: the defaults (per-term advantages with running normalization only).
        ``term_names=None`` becomes the env's own reward terms here (its core's
        ``reward_fn.terms``; none for a non-aegym env): ``self.shaping`` holds the
        resolved config.
    :param reference: the reference policy of the KL penalty (e.g.
        ``agents.AEBaseline(venv)`` built on the *training* env: it reads the env's
        plant). Not saved with the model; re-attach with :meth:`set_reference` after
        ``load`` when ``kl_coef > 0``.
    :param potential_fn: ``Φ`` without the coefficient: observations ``[N, D]`` ->
        ``[N]``; None: :func:`distance_potential` (``−distance``) at the env's distance
        column (:func:`agents.common.envs.distance_obs_index`).
    :param kwargs: keyword arguments of ``PPO``.
    """

    policy_aliases: ClassVar[dict[str, type[ActorCriticPolicy]]] = {  # type: ignore[assignment]
        "MlpPolicy": MultiHeadActorCriticPolicy,
    }
    rollout_buffer: ShapedRolloutBuffer
    policy: MultiHeadActorCriticPolicy

    def __init__(
        self,
        policy: str | type[MultiHeadActorCriticPolicy],
        env: Any,
        shaping: ShapingConfig | Mapping[str, Any] | None = None,
        reference: ReferencePolicy | None = None,
        potential_fn: Callable[[np.ndarray], np.ndarray] | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        if isinstance(shaping, Mapping):
            shaping = ShapingConfig(**shaping)
        self.shaping = shaping or ShapingConfig()
        self.reference = reference
        self.term_rms: RunningMeanStd | None = None
        super().__init__(policy, env, _init_setup_model=False, **kwargs)
        self.potential_fn = potential_fn
        if _init_setup_model:
            self._setup_model()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "reference"]

    def _potential(self, env: VecEnv, obs: np.ndarray) -> np.ndarray:
        """``Φ(obs)`` without the coefficient: ``potential_fn``, else ``−distance`` read
        at ``env``'s distance column."""
        if self.potential_fn is not None:
            return self.potential_fn(obs)
        return distance_potential(obs, distance_obs_index(env))

    def set_reference(self, reference: ReferencePolicy | None) -> None:
        """Attach (or detach) the KL reference policy.

        :param reference: a policy with SB3's ``predict`` acting on the training env.
        """
        self.reference = reference

    def _resolve_terms(self) -> None:
        """``term_names=None`` -> the training env's reward terms."""
        if self.shaping.term_names is not None or not self.shaping.per_term:
            return
        if self.env is None:
            raise ValueError("ShapedPPO with term_names=None needs an env to read its terms")
        try:
            terms = tuple(env_core(self.env).reward_fn.terms)
        except (TypeError, AttributeError):
            terms = ()  # not an aegym env: no reward_terms, the residual is the reward
        self.shaping = self.shaping.resolve(terms)

    def _setup_model(self) -> None:
        self._resolve_terms()
        channels = self.shaping.channels
        self.policy_kwargs = {**self.policy_kwargs, "n_value_heads": len(channels)}
        self.rollout_buffer_class = ShapedRolloutBuffer
        self.rollout_buffer_kwargs = {
            **(self.rollout_buffer_kwargs or {}),
            "n_channels": len(channels),
        }
        super()._setup_model()
        if self.term_rms is None or self.term_rms.mean.shape != (len(channels),):
            self.term_rms = RunningMeanStd(shape=(len(channels),))

    # ------------------------------------------------------------------ rollouts
    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """SB3's ``collect_rollouts`` plus per-channel rewards/values, potential shaping
        and the reference's actions; then the combined advantages."""
        assert self._last_obs is not None, "No previous observation was provided"
        assert isinstance(rollout_buffer, ShapedRolloutBuffer)
        cfg = self.shaping
        if cfg.kl_active and self.reference is None:
            raise ValueError(
                "ShapedPPO has kl_coef > 0 but no reference policy; pass reference= or "
                "call set_reference(AEBaseline(env)) (references are not saved with models)"
            )
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        dones = np.zeros(env.num_envs, dtype=bool)
        new_obs = self._last_obs
        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            ref_action = None
            if cfg.kl_active:
                assert self.reference is not None
                ref_action, _ = self.reference.predict(
                    self._last_obs,  # type: ignore[arg-type]
                    episode_start=self._last_episode_starts,
                    deterministic=True,
                )
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, values, log_probs = self.policy(obs_tensor)
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(
                        actions, self.action_space.low, self.action_space.high
                    )
            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            shaping_reward = None
            if cfg.potential_coef > 0:
                next_obs, terminated = true_next_observations(new_obs, dones, infos)  # type: ignore[arg-type]
                c = cfg.potential_coef
                shaping_reward = potential_shaping(
                    c * self._potential(env, self._last_obs),  # type: ignore[arg-type]
                    c * self._potential(env, next_obs),
                    terminated,
                    self.gamma,
                )
            term_rewards = reward_channels(rewards, infos, cfg, shaping_reward)
            paid_rewards = term_rewards.copy()  # what the env paid, before the bootstrap
            rewards = np.asarray(rewards, dtype=np.float32)
            if shaping_reward is not None:
                rewards = rewards + shaping_reward
            # Timeout bootstrap (SB3 GH#633), per channel.
            for idx, done in enumerate(dones):
                if (
                    done
                    and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_value = self.policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                    if terminal_value.numel() == 1:
                        rewards[idx] += self.gamma * terminal_value
                        term_rewards[idx] += (self.gamma * terminal_value).cpu().numpy()
                    else:
                        tv = terminal_value.cpu().numpy()
                        rewards[idx] += self.gamma * float(tv.sum())
                        term_rewards[idx] += self.gamma * tv

            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                self._last_episode_starts,  # type: ignore[arg-type]
                values.sum(-1),
                log_probs,
            )
            rollout_buffer.add_channels(term_rewards, values, ref_action, paid_rewards)
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        self._combine_advantages(rollout_buffer)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _combine_advantages(self, buffer: ShapedRolloutBuffer) -> None:
        """Weights, running normalization and dead-channel masking of the per-channel
        advantages (a no-op with :meth:`ShapingConfig.off`)."""
        cfg = self.shaping
        if not cfg.per_term and not cfg.normalize_terms:
            return
        k = buffer.n_channels
        flat = buffer.term_advantages.reshape(-1, k).astype(np.float64)
        scales = np.ones(k, dtype=np.float32)
        if cfg.normalize_terms:
            assert self.term_rms is not None
            self.term_rms.update(flat)
            scales = normalization_scales(self.term_rms.var, cfg.norm_floor)
        # From the env's rewards, not term_rewards: those hold the timeout bootstrap
        # γ·V_k(s_T), which would mark never-paid channels active (value-head noise).
        active = buffer.channel_paid
        buffer.combine(cfg.weights, scales, active)
        for name, s, a in zip(cfg.channels, scales, active, strict=True):
            self.logger.record_mean(f"shaping/scale/{name}", float(s))
            self.logger.record_mean(f"shaping/active/{name}", float(a))

    # ------------------------------------------------------------------ update
    def train(self) -> None:
        """PPO's update with vector value targets and the optional KL penalty (the
        same computation as ``PPO.train`` when shaping is off)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        cfg = self.shaping
        entropy_losses, pg_losses, value_losses, kl_losses = [], [], [], []
        clip_fractions = []
        continue_training = True
        approx_kl_divs: list[float] = []
        loss = th.zeros(())
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = rollout_data.actions.long().flatten()
                values, log_prob, entropy, dist = self.policy.evaluate_actions_with_distribution(
                    rollout_data.observations, actions
                )
                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = th.exp(log_prob - rollout_data.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                if self.clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = rollout_data.old_values + th.clamp(
                        values - rollout_data.old_values, -clip_range_vf, clip_range_vf
                    )
                if values_pred.shape[-1] == 1:
                    value_loss = F.mse_loss(rollout_data.returns.flatten(), values_pred.flatten())
                else:  # one MSE per head, summed
                    value_loss = (
                        F.mse_loss(values_pred, rollout_data.returns, reduction="none")
                        .mean(0)
                        .sum()
                    )
                value_losses.append(value_loss.item())
                if entropy is None:
                    entropy_loss = -th.mean(-log_prob)
                else:
                    entropy_loss = -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                if cfg.kl_active:
                    kl = reference_kl(
                        dist.distribution.mean,  # type: ignore[attr-defined]
                        self.policy.log_std,
                        rollout_data.ref_actions,
                        cfg.kl_ref_std,
                        cfg.kl_full,
                    ).mean()
                    kl_losses.append(kl.item())
                    loss = loss + cfg.kl_coef * kl
                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch}: approx KL {approx_kl_div:.2f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        if kl_losses:
            self.logger.record("train/reference_kl", np.mean(kl_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
