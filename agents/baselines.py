"""Baselines as policies with SB3's ``predict`` interface.

Every baseline answers ``predict(obs, state=None, episode_start=None,
deterministic=False) -> (actions, None)`` like an SB3 model, for a single observation
or a batch ``[n_envs, ...]``, so evaluation code treats baselines and trained models
alike.

* :class:`AEBaseline` — the AE controller in the env's own action space: on
  SchedulerGains the AE law's gain changes (:func:`aegym.envs.scheduler.ae_law_action`);
  on knob envs AE-controlled Adam steps on the env's differentiable plant
  (:class:`aegym.envs.policies.AEGradientPolicy`).
* :class:`RandomBaseline` — uniform random actions.
* :class:`StaticBaseline` — the zero action: knobs never move / gains stay constant.
* :class:`AdamBaseline` — SchedulerGains only: plain Adam at a constant, tuned learning
  rate (see :func:`tune_adam_lr`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from aegym.envs.policies import AEGradientPolicy, AELawPolicy
from aegym.envs.scheduler import SIGNAL_NAMES, SchedulerConfig, SchedulerCore
from agents.common.envs import make_vec_env
from agents.common.episodes import EpisodeSpec, run_episodes, select_targets
from agents.hyperparams import ADAM_LR_GRID, ADAM_LR_MULTIPLIER, AE_ALPHA0, TRAIN_ENV_KWARGS

#: Names accepted by :func:`make_baseline`.
BASELINE_NAMES: tuple[str, ...] = ("ae", "random", "static", "adam")

#: Index of ``log2(α/α0)`` in a SchedulerGains observation.
_ALPHA_OBS = SIGNAL_NAMES.index("alpha")


class BaselinePolicy:
    """Base of the baselines: SB3's ``predict`` on single or batched observations.

    :param observation_space: the env's single observation space.
    :param action_space: the env's single action space.
    """

    name = "baseline"

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def _is_batched(self, obs: np.ndarray) -> bool:
        return obs.ndim == len(self.observation_space.shape) + 1

    def _act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        """Actions ``[B, *action_shape]`` for a batch ``obs [B, ...]``."""
        raise NotImplementedError

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions for ``observation`` (SB3's signature; ``state`` is passed through).

        :param observation: one observation or a batch ``[n_envs, ...]``.
        :param state: unused (no recurrent state); returned unchanged.
        :param episode_start: ``[n_envs]`` bools, True where an episode has just begun;
            stateful baselines reset their per-episode state there.
        :param deterministic: unused (each baseline is either deterministic or random
            by definition).
        :return: ``(actions, state)``; actions batched like ``observation``.
        """
        obs = np.asarray(observation, dtype=np.float32)
        batched = self._is_batched(obs)
        obs_b = obs if batched else obs[None]
        if episode_start is None:
            starts = np.zeros(obs_b.shape[0], dtype=bool)
        else:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
        actions = self._act(obs_b, starts).astype(np.float32)
        return (actions if batched else actions[0]), state

    def reset(self) -> None:
        """Forget all per-episode state (no-op for stateless baselines)."""


class RandomBaseline(BaselinePolicy):
    """Uniform random actions in the action space.

    :param observation_space: the env's single observation space.
    :param action_space: the env's single action space (a bounded Box).
    :param seed: seed of the action generator.
    """

    name = "random"

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Box, seed: int = 0
    ) -> None:
        super().__init__(observation_space, action_space)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def _act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        shape = (obs.shape[0], *self.action_space.shape)
        return self.rng.uniform(self.action_space.low, self.action_space.high, size=shape)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)


class StaticBaseline(BaselinePolicy):
    """The zero action: knob envs leave the knobs where they start; SchedulerGains keeps
    the initial gains (α0, μ0, σ0) constant and runs no local tests.

    :param observation_space: the env's single observation space.
    :param action_space: the env's single action space.
    """

    name = "static"

    def _act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        return np.zeros((obs.shape[0], *self.action_space.shape), dtype=np.float32)


class AdamBaseline(BaselinePolicy):
    """SchedulerGains: plain Adam with a constant learning rate ``lr_multiplier·α0``.

    Each step the action drives ``α`` to its target (``a0 = log2(c·α0/α)``, at most a
    factor 2 per step, so a target outside ``[α0/2, 2α0]`` takes a few steps), keeps
    ``μ = μ0`` (Adam's β1, action 0), sends the dither σ down to its floor (action −1:
    no noise) and runs no local tests (action −1). The multiplier ``c`` is the best of a
    grid on train targets (:func:`tune_adam_lr`; the tuned value lives in
    :data:`agents.hyperparams.ADAM_LR_MULTIPLIER`).

    :param observation_space: the env's single observation space.
    :param action_space: the env's single action space.
    :param lr_multiplier: ``c``, the constant learning rate in units of α0 (> 0).
    """

    name = "adam"

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_multiplier: float | None = None,
    ) -> None:
        super().__init__(observation_space, action_space)
        if lr_multiplier is None:
            lr_multiplier = ADAM_LR_MULTIPLIER
        if not lr_multiplier > 0 or not math.isfinite(lr_multiplier):
            raise ValueError(f"lr_multiplier must be a finite number > 0, got {lr_multiplier!r}")
        self.lr_multiplier = float(lr_multiplier)

    def _act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        out = np.empty((obs.shape[0], *self.action_space.shape), dtype=np.float32)
        out[:, 0] = math.log2(self.lr_multiplier) - obs[:, _ALPHA_OBS]
        out[:, 1] = 0.0
        out[:, 2] = -1.0
        out[:, 3] = -1.0
        return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class _Binding:
    """Where a baseline finds the env's state: the cores and their observation rows."""

    cores: tuple[Any, ...]
    rows: tuple[slice, ...]
    observation_space: spaces.Space
    action_space: spaces.Box


def _bind(env: gym.Env | VecEnv) -> _Binding:
    """Cores of a single env, a DummyVecEnv of aegym envs or the native VecEnv."""
    if isinstance(env, VecEnv):
        inner = env.unwrapped
        obs_space, act_space = env.observation_space, env.action_space
        if hasattr(inner, "core"):
            core = inner.core
            return _Binding((core,), (slice(0, env.num_envs),), obs_space, act_space)
        if isinstance(inner, DummyVecEnv):
            cores = tuple(e.unwrapped.core for e in inner.envs)  # type: ignore[attr-defined]
            rows = tuple(slice(i, i + 1) for i in range(len(cores)))
            return _Binding(cores, rows, obs_space, act_space)
        raise TypeError(
            f"AEBaseline needs a single aegym env, a DummyVecEnv of them or aegym's native "
            f"VecEnv; got {type(inner).__name__} (subprocess envs hide the plant)"
        )
    unwrapped = env.unwrapped
    if not hasattr(unwrapped, "core"):
        raise TypeError(f"AEBaseline needs an aegym env, got {type(unwrapped).__name__}")
    return _Binding((unwrapped.core,), (slice(0, 1),), env.observation_space, env.action_space)  # type: ignore[arg-type]


class AEBaseline(BaselinePolicy):
    """The AE controller acting in any aegym env (single env, DummyVecEnv or native).

    * SchedulerGains: the AE law's gain changes read from the observation
      (:class:`aegym.envs.policies.AELawPolicy`, i.e. ``ae_law_action``); stateless.
    * Knob envs (SoundMatch, SoundMatchLive): AE-controlled Adam steps on the env's
      differentiable plant (:class:`aegym.envs.policies.AEGradientPolicy`), expressed as
      knob moves. The policy reads the plant's *current* state, so it must act on the
      env it was built from, and it keeps per-episode optimizer state: pass
      ``episode_start`` (SB3's ``evaluate_policy`` and :mod:`agents.common.episodes` do).

    :param env: the env the baseline acts in.
    :param alpha0: reference step of the gradient policy (normalized knob units; None:
        :data:`agents.hyperparams.AE_ALPHA0`).
    :param seed: seed of the gradient policy's dither noise.
    """

    name = "ae"

    def __init__(self, env: gym.Env | VecEnv, alpha0: float | None = None, seed: int = 0) -> None:
        binding = _bind(env)
        super().__init__(binding.observation_space, binding.action_space)
        self.binding = binding
        self.alpha0 = AE_ALPHA0 if alpha0 is None else alpha0
        self.seed = seed
        first = binding.cores[0]
        self.is_scheduler = isinstance(first, SchedulerCore) or isinstance(
            getattr(first, "config", None), SchedulerConfig
        )
        self.law: AELawPolicy | None = None
        self.gradient: list[AEGradientPolicy] = []
        self.reset()

    def reset(self) -> None:
        if self.is_scheduler:
            self.law = AELawPolicy(self.binding.cores[0].config)
        else:
            self.gradient = [
                AEGradientPolicy(core, alpha0=self.alpha0, seed=self.seed + i)
                for i, core in enumerate(self.binding.cores)
            ]

    def _act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        if self.law is not None:
            return self.law(obs)
        n_rows = sum(r.stop - r.start for r in self.binding.rows)
        if obs.shape[0] != n_rows:
            raise ValueError(
                f"AEBaseline acts on the {n_rows} episode(s) of its env, got a batch of "
                f"{obs.shape[0]} observations"
            )
        parts = [
            pol(obs[rows], episode_start[rows])
            for pol, rows in zip(self.gradient, self.binding.rows, strict=True)
        ]
        return np.concatenate(parts, 0)


def make_baseline(
    name: str, env: gym.Env | VecEnv, seed: int = 0, lr_multiplier: float | None = None
) -> BaselinePolicy:
    """A baseline by name for ``env``.

    :param name: one of :data:`BASELINE_NAMES`.
    :param env: the env (single or vector) the baseline will act in.
    :param seed: seed of random baselines and the AE dither.
    :param lr_multiplier: AdamBaseline's constant learning rate in units of α0
        (None: the tuned default).
    :raises ValueError: unknown name, or ``"adam"`` on a knob env.
    """
    obs_space, act_space = env.observation_space, env.action_space
    if name == "ae":
        return AEBaseline(env, seed=seed)
    if name == "random":
        return RandomBaseline(obs_space, act_space, seed=seed)  # type: ignore[arg-type]
    if name == "static":
        return StaticBaseline(obs_space, act_space)  # type: ignore[arg-type]
    if name == "adam":
        if act_space.shape != (4,) or obs_space.shape != (len(SIGNAL_NAMES),):
            raise ValueError(
                "the 'adam' baseline sets optimizer gains and only exists for "
                "AEGym/SchedulerGains-v1"
            )
        return AdamBaseline(obs_space, act_space, lr_multiplier)  # type: ignore[arg-type]
    raise ValueError(f"unknown baseline {name!r}; allowed: {', '.join(BASELINE_NAMES)}")


@dataclass(frozen=True)
class AdamTuning:
    """Outcome of :func:`tune_adam_lr`.

    :param best: the multiplier with the lowest mean final distance.
    :param mean_final_distance: multiplier -> mean final distance over the episodes.
    :param n_episodes: episodes per multiplier.
    """

    best: float
    mean_final_distance: dict[float, float]
    n_episodes: int


def tune_adam_lr(
    multipliers: Sequence[float] = ADAM_LR_GRID,
    n_targets: int = 16,
    seeds: Sequence[int] = (0, 1),
    native: bool = True,
    **env_kwargs: Any,
) -> AdamTuning:
    """Pick AdamBaseline's constant learning rate on SchedulerGains' *train* targets.

    Every multiplier runs the same episodes (``n_targets`` train targets spread evenly
    over the set, each with every seed, same start knobs); the one with the lowest mean
    final distance wins (ties: the smaller multiplier). The test set is never touched.

    :param multipliers: candidate learning rates in units of α0.
    :param n_targets: train targets per candidate.
    :param seeds: episode seeds.
    :param native: use the native batched vector env when available.
    :param env_kwargs: SchedulerGains keyword arguments (``target`` is forced to "train").
    """
    env_kwargs = {**env_kwargs, **TRAIN_ENV_KWARGS}
    env_id = "AEGym/SchedulerGains-v1"
    specs = [
        EpisodeSpec(t, s)
        for t in select_targets(env_id, "train", n_targets, env_kwargs)
        for s in seeds
    ]
    results: dict[float, float] = {}
    venv = make_vec_env(env_id, len(specs), seed=0, native=native, **env_kwargs)
    try:
        for c in multipliers:
            agent = AdamBaseline(venv.observation_space, venv.action_space, c)  # type: ignore[arg-type]
            episodes = run_episodes(venv, agent, specs)
            results[float(c)] = float(np.mean([e.final_distance for e in episodes]))
    finally:
        venv.close()
    best = min(sorted(results), key=lambda c: results[c])
    return AdamTuning(best, results, len(specs))
