"""The rollout buffer of shaped PPO: SB3's plus per-channel rewards, values, advantages,
returns and the reference policy's actions."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from agents.shaped_ppo.shaping import active_channels, combine_advantages, gae


class ShapedRolloutSamples(NamedTuple):
    """A minibatch of :class:`ShapedRolloutBuffer` (``K`` channels, ``A`` action dims)."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor  # [B, K]
    old_log_prob: th.Tensor
    advantages: th.Tensor  # [B], combined
    returns: th.Tensor  # [B, K]
    ref_actions: th.Tensor  # [B, A]


class ShapedRolloutBuffer(RolloutBuffer):
    """A ``RolloutBuffer`` that also keeps per-channel rewards, values, advantages and
    returns (``[T, N, K]``), the reference policy's actions (``[T, N, A]``) and which
    channels the env paid anything on (``channel_paid``, ``[K]``, from the rewards before
    the timeout bootstrap).

    ``rewards``/``values``/``advantages``/``returns`` keep SB3's meaning for the totals
    (sums over channels) until :meth:`combine` sets the policy's advantages.

    :param buffer_size: steps per env per rollout.
    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param device: torch device of the samples.
    :param gae_lambda: λ of GAE.
    :param gamma: discount γ.
    :param n_envs: number of envs.
    :param n_channels: number of reward channels ``K``.
    """

    term_rewards: np.ndarray
    term_values: np.ndarray
    term_advantages: np.ndarray
    term_returns: np.ndarray
    ref_actions: np.ndarray
    channel_paid: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        n_channels: int = 1,
    ) -> None:
        self.n_channels = int(n_channels)
        super().__init__(
            buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs
        )

    def reset(self) -> None:
        shape = (self.buffer_size, self.n_envs, self.n_channels)
        self.term_rewards = np.zeros(shape, dtype=np.float32)
        self.term_values = np.zeros(shape, dtype=np.float32)
        self.term_advantages = np.zeros(shape, dtype=np.float32)
        self.term_returns = np.zeros(shape, dtype=np.float32)
        self.ref_actions = np.zeros((self.buffer_size, self.n_envs, self.action_dim), np.float32)
        self.channel_paid = np.zeros(self.n_channels, dtype=bool)
        super().reset()

    def add_channels(
        self,
        term_rewards: np.ndarray,
        term_values: th.Tensor,
        ref_action: np.ndarray | None,
        paid_rewards: np.ndarray | None = None,
    ) -> None:
        """Per-channel data of the step just added with :meth:`add` (call right after).

        :param term_rewards: ``[N, K]`` channel rewards (with truncation bootstrap).
        :param term_values: ``[N, K]`` value heads at the visited states.
        :param ref_action: ``[N, A]`` reference actions, or None.
        :param paid_rewards: ``[N, K]`` the env's channel rewards *before* the bootstrap
            (they decide ``channel_paid``); None: ``term_rewards``.
        """
        paid = term_rewards if paid_rewards is None else paid_rewards
        self.channel_paid |= active_channels(np.asarray(paid).reshape(self.n_envs, -1))
        pos = self.pos - 1
        self.term_rewards[pos] = term_rewards
        self.term_values[pos] = term_values.clone().cpu().numpy().reshape(self.n_envs, -1)
        if ref_action is not None:
            self.ref_actions[pos] = np.asarray(ref_action).reshape(self.n_envs, self.action_dim)

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """Per-channel GAE; ``advantages``/``returns`` become their sums over channels.

        :param last_values: ``[N, K]`` (or ``[N]`` for one channel) values after the last
            step.
        :param dones: ``[N]`` whether the last step ended an episode.
        """
        last = last_values.clone().cpu().numpy().reshape(self.n_envs, self.n_channels)
        self.term_advantages, self.term_returns = gae(
            self.term_rewards,
            self.term_values,
            self.episode_starts,
            last,
            dones,
            self.gamma,
            self.gae_lambda,
        )
        if self.n_channels == 1:  # keep SB3's arrays bit for bit
            self.advantages = self.term_advantages[..., 0].copy()
            self.returns = self.term_returns[..., 0].copy()
        else:
            self.advantages = self.term_advantages.sum(-1)
            self.returns = self.term_returns.sum(-1)

    def combine(self, weights: np.ndarray, scales: np.ndarray, active: np.ndarray) -> None:
        """Set ``advantages = Σ_k active_k·w_k·A_k/s_k``.

        :param weights: ``[K]`` channel weights.
        :param scales: ``[K]`` positive scales (ones: no normalization).
        :param active: ``[K]`` bools; inactive channels contribute 0.
        """
        self.advantages = combine_advantages(self.term_advantages, weights, scales, active)

    def get(self, batch_size: int | None = None) -> Generator[ShapedRolloutSamples, None, None]:  # type: ignore[override]
        assert self.full, "the rollout buffer is not full"
        # numpy's global generator, as SB3's RolloutBuffer.get (seeded by set_random_seed)
        indices = np.random.permutation(self.buffer_size * self.n_envs)  # noqa: NPY002
        if not self.generator_ready:
            for name in (
                "observations",
                "actions",
                "values",
                "log_probs",
                "advantages",
                "returns",
                "term_values",
                "term_returns",
                "ref_actions",
            ):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True
        if batch_size is None:
            batch_size = self.buffer_size * self.n_envs
        start = 0
        while start < self.buffer_size * self.n_envs:
            yield self._get_samples(indices[start : start + batch_size])
            start += batch_size

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> ShapedRolloutSamples:  # type: ignore[override]
        data = (
            self.observations[batch_inds],
            self.actions[batch_inds].astype(np.float32, copy=False),
            self.term_values[batch_inds],
            self.log_probs[batch_inds].flatten(),
            self.advantages[batch_inds].flatten(),
            self.term_returns[batch_inds],
            self.ref_actions[batch_inds],
        )
        return ShapedRolloutSamples(*map(self.to_torch, data))
