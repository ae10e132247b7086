"""Baselines as policies with SB3's ``predict`` interface.

Every baseline answers ``predict(obs, state=None, episode_start=None,
deterministic=False) -> (actions, None)`` like an SB3 model, for a single observation
or a batch ``[n_envs, ...]``, so evaluation code treats baselines and trained models
alike.

* :class:`AEBaseline` — the AE controller in the env's own action space: on
  SchedulerGains the AE law's gain changes (:func:`aegym.envs.scheduler.ae_law_action`);
  on knob envs AE-controlled Adam steps on the env's differentiable plant
  (:class:`aegym.envs.policies.AEGradientPolicy`; on the tracking env with fixed
  momentum, :data:`agents.hyperparams.AE_TRACKING_LAW`); the law's constants are tuned
  on train targets (``python -m agents tune-ae``, :func:`agents.hyperparams.ae_law_settings`).
* :class:`RandomBaseline` — uniform random actions.
* :class:`StaticBaseline` — the zero action: knobs never move / gains stay constant.
* :class:`AdamBaseline` — SchedulerGains: plain Adam at a constant, tuned learning
  rate (see :func:`tune_adam_lr`).

The ladder of privileged baselines ("Baselines at equal budget"): each says what it may
see beyond the observation (:attr:`BaselinePolicy.privileged`) and what it spends beyond
the env step itself (:attr:`BaselinePolicy.budget`, counted in ``renders`` /
``gradient_evals`` / ``hindsight_episodes``):

* :class:`OracleBaseline` (``"oracle"``, knob envs, ``("true_knobs",)``) — straight to
  the true free knobs at full speed; on SoundMatchLive it tracks the knobs the next step
  hears (``core.next_target_knobs()``). Raises where a target has no true knobs.
* :class:`SchedulerOracleBaseline` (``"oracle"``, SchedulerGains, ``("hindsight",)``) —
  the best of a grid of realizable constant-lr schedules, picked by replaying the
  episode (same start, same noise) in hindsight.
* :class:`AdamKnobBaseline` (``"adam"``, knob envs, ``("gradients",)``) — plain Adam
  on the plant at a constant tuned lr (:func:`tune_adam_knob_lr`), as knob moves.
* :class:`RandomSearchBaseline` (``"random_search"``, ``("renders",)``) and
  :class:`CMAESBaseline` (``"cmaes"``, ``("renders",)``, needs ``cma``) — black-box
  optimizers spending a fixed number of extra renders per env step; the knobs move
  toward the best point rendered so far (CMA-ES optionally toward its search mean).
* :class:`NearestBaseline` (``"nearest"``, ``("renders",)``) — retrieval: the best of
  a seeded bank of random patches, rendered once at the episode's first step, then hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from aegym.control import plant
from aegym.control.config import AEConfig
from aegym.envs import scheduler as sched
from aegym.envs.live import LiveCore
from aegym.envs.policies import AEGradientPolicy, AELawPolicy, RowView, candidate_distances
from aegym.envs.scheduler import SIGNAL_NAMES, SchedulerConfig, SchedulerCore
from agents.common.envs import env_family, make_vec_env
from agents.common.episodes import EpisodeSpec, run_episodes, select_targets
from agents.hyperparams import (
    ADAM_KNOB_LR,
    ADAM_KNOB_LR_GRID,
    ADAM_LR_GRID,
    ADAM_LR_MULTIPLIER,
    AE_ALPHA0,
    ae_law_settings,
)

#: Names accepted by :func:`make_baseline`.
BASELINE_NAMES: tuple[str, ...] = (
    "ae",
    "random",
    "static",
    "adam",
    "oracle",
    "random_search",
    "cmaes",
    "nearest",
)

#: Env families (:data:`agents.common.envs.ENV_FAMILIES`) each baseline exists for.
BASELINE_FAMILIES: dict[str, tuple[str, ...]] = {
    "ae": ("knob", "scheduler"),
    "random": ("knob", "scheduler"),
    "static": ("knob", "scheduler"),
    "adam": ("knob", "scheduler"),
    "oracle": ("knob", "scheduler"),
    "random_search": ("knob",),
    "cmaes": ("knob",),
    "nearest": ("knob",),
}

#: What a baseline spends beyond the env step (counters of :class:`BaselinePolicy`).
SPEND_KINDS: tuple[str, ...] = ("renders", "gradient_evals", "hindsight_episodes")

#: Budget keys of :attr:`BaselinePolicy.budget` and their short units (table text).
_BUDGET_UNITS: tuple[tuple[str, str], ...] = (
    ("renders_per_step", "renders/step"),
    ("renders_at_start", "renders at start"),
    ("gradients_per_step", "gradient/step"),
    ("hindsight_episodes", "hindsight episodes/episode"),
    ("renders_per_local_test", "renders/local test"),
    ("steps_per_local_test", "steps between local tests"),
)


def check_baseline(name: str, env_id: str) -> None:
    """Raise unless baseline ``name`` exists for ``env_id`` (name and family checked).

    :raises ValueError: unknown baseline, or one not defined for the env's family.
    """
    if name not in BASELINE_NAMES:
        raise ValueError(f"unknown baseline {name!r}; allowed: {', '.join(BASELINE_NAMES)}")
    family = env_family(env_id)
    if family not in BASELINE_FAMILIES[name]:
        allowed = [n for n in BASELINE_NAMES if family in BASELINE_FAMILIES[n]]
        raise ValueError(
            f"the {name!r} baseline only exists for knob envs (SoundMatch*, SoundMatchLive); "
            f"allowed on {env_id}: {', '.join(allowed)}"
        )


#: Index of ``log2(α/α0)`` in a SchedulerGains observation.
_ALPHA_OBS = SIGNAL_NAMES.index("alpha")


class BaselinePolicy:
    """Base of the baselines: SB3's ``predict`` on single or batched observations.

    :param observation_space: the env's single observation space.
    :param action_space: the env's single action space.
    """

    name = "baseline"
    #: What the baseline sees beyond the observation: ``"true_knobs"`` (the target's
    #: knobs), ``"gradients"`` (of the distance w.r.t. the free knobs), ``"renders"``
    #: (extra renders of candidate knobs against the target), ``"hindsight"`` (replays
    #: of the episode); ``()``: the observation only.
    privileged: tuple[str, ...] = ()
    #: Extra cost per episode row beyond the env step itself (keys of
    #: :data:`_BUDGET_UNITS`; absent = 0). Spent amounts are counted in ``renders``,
    #: ``gradient_evals`` and ``hindsight_episodes`` (summed over rows and steps) and,
    #: per batch row, in :meth:`spent_per_row` (what :func:`run_episodes` reads when an
    #: episode ends, so that auto-reset and padded rows are not charged to it).
    budget: Mapping[str, int] = MappingProxyType({})

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.renders = 0
        self.gradient_evals = 0
        self.hindsight_episodes = 0
        self._row_spent: dict[str, np.ndarray] = {}

    def _spend(self, kind: str, rows: slice | np.ndarray | torch.Tensor, amount: int) -> None:
        """Charge ``amount`` of ``kind`` (a key of :data:`SPEND_KINDS`) to each batch row
        in ``rows`` (global row indices or a slice of them) and to the total."""
        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy()
        idx = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else np.asarray(rows)
        idx = idx.astype(np.int64).ravel()
        if idx.size == 0:
            return
        arr = self._row_spent.get(kind, np.zeros(0, dtype=np.int64))
        if arr.size <= idx.max():
            arr = np.concatenate([arr, np.zeros(int(idx.max()) + 1 - arr.size, dtype=np.int64)])
        np.add.at(arr, idx, int(amount))
        self._row_spent[kind] = arr
        setattr(self, kind, getattr(self, kind) + int(amount) * int(idx.size))

    def spent_per_row(self, n_rows: int) -> dict[str, np.ndarray]:
        """Cumulative spend per batch row since construction, ``kind -> [n_rows]`` ints
        (every kind of :data:`SPEND_KINDS`; a copy). The spend of one episode is the
        difference between two reads: at its reset and right after its last step.

        :param n_rows: rows of the batch (the VecEnv's ``num_envs``).
        """
        out = {}
        for kind in SPEND_KINDS:
            arr = np.zeros(n_rows, dtype=np.int64)
            have = self._row_spent.get(kind, arr)[:n_rows]
            arr[: have.size] = have
            out[kind] = arr
        return out

    def budget_text(self) -> str:
        """The budget in words for tables ("8 renders/step"; "—" when nothing extra)."""
        parts = [f"{self.budget[k]} {u}" for k, u in _BUDGET_UNITS if self.budget.get(k)]
        return ", ".join(parts) or "—"

    def cost_summary(self) -> dict[str, Any]:
        """JSON-ready: privileged access, the declared budget and what was spent."""
        return {
            "privileged": list(self.privileged),
            "budget": dict(self.budget),
            "budget_text": self.budget_text(),
            "spent": {
                "renders": self.renders,
                "gradient_evals": self.gradient_evals,
                "hindsight_episodes": self.hindsight_episodes,
            },
        }

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

    The law's constants are the tuned ones of the env
    (:func:`agents.hyperparams.ae_law_settings`, from ``python -m agents tune-ae``)
    unless ``config`` is given. On knob envs the local tests render ``n_probes``
    probes every ``test_every`` steps (counted in ``renders``).

    :param env: the env the baseline acts in.
    :param alpha0: reference step of the gradient policy (normalized knob units; None:
        the tuned one, else :data:`agents.hyperparams.AE_ALPHA0`).
    :param seed: seed of the gradient policy's dither and probe noise.
    :param config: the law's constants (None: the env's tuned setting).
    :param adapt: False freezes the law (knob envs: α0, μ0, σ0 throughout) — ablations.
    """

    name = "ae"

    def __init__(
        self,
        env: gym.Env | VecEnv,
        alpha0: float | None = None,
        seed: int = 0,
        config: AEConfig | None = None,
        adapt: bool = True,
    ) -> None:
        binding = _bind(env)
        super().__init__(binding.observation_space, binding.action_space)
        self.binding = binding
        first = binding.cores[0]
        self.is_scheduler = isinstance(first, SchedulerCore) or isinstance(
            getattr(first, "config", None), SchedulerConfig
        )
        kind = (
            "scheduler"
            if self.is_scheduler
            else "live"
            if isinstance(first, LiveCore)
            else "sound_match"
        )
        tuned = ae_law_settings(kind)
        self.alpha0 = (tuned.alpha0 or AE_ALPHA0) if alpha0 is None else alpha0
        self.config = tuned.config if config is None else config
        self.adapt = adapt
        self.seed = seed
        self.law: AELawPolicy | None = None
        self.gradient: list[AEGradientPolicy] = []
        if not self.is_scheduler:
            self.privileged = ("gradients",)
            self.budget = {"gradients_per_step": 1}
            if self.config.n_probes:
                self.privileged = ("gradients", "renders")
                self.budget |= {
                    "renders_per_local_test": self.config.n_probes,
                    "steps_per_local_test": self.config.test_every,
                }
        self.reset()

    def reset(self) -> None:
        if self.is_scheduler:
            self.law = AELawPolicy(self.binding.cores[0].config, self.config)
        else:
            self.gradient = [
                AEGradientPolicy(
                    core,
                    alpha0=self.alpha0,
                    config=self.config,
                    seed=self.seed + i,
                    adapt=self.adapt,
                )
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
        parts = []
        for pol, rows in zip(self.gradient, self.binding.rows, strict=True):
            parts.append(pol(obs[rows], episode_start[rows]))
            tested = np.arange(rows.start, rows.stop)[pol.tested.numpy()]
            self._spend("renders", tested, pol.config.n_probes)
        self._spend("gradient_evals", slice(0, n_rows), 1)
        return np.concatenate(parts, 0)


def _env_label(env: gym.Env | VecEnv, core: Any) -> str:
    """The env's id where it can be read (single env, DummyVecEnv), else the core's type."""
    for e in (env, *getattr(env, "envs", ())[:1]):
        spec = getattr(e, "spec", None)
        if getattr(spec, "id", None):
            return str(spec.id)
    return f"the env of {type(core).__name__}"


def _max_move(core: Any) -> float:
    return float(core.config.max_move)


def _toward(core: Any, goal: torch.Tensor) -> np.ndarray:
    """Action moving the free knobs toward ``goal [B, F]`` at full speed (then holding)."""
    act = ((goal.to(core.free_knobs) - core.free_knobs) / _max_move(core)).clamp(-1.0, 1.0)
    return act.detach().cpu().numpy().astype(np.float32)


class CoreBaseline(BaselinePolicy):
    """A baseline that reads the env's cores (single env, DummyVecEnv or native VecEnv):
    :meth:`_act_core` acts for one core's rows; per-core state is keyed by core index."""

    def __init__(self, env: gym.Env | VecEnv) -> None:
        binding = _bind(env)
        super().__init__(binding.observation_space, binding.action_space)
        self.binding = binding
        self.env_label = _env_label(env, binding.cores[0])

    def _act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        n_rows = sum(r.stop - r.start for r in self.binding.rows)
        if obs.shape[0] != n_rows:
            raise ValueError(
                f"{type(self).__name__} acts on the {n_rows} episode(s) of its env, got a "
                f"batch of {obs.shape[0]} observations"
            )
        pairs = zip(self.binding.cores, self.binding.rows, strict=True)
        parts = [
            self._act_core(i, core, torch.from_numpy(episode_start[rows].copy()))
            for i, (core, rows) in enumerate(pairs)
        ]
        return np.concatenate(parts, 0)

    def _act_core(self, i: int, core: Any, start: torch.Tensor) -> np.ndarray:
        """Actions ``[B_i, ...]`` for core ``i`` (``start [B_i]``: rows just reset)."""
        raise NotImplementedError

    def _rows(self, i: int, local: torch.Tensor | None = None) -> np.ndarray:
        """Batch rows (global indices) of core ``i``'s rows ``local`` (None: all)."""
        sl = self.binding.rows[i]
        if local is None:
            return np.arange(sl.start, sl.stop)
        return sl.start + local.cpu().numpy().astype(np.int64)


class OracleBaseline(CoreBaseline):
    """Knob envs: straight to the true free knobs at full speed, then hold.

    ``action = clip((truth − now) / max_move, −1, 1)`` with ``truth`` the target's free
    knobs (``core.true_free_knobs()``); on SoundMatchLive the knobs the *next* step will
    hear (``core.next_target_knobs()``), so it tracks the glide. Only defined where every
    target has true knobs (in-domain targets): else :class:`ValueError` at construction.
    """

    name = "oracle"
    privileged = ("true_knobs",)

    def __init__(self, env: gym.Env | VecEnv) -> None:
        super().__init__(env)
        for core in self.binding.cores:
            known = getattr(core, "has_true_knobs", None)
            if known is None:
                raise TypeError(f"the oracle needs a knob env, got {type(core).__name__}")
            missing = [t.name for t, k in zip(core.targets, known.tolist(), strict=True) if not k]
            if missing:
                raise ValueError(
                    f"the 'oracle' baseline needs true knobs, but {len(missing)} of the "
                    f"{len(core.targets)} targets of {self.env_label} have none (recordings, "
                    f"out-of-domain sounds), e.g. {missing[0]!r}; use in-domain targets "
                    "(AEGym/SoundMatch-Easy-v1/-Medium-v1, or target_kinds=['in_domain'])"
                )

    def _act_core(self, i: int, core: Any, start: torch.Tensor) -> np.ndarray:
        if hasattr(core, "next_target_knobs"):
            truth = core.next_target_knobs()[:, core.free_idx]
            truth = torch.where(core.streaming[:, None], torch.nan, truth)
        else:
            truth = core.true_free_knobs()
        if bool(truth.isnan().any()):
            raise ValueError(f"the oracle met an episode without true knobs in {self.env_label}")
        return _toward(core, truth)


class AdamKnobBaseline(CoreBaseline):
    """Knob envs: plain Adam on the differentiable plant, as knob moves.

    The AE plant step (:func:`aegym.control.plant.step`, Adam with β1 = ``momentum``,
    β2 and ε of :class:`~aegym.control.config.AEConfig`) with the gains frozen: constant
    ``lr`` (normalized knob units), no dither, no local tests — i.e.
    :class:`aegym.envs.policies.AEGradientPolicy` without the AE law. Action
    ``clip(Δθ / max_move)``. One gradient per step and episode; ``lr`` is tuned on the
    train set (:func:`tune_adam_knob_lr`, :data:`agents.hyperparams.ADAM_KNOB_LR`).

    :param lr: constant step size (None: the tuned one).
    :param momentum: Adam's β1.
    """

    name = "adam"
    privileged = ("gradients",)
    budget: Mapping[str, int] = MappingProxyType({"gradients_per_step": 1})

    def __init__(
        self, env: gym.Env | VecEnv, lr: float | None = None, momentum: float = 0.9
    ) -> None:
        super().__init__(env)
        lr = ADAM_KNOB_LR if lr is None else lr
        if not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        self.lr, self.momentum = float(lr), float(momentum)
        self.plant_config = AEConfig(update_rule="adam")
        self.reset()

    def reset(self) -> None:
        self.plants = [plant.init_plant(c.batch, c.n_free) for c in self.binding.cores]

    def _act_core(self, i: int, core: Any, start: torch.Tensor) -> np.ndarray:
        state = plant.reset_plant(self.plants[i], start)
        dist, grad = core.loss_and_grad()
        dist, grad = dist.detach().cpu(), grad.detach().cpu().float()
        self._spend("gradient_evals", self._rows(i), 1)
        b = core.batch
        moved = plant.step(
            state,
            core.free_knobs.detach().cpu(),
            grad,
            torch.full((b,), self.lr),
            torch.full((b,), self.momentum),
            torch.zeros(b),
            self.plant_config,
            mask=dist.isfinite() & grad.isfinite().all(-1),
        )
        self.plants[i] = moved.state
        act = (moved.move / _max_move(core)).clamp(-1.0, 1.0)
        return act.numpy().astype(np.float32)


class RandomSearchBaseline(CoreBaseline):
    """Knob envs: random local search with ``n_candidates`` extra renders per step.

    Each step proposes ``K`` points ``clip(best + r·N(0, I))`` around the best point so
    far, renders them against the target (privileged renders,
    :func:`candidate_distances`), keeps the best, and moves the knobs toward the best
    at full speed. The radius ``r`` (start ``radius``) grows ×1.5 on an improvement and
    shrinks ×0.8 otherwise, within [0.01, 0.5]. The best starts at the episode's start
    knobs with the env's distance (no render). On SoundMatchLive, whose target moves,
    the best is re-anchored every step at the current knobs and distance.

    :param n_candidates: renders per env step and episode (K).
    :param radius: initial proposal radius (normalized knob units).
    :param seed: seed of the proposals.
    """

    name = "random_search"
    privileged = ("renders",)

    def __init__(
        self, env: gym.Env | VecEnv, n_candidates: int = 8, radius: float = 0.25, seed: int = 0
    ) -> None:
        super().__init__(env)
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
            raise ValueError(f"n_candidates must be an int >= 1, got {n_candidates!r}")
        self.k, self.radius0, self.seed = n_candidates, float(radius), seed
        self.budget = {"renders_per_step": n_candidates}
        self.reset()

    def reset(self) -> None:
        self.gen = torch.Generator().manual_seed(self.seed)
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def _act_core(self, i: int, core: Any, start: torch.Tensor) -> np.ndarray:
        now = core.free_knobs.detach().cpu()
        dist = core.distance.detach().cpu().clone()
        st = self.state.get(i)
        if st is None:
            st = self.state[i] = {"best": now, "best_d": dist, "r": torch.zeros_like(dist)}
            start = torch.ones_like(start)
        # A moving target (SoundMatchLive) makes old distances stale: re-anchor each step.
        anchor = start if hasattr(core, "render_distance") else torch.ones_like(start)
        st["best"] = torch.where(anchor[:, None], now, st["best"])
        st["best_d"] = torch.where(anchor, dist, st["best_d"])
        st["r"] = torch.where(start, self.radius0, st["r"])
        b, f = now.shape
        noise = torch.randn(b, self.k, f, generator=self.gen)
        cand = (st["best"][:, None] + st["r"][:, None, None] * noise).clamp(0.0, 1.0)
        d = candidate_distances(core, cand)
        self._spend("renders", self._rows(i), self.k)
        d_min, j = d.min(1)
        better = d_min < st["best_d"]
        st["best"] = torch.where(better[:, None], cand[torch.arange(b), j], st["best"])
        st["best_d"] = torch.where(better, d_min, st["best_d"])
        st["r"] = torch.where(better, st["r"] * 1.5, st["r"] * 0.8).clamp(0.01, 0.5)
        return _toward(core, st["best"])


def _import_cma() -> Any:
    try:
        import cma
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'cmaes' baseline needs the cma package: pip install -e \".[baselines]\""
        ) from err
    return cma


class CMAESBaseline(CoreBaseline):
    """Knob envs: CMA-ES (the ``cma`` package), one generation per env step.

    Per episode, ``cma.CMAEvolutionStrategy(start knobs, sigma0, popsize=K, bounds
    [0, 1])``; each env step ``ask``s K points, renders them against the target
    (privileged renders, :func:`candidate_distances`), ``tell``s the distances, and moves
    the knobs at full speed toward the best point rendered so far (``move_to="best"``,
    the default: the start knobs until a candidate beats the start distance) or toward
    the distribution's mean (``move_to="mean"``). The strategy's seed is
    ``seed + 1000·row + episode count of that row`` (reproducible).

    The mean is where CMA-ES *searches*, not what it has *found*: early on it sits
    between candidates, so knobs that follow it land on points never rendered — in the
    env the episode ends wherever the knobs are, and the best point seen is what a
    black-box optimizer reports. On SoundMatchLive, whose target moves, the best is
    re-anchored every step at the current knobs and distance (as
    :class:`RandomSearchBaseline`).

    :param popsize: renders per env step and episode (K).
    :param sigma0: initial step size (normalized knob units).
    :param seed: base seed.
    :param move_to: ``"best"`` (best point seen) or ``"mean"`` (the search mean).
    """

    name = "cmaes"
    privileged = ("renders",)

    def __init__(
        self,
        env: gym.Env | VecEnv,
        popsize: int = 8,
        sigma0: float = 0.25,
        seed: int = 0,
        move_to: str = "best",
    ) -> None:
        self.cma = _import_cma()
        super().__init__(env)
        if isinstance(popsize, bool) or not isinstance(popsize, int) or popsize < 2:
            raise ValueError(f"popsize must be an int >= 2, got {popsize!r}")
        if move_to not in ("best", "mean"):
            raise ValueError(f"move_to must be 'best' or 'mean', got {move_to!r}")
        self.k, self.sigma0, self.seed, self.move_to = popsize, float(sigma0), seed, move_to
        self.budget = {"renders_per_step": popsize}
        self.reset()

    def reset(self) -> None:
        self.es: dict[tuple[int, int], Any] = {}
        self.episodes: dict[tuple[int, int], int] = {}
        self.best: dict[int, dict[str, torch.Tensor]] = {}

    def _new_es(self, key: tuple[int, int], x0: np.ndarray) -> Any:
        n = self.episodes.get(key, 0)
        self.episodes[key] = n + 1
        row = sum(r.stop - r.start for r in self.binding.rows[: key[0]]) + key[1]
        opts = {
            "popsize": self.k,
            "bounds": [0.0, 1.0],
            "seed": self.seed + 1000 * row + n + 1,
            "verbose": -9,
        }
        return self.cma.CMAEvolutionStrategy(np.clip(x0, 1e-6, 1 - 1e-6), self.sigma0, opts)

    def _act_core(self, i: int, core: Any, start: torch.Tensor) -> np.ndarray:
        now = core.free_knobs.detach().cpu().double().numpy()
        b = now.shape[0]
        fresh = i not in self.best
        for r in range(b):
            if bool(start[r]) or (i, r) not in self.es:
                self.es[(i, r)] = self._new_es((i, r), now[r])
        asked = [[np.asarray(x) for x in self.es[(i, r)].ask()] for r in range(b)]
        cand = torch.tensor(np.clip(np.array(asked), 0.0, 1.0), dtype=torch.float32)
        d = candidate_distances(core, cand)
        self._spend("renders", self._rows(i), self.k)
        d64 = d.double().clamp_max(1e30).numpy()
        mean = np.empty_like(now)
        for r in range(b):
            es = self.es[(i, r)]
            es.tell(asked[r], d64[r].tolist())
            mean[r] = np.clip(es.mean, 0.0, 1.0)
        if self.move_to == "mean":
            return _toward(core, torch.from_numpy(mean).float())
        # Best point seen: anchored at the start knobs (new episode), or every step on a
        # moving target, then replaced by any candidate that renders closer.
        knobs = torch.from_numpy(now).float()
        dist = core.distance.detach().cpu().float().clone()
        anchor = torch.ones_like(start) if fresh or not hasattr(core, "render_distance") else start
        if fresh:
            self.best[i] = {"x": knobs, "d": dist}
        st = self.best[i]
        st["x"] = torch.where(anchor[:, None], knobs, st["x"])
        st["d"] = torch.where(anchor, dist, st["d"])
        d_min, j = d.min(1)
        better = d_min < st["d"]
        st["x"] = torch.where(better[:, None], cand[torch.arange(b), j], st["x"])
        st["d"] = torch.where(better, d_min.float(), st["d"])
        return _toward(core, st["x"])


class NearestBaseline(CoreBaseline):
    """Knob envs: retrieval from a bank of ``bank_size`` random patches.

    The bank is ``K`` free-knob points drawn uniformly once (seeded). At an episode's
    first step it is rendered against the episode's target with the episode's fixed
    knobs (``K`` privileged renders, :func:`candidate_distances`: the multi-resolution
    spectral distance in feature space); the knobs then go to the closest entry as fast
    as ``max_move`` allows and hold there.

    :param bank_size: bank entries K (renders at each episode's first step).
    :param seed: seed of the bank.
    """

    name = "nearest"
    privileged = ("renders",)

    def __init__(self, env: gym.Env | VecEnv, bank_size: int = 512, seed: int = 0) -> None:
        super().__init__(env)
        if isinstance(bank_size, bool) or not isinstance(bank_size, int) or bank_size < 1:
            raise ValueError(f"bank_size must be an int >= 1, got {bank_size!r}")
        self.k = bank_size
        self.budget = {"renders_at_start": bank_size}
        gen = torch.Generator().manual_seed(seed)
        self.bank = torch.rand(bank_size, self.binding.cores[0].n_free, generator=gen)
        self.reset()

    def reset(self) -> None:
        self.goal: dict[int, torch.Tensor] = {}

    def _act_core(self, i: int, core: Any, start: torch.Tensor) -> np.ndarray:
        if i not in self.goal:
            start = torch.ones_like(start)
            self.goal[i] = core.free_knobs.detach().cpu().clone()
        rows = start.nonzero().flatten()
        if rows.numel():
            cand = self.bank.expand(core.batch, -1, -1)
            if hasattr(core, "render_distance"):
                d = torch.full((core.batch, self.k), torch.inf)
                sub = RowView(core, rows)
                d[rows] = candidate_distances(sub, cand[rows])
            else:
                d = candidate_distances(core, cand)
            self._spend("renders", self._rows(i, rows), self.k)
            best = self.bank[d.argmin(1)]
            self.goal[i] = torch.where(start[:, None], best, self.goal[i])
        return _toward(core, self.goal[i])


class SchedulerOracleBaseline(CoreBaseline):
    """SchedulerGains: the best constant-lr schedule of a grid, picked in hindsight.

    At each episode's first step the episode is replayed (privileged: same target,
    start knobs, noise seed and α0_ep, read from the core) once per grid entry ``k`` in
    ``exponents`` on a private batched :class:`~aegym.envs.scheduler.SchedulerCore`
    (:func:`aegym.envs.scheduler.run_episodes`, the engine of ``run_constant_gains``).
    Grid entry ``k`` is the schedule the env's actions can realize: ``a0 = sign(k)``
    for the first ``|k|`` steps (α reaches ``2^k·α0_ep``, clipped to ``alpha_range``),
    then 0 (hold); μ and σ stay at the law's defaults (``a1 = a2 = 0``) and no local
    tests run (``a3 = −1``). The entry with the lowest final distance wins (ties: the
    earlier entry; ``exponents`` starts with 0, the default constant gains), and the
    policy plays it in the env — the episode reproduces the replay (counter-based noise),
    so its final distance is the grid's minimum, never above the default constant gains
    (up to float differences of batched renders). Constant schedules are not used
    directly: α can only change by ×2 per env step.

    :param exponents: the grid of ``log2(α/α0_ep)`` targets.
    :param max_batch: most replay rows per batched core.
    """

    name = "oracle"
    privileged = ("hindsight",)

    def __init__(
        self,
        env: gym.Env | VecEnv,
        exponents: Sequence[int] = (0, -1, 1, -2, 2, -3, 3),
        max_batch: int = 128,
    ) -> None:
        super().__init__(env)
        self.exponents = tuple(int(k) for k in exponents)
        if not self.exponents:
            raise ValueError("exponents must not be empty")
        self.max_batch = max_batch
        self.budget = {"hindsight_episodes": len(self.exponents)}
        self._sims: dict[int, SchedulerCore] = {}
        self.reset()

    def reset(self) -> None:
        self.choice: dict[int, torch.Tensor] = {}
        self.t: dict[int, torch.Tensor] = {}

    def _sim(self, core: SchedulerCore, size: int) -> SchedulerCore:
        if size not in self._sims:
            self._sims[size] = SchedulerCore(core.config, core.targets, size, str(core.device))
        return self._sims[size]

    def hindsight(self, core: SchedulerCore, rows: torch.Tensor) -> torch.Tensor:
        """Final distances ``[G, R]`` of every grid schedule for episodes ``rows``,
        replayed from the core's state right after their reset."""
        starts = sched.EpisodeStarts(
            core.target_idx[rows].cpu(),
            core.free_knobs[rows].detach().cpu(),
            core.noise_key[rows].cpu(),
            core.alpha0_ep[rows].cpu(),
        )
        g, r = len(self.exponents), int(rows.numel())
        all_rows = starts.repeat(g)
        ks = torch.tensor(self.exponents).repeat_interleave(r)
        out = []
        for lo in range(0, g * r, self.max_batch):
            sl = slice(lo, min(lo + self.max_batch, g * r))
            k = ks[sl]
            clock = [0]

            def policy(obs: torch.Tensor, k: torch.Tensor = k, clock: list = clock) -> torch.Tensor:
                act = _ramp_action(k, torch.full_like(k, clock[0]))
                clock[0] += 1
                return act

            sim = self._sim(core, sl.stop - sl.start)
            out.append(sched.run_episodes(sim, all_rows.rows(sl), policy=policy).distance)
        return torch.cat(out).reshape(g, r)

    def _act_core(self, i: int, core: Any, start: torch.Tensor) -> np.ndarray:
        if i not in self.choice:
            self.choice[i] = torch.zeros(core.batch, dtype=torch.long)
            self.t[i] = torch.zeros(core.batch, dtype=torch.long)
        rows = start.nonzero().flatten()
        if rows.numel():
            dist = self.hindsight(core, rows)
            self._spend("hindsight_episodes", self._rows(i, rows), len(self.exponents))
            best = torch.tensor(self.exponents)[dist.argmin(0)]
            self.choice[i][rows] = best
            self.t[i][rows] = 0
        act = _ramp_action(self.choice[i], self.t[i])
        self.t[i] = self.t[i] + 1
        return act.numpy().astype(np.float32)


def _ramp_action(k: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """SchedulerGains actions ``[B, 4]``: α ×2^sign(k) while ``t < |k|``, then hold;
    μ, σ held; no local test."""
    act = torch.zeros(k.shape[0], 4)
    act[:, 0] = torch.where(t < k.abs(), torch.sign(k).float(), 0.0)
    act[:, 3] = -1.0
    return act


def _is_scheduler_env(env: gym.Env | VecEnv) -> bool:
    return env.action_space.shape == (4,) and env.observation_space.shape == (len(SIGNAL_NAMES),)


def make_baseline(
    name: str,
    env: gym.Env | VecEnv,
    seed: int = 0,
    lr_multiplier: float | None = None,
    **kwargs: Any,
) -> BaselinePolicy:
    """A baseline by name for ``env``.

    :param name: one of :data:`BASELINE_NAMES`.
    :param env: the env (single or vector) the baseline will act in.
    :param seed: seed of random baselines, the AE dither, the searches and the bank.
    :param lr_multiplier: SchedulerGains AdamBaseline's constant learning rate in units
        of α0 (None: the tuned default).
    :param kwargs: extra settings of the baseline's class (``lr`` of the knob Adam,
        ``n_candidates``, ``popsize``, ``bank_size``, ``exponents``, ...).
    :raises ValueError: unknown name, or a baseline the env's family lacks.
    :raises ImportError: ``"cmaes"`` without the ``cma`` package.
    """
    obs_space, act_space = env.observation_space, env.action_space
    if name not in BASELINE_NAMES:
        raise ValueError(f"unknown baseline {name!r}; allowed: {', '.join(BASELINE_NAMES)}")
    scheduler = _is_scheduler_env(env)
    if scheduler and "scheduler" not in BASELINE_FAMILIES[name]:
        raise ValueError(
            f"the {name!r} baseline moves knobs and only exists for knob envs "
            "(SoundMatch*, SoundMatchLive), not AEGym/SchedulerGains-v1"
        )
    if name == "ae":
        return AEBaseline(env, seed=seed, **kwargs)
    if name == "random":
        return RandomBaseline(obs_space, act_space, seed=seed)  # type: ignore[arg-type]
    if name == "static":
        return StaticBaseline(obs_space, act_space)  # type: ignore[arg-type]
    if name == "adam":
        if scheduler:
            return AdamBaseline(obs_space, act_space, lr_multiplier)  # type: ignore[arg-type]
        return AdamKnobBaseline(env, **kwargs)
    if name == "oracle":
        return SchedulerOracleBaseline(env, **kwargs) if scheduler else OracleBaseline(env)
    if name == "random_search":
        return RandomSearchBaseline(env, seed=seed, **kwargs)
    if name == "cmaes":
        return CMAESBaseline(env, seed=seed, **kwargs)
    return NearestBaseline(env, seed=seed, **kwargs)


@dataclass(frozen=True)
class EpisodeScore:
    """Mean outcome of one agent on an :class:`EpisodeSet`.

    :param mean_final_distance: mean final distance.
    :param success_rate: fraction of successful episodes.
    :param n_episodes: episodes played.
    """

    mean_final_distance: float
    success_rate: float
    n_episodes: int


class EpisodeSet:
    """The same episodes for every candidate of a tuning search (or every variant of
    an ablation).

    ``n_targets`` targets of the env's ``target_set`` spread evenly, each with every
    seed, played side by side in one VecEnv; :meth:`score` plays them with the agent
    ``make_agent(venv)`` builds. Searches use the *train* set (the default); only final
    reports use "test". Use as a context manager (closes the VecEnv).

    :param env_id: env id.
    :param n_targets: targets of the set.
    :param seeds: episode seeds.
    :param native: use the native batched vector env when available.
    :param target_set: "train" or "test".
    :param env_kwargs: env keyword arguments (``target`` is set to ``target_set``).
    """

    def __init__(
        self,
        env_id: str,
        n_targets: int,
        seeds: Sequence[int],
        native: bool = True,
        target_set: str = "train",
        **env_kwargs: Any,
    ) -> None:
        if target_set not in ("train", "test"):
            raise ValueError(f"target_set must be 'train' or 'test', got {target_set!r}")
        env_kwargs = {**env_kwargs, "target": target_set}
        self.env_id = env_id
        self.specs = [
            EpisodeSpec(t, s)
            for t in select_targets(env_id, target_set, n_targets, env_kwargs)
            for s in seeds
        ]
        self.venv = make_vec_env(env_id, len(self.specs), seed=0, native=native, **env_kwargs)
        self.episodes: list[Any] = []

    def score(self, make_agent: Any) -> EpisodeScore:
        """Play every episode with ``make_agent(venv)``; mean final distance and success
        (the records stay in :attr:`episodes` until the next call)."""
        episodes = run_episodes(self.venv, make_agent(self.venv), self.specs)
        self.episodes = episodes
        return EpisodeScore(
            float(np.mean([e.final_distance for e in episodes])),
            float(np.mean([e.success for e in episodes])),
            len(episodes),
        )

    def close(self) -> None:
        self.venv.close()

    def __enter__(self) -> EpisodeSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    results: dict[float, float] = {}
    with EpisodeSet("AEGym/SchedulerGains-v1", n_targets, seeds, native, **env_kwargs) as ep:
        for c in multipliers:
            res = ep.score(lambda v, c=c: AdamBaseline(v.observation_space, v.action_space, c))
            results[float(c)] = res.mean_final_distance
    best = min(sorted(results), key=lambda c: results[c])
    return AdamTuning(best, results, len(ep.specs))


@dataclass(frozen=True)
class KnobAdamTuning:
    """Outcome of :func:`tune_adam_knob_lr`.

    :param best: the step size with the lowest mean final distance.
    :param mean_final_distance: step size -> mean final distance over the episodes.
    :param success_rate: step size -> fraction of successful episodes.
    :param n_episodes: episodes per step size.
    """

    best: float
    mean_final_distance: dict[float, float]
    success_rate: dict[float, float]
    n_episodes: int


def tune_adam_knob_lr(
    lrs: Sequence[float] = ADAM_KNOB_LR_GRID,
    env_id: str = "AEGym/SoundMatch-Easy-v1",
    n_targets: int = 16,
    seeds: Sequence[int] = (0,),
    native: bool = True,
    **env_kwargs: Any,
) -> KnobAdamTuning:
    """Pick :class:`AdamKnobBaseline`'s constant step size on a knob env's *train* set.

    Every step size plays the same episodes (``n_targets`` train targets spread evenly,
    each with every seed); the lowest mean final distance wins (ties: the smaller step).
    The test set is never touched.

    :param lrs: candidate step sizes (normalized knob units).
    :param env_id: a knob env id.
    :param n_targets: train targets per candidate.
    :param seeds: episode seeds.
    :param native: use the native batched vector env when available.
    :param env_kwargs: env keyword arguments (``target`` is forced to "train").
    """
    check_baseline("adam", env_id)
    if env_family(env_id) != "knob":
        raise ValueError(f"tune_adam_knob_lr tunes knob envs; for {env_id} use tune_adam_lr")
    dist: dict[float, float] = {}
    succ: dict[float, float] = {}
    with EpisodeSet(env_id, n_targets, seeds, native, **env_kwargs) as ep:
        for lr in lrs:
            res = ep.score(lambda v, lr=lr: AdamKnobBaseline(v, lr=lr))
            dist[float(lr)], succ[float(lr)] = res.mean_final_distance, res.success_rate
    best = min(sorted(dist), key=lambda c: dist[c])
    return KnobAdamTuning(best, dist, succ, len(ep.specs))
