"""The AE controller as a policy in each env's own action space.

* :class:`AELawPolicy` — SchedulerGains: the adaptive law's gain changes, read from the
  observation (:func:`aegym.envs.scheduler.ae_law_action`).
* :class:`AEGradientPolicy` — knob envs: Adam (β1 = μ) steps on the env's
  differentiable plant with the AE law adapting (α, μ, σ) from the observed distance;
  the action is the step divided by the env's ``max_move`` (clipped to [-1, 1]).

Both work on any batch of episodes (a single env's core has batch 1, a native vector
env's core batch N) and keep per-episode state, reset through ``episode_start``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from aegym.controller import AEConfig, AEController
from aegym.envs.scheduler import SchedulerConfig, ae_law_action


class DifferentiableCore(Protocol):
    """What :class:`AEGradientPolicy` needs from a knob env's batched core."""

    batch: int
    n_free: int
    config: Any
    knobs: torch.Tensor
    free_idx: torch.Tensor

    def loss_and_grad(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class AELawPolicy:
    """The AE adaptive law acting in ``AEGym/SchedulerGains-v0``."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        """``obs [14]`` or ``[B, 14]`` -> action of the same batch shape."""
        obs = np.asarray(obs, dtype=np.float32)
        act = ae_law_action(obs, self.config)
        return act[0] if obs.ndim == 1 else act


class AEGradientPolicy:
    """AE-controlled gradient steps on a knob env's plant, expressed as knob moves.

    Per episode: ``g = ∇_θ d(θ)``; ``m ← μm + (1-μ)g``, ``v ← β2 v + (1-β2)g²``;
    ``Δθ = -α m̂/(√v̂ + ε) + σ·max(RMS θ, floor)·η``; action ``= clip(Δθ / max_move)``.
    An :class:`AEController` per episode observes the distance and adapts (α, μ, σ)
    by the seed's law.

    :param core: the env's batched core (``env.unwrapped.core`` or a vector env's core).
    :param alpha0: reference step size in normalized knob units.
    :param config: AE law constants (``update_rule`` is ignored: Adam is used).
    :param seed: seed of the dither noise.
    """

    def __init__(
        self,
        core: DifferentiableCore,
        alpha0: float = 0.05,
        config: AEConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.core = core
        self.alpha0 = alpha0
        self.law = config or AEConfig()
        self.generator = torch.Generator().manual_seed(seed)
        self.reset_all()

    def reset_all(self) -> None:
        b, f = self.core.batch, self.core.n_free
        self.m = torch.zeros(b, f)
        self.v = torch.zeros(b, f)
        self.t = torch.zeros(b)
        self.controllers = [AEController(self.alpha0, self.law) for _ in range(b)]

    def _reset(self, mask: np.ndarray) -> None:
        for i in np.flatnonzero(mask):
            self.m[i] = 0.0
            self.v[i] = 0.0
            self.t[i] = 0.0
            self.controllers[i] = AEController(self.alpha0, self.law)

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        if episode_start is not None:
            self._reset(np.asarray(episode_start, dtype=bool).reshape(-1))
        dist, grad = self.core.loss_and_grad()
        grad = grad.cpu().double().float()
        gains = []
        for i, ctrl in enumerate(self.controllers):
            d = float(dist[i])
            if np.isfinite(d):
                ctrl.observe(d)
            gains.append(ctrl.gains)
        alpha = torch.tensor([g.alpha for g in gains])[:, None]
        mu = torch.tensor([g.momentum for g in gains])[:, None]
        sigma = torch.tensor([g.sigma for g in gains])[:, None]
        beta2 = self.law.adam_beta2
        self.m = mu * self.m + (1 - mu) * grad
        self.v = beta2 * self.v + (1 - beta2) * grad * grad
        self.t += 1
        # Bias correction with the current μ (an approximation when μ varies).
        m_hat = self.m / (1 - mu.squeeze(-1) ** self.t)[:, None]
        v_hat = self.v / (1 - beta2**self.t)[:, None]
        step = -alpha * m_hat / (v_hat.sqrt() + self.law.adam_eps)
        theta = self.core.knobs[:, self.core.free_idx].cpu()
        shape = theta.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(self.law.dither_floor)
        step = step + sigma * shape * torch.randn(theta.shape, generator=self.generator)
        action = (step / self.core.config.max_move).clamp(-1.0, 1.0).numpy().astype(np.float32)
        return action[0] if np.asarray(obs).ndim == 1 else action
