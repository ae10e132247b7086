"""The actor-critic of shaped PPO: SB3's MLP policy with one value head per reward channel."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule
from torch import nn


class MultiHeadActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` whose critic has ``n_value_heads`` outputs.

    With one head it is the standard policy, parameter for parameter (same
    initialization from the same seed). Values come out ``[B, n_value_heads]``.

    :param args: positional arguments of ``ActorCriticPolicy``.
    :param n_value_heads: number of value heads (reward channels), >= 1.
    :param kwargs: keyword arguments of ``ActorCriticPolicy``.
    """

    def __init__(self, *args: Any, n_value_heads: int = 1, **kwargs: Any) -> None:
        if n_value_heads < 1:
            raise ValueError(f"n_value_heads must be >= 1, got {n_value_heads!r}")
        self.n_value_heads = int(n_value_heads)
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if self.n_value_heads == 1:
            return
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, self.n_value_heads)
        if self.ortho_init:
            self.value_net.apply(lambda m: self.init_weights(m, gain=1.0))
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["n_value_heads"] = self.n_value_heads
        return data

    def evaluate_actions_with_distribution(
        self, obs: th.Tensor, actions: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None, Distribution]:
        """``evaluate_actions`` (same computation) that also returns the distribution.

        :param obs: ``[B, ...]`` observations.
        :param actions: ``[B, A]`` actions.
        :return: ``(values [B, K], log_prob [B], entropy [B] or None, distribution)``.
        """
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        distribution = self._get_action_dist_from_latent(latent_pi)
        log_prob = distribution.log_prob(actions)
        values = self.value_net(latent_vf)
        entropy = distribution.entropy()
        return values, log_prob, entropy, distribution
