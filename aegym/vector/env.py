"""Native batched vector envs: N episodes in one torch core, no loop over sub-envs.

``gymnasium.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``
returns an :class:`AEGymVectorEnv`. It builds the family's batched core with
``batch = N``: every step renders and featurizes all N voices in one call. Each
sub-env keeps its own RNG, seeded like ``SyncVectorEnv`` seeds its sub-envs
(``seed + i``), and draws its resets with the same function as the single env, so
the per-env trajectories equal those of ``SyncVectorEnv`` over the single env.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from aegym._checks import check_int
from aegym.envs import live, scheduler, sound_match
from aegym.envs._common import CoreStep, check_action, check_target_index

#: env class -> its module's ``draw_reset(rng, core, options)``.
_DRAW: dict[type, Callable[..., tuple[torch.Tensor, ...]]] = {
    sound_match.SoundMatchEnv: sound_match.draw_reset,
    live.SoundMatchLiveEnv: live.draw_reset,
    scheduler.SchedulerGainsEnv: scheduler.draw_reset,
}


def to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Copy many tensors to NumPy with one device-to-host transfer: their bytes are
    packed into one buffer (exact for every dtype), so a GPU core synchronizes once per
    step instead of once per field. Returns fresh, writable arrays (never views of the
    core's tensors), keyed like ``tensors``."""
    if not tensors:
        return {}
    flat = [t.detach().reshape(-1) for t in tensors.values()]
    device = flat[0].device
    packed = torch.cat([t.to(device).view(torch.uint8) for t in flat]).cpu().numpy()
    out, offset = {}, 0
    for (name, t), f in zip(tensors.items(), flat, strict=True):
        dtype = torch.empty(0, dtype=t.dtype).numpy().dtype
        arr = np.frombuffer(packed, dtype=dtype, count=f.numel(), offset=offset)
        out[name] = arr.reshape(tuple(t.shape)).copy()
        offset += f.numel() * f.element_size()
    return out


class AEGymVectorEnv(VectorEnv):
    """N aegym episodes stepped together in one batched torch core.

    :param env_cls: the single env class (its constructor validates ``env_kwargs``).
    :param num_envs: number of sub-envs N.
    :param max_episode_steps: truncate each sub-env after this many steps (the
        registered horizon; ``None`` = never).
    :param autoreset_mode: Gymnasium's ``NEXT_STEP`` (default, as ``SyncVectorEnv``) or
        ``SAME_STEP`` (the final observation and info go to ``info["final_obs"]`` and
        ``info["final_info"]``).
    :param env_kwargs: the single env's arguments (``target``, ``free_knobs``, ``device``…).

    Infos are batched dicts of arrays: ``distance``, ``is_success``, ``diverged``,
    ``safety_violation``, ``knob_error`` (where the truth is known), ``reward_terms``
    (dict of ``[N]``), each with its ``_key`` mask.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        env_cls: type[gym.Env],
        num_envs: int,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **env_kwargs: Any,
    ) -> None:
        if env_cls not in _DRAW:
            raise ValueError(f"no native vector env for {env_cls.__name__}")
        self.num_envs = check_int("num_envs", num_envs, 1)
        if max_episode_steps is not None:
            check_int("max_episode_steps", max_episode_steps, 1)
        self.max_episode_steps = max_episode_steps
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        proto = env_cls(**env_kwargs)  # validates arguments, resolves targets
        self.render_mode = proto.render_mode
        self._draw = _DRAW[env_cls]
        core = proto.core
        self.core = type(core)(core.config, core.targets, num_envs, str(core.device))
        self.single_observation_space = proto.observation_space
        self.single_action_space = proto.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.success_distance = getattr(core.config, "success_distance", None)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    # ----------------------------------------------------------------------------------
    def _per_env_options(self, options: dict[str, Any] | None) -> list[dict[str, Any] | None]:
        """Each sub-env's reset options; ``options["target_index"]`` may be one int for
        all or a sequence of N ints. Validated before any state changes."""
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"options must be a dict or None, got {type(options).__name__}")
        if not options or "target_index" not in options:
            return [options] * self.num_envs
        idx, n = options["target_index"], len(self.core.targets)
        if isinstance(idx, (str, bytes)) or np.ndim(idx) == 0:
            if idx is not None:
                check_target_index(idx, n)
            return [options] * self.num_envs
        if np.ndim(idx) != 1 or len(idx) != self.num_envs:
            raise ValueError(
                f"options['target_index'] must be an int or a sequence of {self.num_envs} "
                f"ints (one per sub-env), got {idx!r}"
            )
        values = [i.item() if isinstance(i, np.generic) else i for i in idx]
        for k, v in enumerate(values):
            check_target_index(v, n, f"options['target_index'][{k}]")
        return [{**options, "target_index": v} for v in values]

    def _reset_envs(
        self, mask: np.ndarray, per_env_opts: list[dict[str, Any] | None]
    ) -> torch.Tensor:
        """Draw starts for the masked sub-envs from their own RNGs and reset them."""
        idx = np.flatnonzero(mask)
        per_env = [self._draw(self._rngs[i], self.core, per_env_opts[i]) for i in idx]
        batch = []
        for k, first in enumerate(per_env[0]):
            full = torch.zeros((self.num_envs, *first.shape), dtype=first.dtype)
            full[torch.as_tensor(idx)] = torch.stack([args[k] for args in per_env])
            batch.append(full)
        self._elapsed[mask] = 0
        return self.core.reset(torch.as_tensor(mask), *batch)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all sub-envs. ``seed`` int -> sub-env i gets ``seed + i``; a list gives
        each its own. ``options["target_index"]`` may be an int or one int per env."""
        per_env_opts = self._per_env_options(options)
        if seed is not None:
            if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
                seeds: list[int | None] = [int(seed) + i for i in range(self.num_envs)]
            elif isinstance(seed, Sequence) and not isinstance(seed, str):
                seeds = list(seed)
            else:
                raise ValueError(f"seed must be an int, a list of ints or None, got {seed!r}")
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed list must have {self.num_envs} entries, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        mask = np.ones(self.num_envs, dtype=bool)
        obs = self._reset_envs(mask, per_env_opts)
        self._autoreset[:] = False
        host = to_host({"obs": obs, **self._info_tensors(None)})
        return host["obs"], self._info(mask, host, None)

    def _info_tensors(self, res: CoreStep | None) -> dict[str, torch.Tensor]:
        """The core's tensors behind :meth:`_info` (copied to the host together)."""
        core = self.core
        tensors = {"distance": core.distance, "knob_error": core.knob_error()}
        if res is not None:
            tensors.update({f"term/{k}": v for k, v in res.reward_terms.items()})
            tensors["diverged"] = res.diverged
            tensors["safety_violation"] = res.violation
        return tensors

    def _info(self, mask: np.ndarray, host: dict[str, np.ndarray], res: CoreStep | None):
        """Batched info from the host copies of :meth:`_info_tensors`: arrays ``[N]``
        with ``_key`` masks (Gymnasium's layout)."""
        dist = host["distance"]
        info: dict[str, Any] = {"distance": dist, "_distance": mask.copy()}
        if self.success_distance is not None:
            info["is_success"] = dist < self.success_distance
            info["_is_success"] = mask.copy()
        err = host["knob_error"]
        if np.isfinite(err).any():  # only where the truth is known, as in the single env
            info["knob_error"] = np.nan_to_num(err, nan=0.0)
            info["_knob_error"] = mask & np.isfinite(err)
        if res is not None:
            terms = {k: host[f"term/{k}"] for k in res.reward_terms}
            terms.update({f"_{k}": mask.copy() for k in res.reward_terms})
            info["reward_terms"] = terms
            info["_reward_terms"] = mask.copy()
            info["diverged"] = host["diverged"]
            info["_diverged"] = mask.copy()
            info["safety_violation"] = host["safety_violation"]
            info["_safety_violation"] = mask.copy()
        return info

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        arr = check_action(actions, self.action_space.shape, "actions")
        res = self.core.step(torch.from_numpy(arr))
        self._elapsed += 1
        host = to_host(
            {
                "obs": res.obs,
                "reward": res.reward,
                "terminated": res.terminated,
                "truncated": res.truncated,
                **self._info_tensors(res),
            }
        )
        obs = host["obs"]
        reward = host["reward"].astype(np.float64)
        term, trunc = host["terminated"], host["truncated"]
        if self.max_episode_steps is not None:
            trunc |= self._elapsed >= self.max_episode_steps
        everyone = np.ones(self.num_envs, dtype=bool)
        info = self._info(everyone, host, res)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            redo = self._autoreset
            if redo.any():  # these sub-envs ended last step: this step only resets them
                obs_t = self._reset_envs(redo, [None] * self.num_envs)
                fresh_host = to_host({"obs": obs_t, **self._info_tensors(None)})
                obs = fresh_host["obs"]
                reward[redo], term[redo], trunc[redo] = 0.0, False, False
                fresh = self._info(everyone, fresh_host, None)  # distances after the reset
                info.update(fresh)
                for name, value in info["reward_terms"].items():
                    if not name.startswith("_"):
                        value[redo] = 0.0
                info["diverged"][redo] = False
                info["safety_violation"][redo] = False
            self._autoreset = term | trunc
        elif self.autoreset_mode == AutoresetMode.SAME_STEP:
            done = term | trunc
            if done.any():
                info["final_obs"] = np.where(done[:, None], obs, 0.0).astype(np.float32)
                info["_final_obs"] = done
                info["final_info"] = dict(info)
                info["_final_info"] = done
                obs = to_host({"obs": self._reset_envs(done, [None] * self.num_envs)})["obs"]
        return obs, reward, term, trunc, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array":
            return None
        core = self.core
        if hasattr(core, "image"):
            return tuple(core.image(i) for i in range(self.num_envs))
        return None

    def close_extras(self, **kwargs: Any) -> None:
        pass


def make_vector_entry_point(env_cls: type[gym.Env]) -> Callable[..., AEGymVectorEnv]:
    """A ``vector_entry_point`` for ``env_cls`` (what the registration points to)."""

    def create(num_envs: int = 1, **kwargs: Any) -> AEGymVectorEnv:
        return AEGymVectorEnv(env_cls, num_envs, **kwargs)

    return create


sound_match_vector = make_vector_entry_point(sound_match.SoundMatchEnv)
live_vector = make_vector_entry_point(live.SoundMatchLiveEnv)
scheduler_vector = make_vector_entry_point(scheduler.SchedulerGainsEnv)

__all__ = ["AEGymVectorEnv", "live_vector", "scheduler_vector", "sound_match_vector"]
