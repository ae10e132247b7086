"""Advantage-shaped PPO: per-term GAE, potential-based shaping and a KL pull to a reference.

:class:`ShapedPPO` is SB3's PPO with three switches (each off in
:meth:`ShapingConfig.off`, which reproduces PPO exactly):

1. **Per-term advantages** (``per_term``). The env's reward is a sum of named terms
   (``info["reward_terms"]``, e.g. ``aud/mel``, ``opt/resonance``, ``pen/loudness``) plus
   a residual ``other`` (whatever the terms do not explain, such as SchedulerGains'
   divergence penalty), so the channels always sum to the reward. The channels are the
   training env's own terms (``term_names=None``: its core's ``reward_fn.terms``; each
   v1 env reports its own set) unless named explicitly. The critic has one value head
   per channel, GAE runs per channel (``A_k`` from ``r_k`` and ``V_k``), each ``A_k`` is
   divided by a running estimate of its scale (``normalize_terms``), and the policy sees
   ``A = Σ_k w_k·A_k/s_k``. With unit weights and no normalization ``Σ_k A_k`` equals
   standard GAE on the total reward with ``V = Σ_k V_k`` (GAE is linear in rewards and
   values). A channel the env paid nothing on over the whole rollout contributes nothing
   (its GAE would be value-head noise only); "paid nothing" is read from the env's
   rewards *before* the timeout bootstrap ``γ·V_k(s_T)`` is added at truncations.

   **Normalization changes the objective.** ``normalize_terms=True`` reweights every
   term by ``1/s_k``, its running advantage scale: the policy follows
   ``Σ_k (w_k/s_k)·A_k``, not the env's return, and a term that pays little counts as
   much as one that pays a lot. ``normalize_terms=False`` with unit weights is the
   return-preserving setting (the advantage is PPO's on the total reward, up to float
   rounding); weights ``w_k ≠ 1`` reweight the objective on purpose.
2. **Potential-based shaping** (``potential_coef > 0``): ``F = γ·Φ(s′) − Φ(s)`` with
   ``Φ(s) = −c·distance(s)`` (the distance is the last observation entry of every aegym
   env) is added to the rewards — as its own channel ``shaping/potential`` when
   ``per_term``, else to the single total channel. ``Φ`` of a terminal state is 0
   (so termination pays ``−Φ(s)``), which keeps the optimal policy unchanged (Ng et
   al., 1999); at a time-limit truncation ``s′`` is the true last observation.
3. **KL penalty to a reference** (``kl_coef > 0``): a reference policy (passed as
   ``reference=``; the CLI builds it from ``kl_reference``: ``"ae"``, ``"adam"`` or
   ``"none"``, which turns the penalty off) acts as ``π_ref = N(a_ref(s), σ_ref²)``;
   its action is recorded at every rollout step and ``kl_coef·E[KL]`` is added to the
   policy loss. By default the KL is taken at the reference's std,
   ``KL(N(μ, σ_ref²) ‖ N(a_ref, σ_ref²)) = ‖μ − a_ref‖²/(2σ_ref²)``: it is 0
   when the policy mean equals the reference action and its gradient pulls the mean
   toward it, leaving exploration (σ) to PPO's entropy term. With
   ``kl_full=True`` it is the KL of the policy's own Gaussian ``N(μ, σ²)``, which also
   pulls σ toward σ_ref.

Layout (as an SB3 algorithm package): :mod:`~agents.shaped_ppo.config` (the switches),
:mod:`~agents.shaped_ppo.shaping` (the pure functions above), :mod:`~agents.shaped_ppo.policy`
(the multi-head critic), :mod:`~agents.shaped_ppo.buffer` (per-channel rollouts) and
:mod:`~agents.shaped_ppo.algorithm` (:class:`ShapedPPO`). Importing the package registers
``"shaped_ppo"`` in :mod:`agents.common.registry`.
"""

from __future__ import annotations

from agents.common.registry import register_algo
from agents.shaped_ppo.algorithm import ReferencePolicy, ShapedPPO
from agents.shaped_ppo.buffer import ShapedRolloutBuffer, ShapedRolloutSamples
from agents.shaped_ppo.config import (
    AEGYM_TERMS,
    KL_REFERENCES,
    POTENTIAL,
    RESIDUAL,
    TOTAL,
    ShapingConfig,
)
from agents.shaped_ppo.policy import MultiHeadActorCriticPolicy
from agents.shaped_ppo.shaping import (
    DEAD_ATOL,
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

# Ours, not a Zoo algorithm: RL Baselines3 Zoo has no file for it.
register_algo("shaped_ppo", ShapedPPO, zoo=False)

__all__ = [
    "AEGYM_TERMS",
    "DEAD_ATOL",
    "KL_REFERENCES",
    "POTENTIAL",
    "RESIDUAL",
    "TOTAL",
    "MultiHeadActorCriticPolicy",
    "ReferencePolicy",
    "ShapedPPO",
    "ShapedRolloutBuffer",
    "ShapedRolloutSamples",
    "ShapingConfig",
    "active_channels",
    "combine_advantages",
    "distance_potential",
    "gae",
    "normalization_scales",
    "potential_shaping",
    "reference_kl",
    "reward_channels",
    "true_next_observations",
]
