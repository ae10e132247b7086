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

#: Most candidate renders in one batched call (memory: audio and features of each).
_RENDER_CHUNK = 1024


@torch.no_grad()
def candidate_distances(core: Any, cand: torch.Tensor) -> torch.Tensor:
    """Distances ``[B, K]`` of candidate free knobs ``cand [B, K, F]`` of every episode
    (privileged renders; the core's state is unchanged). Note cores (SoundMatch) render
    all ``B·K`` in batched calls (``render_distance`` with repeated rows); others
    (SoundMatchLive) call ``distance_at`` once per candidate column."""
    b, k, f = cand.shape
    cand = cand.to(core.free_knobs)
    if hasattr(core, "render_distance"):
        flat = cand.reshape(b * k, f)
        rows = torch.arange(b, device=flat.device).repeat_interleave(k)
        parts = [
            core.render_distance(flat[lo : lo + _RENDER_CHUNK], rows[lo : lo + _RENDER_CHUNK])[0]
            for lo in range(0, b * k, _RENDER_CHUNK)
        ]
        out = torch.cat(parts).reshape(b, k)
    else:
        out = torch.stack([core.distance_at(cand[:, j]) for j in range(k)], 1)
    return torch.where(out.isfinite(), out, torch.inf).cpu()


class RowView:
    """``render_distance`` and ``free_knobs`` of a subset ``rows`` of a note core's rows."""

    def __init__(self, core: Any, rows: torch.Tensor) -> None:
        self.core, self.rows = core, rows.to(core.free_knobs.device)
        self.free_knobs = core.free_knobs[self.rows]

    def render_distance(self, free: torch.Tensor, rows: torch.Tensor) -> Any:
        return self.core.render_distance(free, self.rows[rows])


def row_distances(core: Any, cand: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Distances ``[R, K]`` of candidates ``cand [R, K, F]`` of the episodes ``rows [R]``
    (a :data:`aegym.control.plant.ProbeEval`): only those rows are rendered on note
    cores; other cores render the whole batch (the other rows at their knobs)."""
    if hasattr(core, "render_distance"):
        return candidate_distances(RowView(core, rows), cand)
    full = core.free_knobs.detach()[:, None].expand(-1, cand.shape[1], -1).clone()
    full[rows.to(full.device)] = cand.to(full)
    return candidate_distances(core, full)[rows.cpu()]


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
    ``1 − Π μ_t``, plus the dither ``min(σ·max(RMS θ, floor), RMS u)·η``) gives the new
    θ; every ``config.test_every`` steps a local test renders ``config.n_probes``
    probes around θ (:func:`aegym.control.plant.local_test`, privileged renders against
    the target) and a winning probe is averaged in (``config.rho``). The action is
    ``clip((θ_new − θ) / max_move)``. A batched :class:`~aegym.control.law.LawState`
    observes each episode's distance (and the tests' success) and adapts (α, μ, σ) by
    the seed's law.

    :param core: the env's batched core (``env.unwrapped.core`` or a vector env's core).
    :param alpha0: reference step size in normalized knob units.
    :param config: AE law constants (``update_rule`` is ignored: Adam is used;
        ``n_probes = 0`` switches the local tests off).
    :param seed: seed of the dither and probe noise.
    :param adapt: False freezes the law (α = α0, μ = μ0, σ = σ0 throughout): the
        plain plant with the same constants, for ablations.
    """

    def __init__(
        self,
        core: DifferentiableCore,
        alpha0: float = 0.05,
        config: AEConfig | None = None,
        seed: int = 0,
        adapt: bool = True,
    ) -> None:
        self.core = core
        self.alpha0 = alpha0
        self.config = config or AEConfig()
        self.plant_config = replace(self.config, update_rule="adam")
        self.adapt = adapt
        self.generator = torch.Generator().manual_seed(seed)
        #: Rows that ran a local test at the last call (``n_probes`` renders each).
        self.tested = torch.zeros(core.batch, dtype=torch.bool)
        self.reset_all()

    def reset_all(self) -> None:
        b, f = self.core.batch, self.core.n_free
        self.plant = plant.init_plant(b, f)
        self.law = law.init_state(b, self.alpha0, self.config)

    def _reset(self, mask: np.ndarray) -> None:
        m = torch.from_numpy(mask)
        self.plant = plant.reset_plant(self.plant, m)
        self.law = law.reset_state(self.law, m, self.config)

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator)

    def _local_test(
        self, theta: torch.Tensor, dist: torch.Tensor, good: torch.Tensor
    ) -> plant.ProbeResult | None:
        """Probe the rows due for a test (every ``test_every`` observations)."""
        cfg = self.config
        due = good & (self.law.step % cfg.test_every == 0)
        if cfg.n_probes == 0 or not bool(due.any()):
            self.tested = torch.zeros_like(due)
            return None
        probes = plant.local_test(
            theta,
            dist,
            self._noise((theta.shape[0], cfg.n_probes, theta.shape[1])),
            lambda cand, rows: row_distances(self.core, cand, rows),
            self.plant_config,
            bounds=(0.0, 1.0),
            mask=due,
        )
        self.tested = probes.tested
        self.law = law.record_local_test(self.law, probes.success, cfg, mask=probes.tested)
        return probes

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        if episode_start is not None:
            self._reset(np.asarray(episode_start, dtype=bool).reshape(-1))
        dist, grad = self.core.loss_and_grad()
        dist, grad = dist.detach().cpu(), grad.detach().cpu().float()
        seen = dist.isfinite()
        self.law = law.observe(self.law, dist, None, self.config, mask=seen, adapt=self.adapt)
        theta = self.core.knobs[:, self.core.free_idx].detach().cpu()
        good = seen & grad.isfinite().all(-1)
        probes = self._local_test(theta, dist, good)
        s = self.law
        moved = plant.step(
            self.plant,
            theta,
            grad,
            s.alpha,
            s.momentum,
            s.sigma,
            self.plant_config,
            noise=self._noise(tuple(theta.shape)),
            bounds=(0.0, 1.0),
            mask=good,
            probes=probes,
        )
        self.plant = moved.state
        action = ((moved.theta - theta) / self.core.config.max_move).clamp(-1.0, 1.0)
        action = action.numpy().astype(np.float32)
        return action[0] if np.asarray(obs).ndim == 1 else action
