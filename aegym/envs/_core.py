"""The knob core: what every batched env core shares, written once.

SoundMatch, SoundMatchLive and SchedulerGains all drive the same plant: a batch of
voices whose *free* knobs move while the others stay fixed, a feature encoder, the
composite reward and a target set. :class:`KnobCore` builds those pieces and holds the
operations on knobs that the families share (fixed knobs per target, free/full knob
views, the clipped knob move, physical knob values). Each family's core subclasses it
and adds only its own dynamics.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from aegym._checks import check_int
from aegym.analysis import ESTIMATED_KNOBS
from aegym.envs._common import N_STATS, PROFILE_BANDS
from aegym.features import FeatureConfig, FeatureEncoder, Features, spectral_distance
from aegym.reward import TERM_NAMES, CompositeReward
from aegym.synth import SynthConfig, Voice
from aegym.targets import TargetSet, estimate_start_knobs, target_analysis


class KnobMove(NamedTuple):
    """A clipped knob move: the free knobs after it and the move actually applied."""

    free: torch.Tensor
    applied: torch.Tensor


class KnobCore:
    """Shared state and set-up of ``batch`` episodes on one synth plant.

    :param config: the family's config; it must have ``sample_rate``, ``free_knobs`` and
        ``reward`` (a :class:`aegym.reward.RewardConfig`).
    :param targets: the target set.
    :param batch: number of episodes B (1 for a single env).
    :param device: torch device of every tensor.
    :param render_s: length of one render of the voice in seconds.

    Attributes every family uses: ``voice``, ``space`` (the knob space), ``encoder``,
    ``reward_fn``, ``targets``, ``free_idx`` ``[F]``, ``n_free``, ``knobs`` ``[B, K]``
    (normalized) and ``distance`` ``[B]`` (the spectral distance now: one name for the
    signal in every family, as in ``info["distance"]``).
    """

    #: The composite-reward terms this family uses (see :class:`CompositeReward`).
    reward_terms: tuple[str, ...] = TERM_NAMES

    def __init__(
        self, config: Any, targets: TargetSet, batch: int, device: str, render_s: float
    ) -> None:
        self.config = config
        self.batch = check_int("batch", batch, 1)
        self.device = torch.device(device)
        self.voice = Voice(SynthConfig(config.sample_rate, duration_s=render_s)).to(self.device)
        self.space = self.voice.knob_space
        self.encoder = FeatureEncoder(FeatureConfig(sample_rate=config.sample_rate)).to(self.device)
        self.reward_fn = CompositeReward(config.reward, self.reward_terms)
        self.targets = targets
        #: ``[len(targets)]``: whose true knobs are known (in-domain targets).
        self.has_true_knobs = torch.tensor(
            [t.unit_knobs is not None for t in targets], dtype=torch.bool, device=self.device
        )
        self.free_idx = torch.tensor(self.space.indices(config.free_knobs), device=self.device)
        self.n_free = len(config.free_knobs)
        self.knobs = self.space.default_unit(self.batch).to(self.device)
        self.distance = torch.zeros(self.batch, device=self.device)
        self._analyses: dict[int, dict[str, Any] | None] = {}

    def fixed_knobs_per_target(self) -> torch.Tensor:
        """``[len(targets), K]``: where the knobs an agent does not move sit. Each
        target's true knobs when known; else knobs estimated from its analysis (pitch,
        amp attack, gain: :func:`aegym.targets.estimate_start_knobs`); else defaults.
        The estimate is skipped when the agent moves every knob it would set."""
        base, todo = self._known_knobs()
        self._estimate_rows(base, todo)
        return base

    def _known_knobs(self) -> tuple[torch.Tensor, list[int]]:
        """True knobs where known, defaults elsewhere, and the targets still to estimate."""
        base = self.space.default_unit(len(self.targets)).to(self.device)
        todo = []
        for i, t in enumerate(self.targets):
            if t.unit_knobs is not None:
                base[i] = t.unit_knobs.to(self.device)
            else:
                todo.append(i)
        if set(ESTIMATED_KNOBS) <= set(self.config.free_knobs):
            todo = []  # the agent moves them all: the estimate would be overwritten
        return base, todo

    def _estimate_rows(self, base: torch.Tensor, rows: list[int]) -> None:
        """Set ``base[rows]`` to the analysis-based estimate of those targets."""
        if rows:
            est = estimate_start_knobs([self.targets[i] for i in rows], self._target_voice())
            base[rows] = est.to(self.device)

    def _target_voice(self) -> Voice:
        """A voice rendering at the targets' rate and length (the env's own when it does)."""
        ts, cfg = self.targets, self.voice.config
        if (cfg.sample_rate, cfg.n_samples) == (ts.sample_rate, ts.num_samples):
            return self.voice
        return Voice(SynthConfig(ts.sample_rate, duration_s=ts.duration_s))

    def target_analysis(self, i: int) -> dict[str, Any] | None:
        """The analysis of target ``i`` (pitch, level, attack; see
        :func:`aegym.targets.target_analysis`), None when its true knobs are known.
        Computed once per target and core; a fresh dict on every call."""
        if i not in self._analyses:
            self._analyses[i] = target_analysis(self.targets[i])
        a = self._analyses[i]
        return None if a is None else dict(a)

    @torch.no_grad()
    def encode_targets(self) -> Features:
        """Features of every target's audio (checked to match the voice's length)."""
        audio = self.targets.audio_batch().to(self.device)
        if audio.shape[-1] != self.voice.config.n_samples:
            raise ValueError(
                f"targets have {audio.shape[-1]} samples, the voice renders "
                f"{self.voice.config.n_samples}"
            )
        return self.encoder(audio)

    @property
    def distance_obs_index(self) -> int:
        """Column of the observation that holds the distance: ``F + 42`` in the knob
        envs' layout (SchedulerGains overrides it)."""
        return self.n_free + 2 * PROFILE_BANDS + 2 * N_STATS

    @property
    def free_knobs(self) -> torch.Tensor:
        """The free knobs ``[B, F]`` (normalized)."""
        return self.knobs[:, self.free_idx]

    def with_free(self, free: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Full knobs ``[R, K]`` of episodes ``rows`` (all when None) with ``free`` set."""
        base = self.knobs if rows is None else self.knobs[rows]
        return base.index_copy(1, self.free_idx, free)

    def move_knobs(self, action: torch.Tensor, max_move: float) -> KnobMove:
        """Apply ``action [B, F]`` (clipped to [-1, 1]) as moves of ``max_move`` at most,
        clamped to the knob box; ``self.knobs`` is updated."""
        move = action.to(self.device).clamp(-1.0, 1.0) * max_move
        free = self.free_knobs
        new_free = (free + move).clamp(0.0, 1.0)
        self.knobs = self.with_free(new_free)
        return KnobMove(new_free, new_free - free)

    def distance_at(self, free: torch.Tensor) -> torch.Tensor:
        """Spectral distance ``[B]`` the episodes would have with free knobs ``free``
        (differentiable; the state is not changed). Family-specific."""
        raise NotImplementedError

    def true_free_knobs(self) -> torch.Tensor:
        """``[B, F]``: each episode's true free knobs now, NaN rows where the target's
        knobs are unknown. Family-specific."""
        return torch.full_like(self.free_knobs, math.nan)

    def knob_error(self) -> torch.Tensor:
        """``[B]``: mean absolute error of the free knobs against the truth (normalized
        units), NaN where the truth is unknown (recordings, out-of-domain sounds)."""
        return (self.free_knobs - self.true_free_knobs()).abs().mean(-1)

    def loss_and_grad(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance at the current knobs and its gradient w.r.t. the free knobs,
        ``([B], [B, F])``; the plant is differentiable, the state is not changed."""
        free = self.free_knobs.clone().requires_grad_(True)
        with torch.enable_grad():
            dist = self.distance_at(free)
            (grad,) = torch.autograd.grad(dist.sum(), free)
        return dist.detach(), grad

    def physical_knobs(self, i: int) -> dict[str, float]:
        """Every knob of episode ``i`` in physical units (Hz, dB, s, ...)."""
        phys = self.space.to_physical(self.knobs[i].detach().cpu())
        return dict(zip(self.space.names, phys.tolist(), strict=True))


class NoteCore(KnobCore):
    """A knob core whose episodes each match one fixed note of the target set
    (SoundMatch and SchedulerGains): the targets' features are computed once, and each
    episode knows its ``target_idx`` ``[B]`` and its fixed knobs ``target_base``.

    ``target_base`` rows of targets without true knobs are estimated from the target's
    analysis on the first episode that uses the target (pYIN costs ~30 ms a target and
    librosa's import ~2 s, which building an env should not pay for every target)."""

    def __init__(
        self, config: Any, targets: TargetSet, batch: int, device: str, render_s: float
    ) -> None:
        super().__init__(config, targets, batch, device, render_s)
        self.target_base, pending = self._known_knobs()
        self._pending_base = set(pending)
        self.target_features = self.encode_targets()
        self.target_idx = torch.zeros(self.batch, dtype=torch.long, device=self.device)
        self.audio_scores: dict[str, torch.Tensor] = {}
        self.audio = torch.zeros(self.batch, self.voice.config.n_samples, device=self.device)

    def true_free_knobs(self) -> torch.Tensor:
        truth = self.target_base[self.target_idx][:, self.free_idx]
        return torch.where(self.has_true_knobs[self.target_idx][:, None], truth, math.nan)

    def reset_audio_scores(self, mask: torch.Tensor, features: Features) -> None:
        """Episodes in ``mask`` start their audio potential (the sub-scores the next
        step's improvement is measured from) at ``features`` against their targets."""
        scores = self.reward_fn.audio_scores(features, self.target_feats())
        old = self.audio_scores or scores
        self.audio_scores = {k: torch.where(mask, v, old[k]) for k, v in scores.items()}

    def target_feats(self, rows: torch.Tensor | None = None) -> Features:
        """Target features of episodes ``rows`` (all when None)."""
        idx = self.target_idx if rows is None else self.target_idx[rows]
        return self.target_features.index(idx)

    def render_distance(
        self, free: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, Features]:
        """Render episodes ``rows`` with free knobs ``free``: (distance, audio, features)."""
        audio = self.voice(self.with_free(free, rows))
        feats = self.encoder(audio)
        return spectral_distance(feats, self.target_feats(rows)), audio, feats

    def distance_at(self, free: torch.Tensor) -> torch.Tensor:
        return self.render_distance(free)[0]

    def start_knobs(self, mask: torch.Tensor, target_idx: torch.Tensor, start: torch.Tensor):
        """Begin episodes where ``mask`` at target ``target_idx`` with free knobs
        ``start``: the fixed knobs are the target's (see :meth:`fixed_knobs_per_target`)."""
        self.target_idx = torch.where(mask, target_idx.to(self.device), self.target_idx)
        if self._pending_base:
            need = sorted(self._pending_base.intersection(self.target_idx[mask].tolist()))
            self._estimate_rows(self.target_base, need)
            self._pending_base.difference_update(need)
        knobs = self.target_base[self.target_idx].clone()
        knobs[:, self.free_idx] = start.to(self.device)
        self.knobs = torch.where(mask[:, None], knobs, self.knobs)
