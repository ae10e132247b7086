"""The AE controller as a policy in each env's own action space.

* :class:`AELawPolicy` — SchedulerGains: the adaptive law's gain changes, read from the
  observation (:func:`aegym.envs.scheduler.ae_law_action`).
* :class:`AEGradientPolicy` — knob envs: steps of the AE plant (Adam with β1 = μ,
  shaped dither; :mod:`aegym.control.plant`) on the env's differentiable synth, with
  the batched AE law adapting (α, μ, σ) from the observed distance; the action is the
  step divided by the env's ``max_move`` (clipped to [-1, 1]).

Both work on any batch of episodes (a single env's core has batch 1, a native vector
env's core batch N) and keep per-episode state, reset through ``episode_start``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch

from aegym.control import law, plant
from aegym.control.config import AEConfig
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
    """The AE adaptive law acting in ``AEGym/SchedulerGains-v1``.

    :param config: the env's settings (decode the observation).
    :param law_config: the law's constants (None: the env's ``config.law``); see
        :func:`aegym.envs.scheduler.ae_law_action`.
    """

    def __init__(self, config: SchedulerConfig, law_config: AEConfig | None = None) -> None:
        self.config = config
        self.law_config = law_config

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        """``obs [19]`` or ``[B, 19]`` -> action of the same batch shape."""
        obs = np.asarray(obs, dtype=np.float32)
        act = ae_law_action(obs, self.config, self.law_config)
        return act[0] if obs.ndim == 1 else act


class AEGradientPolicy:
    """AE-controlled gradient steps on a knob env's plant, expressed as knob moves.

    Per episode: ``g = ∇_θ d(θ)``; one step of the AE plant
    (:func:`aegym.control.plant.step`: Adam with β1 = μ and the exact bias correction
    ``1 − Π μ_t``, plus the dither ``σ·max(RMS θ, floor)·η``) gives the move Δθ; the
    action is ``clip(Δθ / max_move)``. A batched
    :class:`~aegym.control.law.LawState` observes each episode's distance and adapts
    (α, μ, σ) by the seed's law.

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
        self.config = config or AEConfig()
        self.plant_config = replace(self.config, update_rule="adam")
        self.generator = torch.Generator().manual_seed(seed)
        self.reset_all()

    def reset_all(self) -> None:
        b, f = self.core.batch, self.core.n_free
        self.plant = plant.init_plant(b, f)
        self.law = law.init_state(b, self.alpha0, self.config)

    def _reset(self, mask: np.ndarray) -> None:
        m = torch.from_numpy(mask)
        self.plant = plant.reset_plant(self.plant, m)
        self.law = law.reset_state(self.law, m, self.config)

    def _noise(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.randn(theta.shape, generator=self.generator)

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        if episode_start is not None:
            self._reset(np.asarray(episode_start, dtype=bool).reshape(-1))
        dist, grad = self.core.loss_and_grad()
        dist, grad = dist.detach().cpu(), grad.detach().cpu().float()
        seen = dist.isfinite()
        self.law = law.observe(self.law, dist, None, self.config, mask=seen)
        s = self.law
        theta = self.core.knobs[:, self.core.free_idx].detach().cpu()
        moved = plant.step(
            self.plant,
            theta,
            grad,
            s.alpha,
            s.momentum,
            s.sigma,
            self.plant_config,
            noise=self._noise(theta),
            mask=seen & grad.isfinite().all(-1),
        )
        self.plant = moved.state
        action = (moved.move / self.core.config.max_move).clamp(-1.0, 1.0)
        action = action.numpy().astype(np.float32)
        return action[0] if np.asarray(obs).ndim == 1 else action
