"""Knob control: move the synth's knobs until it sounds like a target (SoundMatch-v0)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from aegym._checks import check_int, check_positive
from aegym.envs._base import CoreEnv
from aegym.envs._common import (
    N_STATS,
    OBS_LIMIT,
    PROFILE_BANDS,
    CoreStep,
    check_max_move,
    fixed_threads,
    limit_threads_in_worker,
    resolve_free_knobs,
    spectral_profile,
    spectrogram_image,
    target_index_option,
)
from aegym.envs._core import NoteCore
from aegym.features import Features
from aegym.reward import RewardConfig
from aegym.synth import KnobSpace
from aegym.targets import TargetSet, resolve_targets


@dataclass(frozen=True)
class SoundMatchConfig:
    """Settings of the knob-control envs (validated).

    :param sample_rate: audio rate in Hz.
    :param duration_s: length of the rendered note and of every target.
    :param free_knobs: names of the knobs the agent moves (the rest are fixed: to the
        target's true values for in-domain targets, else to their defaults).
    :param max_move: largest change of a normalized knob in one step (action ±1).
    :param success_distance: episodes terminate when the spectral distance falls below.
    :param history: steps of knob/move history fed to R_opt and R_pol (>= 4).
    :param start: ``"random"`` (uniform free knobs) or ``"default"`` (knob defaults).
    :param reward: composite reward weights and scales.
    """

    sample_rate: int = 16_000
    duration_s: float = 0.5
    free_knobs: tuple[str, ...] = ("cutoff_hz", "resonance", "osc1_shape", "gain_db")
    max_move: float = 0.1
    success_distance: float = 0.3
    history: int = 8
    start: str = "random"
    reward: RewardConfig = field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        check_int("sample_rate", self.sample_rate, 4000)
        check_positive("duration_s", self.duration_s)
        object.__setattr__(self, "free_knobs", resolve_free_knobs(self.free_knobs, KnobSpace()))
        check_max_move(self.max_move)
        check_positive("success_distance", self.success_distance)
        check_int("history", self.history, 4)
        if self.start not in ("random", "default"):
            raise ValueError(f"start must be 'random' or 'default', got {self.start!r}")
        if not isinstance(self.reward, RewardConfig):
            raise TypeError(f"reward must be a RewardConfig, got {type(self.reward).__name__}")


def observation_size(n_free: int) -> int:
    """``F + 2·16 + 2·5 + 1`` (see the env docstring's table)."""
    return n_free + 2 * PROFILE_BANDS + 2 * N_STATS + 1


def observation_space(n_free: int) -> spaces.Box:
    n = observation_size(n_free)
    low = np.full(n, -OBS_LIMIT, np.float32)
    high = np.full(n, OBS_LIMIT, np.float32)
    low[:n_free], high[:n_free] = 0.0, 1.0
    return spaces.Box(low, high, dtype=np.float32)


def build_observation(
    free_unit: torch.Tensor, current: Features, target: Features, distance: torch.Tensor
) -> torch.Tensor:
    """``[knobs | target profile | profile diff | target stats | stats diff | distance]``."""
    t_prof, t_stats = spectral_profile(target), target.stats()
    parts = [
        t_prof,
        spectral_profile(current) - t_prof,
        t_stats,
        current.stats() - t_stats,
        distance[:, None],
    ]
    rest = torch.cat(parts, -1).clamp(-OBS_LIMIT, OBS_LIMIT)
    return torch.cat([free_unit.clamp(0.0, 1.0), rest], -1)


class SoundMatchCore(NoteCore):
    """Batched state and dynamics of ``batch`` SoundMatch episodes, all in torch.

    The single env drives it with ``batch=1``; the native vector env with ``batch=N``.
    Nothing here loops over episodes: every step renders and featurizes all voices in
    one call. Set-up and knob operations are the shared :class:`NoteCore`'s.
    """

    def __init__(
        self, config: SoundMatchConfig, targets: TargetSet, batch: int, device: str = "cpu"
    ) -> None:
        super().__init__(config, targets, batch, device, config.duration_s)
        b, w, f = self.batch, config.history, self.n_free
        self.trajectory = torch.zeros(b, w, f, device=self.device)
        self.moves = torch.zeros(b, w, f, device=self.device)
        self.current_features: Features | None = None

    @torch.no_grad()
    def _evaluate(self) -> tuple[Features, Features, torch.Tensor]:
        self.distance, self.audio, cur = self.render_distance(self.free_knobs)
        self.current_features = cur
        return cur, self.target_feats(), self.distance

    @torch.no_grad()
    def reset(
        self, mask: torch.Tensor, target_idx: torch.Tensor, start_free: torch.Tensor
    ) -> torch.Tensor:
        """Start new episodes where ``mask``; returns observations of all B."""
        self.start_knobs(mask, target_idx, start_free)
        free = self.free_knobs
        hist = free[:, None].expand_as(self.trajectory)
        self.trajectory = torch.where(mask[:, None, None], hist, self.trajectory)
        self.moves = torch.where(mask[:, None, None], torch.zeros_like(self.moves), self.moves)
        cur, tgt, dist = self._evaluate()
        return build_observation(free, cur, tgt, dist)

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> CoreStep:
        """Apply ``action [B, F]`` (clipped to [-1, 1]) as knob moves."""
        new_free, applied = self.move_knobs(action, self.config.max_move)
        self.trajectory = torch.cat([self.trajectory[:, 1:], new_free[:, None]], 1)
        self.moves = torch.cat([self.moves[:, 1:], applied[:, None]], 1)
        cur, tgt, dist = self._evaluate()
        out = self.reward_fn(
            cur, tgt, updates=self.moves, knob_trajectory=self.trajectory, knob_delta=applied
        )
        terminated = dist < self.config.success_distance
        obs = build_observation(new_free, cur, tgt, dist)
        no = torch.zeros_like(terminated)
        return CoreStep(obs, out.total, terminated, no, dist, out.terms, no)

    def image(self, i: int) -> np.ndarray:
        """Target (top) vs current (bottom) log-mel spectrogram of episode ``i``."""
        tgt = self.target_features.log_mel[0][self.target_idx[i]]
        assert self.current_features is not None
        return spectrogram_image([tgt, self.current_features.log_mel[0][i]])


def draw_reset(
    rng: np.random.Generator, core: SoundMatchCore, options: dict[str, Any] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode's random start from ``rng``: (target index, free knobs)."""
    idx = target_index_option(options, len(core.targets), rng)
    if core.config.start == "random":
        start = torch.from_numpy(rng.random(core.n_free).astype(np.float32))
    else:
        start = core.space.default_unit()[core.free_idx.cpu()]
    return torch.tensor(idx), start


class SoundMatchEnv(CoreEnv):
    """Match a target sound by moving the synth's knobs.

    ## Description
    A differentiable subtractive synth (two morphing oscillators, noise, waveshaper,
    resonant ladder low-pass with its own ADSR, amp ADSR) plays a note of
    ``duration_s``. Each step the agent nudges the *free* knobs; the rest stay fixed
    (at the target's true values for in-domain targets, at defaults otherwise). The
    goal is a rendered note whose multi-resolution spectrum matches the target's.

    ## Action Space
    ``Box(-1, 1, (F,), float32)`` with ``F = len(free_knobs)``: knob ``i`` moves by
    ``max_move · a_i`` in normalized units, then is clamped to [0, 1]. Actions outside
    [-1, 1] are clipped; NaN/inf or a wrong shape raise ``ValueError``.

    ## Observation Space
    ``Box(float32, (F + 43,))``; every entry past the knobs is clipped to [-10, 10].

    | slice            | name            | meaning                                           |
    |------------------|-----------------|---------------------------------------------------|
    | ``[0, F)``       | knobs_unit      | free knobs, normalized [0, 1]                     |
    | ``[F, F+16)``    | target_profile  | target's time-averaged log-mel, 16 bands, scaled  |
    | ``[F+16, F+32)`` | profile_diff    | current profile − target profile                  |
    | ``[F+32, F+37)`` | target_stats    | log2 centroid/kHz, log2 rolloff/kHz, flatness,    |
    |                  |                 | peakiness dB/40, loudness dBFS/60                  |
    | ``[F+37, F+42)`` | stats_diff      | current stats − target stats                      |
    | ``F+42``         | distance        | multi-resolution spectral distance to the target  |

    ## Rewards
    The composite ``R = w_aud·R_aud + w_opt·R_opt + w_pol·R_pol − P``
    (:class:`aegym.reward.CompositeReward`): ``R_aud`` from the match of the current
    note to the target, ``R_opt`` on the last ``history`` knob moves (coherent, small
    updates), ``R_pol`` on the knob trajectory, ``P`` for RMS loudness over the cap and
    knob slew over the limit. ``info["reward_terms"]`` holds every weighted term; they
    sum to the reward.

    ## Starting State
    A target is drawn from the target set with the env's RNG (or chosen with
    ``reset(options={"target_index": i})``). Free knobs start uniform in [0, 1]
    (``start="random"``) or at their defaults (``start="default"``).

    ## Episode End
    - Termination: ``info["distance"] < success_distance`` (``info["is_success"]``).
    - Truncation: after ``max_episode_steps`` (50 for ``AEGym/SoundMatch-v0``).

    ## Arguments
    ``gymnasium.make("AEGym/SoundMatch-v0", target=None, free_knobs="easy",
    max_move=0.1, duration_s=0.5, sample_rate=16000, success_distance=0.3,
    start="random", reward_config=None, target_seed=0, render_mode=None,
    device="cpu")``

    - ``target``: ``None``/``"random"`` (seeded random synth patches, ``target_seed``),
      ``"train"``/``"test"`` (fixed sets), a WAV path, a directory or a list of paths,
      or a :class:`aegym.targets.TargetSet`.
    - ``free_knobs``: ``"easy"`` (cutoff, resonance, osc1 shape, gain), ``"medium"``
      (10 knobs), ``"all"`` (20) or a list of knob names.
    - ``render_mode="rgb_array"``: :meth:`render` returns a uint8 image of the target
      (top) and current (bottom) log-mel spectrograms. :meth:`save_wav` writes the note.

    ## Info
    ``distance``, ``is_success``, ``reward_terms`` (dict), ``knobs`` (physical units),
    ``target_index``, ``target_name``.

    ## Version History
    - v0: initial release.
    """

    draw_reset = staticmethod(draw_reset)

    @fixed_threads
    def __init__(
        self,
        target: Any = None,
        free_knobs: str | Sequence[str] = "easy",
        max_move: float = 0.1,
        duration_s: float = 0.5,
        sample_rate: int = 16_000,
        success_distance: float = 0.3,
        start: str = "random",
        reward_config: RewardConfig | None = None,
        target_seed: int = 0,
        render_mode: str | None = None,
        device: str = "cpu",
    ) -> None:
        limit_threads_in_worker()
        self._set_render_mode(render_mode)
        self.config = SoundMatchConfig(
            sample_rate=sample_rate,
            duration_s=duration_s,
            free_knobs=free_knobs,  # type: ignore[arg-type]
            max_move=max_move,
            success_distance=success_distance,
            start=start,
            reward=reward_config or RewardConfig(),
        )
        targets = resolve_targets(
            target, sample_rate=sample_rate, duration_s=duration_s, seed=target_seed
        )
        self.core = SoundMatchCore(self.config, targets, 1, device)
        n_free = self.core.n_free
        self.action_space = spaces.Box(-1.0, 1.0, (n_free,), np.float32)
        self.observation_space = observation_space(n_free)

    def _info(self) -> dict[str, Any]:
        core = self.core
        idx = int(core.target_idx[0])
        return {
            "distance": float(core.distance[0]),
            "is_success": bool(core.distance[0] < self.config.success_distance),
            "knobs": core.physical_knobs(0),
            "target_index": idx,
            "target_name": core.targets[idx].name,
            "target_analysis": core.target_analysis(idx),
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.core.image(0)

    def _audio(self, which: str) -> torch.Tensor:
        if which == "current":
            return self.core.audio[0]
        return self.core.targets[int(self.core.target_idx[0])].audio
