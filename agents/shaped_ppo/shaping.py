"""The pure functions of shaped PPO: reward channels, per-channel GAE, potential-based
shaping, per-channel normalization and dead-channel masking, the combined advantage and
the KL to the reference. Arrays in, arrays out; nothing here holds state.

Normalization (:func:`normalization_scales`) changes the objective: dividing ``A_k`` by
its running scale ``s_k`` reweights the terms, so the policy no longer maximizes the env's
return. Scales of ones (``normalize_terms=False``) with unit weights keep it: the
combined advantage is then GAE on the total reward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch as th

from agents.shaped_ppo.config import POTENTIAL, ShapingConfig


def distance_potential(obs: np.ndarray, index: int) -> np.ndarray:
    """``−distance``: entry ``index`` of every observation. ``[..., D] -> [...]``.

    :param obs: observations, last axis the features.
    :param index: the distance's column (``agents.common.envs.distance_obs_index``).
    """
    return -np.asarray(obs, dtype=np.float32)[..., index]


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE(λ) and TD(λ) returns over any trailing channel axes.

    The same recursion, in the same float32 arithmetic, as SB3's
    ``RolloutBuffer.compute_returns_and_advantage`` (so one channel reproduces it bit
    for bit).

    :param rewards: ``[T, N, ...]`` rewards (truncation bootstrap already added).
    :param values: ``[T, N, ...]`` value estimates of the visited states.
    :param episode_starts: ``[T, N]`` 1 where the step starts an episode.
    :param last_values: ``[N, ...]`` values of the states after the last step.
    :param dones: ``[N]`` whether the last step ended an episode.
    :param gamma: discount γ.
    :param gae_lambda: λ.
    :return: ``(advantages, returns)``, both shaped like ``rewards``.
    """
    n_steps = rewards.shape[0]
    extra = (1,) * (rewards.ndim - 2)
    advantages = np.zeros_like(rewards)
    last_gae_lam: np.ndarray | int = 0
    for step in reversed(range(n_steps)):
        if step == n_steps - 1:
            next_non_terminal = 1.0 - dones.astype(np.float32)
            next_values = last_values
        else:
            next_non_terminal = 1.0 - episode_starts[step + 1]
            next_values = values[step + 1]
        next_non_terminal = next_non_terminal.reshape(next_non_terminal.shape + extra)
        delta = rewards[step] + gamma * next_values * next_non_terminal - values[step]
        last_gae_lam = delta + gamma * gae_lambda * next_non_terminal * last_gae_lam
        advantages[step] = last_gae_lam
    return advantages, advantages + values


def reward_channels(
    rewards: np.ndarray,
    infos: Sequence[Mapping[str, Any]],
    config: ShapingConfig,
    shaping: np.ndarray | None = None,
) -> np.ndarray:
    """Split the rewards of one vector step into the configured channels.

    :param rewards: ``[N]`` env rewards.
    :param infos: the step's infos (``info["reward_terms"]`` per env; missing terms
        count 0 and end up in the residual).
    :param config: the shaping settings (decide the channels).
    :param shaping: ``[N]`` potential-shaping rewards ``γΦ(s′) − Φ(s)``, or None.
    :return: ``[N, K]`` float32; without shaping the row sums equal ``rewards``.
    """
    rewards = np.asarray(rewards, dtype=np.float32).reshape(-1)
    n = rewards.shape[0]
    channels = config.channels
    out = np.zeros((n, len(channels)), dtype=np.float32)
    if not config.per_term:
        out[:, 0] = rewards if shaping is None else rewards + shaping
        return out
    n_terms = len(config.term_names)
    for i, info in enumerate(infos):
        terms = info.get("reward_terms") or {}
        for k, name in enumerate(config.term_names):
            out[i, k] = float(terms.get(name, 0.0))
    out[:, n_terms] = rewards - out[:, :n_terms].sum(-1)
    if shaping is not None and POTENTIAL in channels:
        out[:, n_terms + 1] = shaping
    return out


def potential_shaping(
    phi_s: np.ndarray, phi_next: np.ndarray, terminated: np.ndarray, gamma: float
) -> np.ndarray:
    """``F = γ·(1 − terminated)·Φ(s′) − Φ(s)`` (Φ of a terminal state is 0).

    :param phi_s: ``[N]`` potential of the state acted in.
    :param phi_next: ``[N]`` potential of the next state (the true last observation at
        episode ends, not the reset one).
    :param terminated: ``[N]`` True where the episode terminated (not truncated).
    :param gamma: discount γ.
    """
    alive = 1.0 - np.asarray(terminated, dtype=np.float32)
    return (gamma * alive * phi_next - phi_s).astype(np.float32)


def reference_kl(
    mean: th.Tensor,
    log_std: th.Tensor,
    ref_action: th.Tensor,
    ref_std: float,
    full: bool = False,
) -> th.Tensor:
    """KL of the policy's Gaussian to the reference ``N(a_ref, σ_ref²)``, summed over
    action dims.

    ``full=False``: ``‖μ − a_ref‖²/(2σ_ref²)`` (the KL at the reference's std);
    ``full=True``: ``Σ log(σ_ref/σ) + (σ² + (μ − a_ref)²)/(2σ_ref²) − 1/2``.

    :param mean: ``[B, A]`` policy means.
    :param log_std: ``[A]`` or ``[B, A]`` policy log-stds (used when ``full``).
    :param ref_action: ``[B, A]`` reference actions.
    :param ref_std: σ_ref > 0.
    :param full: include the policy's std.
    :return: ``[B]``.
    """
    var_ref = ref_std**2
    sq = (mean - ref_action).pow(2)
    if not full:
        return (sq / (2.0 * var_ref)).sum(-1)
    log_std = log_std.expand_as(mean)
    kl = np.log(ref_std) - log_std + (th.exp(2.0 * log_std) + sq) / (2.0 * var_ref) - 0.5
    return kl.sum(-1)


def true_next_observations(
    new_obs: np.ndarray, dones: np.ndarray, infos: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """The state each env moved to, and whether it terminated, from one vector step.

    Where an episode ended the VecEnv already reset and returns the new episode's first
    observation; the state moved to is ``info["terminal_observation"]``, and the episode
    *terminated* unless ``info["TimeLimit.truncated"]``.

    :param new_obs: ``[N, D]`` observations returned by the step.
    :param dones: ``[N]`` episode ends.
    :param infos: the step's infos.
    :return: ``(next_obs [N, D], terminated [N] bool)``.
    """
    next_obs = np.array(new_obs, copy=True)
    terminated = np.zeros(len(dones), dtype=bool)
    for idx, done in enumerate(dones):
        if done and infos[idx].get("terminal_observation") is not None:
            next_obs[idx] = infos[idx]["terminal_observation"]
            terminated[idx] = not infos[idx].get("TimeLimit.truncated", False)
    return next_obs, terminated


def normalization_scales(variance: np.ndarray, floor: float) -> np.ndarray:
    """``s_k = max(√var_k, floor)``: the per-channel advantage scales, ``[K]`` float32.

    :param variance: ``[K]`` running variance of each channel's advantages.
    :param floor: the smallest scale (reward units).
    """
    return np.maximum(np.sqrt(variance), floor).astype(np.float32)


#: Largest ``|r_k|`` of a channel that counts as paying nothing: float32 rounding of the
#: residual ``reward − Σ terms`` (~1e-8 on a bounded O(1) reward) is not a reward.
DEAD_ATOL = 1e-5


def active_channels(term_rewards: np.ndarray, atol: float = DEAD_ATOL) -> np.ndarray:
    """Channels that paid anything over the rollout, ``[..., K] -> [K]`` bool (a channel
    that paid nothing would contribute only value-head noise).

    Pass the *env's* channel rewards, before the timeout bootstrap ``γ·V_k(s_T)`` is
    added at truncations: with it, a channel the env never pays looks active and its
    value head's noise enters the policy's advantage.

    :param term_rewards: per-channel rewards, channels last.
    :param atol: ``|r_k| <= atol`` everywhere counts as paying nothing.
    """
    k = term_rewards.shape[-1]
    return np.abs(term_rewards).reshape(-1, k).max(0) > atol


def combine_advantages(
    term_advantages: np.ndarray, weights: np.ndarray, scales: np.ndarray, active: np.ndarray
) -> np.ndarray:
    """The policy's advantage ``A = Σ_k active_k·w_k·A_k/s_k``, ``[..., K] -> [...]``.

    :param term_advantages: per-channel advantages, channels last.
    :param weights: ``[K]`` channel weights.
    :param scales: ``[K]`` positive scales (ones: no normalization).
    :param active: ``[K]`` bools; inactive channels contribute 0.
    """
    coef = np.asarray(weights) * np.asarray(active, dtype=np.float32) / np.asarray(scales)
    return (term_advantages * coef.astype(np.float32)).sum(-1)
