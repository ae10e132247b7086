"""Stable-Baselines3 adapter: a native aegym vector env as an SB3 ``VecEnv``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from aegym.vector.env import AEGymVectorEnv


class AEGymSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over an :class:`AEGymVectorEnv` (same-step autoreset).

    Infos are SB3's list of per-env dicts: ``distance``, ``is_success`` (where the env
    defines success), ``diverged``, ``safety_violation``, ``reward_terms`` (dict of
    floats), and at episode ends ``terminal_observation``, ``TimeLimit.truncated`` and
    ``episode`` (``r``, ``l``, ``t``: what SB3's ``Monitor`` would record, so
    ``ep_rew_mean`` is logged).
    SB3's ``seed(s)`` (sub-env i gets ``s + i``), per-env ``_seeds`` and
    ``set_options`` apply at the next :meth:`reset`; a per-env ``"target_index"`` in the
    options picks each sub-env's target (how evaluations give every agent the same
    episodes).

    :param venv: the native vector env; it is switched to same-step autoreset.
    """

    def __init__(self, venv: AEGymVectorEnv) -> None:
        venv.autoreset_mode = AutoresetMode.SAME_STEP
        self.venv = venv
        self.core = venv.core
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.render_mode = venv.render_mode
        self._actions: np.ndarray | None = None
        self._ep_return = np.zeros(self.num_envs)
        self._ep_len = np.zeros(self.num_envs, dtype=np.int64)
        self._start = time.time()

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options: dict[str, Any] = {k: v for k, v in self._options[0].items() if k != "target_index"}
        if any("target_index" in o for o in self._options):
            if not all("target_index" in o for o in self._options):
                raise ValueError("set_options: give 'target_index' for every sub-env or none")
            options["target_index"] = np.array([int(o["target_index"]) for o in self._options])
        obs, info = self.venv.reset(seed=seeds, options=options or None)
        # SB3's per-env reset infos (as DummyVecEnv keeps them): the start distance.
        self.reset_infos = [{"distance": float(d)} for d in info["distance"]]
        self._reset_seeds()
        self._reset_options()
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32).reshape(
            self.num_envs, *self.action_space.shape
        )

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async must be called first"
        obs, reward, term, trunc, info = self.venv.step(self._actions)
        done = term | trunc
        self._ep_return += reward
        self._ep_len += 1
        final = info.get("final_info", info)
        terms = final.get("reward_terms", {})
        names = [k for k in terms if not k.startswith("_")]
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            d: dict[str, Any] = {
                "distance": float(final["distance"][i]),
                "diverged": bool(final.get("diverged", np.zeros(self.num_envs, bool))[i]),
                "safety_violation": bool(
                    final.get("safety_violation", np.zeros(self.num_envs, bool))[i]
                ),
                "reward_terms": {k: float(terms[k][i]) for k in names},
            }
            if "is_success" in final:
                d["is_success"] = bool(final["is_success"][i])
            if "knob_error" in final and final["_knob_error"][i]:
                d["knob_error"] = float(final["knob_error"][i])
            if done[i]:
                d["terminal_observation"] = info["final_obs"][i]
                d["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
                d["episode"] = {
                    "r": float(self._ep_return[i]),
                    "l": int(self._ep_len[i]),
                    "t": round(time.time() - self._start, 6),
                }
                self._ep_return[i] = 0.0
                self._ep_len[i] = 0
            infos.append(d)
        return obs, reward.astype(np.float32), done, infos

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """``s`` -> sub-env i gets ``s + i`` at the next reset. ``None`` keeps each
        sub-env's RNG running (SB3's default would draw a fresh seed from NumPy's global
        RNG, which breaks exact resumes)."""
        if seed is None:
            return list(self._seeds)
        return super().seed(seed)

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        images = self.venv.render()
        return list(images) if images is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kw: Any
    ) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **kw)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        # Episode statistics come from this adapter (as Monitor would provide them).
        return [False for _ in self._get_indices(indices)]


def make_sb3_vec_env(
    env_id: str, num_envs: int, seed: int = 0, **env_kwargs: Any
) -> AEGymSB3VecEnv:
    """A native vector env for ``env_id`` wrapped for Stable-Baselines3, seeded."""
    venv = gym.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs
    )
    env = AEGymSB3VecEnv(venv)
    env.seed(seed)
    return env
