"""Env construction for agents: id and kwarg checks, env families, vector envs, and the
env settings agents read from a created env.

Every agent-side entry point builds its envs here, so the choice between aegym's native
batched vector env (``aegym.vector.make_sb3_vec_env``, one batched core for all
sub-envs) and SB3's ``DummyVecEnv`` of monitored single envs is made in one place.
Settings the env owns (the success threshold, the episode length) are read from the
created env's config (:func:`env_config`), never repeated here as numbers.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import aegym
from aegym.envs import ENV_SPECS
from agents.common.checks import check_count

EnvFamily = Literal["knob", "scheduler"]

#: Every env id agents can train and evaluate on.
ENV_IDS: tuple[str, ...] = tuple(spec.id for spec in ENV_SPECS)

#: Env id -> family: ``"knob"`` (actions move knobs; the AE baseline takes gradient steps
#: on the plant) or ``"scheduler"`` (actions set optimizer gains; the AE law applies).
ENV_FAMILIES: dict[str, EnvFamily] = {
    "AEGym/SoundMatch-Easy-v1": "knob",
    "AEGym/SoundMatch-Medium-v1": "knob",
    "AEGym/SoundMatch-Full-v1": "knob",
    "AEGym/SoundMatchLive-v1": "knob",
    "AEGym/SchedulerGains-v1": "scheduler",
}

#: Short-audio settings per env for smoke tests and quick demos (0.25 s notes, one inner
#: optimizer step per scheduler step). SoundMatchLive's window is already 0.25 s.
FAST_ENV_KWARGS: dict[str, dict[str, Any]] = {
    "AEGym/SoundMatch-Easy-v1": {"duration_s": 0.25},
    "AEGym/SoundMatch-Medium-v1": {"duration_s": 0.25},
    "AEGym/SoundMatch-Full-v1": {"duration_s": 0.25},
    "AEGym/SoundMatchLive-v1": {"window_s": 0.25},
    "AEGym/SchedulerGains-v1": {"duration_s": 0.25, "inner_steps": 4},
}


def check_env_id(env_id: str) -> str:
    """Return ``env_id`` if agents support it.

    :param env_id: a registered aegym id such as ``"AEGym/SoundMatch-Easy-v1"``.
    :raises ValueError: unknown id, naming the allowed ones.
    """
    if env_id not in ENV_FAMILIES:
        raise ValueError(f"unknown env id {env_id!r}; allowed: {', '.join(ENV_IDS)}")
    return env_id


def env_family(env_id: str) -> EnvFamily:
    """``"knob"`` or ``"scheduler"`` for a supported env id.

    :param env_id: a supported env id.
    """
    return ENV_FAMILIES[check_env_id(env_id)]


def make_env(env_id: str, render_mode: str | None = None, **env_kwargs: Any) -> gym.Env:
    """One monitored single env.

    :param env_id: a supported env id.
    :param render_mode: ``None`` or ``"rgb_array"``.
    :param env_kwargs: keyword arguments of the env (``target``, ``free_knobs``, ...).
    """
    check_env_id(env_id)
    aegym.register_envs()
    return Monitor(gym.make(env_id, render_mode=render_mode, **env_kwargs))


def native_vec_available() -> bool:
    """Whether ``aegym.vector.make_sb3_vec_env`` can be imported."""
    try:
        module = importlib.import_module("aegym.vector")
    except ImportError:
        return False
    return hasattr(module, "make_sb3_vec_env")


def make_vec_env(
    env_id: str, n_envs: int, seed: int = 0, native: bool = True, **env_kwargs: Any
) -> VecEnv:
    """A VecEnv of ``n_envs`` episodes of ``env_id`` seeded with ``seed``.

    With ``native=True`` and ``aegym.vector`` available, the native batched env (one core
    steps every sub-env in one render); otherwise a ``DummyVecEnv`` of monitored single
    envs. Both give SB3-style infos (``terminal_observation``, ``episode`` stats) and
    honour ``seed``/``set_options`` before ``reset``.

    :param env_id: a supported env id.
    :param n_envs: number of sub-envs, >= 1.
    :param seed: seed of the first reset (sub-env ``i`` gets ``seed + i``).
    :param native: prefer the native batched env when it exists.
    :param env_kwargs: keyword arguments of the env.
    :raises ValueError: unknown env id or ``n_envs < 1``.
    """
    check_env_id(env_id)
    n_envs = check_count("n_envs", n_envs)
    if native and native_vec_available():
        from aegym.vector import make_sb3_vec_env

        venv = make_sb3_vec_env(env_id, int(n_envs), seed=seed, **env_kwargs)
    else:
        factories: list[Callable[[], gym.Env]] = [
            (lambda: make_env(env_id, **env_kwargs)) for _ in range(int(n_envs))
        ]
        venv = DummyVecEnv(factories)
    venv.seed(seed)
    return venv


def is_native(venv: VecEnv) -> bool:
    """Whether ``venv`` (or the VecEnv it wraps) is aegym's native batched env."""
    return hasattr(venv.unwrapped, "core")


def reset_episodes(venv: VecEnv, seeds: Sequence[int], target_indices: Sequence[int]) -> np.ndarray:
    """Reset every sub-env ``i`` with its own seed ``seeds[i]`` and target
    ``target_indices[i]`` (what evaluation needs to give every agent the same episodes).

    Both a DummyVecEnv and the native adapter take SB3's per-env seeds and options.

    :param venv: a VecEnv from :func:`make_vec_env`.
    :param seeds: one reset seed per sub-env.
    :param target_indices: one target index per sub-env.
    :return: the first observations ``[n_envs, ...]``.
    """
    n = venv.num_envs
    if len(seeds) != n or len(target_indices) != n:
        raise ValueError(
            f"need one seed and one target index per sub-env ({n}), got "
            f"{len(seeds)} and {len(target_indices)}"
        )
    inner = venv.unwrapped
    inner._seeds = [int(s) for s in seeds]  # SB3 has no public per-env seed setter
    inner.set_options([{"target_index": int(t)} for t in target_indices])
    return np.asarray(venv.reset())


def _entry_class(env_id: str) -> Any:
    aegym.register_envs()
    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        return getattr(importlib.import_module(module), name)
    return entry


def allowed_env_kwargs(env_id: str) -> tuple[str, ...] | None:
    """Keyword arguments the env ``env_id`` takes (None: it takes any).

    :param env_id: a supported env id.
    :raises ValueError: unknown env id.
    """
    params = inspect.signature(_entry_class(check_env_id(env_id))).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    # render_mode is the caller's (evaluation renders with its own), not a setting.
    return tuple(
        n
        for n, p in params.items()
        if n != "render_mode" and p.kind is not inspect.Parameter.VAR_POSITIONAL
    )


def check_env_kwargs(env_id: str, env_kwargs: Any) -> dict[str, Any]:
    """Return ``env_kwargs`` if ``env_id`` takes every key.

    :param env_id: a supported env id.
    :param env_kwargs: env keyword arguments.
    :raises ValueError: not a dict, or unknown keys (naming them and the allowed ones).
    """
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs must be a JSON object, got {env_kwargs!r}")
    allowed = allowed_env_kwargs(env_id)
    if allowed is not None:
        unknown = sorted(set(env_kwargs) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown env_kwargs {', '.join(map(repr, unknown))} for {env_id}; "
                f"allowed: {', '.join(allowed)}"
            )
    return env_kwargs


def env_config(env: gym.Env | VecEnv) -> Any:
    """The settings dataclass (``SoundMatchConfig``, ``LiveConfig``, ``SchedulerConfig``)
    of a created aegym env: a single env, a DummyVecEnv of them or the native VecEnv.

    :param env: the env.
    :raises TypeError: not an aegym env (no ``config`` on its env or core).
    """
    inner = env.unwrapped
    if isinstance(inner, DummyVecEnv):
        inner = inner.envs[0].unwrapped
    config = getattr(inner, "config", None)
    if config is None:
        config = getattr(getattr(inner, "core", None), "config", None)
    if config is None:
        raise TypeError(f"{type(inner).__name__} is not an aegym env: it has no config")
    return config


def env_core(env: gym.Env | VecEnv) -> Any:
    """The batched core of a created aegym env (single, native vector or DummyVecEnv).

    :raises TypeError: not an aegym env.
    """
    inner = env.unwrapped
    if isinstance(inner, DummyVecEnv):
        inner = inner.envs[0].unwrapped
    core = getattr(inner, "core", None)
    if core is None:
        raise TypeError(f"{type(inner).__name__} is not an aegym env: it has no core")
    return core


def distance_obs_index(env: gym.Env | VecEnv) -> int:
    """Column of ``env``'s observations that holds the spectral distance."""
    return int(env_core(env).distance_obs_index)


def success_distance(env: gym.Env | VecEnv) -> float:
    """Spectral distance below which an episode of ``env`` counts as a success (for
    SoundMatchLive-v1: a step on target): the env config's calibrated
    ``success_distance``.

    :param env: a created aegym env (single or vector).
    """
    return float(env_config(env).success_distance)


def episode_limit(env_id: str, config: Any = None) -> int:
    """Step limit of an episode: the id's ``max_episode_steps``, or the config's
    ``episode_steps`` when it is shorter (SchedulerGains-v1).

    :param env_id: a supported env id.
    :param config: the created env's config (:func:`env_config`), or None.
    """
    aegym.register_envs()
    limit = int(gym.spec(check_env_id(env_id)).max_episode_steps or 10**9)
    steps = getattr(config, "episode_steps", None)
    return limit if steps is None else min(limit, int(steps))
