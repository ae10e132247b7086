"""Knob control: move the synth's knobs until it sounds like a target (SoundMatch-*-v1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from aegym._checks import check_int, check_positive
from aegym.calibration import SUCCESS_DISTANCE
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
    resolve_target_kinds,
    spectral_profile,
    spectrogram_image,
    target_index_option,
)
from aegym.envs._core import NoteCore
from aegym.features import Features
from aegym.reward import (
    AUDIO_TERMS,
    POLICY_TERMS,
    SUCCESS_TERM,
    RewardConfig,
    RewardOutput,
)
from aegym.synth import KnobSpace
from aegym.targets import TargetSet, resolve_targets

#: Reward terms of the SoundMatch envs. Knob moves are not heard (each step renders a
#: fresh note), so there is no slew penalty; there is no gradient, so no opt/grad_norm.
SOUND_MATCH_TERMS: tuple[str, ...] = (
    *AUDIO_TERMS,
    SUCCESS_TERM,
    "opt/resonance",
    "opt/update_norm",
    *POLICY_TERMS,
    "pen/loudness",
    "pen/time",
)


#: Success distance of the Easy tier (see :mod:`aegym.calibration`): the default.
DEFAULT_SUCCESS_DISTANCE = SUCCESS_DISTANCE["easy"]


def resolve_tier_targets(
    target: Any, kinds: tuple[str, ...] | None, env: str, **resolve_kwargs: Any
) -> TargetSet:
    """A knob env's ``target`` as a :class:`TargetSet` of the tier's kinds: named sets
    are reduced to ``kinds``, anything else of another kind raises (naming ``env``).
    ``resolve_kwargs`` go to :func:`aegym.targets.resolve_targets`."""
    targets = resolve_targets(target, kinds=kinds, **resolve_kwargs)
    bad = [] if kinds is None else [t.name for t in targets if t.kind not in kinds]
    if bad:
        raise ValueError(
            f"{env} accepts targets of kind {list(kinds)} only (true knobs known, so a "
            f"perfect match exists); got {len(bad)} others, e.g. {bad[0]!r}. Use "
            "AEGym/SoundMatch-Full-v1 for recordings and out-of-domain sounds, or pass "
            "target_kinds=None"
        )
    return targets


@dataclass(frozen=True)
class SoundMatchConfig:
    """Settings of the knob-control envs (validated).

    :param sample_rate: audio rate in Hz.
    :param duration_s: length of the rendered note and of every target.
    :param free_knobs: names of the knobs the agent moves (the rest are fixed: to the
        target's true values for in-domain targets, else to an estimate from an analysis
        of the target: pitch, attack, level; else to defaults).
    :param max_move: largest change of a normalized knob in one step (action ±1).
    :param success_distance: episodes terminate when the spectral distance falls below;
        each tier's value is calibrated (:mod:`aegym.calibration`).
    :param history: steps of knob-move history in the observation, read by R_opt and
        R_pol (>= 4).
    :param start: ``"random"`` (uniform free knobs) or ``"default"`` (knob defaults).
    :param target_kinds: kinds of target accepted (``"in_domain"``, ``"out_of_domain"``,
        ``"wav"``); named sets ``"train"``/``"test"`` are reduced to these kinds, any
        other target of another kind raises. ``None``: every kind.
    :param reward: composite reward weights and scales (improvement mode).
    """

    sample_rate: int = 16_000
    duration_s: float = 0.5
    free_knobs: tuple[str, ...] = ("cutoff_hz", "resonance", "osc1_shape", "gain_db")
    max_move: float = 0.1
    success_distance: float = DEFAULT_SUCCESS_DISTANCE
    history: int = 8
    start: str = "random"
    target_kinds: tuple[str, ...] | None = ("in_domain",)
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
        object.__setattr__(self, "target_kinds", resolve_target_kinds(self.target_kinds))
        if not isinstance(self.reward, RewardConfig):
            raise TypeError(f"reward must be a RewardConfig, got {type(self.reward).__name__}")
        if self.reward.audio_mode != "improvement":
            raise ValueError(
                "SoundMatch terminates on success: reward.audio_mode must be 'improvement', "
                f"got {self.reward.audio_mode!r}"
            )


def observation_size(n_free: int, history: int) -> int:
    """``F + 2·16 + 2·5 + 1 + W·F`` (see the env docstring's table)."""
    return n_free + 2 * PROFILE_BANDS + 2 * N_STATS + 1 + history * n_free


def observation_space(n_free: int, history: int) -> spaces.Box:
    n = observation_size(n_free, history)
    low = np.full(n, -OBS_LIMIT, np.float32)
    high = np.full(n, OBS_LIMIT, np.float32)
    low[:n_free], high[:n_free] = 0.0, 1.0
    low[n - history * n_free :], high[n - history * n_free :] = -1.0, 1.0
    return spaces.Box(low, high, dtype=np.float32)


def build_observation(
    free_unit: torch.Tensor,
    current: Features,
    target: Features,
    distance: torch.Tensor,
    moves: torch.Tensor,
    max_move: float,
) -> torch.Tensor:
    """``[knobs | target profile | profile diff | target stats | stats diff | distance |
    move history]``; ``moves [B, W, F]`` are the last W applied moves, oldest first,
    divided by ``max_move`` (so in [-1, 1])."""
    t_prof, t_stats = spectral_profile(target), target.stats()
    parts = [
        t_prof,
        spectral_profile(current) - t_prof,
        t_stats,
        current.stats() - t_stats,
        distance[:, None],
    ]
    rest = torch.cat(parts, -1).clamp(-OBS_LIMIT, OBS_LIMIT)
    history = (moves / max_move).clamp(-1.0, 1.0).flatten(1)
    return torch.cat([free_unit.clamp(0.0, 1.0), rest, history], -1)


def knob_trajectory(free_unit: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """The last W knob states ``[B, W, F]`` (oldest first) from the current free knobs and
    the last W applied moves: what R_pol reads, recovered from the observation."""
    later = moves.flip(1).cumsum(1).flip(1)  # moves after each state, newest state last
    return free_unit[:, None] - torch.cat([later[:, 1:], torch.zeros_like(later[:, :1])], 1)


class SoundMatchCore(NoteCore):
    """Batched state and dynamics of ``batch`` SoundMatch episodes, all in torch.

    The single env drives it with ``batch=1``; the native vector env with ``batch=N``.
    Nothing here loops over episodes: every step renders and featurizes all voices in
    one call. Set-up and knob operations are the shared :class:`NoteCore`'s.
    """

    reward_terms = SOUND_MATCH_TERMS

    def __init__(
        self, config: SoundMatchConfig, targets: TargetSet, batch: int, device: str = "cpu"
    ) -> None:
        super().__init__(config, targets, batch, device, config.duration_s)
        b, w, f = self.batch, config.history, self.n_free
        self.moves = torch.zeros(b, w, f, device=self.device)
        self.current_features: Features | None = None

    @property
    def trajectory(self) -> torch.Tensor:
        """The last ``history`` free-knob states ``[B, W, F]`` (see :func:`knob_trajectory`)."""
        return knob_trajectory(self.free_knobs, self.moves)

    @torch.no_grad()
    def _evaluate(self) -> tuple[Features, Features, torch.Tensor]:
        self.distance, self.audio, cur = self.render_distance(self.free_knobs)
        self.current_features = cur
        return cur, self.target_feats(), self.distance

    def _observation(self, cur: Features, tgt: Features) -> torch.Tensor:
        return build_observation(
            self.free_knobs, cur, tgt, self.distance, self.moves, self.config.max_move
        )

    @torch.no_grad()
    def reset(
        self, mask: torch.Tensor, target_idx: torch.Tensor, start_free: torch.Tensor
    ) -> torch.Tensor:
        """Start new episodes where ``mask``; returns observations of all B."""
        self.start_knobs(mask, target_idx, start_free)
        self.moves = torch.where(mask[:, None, None], torch.zeros_like(self.moves), self.moves)
        cur, tgt, _ = self._evaluate()
        self.reset_audio_scores(mask, cur)
        return self._observation(cur, tgt)

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> CoreStep:
        """Apply ``action [B, F]`` (clipped to [-1, 1]) as knob moves."""
        new_free, applied = self.move_knobs(action, self.config.max_move)
        self.moves = torch.cat([self.moves[:, 1:], applied[:, None]], 1)
        cur, tgt, dist = self._evaluate()
        terminated = dist < self.config.success_distance
        out: RewardOutput = self.reward_fn(
            cur,
            tgt,
            previous_audio=self.audio_scores,
            success=terminated,
            updates=self.moves,
            knob_trajectory=knob_trajectory(new_free, self.moves),
        )
        self.audio_scores = out.audio_scores
        no = torch.zeros_like(terminated)
        return CoreStep(
            self._observation(cur, tgt),
            out.total,
            terminated,
            no,
            dist,
            out.terms,
            no,
            out.violation,
        )

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
    ``duration_s``. Each step the agent nudges the *free* knobs; the rest stay fixed:
    at the target's true values for in-domain targets, else at an analysis of the
    target (pitch, level, attack; ``info["target_analysis"]``). The goal is a rendered
    note whose multi-resolution spectrum matches the target's.

    Tiers (registered ids): ``AEGym/SoundMatch-Easy-v1`` (4 free knobs),
    ``AEGym/SoundMatch-Medium-v1`` (10) — both on in-domain targets only, where the true
    knobs are known and a perfect match exists — and ``AEGym/SoundMatch-Full-v1`` (all
    20 knobs, pitch and envelopes included), which also accepts out-of-domain sounds
    and recordings (report those with continuous metrics, apart from in-domain ones).

    ## Action Space
    ``Box(-1, 1, (F,), float32)`` with ``F = len(free_knobs)``: knob ``i`` moves by
    ``max_move · a_i`` in normalized units, then is clamped to [0, 1]. Actions outside
    [-1, 1] are clipped; NaN/inf or a wrong shape raise ``ValueError``.

    ## Observation Space
    ``Box(float32, (F + 43 + W·F,))`` with ``W = history`` (8); profile and stats
    entries are clipped to [-10, 10], moves to [-1, 1].

    | slice              | name            | meaning                                         |
    |--------------------|-----------------|-------------------------------------------------|
    | ``[0, F)``         | knobs_unit      | free knobs, normalized [0, 1]                   |
    | ``[F, F+16)``      | target_profile  | target's time-averaged log-mel, 16 bands, scaled|
    | ``[F+16, F+32)``   | profile_diff    | current profile − target profile                |
    | ``[F+32, F+37)``   | target_stats    | log2 centroid/kHz, log2 rolloff/kHz, flatness,  |
    |                    |                 | peakiness dB/40, loudness dBFS/60                |
    | ``[F+37, F+42)``   | stats_diff      | current stats − target stats                    |
    | ``F+42``           | distance        | multi-resolution spectral distance to the target|
    | ``[F+43, F+43+WF)``| move_history    | last W applied moves / ``max_move``, oldest     |
    |                    |                 | first (``W×F``, row-major)                       |

    ## Rewards
    The composite ``R = w_aud·R_aud + w_opt·R_opt + w_pol·R_pol − P``
    (:class:`aegym.reward.CompositeReward`, improvement mode), aligned so that reaching
    the target fast earns the most:

    | term              | per step                                     | reads (in obs)        |
    |-------------------|----------------------------------------------|-----------------------|
    | ``aud/*``         | change of each audio sub-score, success = 1  | profile, stats        |
    | ``aud/success``   | ``success_bonus`` (10) on the success step   | distance              |
    | ``opt/resonance`` | −shortfall of deep resonance of the moves    | move_history          |
    | ``opt/update_norm``| −shortfall of the small-move score          | move_history          |
    | ``pol/*``         | −shortfall of periodicity, diversity of the  | knobs_unit and        |
    |                   | last W knob states                           | move_history          |
    | ``pen/loudness``  | −RMS loudness over the cap                   | stats (loudness)      |
    | ``pen/time``      | −0.01                                        | —                     |

    The audio terms telescope: every successful episode collects ``w_aud·(1 − S_0)``
    from them, so hovering near the target earns nothing; the other terms cost at most
    ``a = 0.10`` per step. A policy that succeeds within ``T* = success_bonus /
    (a − 0.01) ≈ 111`` steps (``env.unwrapped.core.reward_fn.aligned_steps()``) earns
    more than any that does not succeed in the same horizon, and faster is better.
    Per step the reward lies in ``CompositeReward.bounds()`` (defaults:
    [-1.10, 10.99]); a successful episode returns more than ``reward_threshold = 1``
    (at least ``10 − 0.1·T``), a failed one less (at most ``w_aud·(1 − S_0) − 0.01·T``).
    ``info["reward_terms"]`` holds every term; they sum to the reward.

    ## Starting State
    A target is drawn from the target set with the env's RNG (or chosen with
    ``reset(options={"target_index": i})``). Free knobs start uniform in [0, 1]
    (``start="random"``) or at their defaults (``start="default"``).

    ## Episode End
    - Termination: ``info["distance"] < success_distance`` (``info["is_success"]``);
      each tier's threshold is calibrated (the distance of a render whose every free
      knob is off by an acceptable error, :mod:`aegym.calibration`).
    - Truncation: after ``max_episode_steps`` (50).

    ## Arguments
    ``gymnasium.make("AEGym/SoundMatch-Easy-v1", target=None, free_knobs="easy",
    max_move=0.1, duration_s=0.5, sample_rate=16000, success_distance=<tier's>,
    start="random", target_kinds=("in_domain",), reward_config=None, target_seed=0,
    render_mode=None, device="cpu")``

    - ``target``: ``None``/``"random"`` (seeded random synth patches, ``target_seed``),
      ``"train"``/``"test"`` (fixed sets, reduced to ``target_kinds``), a WAV path, a
      directory or a list of paths, or a :class:`aegym.targets.TargetSet`.
    - ``free_knobs``: ``"easy"`` (cutoff, resonance, osc1 shape, gain), ``"medium"``
      (10 knobs), ``"all"`` (20) or a list of knob names.
    - ``target_kinds``: the target kinds accepted (Easy/Medium: in-domain only; Full:
      ``None``, every kind).
    - ``render_mode="rgb_array"``: :meth:`render` returns a uint8 image of the target
      (top) and current (bottom) log-mel spectrograms. :meth:`save_wav` writes the note.

    ## Info
    ``distance``, ``is_success``, ``safety_violation`` (a loudness penalty above
    ``violation_tolerance``), ``reward_terms`` (dict), ``knobs`` (physical units),
    ``target_index``, ``target_name``, and ``target_analysis`` (dict: pitch, level,
    attack) for targets without true knobs.

    ## Version History
    - v1: tiers as ids (Easy, Medium on in-domain targets only; Full with every kind);
      aligned reward (audio terms as an improvement, a success bonus, every other term a
      cost; v0 paid a positive reward every step, so parking near the target out-earned
      solving it); the move history the reward reads is in the observation (Markov);
      calibrated success thresholds (v0: 0.3 ≈ a 1 dB level error); no always-zero
      terms (``opt/grad_norm``, ``pen/kl``, and ``pen/slew``: moves are not heard);
      fixed knobs of targets without true knobs from an analysis of the target; knob
      gradients at the bounds (straight-through clamp).
    - v0: initial release (``AEGym/SoundMatch-Easy-v1``, removed).
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
        success_distance: float = DEFAULT_SUCCESS_DISTANCE,
        start: str = "random",
        target_kinds: Sequence[str] | None = ("in_domain",),
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
            target_kinds=None if target_kinds is None else tuple(target_kinds),
            reward=reward_config or RewardConfig(),
        )
        targets = resolve_tier_targets(
            target,
            self.config.target_kinds,
            type(self).__name__,
            sample_rate=sample_rate,
            duration_s=duration_s,
            seed=target_seed,
        )
        self.core = SoundMatchCore(self.config, targets, 1, device)
        n_free = self.core.n_free
        self.action_space = spaces.Box(-1.0, 1.0, (n_free,), np.float32)
        self.observation_space = observation_space(n_free, self.config.history)

    def _info(self) -> dict[str, Any]:
        core = self.core
        idx = int(core.target_idx[0])
        info = {
            "distance": float(core.distance[0]),
            "is_success": bool(core.distance[0] < self.config.success_distance),
            "knobs": core.physical_knobs(0),
            "target_index": idx,
            "target_name": core.targets[idx].name,
        }
        # Only for targets without true knobs (a key present in some sub-envs and not
        # others batches cleanly in Gymnasium's vector infos; None beside dicts does not).
        analysis = core.target_analysis(idx)
        if analysis is not None:
            info["target_analysis"] = analysis
        return info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.core.image(0)

    def _audio(self, which: str) -> torch.Tensor:
        if which == "current":
            return self.core.audio[0]
        return self.core.targets[int(self.core.target_idx[0])].audio
