"""Live knob control over one continuous stream with a moving target (SoundMatchLive-v1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from aegym._checks import check_int, check_positive
from aegym.audio_io import load_audio
from aegym.envs import SUCCESS_DISTANCE
from aegym.envs._base import CoreEnv
from aegym.envs._common import (
    CoreStep,
    check_max_move,
    fixed_threads,
    limit_threads_in_worker,
    resolve_free_knobs,
    resolve_target_kinds,
    spectrogram_image,
    target_index_option,
)
from aegym.envs._core import KnobCore
from aegym.envs.sound_match import (
    build_observation,
    knob_trajectory,
    observation_space,
    resolve_tier_targets,
)
from aegym.features import Features, spectral_distance
from aegym.reward import (
    AUDIO_TERMS,
    POLICY_TERMS,
    SUCCESS_TERM,
    CompositeReward,
    RewardConfig,
)
from aegym.synth import KnobSpace, SynthConfig, VoiceState
from aegym.targets import Target, TargetSet

#: Reward terms of the live env. Moves are heard at once, so the slew penalty counts;
#: there is no gradient (no opt/grad_norm) and no clock (the horizon is fixed, so a
#: constant per-step cost would change nothing).
LIVE_TERMS: tuple[str, ...] = (
    *AUDIO_TERMS,
    SUCCESS_TERM,
    "opt/resonance",
    "opt/update_norm",
    *POLICY_TERMS,
    "pen/loudness",
    "pen/slew",
)


def default_reward_config() -> RewardConfig:
    """The live env's reward settings: audio terms as a cost (a tracking task), and a
    success bonus of 1.5 > ``w_aud`` + the other costs (1.11), so a step on target
    always beats a step off it."""
    return RewardConfig(audio_mode="cost", success_bonus=1.5)


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
    :param history: steps of knob-move history in the observation, read by R_opt and
        R_pol (>= 4).
    :param success_distance: a step whose window distance is below this is on target
        (``info["on_target"]``) and earns ``reward.success_bonus``.
    :param sound_s: length in seconds of generated target sounds (random patches and the
        named sets' sounds; a streamed out-of-domain sound lasts this long). WAV files
        are streamed at their full length whatever this is.
    :param target_kinds: kinds of target accepted (as ``SoundMatchConfig.target_kinds``):
        named sets are reduced to these kinds, other targets of another kind raise;
        ``None``: every kind.
    :param reward: composite reward settings; ``audio_mode`` must be ``"cost"``,
        ``success_bonus`` must exceed ``w_aud`` plus the largest other cost per step, and
        ``slew_limit_unit`` must be below ``max_move`` (else the slew penalty could
        never trigger).
    """

    sample_rate: int = 16_000
    window_s: float = 0.25
    hop_s: float = 0.125
    free_knobs: tuple[str, ...] = ("cutoff_hz", "resonance", "osc1_shape", "gain_db")
    max_move: float = 0.1
    segment_steps: int = 16
    history: int = 8
    success_distance: float = SUCCESS_DISTANCE["live_easy"]
    sound_s: float = 1.0
    target_kinds: tuple[str, ...] | None = ("in_domain",)
    reward: RewardConfig = field(default_factory=default_reward_config)

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
        check_positive("success_distance", self.success_distance)
        check_positive("sound_s", self.sound_s)
        object.__setattr__(self, "target_kinds", resolve_target_kinds(self.target_kinds))
        self._check_reward()

    def _check_reward(self) -> None:
        r = self.reward
        if not isinstance(r, RewardConfig):
            raise TypeError(f"reward must be a RewardConfig, got {type(r).__name__}")
        if r.audio_mode != "cost":
            raise ValueError(
                "SoundMatchLive tracks without terminating: reward.audio_mode must be "
                f"'cost', got {r.audio_mode!r}"
            )
        worst = r.w_aud + CompositeReward(r, LIVE_TERMS).max_step_cost()
        if not r.success_bonus > worst:
            raise ValueError(
                f"reward.success_bonus ({r.success_bonus}) must exceed w_aud + the largest "
                f"other cost per step ({worst:.4g}), so that a step on target always earns "
                "more than a step off it"
            )
        if not r.slew_limit_unit < self.max_move:
            raise ValueError(
                f"reward.slew_limit_unit ({r.slew_limit_unit}) must be below max_move "
                f"({self.max_move}): moves are heard live, and a slew limit the agent "
                "cannot exceed would make pen/slew always 0"
            )

    @property
    def hop_samples(self) -> int:
        """The hop actually rendered per step: ``hop_s`` rounded to whole control blocks."""
        block = SynthConfig(self.sample_rate, duration_s=self.window_s).control_block
        return max(block, round(self.hop_s * self.sample_rate / block) * block)

    @property
    def window_samples(self) -> int:
        """Samples in the analysis window (never shorter than one hop)."""
        return max(self.hop_samples, round(self.window_s * self.sample_rate))


def stream_audio(target: Target, sample_rate: int) -> torch.Tensor:
    """The audio a target streams, ``[T_i]``: a WAV target re-read at its full length
    from ``metadata["path"]`` (the set holds it cut to a common length), at the set's
    level if the set rescaled it; any other target's own audio."""
    path = target.metadata.get("path")
    if target.kind != "wav" or path is None:
        return target.audio
    full = load_audio(path, sample_rate)
    n = target.num_samples
    head = torch.nn.functional.pad(full[:n], (0, max(0, n - full.shape[0])))
    if not torch.equal(head, target.audio):  # e.g. load_wav_targets(peak_dbfs=...)
        full = full * (target.audio.abs().max() / head.abs().max().clamp_min(1e-12))
    return full.float().contiguous()


class LiveCore(KnobCore):
    """Batched state of ``batch`` live episodes: the agent's voice and the target's
    stream, window by window.

    Each episode is one of two kinds, set by its target at reset:

    * a *glide* (the target has known knobs): the target's voice glides between
      waypoint patches drawn only among the set's targets with knobs; both voices carry
      oscillator phase and filter state from hop to hop.
    * a *stream* (the target has no knobs: a WAV file, a generated sound): the target's
      audio from its start, hop by hop through its whole length (WAV files at their
      full length, see :func:`stream_audio`); the step that hears the last sample
      truncates the episode (``CoreStep.truncated``). Its fixed knobs are
      :meth:`fixed_knobs_per_target` (an analysis estimate where there is one).
    """

    reward_terms = LIVE_TERMS

    def __init__(
        self, config: LiveConfig, targets: TargetSet, batch: int, device: str = "cpu"
    ) -> None:
        super().__init__(config, targets, batch, device, config.window_s)
        dev = self.device
        self.hop = config.hop_samples
        self.window = config.window_samples
        has = self.has_true_knobs.tolist()
        # Fixed by the target set (host booleans, so that step never syncs on them):
        # whether any episode can hear the target voice, or a recording.
        self._any_glides = any(has)
        self._any_streams = not all(has)
        #: Indices of the targets with knobs: the only waypoints a glide visits.
        self.knob_rows = torch.nonzero(self.has_true_knobs).flatten()
        self._knob_pos = torch.cumsum(self.has_true_knobs.long(), 0) - 1
        #: ``[N, K]``: each target's knobs (true, or the fixed estimate of a stream).
        self.waypoint_bank = self.fixed_knobs_per_target()
        # Streamed audio of the targets without knobs, back to back in one flat bank;
        # a target's samples are bank[offset : offset + length] (length 0 for glides).
        clips = [
            torch.zeros(0) if k else stream_audio(t, config.sample_rate)
            for t, k in zip(targets, has, strict=True)
        ]
        lengths = torch.tensor([c.numel() for c in clips], dtype=torch.long)
        self.stream_lengths = lengths.to(dev)
        self.stream_offsets = (torch.cumsum(lengths, 0) - lengths).to(dev)
        self.stream_bank = torch.cat([*clips, torch.zeros(1)]).to(dev)
        b, w = self.batch, config.history
        self.moves = torch.zeros(b, w, self.n_free, device=dev)
        self.steps = torch.zeros(b, dtype=torch.long, device=dev)
        self.target_idx = torch.zeros(b, dtype=torch.long, device=dev)
        self.streaming = torch.zeros(b, dtype=torch.bool, device=dev)
        self.wp_idx = torch.zeros(b, 2, dtype=torch.long, device=dev)
        self.audio_pos = torch.zeros(b, dtype=torch.long, device=dev)
        self.on_target = torch.zeros(b, dtype=torch.bool, device=dev)
        self.agent_state = self._fresh_state()
        self.target_state = self._fresh_state()
        self.agent_buf = torch.zeros(b, self.window, device=dev)
        self.target_buf = torch.zeros(b, self.window, device=dev)
        self.current_features: Features | None = None
        self.target_features: Features | None = None

    @property
    def trajectory(self) -> torch.Tensor:
        """The last ``history`` free-knob states ``[B, W, F]`` (see :func:`knob_trajectory`)."""
        return knob_trajectory(self.free_knobs, self.moves)

    @property
    def heard_index(self) -> torch.Tensor:
        """``[B]``: the target heard now: a glide's current start waypoint, a stream's
        recording."""
        return self.wp_idx[:, 0]

    def _glide(self, ahead: int) -> torch.Tensor:
        seg = self.config.segment_steps
        frac = (((self.steps % seg) + ahead).float() / seg)[:, None]
        a, b = self.waypoint_bank[self.wp_idx[:, 0]], self.waypoint_bank[self.wp_idx[:, 1]]
        return torch.lerp(a, b, frac)

    def target_knobs(self) -> torch.Tensor:
        """Target knobs now ``[B, K]``: a linear glide between the two current waypoints
        (a stream's fixed knobs, constant)."""
        return self._glide(0)

    def true_free_knobs(self) -> torch.Tensor:
        """The glide's free knobs now, NaN rows for streamed recordings."""
        truth = self.target_knobs()[:, self.free_idx]
        return torch.where(self.streaming[:, None], math.nan, truth)

    def next_target_knobs(self) -> torch.Tensor:
        """The target knobs the next step will hear ``[B, K]`` (what an oracle tracks)."""
        return self._glide(1)

    def next_waypoint(self, end: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """The waypoint after ``end`` on the reproducible schedule, always a target
        with knobs: ``knob_rows[(pos(end)·7 + steps + 1) mod N_knobs]``."""
        n = self.knob_rows.numel()
        if n == 0:
            return end
        pos = self._knob_pos[end].clamp_min(0)
        return self.knob_rows[(pos * 7 + steps + 1) % n]

    def _fresh_state(self) -> VoiceState:
        """Note-on state of all B voices, with per-voice noise position and time: each
        episode's note starts at its own reset, as in a single env."""
        s = self.voice.initial_state(self.batch)
        dev = self.device
        pos = torch.zeros(self.batch, dtype=torch.long, device=dev)
        return s._replace(noise_pos=pos, time_s=torch.zeros_like(pos, dtype=torch.float64))

    @staticmethod
    def _merge_state(mask: torch.Tensor, new: VoiceState, old: VoiceState) -> VoiceState:
        """``new`` where ``mask``, else ``old`` (every field is per voice; no host sync)."""
        m = mask
        return VoiceState(
            torch.where(m, new.phase1, old.phase1),
            torch.where(m, new.phase2, old.phase2),
            torch.where(m, new.noise_pos, old.noise_pos),  # type: ignore[arg-type]
            type(old.filter)(torch.where(m[:, None], new.filter.tpt, old.filter.tpt)),
            torch.where(m, new.time_s, old.time_s),  # type: ignore[arg-type]
        )

    @torch.no_grad()
    def reset(
        self, mask: torch.Tensor, waypoints: torch.Tensor, start_free: torch.Tensor
    ) -> torch.Tensor:
        """Start new episodes where ``mask``: ``waypoints [B, 2]`` target indices (the
        episode's target, then the end of its first glide; a stream ignores the second),
        ``start_free [B, F]``. Returns the observations of all B."""
        m = mask.to(self.device)
        wp = waypoints.to(self.device)
        idx = wp[:, 0]
        stream = ~self.has_true_knobs[idx]
        wp = torch.where(stream[:, None], idx[:, None].expand_as(wp), wp)
        self.target_idx = torch.where(m, idx, self.target_idx)
        self.streaming = torch.where(m, stream, self.streaming)
        self.wp_idx = torch.where(m[:, None], wp, self.wp_idx)
        self.steps = torch.where(m, 0, self.steps)
        self.audio_pos = torch.where(m, 0, self.audio_pos)
        knobs = self.target_knobs().index_copy(1, self.free_idx, start_free.to(self.knobs))
        self.knobs = torch.where(m[:, None], knobs, self.knobs)
        self.moves = torch.where(m[:, None, None], 0.0, self.moves)
        fresh = self._fresh_state()
        self.agent_state = self._merge_state(m, fresh, self.agent_state)
        self.target_state = self._merge_state(m, fresh, self.target_state)
        self.agent_buf = torch.where(m[:, None], 0.0, self.agent_buf)
        self.target_buf = torch.where(m[:, None], 0.0, self.target_buf)
        obs, _ = self._advance(self.free_knobs, m)
        self.on_target = torch.where(
            m, self.distance < self.config.success_distance, self.on_target
        )
        return obs

    def _streamed_hop(self) -> torch.Tensor:
        """The next hop of every episode's recording ``[B, hop]`` (zeros past its end)."""
        rel = self.audio_pos[:, None] + torch.arange(self.hop, device=self.device)
        length = self.stream_lengths[self.target_idx][:, None]
        idx = self.stream_offsets[self.target_idx][:, None] + rel.clamp_max(length - 1)
        return torch.where(rel < length, self.stream_bank[idx.clamp_min(0)], 0.0)

    def _target_hop(self, mask: torch.Tensor) -> torch.Tensor:
        audio = None
        if self._any_glides:  # the set has glides: the target voice plays
            audio, state = self.voice.render(self.target_knobs(), self.hop, self.target_state)
            self.target_state = self._merge_state(mask, state, self.target_state)
        if self._any_streams:
            streamed = self._streamed_hop()
            audio = (
                streamed if audio is None else torch.where(self.streaming[:, None], streamed, audio)
            )
        self.audio_pos = torch.where(mask, self.audio_pos + self.hop, self.audio_pos)
        assert audio is not None
        return audio

    def _advance(self, free: torch.Tensor, mask: torch.Tensor):
        """Render one hop for the episodes in ``mask`` (others keep their streams) and
        return the observations of all B."""
        knobs = self.target_knobs().index_copy(1, self.free_idx, free)  # others follow
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
        obs = build_observation(
            self.free_knobs, cur, tgt, self.distance, self.moves, self.config.max_move
        )
        return obs, (cur, tgt)

    @torch.no_grad()
    def next_target_window(self) -> torch.Tensor:
        """``[B, window]``: the target window the next step will hear (the current one
        shifted by a hop, then the target's next hop; the state is not changed)."""
        audio = None
        if self._any_glides:
            audio, _ = self.voice.render(self.next_target_knobs(), self.hop, self.target_state)
        if self._any_streams:
            streamed = self._streamed_hop()
            audio = (
                streamed if audio is None else torch.where(self.streaming[:, None], streamed, audio)
            )
        assert audio is not None
        return torch.cat([self.target_buf[:, self.hop :], audio], -1)

    def distance_at(self, free: torch.Tensor) -> torch.Tensor:
        """Distance of the window the agent would hear next with free knobs ``free``
        (the other knobs at the next step's target knobs) to the target window the next
        step will hear (:meth:`next_target_window`): with ``free`` = the knobs after a
        move, this is the distance :meth:`step` then reports (differentiable; the state
        is not changed)."""
        knobs = self.next_target_knobs().index_copy(1, self.free_idx, free)
        new, _ = self.voice.render(knobs, self.hop, self.agent_state)
        window = torch.cat([self.agent_buf[:, self.hop :], new], -1)
        with torch.no_grad():
            target = self.encoder(self.next_target_window())
        return spectral_distance(self.encoder(window), target)

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> CoreStep:
        cfg = self.config
        new_free, applied = self.move_knobs(action, cfg.max_move)
        self.steps = self.steps + 1
        seg_done = (self.steps % cfg.segment_steps == 0) & ~self.streaming
        # Where the glide reached its end, the end becomes the start of a new glide,
        # whose end follows a fixed pseudo-random schedule among the targets with knobs.
        nxt = self.next_waypoint(self.wp_idx[:, 1], self.steps)
        shifted = torch.stack([self.wp_idx[:, 1], nxt], -1)
        self.wp_idx = torch.where(seg_done[:, None], shifted, self.wp_idx)
        self.moves = torch.cat([self.moves[:, 1:], applied[:, None]], 1)
        everyone = torch.ones(self.batch, dtype=torch.bool, device=self.device)
        obs, (cur, tgt) = self._advance(new_free, everyone)
        self.on_target = self.distance < cfg.success_distance
        out = self.reward_fn(
            cur,
            tgt,
            success=self.on_target,
            updates=self.moves,
            knob_trajectory=knob_trajectory(new_free, self.moves),
            knob_delta=applied,
        )
        # A stream ends with its recording: the step that heard its last sample.
        ended = self.streaming & (self.audio_pos >= self.stream_lengths[self.target_idx])
        no = torch.zeros_like(everyone)
        return CoreStep(obs, out.total, no, ended, self.distance, out.terms, no, out.violation)


def draw_reset(
    rng: np.random.Generator, core: LiveCore, options: dict[str, Any] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode's random start: (the target and the end of its first glide, drawn
    among the targets with knobs [2]; free knobs)."""
    idx = target_index_option(options, len(core.targets), rng)
    rows = core.knob_rows
    nxt = int(rows[int(rng.integers(rows.numel()))]) if rows.numel() else idx
    start = torch.from_numpy(rng.random(core.n_free).astype(np.float32))
    return torch.tensor([idx, nxt]), start


class SoundMatchLiveEnv(CoreEnv):
    """Track a moving target sound live, one overlapping window per step.

    ## Description
    The seed's windowed loop as an environment. The synth plays one continuous note;
    each step renders ``hop_s`` more seconds (oscillator phase and filter state carry
    over, no clicks) and the agent hears the latest ``window_s`` seconds, against the
    latest window of the target's stream. Moves are heard immediately, so knob slew and
    loudness are penalized. An episode's target decides what it streams:

    - **Glide** (a target with known knobs: random patches, the in-domain part of
      ``"train"``/``"test"``): the target voice glides linearly from one waypoint patch
      to the next every ``segment_steps`` steps. Waypoints are drawn only among the
      set's targets with knobs (the next one from a reproducible schedule,
      :meth:`LiveCore.next_waypoint`), and the agent's non-free knobs follow the glide,
      so the true free knobs always exist: ``core.next_target_knobs()``.
    - **Stream** (a target without knobs: a WAV file, an out-of-domain sound; needs
      ``target_kinds=None`` or a kind list naming it): the episode plays that one
      recording from its start, hop by hop, through its whole length (WAV files at
      full length, not cut to the set's common length), then truncates — it never loops
      nor moves on to another target. The non-free knobs are the target's fixed knobs
      (:meth:`KnobCore.fixed_knobs_per_target`: an analysis estimate where available,
      else the defaults).

    The default target set (``target=None``) is 64 random in-domain patches, and by
    default only in-domain targets are accepted (``target_kinds=("in_domain",)``, as the
    SoundMatch Easy tier): named sets are reduced to their in-domain part.

    ## Action Space
    ``Box(-1, 1, (F,), float32)`` with ``F = len(free_knobs)`` (4 by default): knob ``i``
    moves by ``max_move·a_i`` (normalized units), clamped to [0, 1]. Out-of-space
    actions are clipped; NaN/inf or a wrong shape raise ``ValueError``.

    ## Observation Space
    ``Box(float32, (F + 43 + W·F,))`` with ``W = history`` (8), the layout of
    ``AEGym/SoundMatch-*-v1`` computed on the current windows of the agent's and the
    target's streams. Profile and stats entries are clipped to [-10, 10].

    | slice              | name            | meaning                                         |
    |--------------------|-----------------|-------------------------------------------------|
    | ``[0, F)``         | knobs_unit      | free knobs, normalized [0, 1]                   |
    | ``[F, F+16)``      | target_profile  | target window's time-averaged log-mel, 16 bands |
    | ``[F+16, F+32)``   | profile_diff    | current profile − target profile                |
    | ``[F+32, F+37)``   | target_stats    | log2 centroid/kHz, log2 rolloff/kHz, flatness,  |
    |                    |                 | peakiness dB/40, loudness dBFS/60                |
    | ``[F+37, F+42)``   | stats_diff      | current stats − target stats                    |
    | ``F+42``           | distance        | spectral distance of the two windows            |
    | ``[F+43, F+43+WF)``| move_history    | last W applied moves / ``max_move``, oldest     |
    |                    |                 | first (``W×F``, row-major)                       |

    Everything the reward reads is in the observation (Markov): the knob trajectory of
    ``pol/*`` is the knobs minus the summed move history.

    ## Rewards
    The composite ``R`` (:class:`aegym.reward.CompositeReward`) in ``audio_mode="cost"``
    (a tracking task: every term is a cost, except the bonus on target):

    | term               | per step                                     | range           |
    |--------------------|----------------------------------------------|-----------------|
    | ``aud/*``          | ``c·(s − 1)``: shortfall of each audio       | [−1, 0] in all  |
    |                    | sub-score of the current windows             |                 |
    | ``aud/success``    | ``success_bonus`` (1.5) when on target:      | {0, 1.5}        |
    |                    | distance < ``success_distance`` (0.54)       |                 |
    | ``opt/resonance``, | −shortfall of the move history's resonance   | [−0.01, 0] each |
    | ``opt/update_norm``| and small-move scores                        |                 |
    | ``pol/*``          | −shortfall of periodicity and diversity of   | [−0.01, 0] each |
    |                    | the last W knob states                       |                 |
    | ``pen/loudness``   | −RMS loudness of the agent's window over cap | [−0.05, 0]      |
    | ``pen/slew``       | −knob moves over ``slew_limit_unit`` (0.05)  | [−0.02, 0]      |

    No ``pen/time`` (the horizon is fixed, a clock would change nothing), no
    ``opt/grad_norm`` (no gradient). Per step the reward lies in
    ``env.unwrapped.core.reward_fn.bounds()``: [−1.11, 1.5] by default. Since
    ``success_bonus > w_aud + a`` (1.5 > 1 + 0.11, checked), a step on target always
    earns more than a step off it (> 0 vs <= 0). ``info["reward_terms"]`` holds every
    term; they sum to the reward. ``info["safety_violation"]``: a safety penalty
    (loudness, slew) above the reward's ``violation_tolerance`` this step.

    ## Starting State
    Silence in both windows, then one hop rendered; free knobs uniform in [0, 1]; the
    episode's target drawn uniformly from the set with the env's RNG (or
    ``options={"target_index": i}``); a glide's first end waypoint drawn among the
    targets with knobs.

    ## Episode End
    - Termination: none (a tracking task).
    - Truncation: after ``max_episode_steps`` (64 steps = 8.19 s at the default hop,
      0.125 s rounded to 2048 samples = 0.128 s at 16 kHz; see ``LiveConfig.hop_s``),
      or — for a stream — on the step whose window holds the recording's last sample
      (``truncated=True`` from the env itself; ``ceil(T/hop) − 1`` steps for a recording
      of ``T`` samples, at least 1).

    ## Info
    ``distance``, ``on_target`` (this step paid the bonus), ``knobs`` (all, physical
    units), ``target_index``/``target_name`` (the target heard: a glide's current start
    waypoint, or the recording), ``stream_position_s`` (seconds of the target's stream
    played: the end of the current window), ``safety_violation``, ``reward_terms``,
    ``diverged`` (always False).

    ## Arguments
    ``gymnasium.make("AEGym/SoundMatchLive-v1", target=None, free_knobs="easy",
    window_s=0.25, hop_s=0.125, max_move=0.1, segment_steps=16, sample_rate=16000,
    success_distance=0.54, sound_s=1.0, target_kinds=("in_domain",),
    reward_config=None, target_seed=0, render_mode=None, device="cpu")``;
    ``reward_config=None`` is ``RewardConfig(audio_mode="cost", success_bonus=1.5)``.
    See :class:`LiveConfig` for each setting and its checks.

    ## Version History
    - v1: targets without knobs are streamed one per episode through their whole
      length (WAV files at full length), truncating at the end (v0 streamed every
      target's first ``window_s`` back to back, jumping to another target every ~2
      hops, with the non-free knobs at defaults, and never played the rest of a long
      WAV); glide waypoints only among targets with knobs (v0 glided only when *every*
      target had knobs); in-domain targets by default (``target_kinds``); aligned
      reward (audio as a cost plus a bonus on every step on target, every other term a
      cost: v0 scored static, AE and oracle policies alike); the move history in the
      observation (Markov); no always-zero terms (``opt/grad_norm``, ``pen/kl``);
      ``success_distance``, ``sound_s``, ``target_kinds``; ``info["on_target"]``,
      ``info["target_name"]``, ``info["stream_position_s"]``.
    - v0: initial release (``AEGym/SoundMatchLive-v0``, removed).
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
        success_distance: float = SUCCESS_DISTANCE["live_easy"],
        sound_s: float = 1.0,
        target_kinds: Sequence[str] | None = ("in_domain",),
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
            success_distance=success_distance,
            sound_s=sound_s,
            target_kinds=None if target_kinds is None else tuple(target_kinds),
            reward=reward_config or default_reward_config(),
        )
        # A TargetSet streams at its own length; anything generated or loaded here at
        # sound_s (WAV files are re-read at full length by the core).
        duration = target.duration_s if isinstance(target, TargetSet) else sound_s
        targets = resolve_tier_targets(
            target,
            self.config.target_kinds,
            type(self).__name__,
            sample_rate=sample_rate,
            duration_s=duration,
            seed=target_seed,
        )
        self.core = LiveCore(self.config, targets, 1, device)
        self.action_space = spaces.Box(-1.0, 1.0, (self.core.n_free,), np.float32)
        self.observation_space = observation_space(self.core.n_free, self.config.history)

    def _info(self) -> dict[str, Any]:
        core = self.core
        idx = int(core.heard_index[0])
        return {
            "distance": float(core.distance[0]),
            "on_target": bool(core.on_target[0]),
            "knobs": core.physical_knobs(0),
            "target_index": idx,
            "target_name": core.targets[idx].name,
            "stream_position_s": int(core.audio_pos[0]) / self.config.sample_rate,
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        core = self.core
        assert core.target_features is not None and core.current_features is not None
        return spectrogram_image(
            [core.target_features.log_mel[0][0], core.current_features.log_mel[0][0]]
        )

    def _audio(self, which: str) -> torch.Tensor:
        """The latest window of the agent's (``"current"``) or the target's stream."""
        return (self.core.agent_buf if which == "current" else self.core.target_buf)[0]
