"""Live knob control over one continuous stream with a moving target (SoundMatchLive-v0)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from aegym._checks import check_int, check_positive
from aegym.envs._base import CoreEnv
from aegym.envs._common import (
    CoreStep,
    check_max_move,
    fixed_threads,
    limit_threads_in_worker,
    resolve_free_knobs,
    spectrogram_image,
    target_index_option,
)
from aegym.envs._core import KnobCore
from aegym.envs.sound_match import build_observation, observation_space
from aegym.features import spectral_distance
from aegym.reward import RewardConfig
from aegym.synth import KnobSpace, SynthConfig, VoiceState
from aegym.targets import TargetSet, resolve_targets


@dataclass(frozen=True)
class LiveConfig:
    """Settings of the live env (validated).

    :param sample_rate: audio rate in Hz.
    :param window_s: analysis window (features, reward) in seconds, 0.25–1.0.
    :param hop_s: new audio per step in seconds (< window: windows overlap), rounded
        to a whole number of the synth's 128-sample control blocks (the filter's control
        rate): at 16 kHz, 0.125 s is 2048 samples = 0.128 s. :attr:`hop_samples` is the
        exact hop.
    :param free_knobs: knobs the agent moves; the others follow the target.
    :param max_move: largest change of a normalized knob per step.
    :param segment_steps: steps the target takes to glide from one waypoint to the next.
    :param history: steps of knob history for R_opt / R_pol (>= 4).
    :param reward: composite reward settings.
    """

    sample_rate: int = 16_000
    window_s: float = 0.25
    hop_s: float = 0.125
    free_knobs: tuple[str, ...] = ("cutoff_hz", "resonance", "osc1_shape", "gain_db")
    max_move: float = 0.1
    segment_steps: int = 16
    history: int = 8
    reward: RewardConfig = field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        check_int("sample_rate", self.sample_rate, 4000)
        check_positive("window_s", self.window_s)
        if not 0.25 <= self.window_s <= 1.0:
            raise ValueError(f"window_s must be in [0.25, 1.0], got {self.window_s!r}")
        check_positive("hop_s", self.hop_s)
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s ({self.hop_s}) must not exceed window_s ({self.window_s})")
        object.__setattr__(self, "free_knobs", resolve_free_knobs(self.free_knobs, KnobSpace()))
        check_max_move(self.max_move)
        check_int("segment_steps", self.segment_steps, 1)
        check_int("history", self.history, 4)

    @property
    def hop_samples(self) -> int:
        """The hop actually rendered per step: ``hop_s`` rounded to whole control blocks."""
        block = SynthConfig(self.sample_rate, duration_s=self.window_s).control_block
        return max(block, round(self.hop_s * self.sample_rate / block) * block)

    @property
    def window_samples(self) -> int:
        """Samples in the analysis window (never shorter than one hop)."""
        return max(self.hop_samples, round(self.window_s * self.sample_rate))


class LiveCore(KnobCore):
    """Batched state of ``batch`` live episodes: two voices streaming window by window.

    The agent's voice and the target's voice (for targets with known knobs) both carry
    oscillator phase and filter state from hop to hop; targets without knobs (WAV and
    generated sounds) are streamed from their audio, looped.
    """

    def __init__(
        self, config: LiveConfig, targets: TargetSet, batch: int, device: str = "cpu"
    ) -> None:
        super().__init__(config, targets, batch, device, config.window_s)
        self.hop = config.hop_samples
        self.window = config.window_samples
        self.knob_targets = all(t.unit_knobs is not None for t in targets)
        if self.knob_targets:
            self.waypoint_bank = targets.knobs_batch().to(self.device)
        else:
            self.audio_bank = targets.audio_batch().reshape(-1).to(self.device)
        b, w = self.batch, config.history
        self.trajectory = torch.zeros(b, w, self.n_free, device=self.device)
        self.moves = torch.zeros_like(self.trajectory)
        self.steps = torch.zeros(b, dtype=torch.long, device=self.device)
        self.wp_idx = torch.zeros(b, 2, dtype=torch.long, device=self.device)
        self.audio_pos = torch.zeros(b, dtype=torch.long, device=self.device)
        self.agent_state = self.voice.initial_state(b)
        self.target_state = self.voice.initial_state(b)
        self.agent_buf = torch.zeros(b, self.window, device=self.device)
        self.target_buf = torch.zeros(b, self.window, device=self.device)
        self.current_features = self.target_features = None

    def target_knobs(self) -> torch.Tensor:
        """Target knobs now: a linear glide between the two current waypoints."""
        seg = self.config.segment_steps
        frac = ((self.steps % seg).float() / seg)[:, None]
        a, b = self.waypoint_bank[self.wp_idx[:, 0]], self.waypoint_bank[self.wp_idx[:, 1]]
        return torch.lerp(a, b, frac)

    @staticmethod
    def _merge_state(mask: torch.Tensor, new: VoiceState, old: VoiceState) -> VoiceState:
        """``new`` where ``mask``, else ``old``. Note time and noise position are shared by
        the batch: they follow ``new`` when every episode moves, else stay."""
        if bool(mask.all()):
            return new
        m = mask
        return VoiceState(
            torch.where(m, new.phase1, old.phase1),
            torch.where(m, new.phase2, old.phase2),
            old.noise_pos,
            type(old.filter)(torch.where(m[:, None], new.filter.tpt, old.filter.tpt)),
            old.time_s,
        )

    @torch.no_grad()
    def reset(
        self,
        mask: torch.Tensor,
        waypoints: torch.Tensor,
        start_free: torch.Tensor,
        audio_offset: torch.Tensor,
    ) -> torch.Tensor:
        """Start new episodes where ``mask``: ``waypoints [B, 2]`` target indices (the glide
        start and end), ``start_free [B, F]``, ``audio_offset [B]`` for audio targets."""
        m = mask.to(self.device)
        self.wp_idx = torch.where(m[:, None], waypoints.to(self.device), self.wp_idx)
        self.steps = torch.where(m, 0, self.steps)
        self.audio_pos = torch.where(m, audio_offset.to(self.device), self.audio_pos)
        base = self.target_knobs() if self.knob_targets else self.space.default_unit(self.batch)
        knobs = base.clone()
        knobs[:, self.free_idx] = start_free.to(self.device)
        self.knobs = torch.where(m[:, None], knobs, self.knobs)
        free = self.knobs[:, self.free_idx]
        self.trajectory = torch.where(
            m[:, None, None], free[:, None].expand_as(self.trajectory), self.trajectory
        )
        self.moves = torch.where(m[:, None, None], 0.0, self.moves)
        fresh = self.voice.initial_state(self.batch)
        if bool(m.all()):
            self.agent_state, self.target_state = fresh, fresh
        else:
            # Note time and noise position are shared by the batch: a partially reset
            # stream starts a fresh oscillator/filter state inside the running note.
            self.agent_state = self._merge_state(m, fresh, self.agent_state)
            self.target_state = self._merge_state(m, fresh, self.target_state)
        self.agent_buf = torch.where(m[:, None], 0.0, self.agent_buf)
        self.target_buf = torch.where(m[:, None], 0.0, self.target_buf)
        obs, _ = self._advance(free, m)
        return obs

    def _target_hop(self, mask: torch.Tensor) -> torch.Tensor:
        if self.knob_targets:
            audio, state = self.voice.render(self.target_knobs(), self.hop, self.target_state)
            self.target_state = self._merge_state(mask, state, self.target_state)
            return audio
        n = self.audio_bank.numel()
        idx = (self.audio_pos[:, None] + torch.arange(self.hop, device=self.device)) % n
        self.audio_pos = torch.where(mask, (self.audio_pos + self.hop) % n, self.audio_pos)
        return self.audio_bank[idx]

    def _advance(self, free: torch.Tensor, mask: torch.Tensor):
        """Render one hop for the episodes in ``mask`` (others keep their streams) and
        return the observations of all B."""
        if self.knob_targets:  # non-free knobs follow the target
            knobs = self.target_knobs().index_copy(1, self.free_idx, free)
            self.knobs = torch.where(mask[:, None], knobs, self.knobs)
        new, state = self.voice.render(self.knobs, self.hop, self.agent_state)
        self.agent_state = self._merge_state(mask, state, self.agent_state)
        m = mask[:, None]
        self.agent_buf = torch.where(
            m, torch.cat([self.agent_buf[:, self.hop :], new], -1), self.agent_buf
        )
        target = torch.cat([self.target_buf[:, self.hop :], self._target_hop(mask)], -1)
        self.target_buf = torch.where(m, target, self.target_buf)
        cur = self.encoder(self.agent_buf)
        tgt = self.encoder(self.target_buf)
        self.distance = spectral_distance(cur, tgt)
        self.current_features, self.target_features = cur, tgt
        return build_observation(self.knobs[:, self.free_idx], cur, tgt, self.distance), (cur, tgt)

    def distance_at(self, free: torch.Tensor) -> torch.Tensor:
        """Distance of the window the agent would hear next with free knobs ``free`` to
        the current target window (differentiable; the state is not changed)."""
        new, _ = self.voice.render(self.with_free(free), self.hop, self.agent_state)
        window = torch.cat([self.agent_buf[:, self.hop :], new], -1)
        return spectral_distance(self.encoder(window), self.target_features)

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> CoreStep:
        cfg = self.config
        new_free, applied = self.move_knobs(action, cfg.max_move)
        self.steps = self.steps + 1
        seg_done = (self.steps % cfg.segment_steps == 0) & (self.steps > 0)
        if self.knob_targets and bool(seg_done.any()):
            # The glide reached its end: the end becomes the start of a new glide, whose
            # end follows a fixed pseudo-random schedule (reproducible per episode).
            nxt = (self.wp_idx[:, 1] * 7 + self.steps + 1) % len(self.targets)
            shifted = torch.stack([self.wp_idx[:, 1], nxt], -1)
            self.wp_idx = torch.where(seg_done[:, None], shifted, self.wp_idx)
        self.trajectory = torch.cat([self.trajectory[:, 1:], new_free[:, None]], 1)
        self.moves = torch.cat([self.moves[:, 1:], applied[:, None]], 1)
        everyone = torch.ones(self.batch, dtype=torch.bool, device=self.device)
        obs, (cur, tgt) = self._advance(new_free, everyone)
        out = self.reward_fn(
            cur, tgt, updates=self.moves, knob_trajectory=self.trajectory, knob_delta=applied
        )
        no = torch.zeros_like(everyone)
        return CoreStep(obs, out.total, no, no, self.distance, out.terms, no)


def draw_reset(
    rng: np.random.Generator, core: LiveCore, options: dict[str, Any] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One episode's random start: (glide waypoints [2], free knobs, audio offset)."""
    n = len(core.targets)
    idx = target_index_option(options, n, rng)
    nxt = int(rng.integers(n))
    start = torch.from_numpy(rng.random(core.n_free).astype(np.float32))
    offset = idx * core.targets.num_samples
    return torch.tensor([idx, nxt]), start, torch.tensor(offset)


class SoundMatchLiveEnv(CoreEnv):
    """Track a moving target sound live, one overlapping window per step.

    ## Description
    The seed's windowed loop as an environment. The synth plays one continuous note;
    each step renders ``hop_s`` more seconds (oscillator phase and filter state carry
    over, no clicks) and the agent hears the latest ``window_s`` seconds. The target
    moves: for targets with known knobs (random patches, the in-domain part of
    ``"train"``/``"test"``) it glides linearly from one patch to the next every
    ``segment_steps`` steps, its non-free knobs shared with the agent's voice; other
    targets (WAV files, generated sounds) are streamed from their audio, looped. Knob
    slew and loudness penalties matter because moves are heard immediately.

    ## Action Space
    ``Box(-1, 1, (F,), float32)``: knob ``i`` moves by ``max_move·a_i`` (normalized units),
    clamped to [0, 1]. Out-of-space actions are clipped; NaN/inf or a wrong shape raise.

    ## Observation Space
    As ``AEGym/SoundMatch-v0`` (``F + 43`` entries: knobs, target profile, profile
    difference, target stats, stats difference, distance), computed on the current
    windows of the agent's stream and of the target's stream.

    ## Rewards
    The composite ``R`` on the current windows: ``R_aud`` match, ``R_opt`` on the last
    ``history`` knob moves, ``R_pol`` on the knob trajectory, minus loudness and slew
    penalties. ``info["reward_terms"]`` sums to the reward.

    ## Starting State
    Silence in both windows; free knobs uniform in [0, 1]; the target glide starts at a
    random target (env RNG, or ``options={"target_index": i}``).

    ## Episode End
    - Termination: none (a tracking task).
    - Truncation: after ``max_episode_steps`` (64 steps = 8.19 s at the default hop,
      0.125 s rounded to 2048 samples = 0.128 s at 16 kHz; see ``LiveConfig.hop_s``).

    ## Arguments
    ``gymnasium.make("AEGym/SoundMatchLive-v0", target=None, free_knobs="easy",
    window_s=0.25, hop_s=0.125, max_move=0.1, segment_steps=16, sample_rate=16000,
    reward_config=None, target_seed=0, render_mode=None, device="cpu")``.

    ## Version History
    - v0: initial release.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 8}
    draw_reset = staticmethod(draw_reset)

    @fixed_threads
    def __init__(
        self,
        target: Any = None,
        free_knobs: str | Sequence[str] = "easy",
        window_s: float = 0.25,
        hop_s: float = 0.125,
        max_move: float = 0.1,
        segment_steps: int = 16,
        sample_rate: int = 16_000,
        reward_config: RewardConfig | None = None,
        target_seed: int = 0,
        render_mode: str | None = None,
        device: str = "cpu",
    ) -> None:
        limit_threads_in_worker()
        self._set_render_mode(render_mode)
        self.config = LiveConfig(
            sample_rate=sample_rate,
            window_s=window_s,
            hop_s=hop_s,
            free_knobs=free_knobs,  # type: ignore[arg-type]
            max_move=max_move,
            segment_steps=segment_steps,
            reward=reward_config or RewardConfig(),
        )
        targets = resolve_targets(
            target, sample_rate=sample_rate, duration_s=window_s, seed=target_seed
        )
        self.core = LiveCore(self.config, targets, 1, device)
        self.action_space = spaces.Box(-1.0, 1.0, (self.core.n_free,), np.float32)
        self.observation_space = observation_space(self.core.n_free)

    def _info(self) -> dict[str, Any]:
        core = self.core
        return {
            "distance": float(core.distance[0]),
            "knobs": core.physical_knobs(0),
            "target_index": int(core.wp_idx[0, 0]),
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        core = self.core
        return spectrogram_image(
            [core.target_features.log_mel[0][0], core.current_features.log_mel[0][0]]
        )

    def _audio(self, which: str) -> torch.Tensor:
        """The latest window of the agent's (``"current"``) or the target's stream."""
        return (self.core.agent_buf if which == "current" else self.core.target_buf)[0]
