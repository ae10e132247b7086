"""Advantage-shaped PPO: per-term GAE, potential-based shaping and a KL pull to a reference.

:class:`ShapedPPO` is SB3's PPO with three switches (each off in
:meth:`ShapingConfig.off`, which reproduces PPO exactly):

1. **Per-term advantages** (``per_term``). The env's reward is a sum of named terms
   (``info["reward_terms"]``, e.g. ``aud/mel``, ``opt/resonance``, ``pen/slew``) plus a
   residual ``other`` (whatever the terms do not explain, such as SchedulerGains'
   divergence penalty), so the channels always sum to the reward. The critic has one
   value head per channel, GAE runs per channel (``A_k`` from ``r_k`` and ``V_k``), each
   ``A_k`` is divided by a running estimate of its scale (``normalize_terms``), and the
   policy sees ``A = Σ_k w_k·A_k/s_k``. With unit weights and no normalization
   ``Σ_k A_k`` equals standard GAE on the total reward with ``V = Σ_k V_k`` (GAE is
   linear in rewards and values). A channel that paid exactly 0 over the whole rollout
   contributes nothing (its GAE would be value-head noise only).
2. **Potential-based shaping** (``potential_coef > 0``): ``F = γ·Φ(s′) − Φ(s)`` with
   ``Φ(s) = −c·distance(s)`` (the distance is the last observation entry of every aegym
   env) is added to the rewards — as its own channel ``shaping/potential`` when
   ``per_term``, else to the single total channel. ``Φ`` of a terminal state is 0
   (so termination pays ``−Φ(s)``), which keeps the optimal policy unchanged (Ng et
   al., 1999); at a time-limit truncation ``s′`` is the true last observation.
3. **KL penalty to a reference** (``kl_coef > 0``): a reference policy (the AE baseline)
   acts as ``π_ref = N(a_ref(s), σ_ref²)``; its action is recorded at every rollout step
   and ``kl_coef·E[KL]`` is added to the policy loss. By default the KL is taken at the
   reference's std, ``KL(N(μ, σ_ref²) ‖ N(a_ref, σ_ref²)) = ‖μ − a_ref‖²/(2σ_ref²)``: it
   is 0 when the policy mean equals the reference action and its gradient pulls the
   mean toward it, leaving exploration (σ) to PPO's entropy term. With
   ``kl_full=True`` it is the KL of the policy's own Gaussian ``N(μ, σ²)``, which also
   pulls σ toward σ_ref.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn import functional as F

from aegym.reward import RewardConfig
from agents.type_aliases import PredictPolicy

#: Reward terms of aegym's composite reward, in order.
AEGYM_TERMS: tuple[str, ...] = tuple(RewardConfig().term_coefficients)
#: Channel holding ``reward − Σ terms`` (e.g. the divergence penalty).
RESIDUAL = "other"
#: Channel holding the potential-based shaping reward.
POTENTIAL = "shaping/potential"
#: The single channel when per-term advantages are off.
TOTAL = "total"


def distance_potential(obs: np.ndarray) -> np.ndarray:
    """``−distance``: the last entry of every aegym observation. ``[..., D] -> [...]``.

    :param obs: observations, last axis the features.
    """
    return -np.asarray(obs, dtype=np.float32)[..., -1]


@dataclass(frozen=True)
class ShapingConfig:
    """Switches of :class:`ShapedPPO` (see the module docstring for the maths).

    :param per_term: GAE per reward channel with one value head each; False: one
        channel, the total reward (plus the shaping reward if any).
    :param term_names: reward terms read from ``info["reward_terms"]``; the residual
        channel ``"other"`` is always added.
    :param term_weights: ``w_k`` by channel name or by group prefix (``"aud"``, ``"opt"``,
        ``"pol"``, ``"pen"``, ``"other"``, ``"shaping"``); exact names win over prefixes.
        A weight of 0 removes the channel from the policy's advantage.
    :param default_weight: ``w_k`` of channels not named in ``term_weights``.
    :param normalize_terms: divide each ``A_k`` by a running std ``s_k`` (floored).
    :param norm_floor: smallest ``s_k`` (reward units), so tiny terms are not blown up.
    :param potential_coef: ``c`` in ``Φ(s) = −c·distance(s)``; 0 turns shaping off.
    :param kl_coef: weight of the KL penalty to the reference policy; 0 turns it off.
    :param kl_ref_std: σ_ref, the reference Gaussian's fixed std (action units).
    :param kl_full: use the policy's own std in the KL (also pulls σ to σ_ref).
    """

    per_term: bool = True
    term_names: tuple[str, ...] = AEGYM_TERMS
    term_weights: Mapping[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    normalize_terms: bool = True
    norm_floor: float = 0.01
    potential_coef: float = 0.0
    kl_coef: float = 0.0
    kl_ref_std: float = 0.3
    kl_full: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "term_names", tuple(self.term_names))
        object.__setattr__(self, "term_weights", MappingProxyType(dict(self.term_weights)))
        if len(set(self.term_names)) != len(self.term_names):
            raise ValueError(f"term_names has duplicates: {self.term_names}")
        for name in (RESIDUAL, POTENTIAL, TOTAL):
            if name in self.term_names:
                raise ValueError(f"term_names must not contain the reserved channel {name!r}")
        for name, value in (
            ("default_weight", self.default_weight),
            ("potential_coef", self.potential_coef),
            ("kl_coef", self.kl_coef),
        ):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, value in self.term_weights.items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"term_weights[{name!r}] must be finite and >= 0, got {value!r}")
        if not self.norm_floor > 0:
            raise ValueError(f"norm_floor must be > 0, got {self.norm_floor!r}")
        if not self.kl_ref_std > 0:
            raise ValueError(f"kl_ref_std must be > 0, got {self.kl_ref_std!r}")

    @classmethod
    def off(cls) -> ShapingConfig:
        """Every switch off: ShapedPPO then computes exactly PPO's advantages and loss."""
        return cls(per_term=False, normalize_terms=False, potential_coef=0.0, kl_coef=0.0)

    @property
    def channels(self) -> tuple[str, ...]:
        """Reward channels, one value head each."""
        if not self.per_term:
            return (TOTAL,)
        extra = (POTENTIAL,) if self.potential_coef > 0 else ()
        return (*self.term_names, RESIDUAL, *extra)

    def weight(self, channel: str) -> float:
        """``w_k`` of a channel: exact name, else group prefix, else the default.

        :param channel: a channel name.
        """
        if not self.per_term:
            return 1.0
        if channel in self.term_weights:
            return float(self.term_weights[channel])
        group = channel.split("/")[0]
        return float(self.term_weights.get(group, self.default_weight))

    @property
    def weights(self) -> np.ndarray:
        """``w_k`` of every channel, ``[K]`` float32."""
        return np.array([self.weight(c) for c in self.channels], dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings."""
        return {
            "per_term": self.per_term,
            "term_names": list(self.term_names),
            "term_weights": dict(self.term_weights),
            "default_weight": self.default_weight,
            "normalize_terms": self.normalize_terms,
            "norm_floor": self.norm_floor,
            "potential_coef": self.potential_coef,
            "kl_coef": self.kl_coef,
            "kl_ref_std": self.kl_ref_std,
            "kl_full": self.kl_full,
        }


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


ReferencePolicy = PredictPolicy


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
    returns (``[T, N, K]``) and the reference policy's actions (``[T, N, A]``).

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
        super().reset()

    def add_channels(
        self, term_rewards: np.ndarray, term_values: th.Tensor, ref_action: np.ndarray | None
    ) -> None:
        """Per-channel data of the step just added with :meth:`add` (call right after).

        :param term_rewards: ``[N, K]`` channel rewards (with truncation bootstrap).
        :param term_values: ``[N, K]`` value heads at the visited states.
        :param ref_action: ``[N, A]`` reference actions, or None.
        """
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
        coef = np.asarray(weights) * np.asarray(active, dtype=np.float32) / np.asarray(scales)
        self.advantages = (self.term_advantages * coef.astype(np.float32)).sum(-1)

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


class ShapedPPO(PPO):
    """PPO with per-term advantages, potential shaping and a KL pull to a reference.

    Takes every argument of SB3's PPO plus:

    :param policy: ``"MlpPolicy"`` (a :class:`MultiHeadActorCriticPolicy`) or a subclass
        of it.
    :param env: the training VecEnv (or env / id).
    :param shaping: the switches (a :class:`ShapingConfig` or a dict of its fields);
        None: the defaults (per-term advantages with running normalization only).
    :param reference: the reference policy of the KL penalty (e.g.
        ``agents.AEBaseline(venv)`` built on the *training* env: it reads the env's
        plant). Not saved with the model; re-attach with :meth:`set_reference` after
        ``load`` when ``kl_coef > 0``.
    :param potential_fn: ``Φ`` without the coefficient: observations ``[N, D]`` ->
        ``[N]`` (default :func:`distance_potential`, ``−distance``).
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
        potential_fn: Callable[[np.ndarray], np.ndarray] = distance_potential,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        if isinstance(shaping, Mapping):
            shaping = ShapingConfig(**shaping)
        self.shaping = shaping or ShapingConfig()
        self.reference = reference
        self.potential_fn = potential_fn
        self.term_rms: RunningMeanStd | None = None
        super().__init__(policy, env, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "reference"]

    def set_reference(self, reference: ReferencePolicy | None) -> None:
        """Attach (or detach) the KL reference policy.

        :param reference: a policy with SB3's ``predict`` acting on the training env.
        """
        self.reference = reference

    def _setup_model(self) -> None:
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
        if cfg.kl_coef > 0 and self.reference is None:
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
            if cfg.kl_coef > 0:
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
                next_obs = np.array(new_obs, copy=True)
                terminated = np.zeros(env.num_envs, dtype=bool)
                for idx, done in enumerate(dones):
                    if done and infos[idx].get("terminal_observation") is not None:
                        next_obs[idx] = infos[idx]["terminal_observation"]
                        terminated[idx] = not infos[idx].get("TimeLimit.truncated", False)
                c = cfg.potential_coef
                shaping_reward = potential_shaping(
                    c * self.potential_fn(self._last_obs),  # type: ignore[arg-type]
                    c * self.potential_fn(next_obs),
                    terminated,
                    self.gamma,
                )
            term_rewards = reward_channels(rewards, infos, cfg, shaping_reward)
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
            rollout_buffer.add_channels(term_rewards, values, ref_action)
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
            scales = np.maximum(np.sqrt(self.term_rms.var), cfg.norm_floor).astype(np.float32)
        active = np.abs(buffer.term_rewards).reshape(-1, k).max(0) > 0
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
                if cfg.kl_coef > 0:
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
