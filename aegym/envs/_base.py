"""The single-env plumbing shared by every family: a batched core driven with B = 1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from aegym.audio_io import write_wav
from aegym.envs._common import check_action, fixed_threads
from aegym.targets import TargetSet


class CoreEnv(gym.Env):
    """Base of aegym's single envs.

    A subclass builds ``self.core`` (batch 1) and ``self.config``, sets the spaces, and
    provides ``draw_reset`` (the family's per-episode random start, shared with the
    native vector env), ``_info`` (per-step info beyond the common keys) and
    ``_audio(which)``. Reset, step, action checks and WAV export live here.

    Every torch computation of a single env runs on one intra-op thread
    (:func:`aegym.envs._common.fixed_threads`): the same seed and actions give
    bit-identical results in any process (``SyncVectorEnv`` or ``AsyncVectorEnv``
    workers, any ``torch.set_num_threads``). A reset that raises (bad options) leaves
    the env needing a good reset: ``step`` raises until then instead of stepping a
    half-reset episode.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}
    draw_reset: ClassVar[Callable[..., tuple[torch.Tensor, ...]]]
    core: Any
    config: Any
    _needs_reset: bool = True

    def _set_render_mode(self, render_mode: str | None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode

    @property
    def targets(self) -> TargetSet:
        return self.core.targets

    def _info(self) -> dict[str, Any]:
        raise NotImplementedError

    def _audio(self, which: str) -> torch.Tensor:
        raise NotImplementedError

    @fixed_threads
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._needs_reset = True
        super().reset(seed=seed)
        args = type(self).draw_reset(self.np_random, self.core, options)  # validates options
        obs = self.core.reset(torch.tensor([True]), *(a[None] for a in args))
        self._needs_reset = False
        info = self._info()
        info.update(diverged=False, safety_violation=False, reward_terms={})
        self._add_knob_error(info)
        return obs[0].cpu().numpy(), info

    @fixed_threads
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError(
                f"{type(self).__name__}.step called before a successful reset: call reset()"
            )
        arr = check_action(action, self.action_space.shape)
        res = self.core.step(torch.from_numpy(arr)[None])
        info = self._info()
        info["diverged"] = bool(res.diverged[0])
        info["safety_violation"] = bool(res.violation[0])
        self._add_knob_error(info)
        info["reward_terms"] = {k: float(v[0]) for k, v in res.reward_terms.items()}
        return (
            res.obs[0].cpu().numpy(),
            float(res.reward[0]),
            bool(res.terminated[0]),
            bool(res.truncated[0]),
            info,
        )

    def _add_knob_error(self, info: dict[str, Any]) -> None:
        """``info["knob_error"]``: mean absolute free-knob error against the truth,
        only where the target's knobs are known."""
        err = float(self.core.knob_error()[0])
        if np.isfinite(err):
            info["knob_error"] = err

    def current_audio(self) -> np.ndarray:
        """What the agent's synth plays now, float32 ``[T]``."""
        return self._audio("current").detach().cpu().numpy()

    def target_audio(self) -> np.ndarray:
        return self._audio("target").detach().cpu().numpy()

    def save_wav(self, path: str | Path, which: str = "current") -> Path:
        """Write the current sound (``which="current"``) or the target as a WAV file."""
        if which not in ("current", "target"):
            raise ValueError(f"which must be 'current' or 'target', got {which!r}")
        write_wav(path, self._audio(which).detach().cpu().numpy(), self.config.sample_rate)
        return Path(path)
