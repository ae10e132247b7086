"""Scheduler control: set the gains of gradient descent on the synth (SchedulerGains-v1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from aegym._checks import check_int, check_positive
from aegym.control import law, noise, plant
from aegym.control.config import AEConfig
from aegym.envs import SUCCESS_DISTANCE
from aegym.envs._base import CoreEnv
from aegym.envs._common import (
    CoreStep,
    fixed_threads,
    limit_threads_in_worker,
    spectrogram_image,
    target_index_option,
)
from aegym.envs._core import NoteCore
from aegym.envs.sound_match import SoundMatchConfig
from aegym.reward import AUDIO_TERMS, MIN_WINDOW, OPTIMIZER_TERMS, SUCCESS_TERM, RewardConfig
from aegym.targets import TargetSet, resolve_targets

#: Reward terms of SchedulerGains. No pol/* terms: the agent sets gains, not a knob
#: trajectory; no pen/slew: each step renders a fresh note, so knob moves are not heard.
#: The opt/* terms read this env step's inner steps only (the transition).
SCHEDULER_TERMS: tuple[str, ...] = (
    *AUDIO_TERMS,
    SUCCESS_TERM,
    *OPTIMIZER_TERMS,
    "pen/loudness",
    "pen/divergence",
    "pen/time",
)

#: Observation entries, in order (see :class:`SchedulerGainsEnv`).
SIGNAL_NAMES: tuple[str, ...] = (
    "loss_ema",
    "delta_loss",
    "variance",
    "reward_ema",
    "delta_reward",
    "grad_norm",
    "update_norm",
    "alpha",
    "momentum",
    "sigma",
    "plateau_count",
    "success_rate",
    "progress",
    "distance",
    "grad_norm_mean",
    "update_norm_rms",
    "opt_health",
    "loudness",
    "audio_score",
)
OBS_CLIP = 50.0


def symlog(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``sign(x)·log(1 + |x|·scale)``: invertible compression of signed signals."""
    return torch.sign(x) * torch.log1p(x.abs() * scale)


def symexp(y: torch.Tensor, scale: float) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(y) * torch.expm1(y.abs()) / scale


# Scales of the invertible observation transforms (one place, used both ways).
_DELTA_SCALE = 100.0  # relative Δℓ of 1 % -> symlog 0.69
_VAR_SCALE = 1e4  # relative variance (1 % std)^2 -> 0.69
_NORM_SCALE = 1e3


@dataclass(frozen=True)
class SchedulerConfig:
    """Settings of the scheduler-control env (validated).

    :param sample_rate: audio rate in Hz.
    :param duration_s: length of the rendered note and of every target.
    :param free_knobs: knobs the inner optimizer fits (preset name or names).
    :param inner_steps: gradient steps per env step (>= 4: the opt/* reward terms read
        this step's inner steps).
    :param episode_steps: env steps per episode (truncation).
    :param alpha0: reference learning rate α0 (Adam step in normalized knob units); the
        observation's ``alpha`` column is ``log2(α/α0)``.
    :param alpha0_range: each episode starts at ``α0_ep = m·α0`` with ``m`` log-uniform
        in ``[lo, hi]`` (the problem scale the agent must find; ``(1, 1)``: always α0).
    :param alpha_range: α stays in ``[lo, hi]·α0``; must contain ``alpha0_range``.
    :param sigma_range: σ stays in ``[lo, hi]``.
    :param momentum_max: μ stays in ``[0, momentum_max]``.
    :param success_distance: terminate when the distance falls below (default: the
        Easy tier's calibrated value, ``SUCCESS_DISTANCE["easy"]``).
    :param divergence_factor: a loss above ``factor·ℓ̄`` (or non-finite) diverges.
    :param law: the AE law's constants: the signal filters, dither floor, Adam β2,
        local tests (``n_probes``, ``probe_scale``, ``rho``) and the baseline policy.
    :param reward: composite reward settings (improvement mode; the divergence penalty
        is ``reward.w_pen_divergence``).
    """

    sample_rate: int = 16_000
    duration_s: float = 0.5
    free_knobs: tuple[str, ...] = ("cutoff_hz", "resonance", "osc1_shape", "gain_db")
    inner_steps: int = 5
    episode_steps: int = 20
    alpha0: float = 0.1
    alpha0_range: tuple[float, float] = (0.1, 10.0)
    alpha_range: tuple[float, float] = (0.01, 10.0)
    sigma_range: tuple[float, float] = (1e-5, 0.1)
    momentum_max: float = 0.99
    success_distance: float = SUCCESS_DISTANCE["easy"]
    divergence_factor: float = 3.0
    law: AEConfig = field(default_factory=AEConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        # Reuse the knob-env validation for the shared fields.
        base = SoundMatchConfig(
            sample_rate=self.sample_rate,
            duration_s=self.duration_s,
            free_knobs=self.free_knobs,
            success_distance=self.success_distance,
            reward=self.reward,
        )
        object.__setattr__(self, "free_knobs", base.free_knobs)
        check_int("inner_steps", self.inner_steps, MIN_WINDOW)
        check_int("episode_steps", self.episode_steps, 1)
        check_positive("alpha0", self.alpha0)
        for name, (lo, hi) in (
            ("alpha_range", self.alpha_range),
            ("sigma_range", self.sigma_range),
        ):
            check_positive(f"{name}[0]", lo)
            check_positive(f"{name}[1]", hi)
            if lo >= hi:
                raise ValueError(f"{name} must be (low, high) with low < high, got {(lo, hi)}")
        lo, hi = self.alpha0_range
        check_positive("alpha0_range[0]", lo)
        check_positive("alpha0_range[1]", hi)
        if lo > hi:
            raise ValueError(f"alpha0_range must be (low, high) with low <= high, got {(lo, hi)}")
        if lo < self.alpha_range[0] or hi > self.alpha_range[1]:
            raise ValueError(
                f"alpha_range {self.alpha_range} must contain alpha0_range {self.alpha0_range}"
            )
        if not 0.0 < self.momentum_max < 1.0:
            raise ValueError(f"momentum_max must be in (0, 1), got {self.momentum_max!r}")
        check_positive("divergence_factor", self.divergence_factor)
        if self.divergence_factor <= 1.0:
            raise ValueError(f"divergence_factor must be > 1, got {self.divergence_factor!r}")
        if not isinstance(self.law, AEConfig):
            raise TypeError(f"law must be an AEConfig, got {type(self.law).__name__}")
        if self.law.n_probes < 1:
            raise ValueError("law.n_probes must be >= 1 (local tests are an action)")

    @property
    def test_every_env_steps(self) -> int:
        """The law's local-test period (in gradient steps) in env steps."""
        return self.env_steps(self.law.test_every)

    def env_steps(self, gradient_steps: int) -> int:
        """A period in gradient steps rounded up to whole env steps (at least 1)."""
        return max(1, math.ceil(gradient_steps / self.inner_steps))

    @property
    def alpha_bounds(self) -> tuple[float, float]:
        return self.alpha_range[0] * self.alpha0, self.alpha_range[1] * self.alpha0


class Gains(NamedTuple):
    """Per-env gains ``[B]``."""

    alpha: torch.Tensor
    momentum: torch.Tensor
    sigma: torch.Tensor


# Action i multiplies a gain by BASE_i ** a_i (a_i in [-1, 1]): lr x/÷2, (1-μ) x/÷2,
# σ x/÷4 per env step.
LR_BASE, MOMENTUM_BASE, SIGMA_BASE = 2.0, 2.0, 4.0


def apply_gain_action(gains: Gains, action: torch.Tensor, cfg: SchedulerConfig) -> Gains:
    """New gains from an action ``[B, 4]`` (clipped to [-1, 1]).

    ``α ← clip(α·2^{a0})``, ``(1-μ) ← clip((1-μ)·2^{-a1})``, ``σ ← clip(σ·4^{a2})``.
    """
    a = action.clamp(-1.0, 1.0)
    lo, hi = cfg.alpha_bounds
    alpha = (gains.alpha * LR_BASE ** a[:, 0]).clamp(lo, hi)
    one_minus = ((1.0 - gains.momentum) * MOMENTUM_BASE ** (-a[:, 1])).clamp(
        1.0 - cfg.momentum_max, 1.0
    )
    sigma = (gains.sigma * SIGMA_BASE ** a[:, 2]).clamp(*cfg.sigma_range)
    return Gains(alpha, 1.0 - one_minus, sigma)


class InnerStep(NamedTuple):
    """One inner gradient step of every episode (``[B]``/``[B, F]``, detached)."""

    loss: torch.Tensor
    grad: torch.Tensor
    update: torch.Tensor
    probes: plant.ProbeResult | None


# Noise streams of an episode (one draw of each per env step).
_DITHER, _PROBES = 0, 1


class SchedulerCore(NoteCore):
    """Batched state and dynamics of ``batch`` SchedulerGains episodes.

    Inside each episode the AE plant (:func:`aegym.control.plant.step`: Adam with
    β1 = μ and exact bias correction, shaped dither, local tests — the same code as
    :class:`aegym.control.AEOptimizer`) fits the free knobs of a synth patch to the
    target with the gains the agent sets; all episodes step together in one batched
    render. A batched :class:`~aegym.control.law.LawState` filters each episode's
    feedback (EMA, windowed variance, trends, plateau, success rate) without adapting
    its own gains (``law.observe(..., adapt=False)``). Each episode's noise is a
    counter-based stream keyed by its noise seed, so a batch reproduces independent
    episodes exactly.
    """

    reward_terms = SCHEDULER_TERMS

    def __init__(
        self, config: SchedulerConfig, targets: TargetSet, batch: int, device: str = "cpu"
    ) -> None:
        super().__init__(config, targets, batch, device, config.duration_s)
        # The scheduler's plant is Adam whatever law.update_rule says.
        self.plant_config = replace(config.law, update_rule="adam")
        b, f = self.batch, self.n_free
        self.plant = plant.init_plant(b, f, device=self.device)
        #: Each episode's starting learning rate α0_ep ``[B]`` (drawn at reset).
        self.alpha0_ep = torch.full((b,), config.alpha0, device=self.device)
        self.gains = self._initial_gains(self.alpha0_ep)
        self.grad_norm = torch.zeros(b, device=self.device)
        self.update_norm = torch.zeros(b, device=self.device)
        # Summaries of the last env step's inner steps (what the opt/* terms read).
        self.grad_norm_mean = torch.zeros(b, device=self.device)
        self.update_norm_rms = torch.zeros(b, device=self.device)
        self.opt_health = torch.ones(b, device=self.device)
        self.loudness_db = torch.zeros(b, device=self.device)
        self.success = torch.zeros(b, dtype=torch.bool, device=self.device)
        self.steps = torch.zeros(b, dtype=torch.long, device=self.device)
        self.law = law.init_state(b, config.alpha0, config.law, self.device)
        # Per-episode noise streams: key = the episode's noise seed, counter = env steps.
        self.noise_key = torch.arange(b, device=self.device)
        self.noise_counter = torch.zeros(b, dtype=torch.long, device=self.device)
        self.current_features = None

    def _initial_gains(self, alpha0_ep: torch.Tensor) -> Gains:
        ones = torch.ones_like(alpha0_ep)
        return Gains(
            alpha0_ep.clone(),
            ones * self.config.law.momentum0,
            ones * self.config.law.sigma0,
        )

    def _probe_loss(self, probes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Distances ``[R, n]`` of probes ``[R, n, F]`` of episodes ``rows``, one render."""
        n = probes.shape[1]
        loss, _, _ = self.render_distance(
            probes.reshape(-1, self.n_free), rows.repeat_interleave(n)
        )
        return loss.reshape(-1, n)

    def _normal(self, shape: tuple[int, ...], stream: int) -> torch.Tensor:
        """Standard normal noise ``[B, *shape]``, row b from episode b's stream."""
        return noise.normal(self.noise_key, self.noise_counter, shape, stream=stream)

    def audio_score(self) -> torch.Tensor:
        """``S = Σ_i c_i·s_i`` over the audio sub-scores of the current state ``[B]``
        (in ``[0, w_aud]``): the potential whose change the audio terms pay."""
        c = self.reward_fn.coefficients
        return sum(c[n] * self.audio_scores[n] for n in AUDIO_TERMS)  # type: ignore[return-value]

    @torch.no_grad()
    def reset(
        self,
        mask: torch.Tensor,
        target_idx: torch.Tensor,
        start_free: torch.Tensor,
        noise_seed: torch.Tensor,
        alpha0_ep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Start new episodes where ``mask``: target indices ``[B]``, free knobs
        ``start_free [B, F]``, noise seeds ``[B]``, starting learning rates
        ``alpha0_ep [B]`` (None: the reference α0). Returns observations of all B."""
        m = mask.to(self.device)
        if alpha0_ep is None:
            alpha0_ep = torch.full((self.batch,), self.config.alpha0)
        a0 = alpha0_ep.to(self.device, torch.float32)
        self.alpha0_ep = torch.where(m, a0, self.alpha0_ep)
        self.noise_key = torch.where(m, noise_seed.to(self.device), self.noise_key)
        self.noise_counter = torch.where(m, 0, self.noise_counter)
        self.start_knobs(m, target_idx, start_free)
        fresh = self._initial_gains(self.alpha0_ep)
        self.gains = Gains(*(torch.where(m, n, o) for n, o in zip(fresh, self.gains, strict=True)))
        self.plant = plant.reset_plant(self.plant, m)
        self.steps = torch.where(m, 0, self.steps)
        for name in ("grad_norm", "update_norm", "grad_norm_mean", "update_norm_rms"):
            setattr(self, name, torch.where(m, 0.0, getattr(self, name)))
        self.opt_health = torch.where(m, 1.0, self.opt_health)
        self.success = torch.where(m, False, self.success)
        loss, audio, feats = self.render_distance(self.free_knobs)
        self.audio = torch.where(m[:, None], audio, self.audio)
        self.distance = torch.where(m, loss, self.distance)
        self.loudness_db = torch.where(m, feats.loudness_db, self.loudness_db)
        self.current_features = feats
        self.reset_audio_scores(m, feats)
        self.law = law.reset_state(self.law, m, self.config.law)
        self.law = law.observe(
            self.law, loss, None, self.config.law, mask=m & loss.isfinite(), adapt=False
        )
        return self.observation()

    def _inner_step(self, eta: torch.Tensor, test: torch.Tensor | None = None) -> InnerStep:
        """One plant step on every episode -> (loss, grad, update, local test).

        ``eta [B, F]``: the dither noise. ``test [B]``: episodes that also run a local
        test at this θ (probes compared with this θ's loss, the winner averaged into the
        stepped θ).
        """
        cfg = self.config
        loss, grad = self.loss_and_grad()
        with torch.no_grad():
            # A non-finite loss or gradient leaves that episode's θ and moments as they
            # were (rollback); the step loop reports it as a divergence.
            good = loss.isfinite() & grad.isfinite().all(-1)
            grad = torch.where(good[:, None], grad, 0.0)
            theta = self.free_knobs
            probes = None
            if test is not None:
                probes = plant.local_test(
                    theta,
                    loss,
                    self._normal((cfg.law.n_probes, self.n_free), _PROBES),
                    self._probe_loss,
                    self.plant_config,
                    bounds=(0.0, 1.0),
                    mask=test & good,
                )
            g = self.gains
            moved = plant.step(
                self.plant,
                theta,
                grad,
                g.alpha,
                g.momentum,
                g.sigma,
                self.plant_config,
                noise=eta,
                bounds=(0.0, 1.0),
                mask=good,
                probes=probes,
            )
            self.plant = moved.state
            self.knobs = self.with_free(moved.theta)
        return InnerStep(loss, grad, moved.update, probes)

    def step(self, action: torch.Tensor) -> CoreStep:
        """Apply gains from ``action [B, 4]``, run ``inner_steps`` gradient steps.

        Episodes with ``action[:, 3] > 0`` run a local test in the last inner step.
        """
        cfg = self.config
        action = action.to(self.device).clamp(-1.0, 1.0)
        self.gains = apply_gain_action(self.gains, action, cfg)
        diverged = torch.zeros(self.batch, dtype=torch.bool, device=self.device)
        test = action[:, 3] > 0
        # On CPU, skip the probe render when no episode tests (a host sync elsewhere:
        # there every inner step's last local test renders densely, masked).
        test_any = plant.dense_probes(self.device) or bool(test.any())
        eta = self._normal((cfg.inner_steps, self.n_free), _DITHER)
        grad_norms, updates = [], []
        for k in range(cfg.inner_steps):
            level = law.divergence_threshold(self.law, cfg.divergence_factor)
            last = k == cfg.inner_steps - 1
            inner = self._inner_step(eta[:, k], test if last and test_any else None)
            loss = inner.loss
            bad = ~loss.isfinite() | (loss > level)
            diverged |= bad
            self.distance = torch.where(loss.isfinite(), loss, self.distance)
            self.grad_norm = inner.grad.norm(dim=-1).nan_to_num(0.0, 0.0, 0.0)
            self.update_norm = inner.update.norm(dim=-1).nan_to_num(0.0, 0.0, 0.0)
            grad_norms.append(self.grad_norm)
            updates.append(inner.update)
            # The agent sets the gains: the law only filters the feedback.
            self.law = law.observe(
                self.law, loss, None, cfg.law, mask=~bad, grad_norm=self.grad_norm, adapt=False
            )
            self.law = law.observe_update(self.law, cfg.law, self.update_norm, mask=~bad)
        probes = inner.probes  # the last inner step's local test
        if probes is not None:
            self.law = law.record_local_test(self.law, probes.success, cfg.law, mask=probes.tested)
        self.noise_counter = self.noise_counter + 1
        # Final evaluation of the episode state (features for reward and observation).
        with torch.no_grad():
            loss, audio, feats = self.render_distance(self.free_knobs)
            finite = torch.isfinite(loss)
            diverged |= ~finite
            loss = torch.where(finite, loss, self.distance)  # last finite distance
            self.audio = audio
            self.distance = loss
            success = (loss < cfg.success_distance) & ~diverged
            g_hist = torch.stack(grad_norms, 1)  # [B, inner_steps]: this step only
            u_hist = torch.stack(updates, 1)  # [B, inner_steps, F]
            out = self.reward_fn(
                feats,
                self.target_feats(),
                previous_audio=self.audio_scores,
                success=success,
                grad_norms=g_hist,
                updates=u_hist,
                diverged=diverged,
            )
            self.audio_scores = out.audio_scores
            self.grad_norm_mean = g_hist.mean(1)
            self.update_norm_rms = u_hist.nan_to_num(0.0, 0.0, 0.0).square().sum(-1).mean(1).sqrt()
            w_opt = sum(self.reward_fn.coefficients[n] for n in OPTIMIZER_TERMS)
            opt = sum(self.reward_fn.coefficients[n] * out.raw[n] for n in OPTIMIZER_TERMS)
            self.opt_health = opt / w_opt if w_opt > 0 else torch.ones_like(loss)
            self.loudness_db = feats.loudness_db
        self.steps = self.steps + 1
        self.current_features = feats
        self.success = success
        terminated = diverged | success
        truncated = (self.steps >= cfg.episode_steps) & ~terminated
        return CoreStep(
            self.observation(),
            out.total,
            terminated,
            truncated,
            loss,
            out.terms,
            diverged,
            out.violation,
        )

    def signals(self, row: int = 0) -> law.AESignals:
        """Episode ``row``'s filtered feedback and gains as Python numbers (for ``info``)."""
        g = torch.stack([self.gains.alpha[row], self.gains.momentum[row], self.gains.sigma[row]])
        alpha, momentum, sigma = g.tolist()
        return law.signals_at(self.law, row)._replace(alpha=alpha, momentum=momentum, sigma=sigma)

    @property
    def distance_obs_index(self) -> int:
        """Column of the observation that holds the distance."""
        return SIGNAL_NAMES.index("distance")

    def observation(self) -> torch.Tensor:
        """Normalized feedback signals ``[B, 19]`` in the order of :data:`SIGNAL_NAMES`."""
        cfg = self.config
        s = self.law

        def col(x: torch.Tensor) -> torch.Tensor:
            # Undefined (before the first observation) or overflowed signals read 0.
            return x.nan_to_num(0.0, 0.0, 0.0).to(torch.float32)

        g = self.gains
        cols = [
            torch.log(col(s.loss_ema).clamp_min(1e-6)),
            symlog(col(s.delta_loss), _DELTA_SCALE),
            symlog(col(s.variance), _VAR_SCALE),
            col(s.reward_ema),
            symlog(col(s.delta_reward), _DELTA_SCALE),
            symlog(self.grad_norm, _NORM_SCALE),
            symlog(self.update_norm, _NORM_SCALE),
            torch.log2(g.alpha / cfg.alpha0),
            -torch.log2((1.0 - g.momentum).clamp_min(1e-6)),
            torch.log10(g.sigma / cfg.law.sigma0),
            col(s.plateau_count) / cfg.law.plateau_steps,
            col(s.success_rate),
            self.steps.float() / cfg.episode_steps,
            self.distance,
            symlog(col(self.grad_norm_mean), _NORM_SCALE),
            symlog(col(self.update_norm_rms), _NORM_SCALE),
            col(self.opt_health),
            col(self.loudness_db) / 60.0,
            col(self.audio_score()),
        ]
        return torch.stack(cols, -1).clamp(-OBS_CLIP, OBS_CLIP).float()


class DecodedSignals(NamedTuple):
    """Raw feedback signals recovered from a SchedulerGains observation (``[B]`` each)."""

    delta_loss: torch.Tensor
    variance: torch.Tensor
    delta_reward: torch.Tensor
    alpha: torch.Tensor
    momentum: torch.Tensor
    sigma: torch.Tensor
    plateau_count: torch.Tensor
    success_rate: torch.Tensor
    step: torch.Tensor


def decode_observation(obs: torch.Tensor | np.ndarray, cfg: SchedulerConfig) -> DecodedSignals:
    """Invert the observation transforms of :meth:`SchedulerCore.observation`."""
    o = torch.as_tensor(np.asarray(obs), dtype=torch.float64)
    if o.ndim == 1:
        o = o[None]
    col = {n: o[:, i] for i, n in enumerate(SIGNAL_NAMES)}
    return DecodedSignals(
        delta_loss=symexp(col["delta_loss"], _DELTA_SCALE),
        variance=symexp(col["variance"], _VAR_SCALE),
        delta_reward=symexp(col["delta_reward"], _DELTA_SCALE),
        alpha=cfg.alpha0 * torch.pow(2.0, col["alpha"]),
        momentum=1.0 - torch.pow(2.0, -col["momentum"]),
        sigma=cfg.law.sigma0 * torch.pow(10.0, col["sigma"]),
        plateau_count=torch.round(col["plateau_count"] * cfg.law.plateau_steps),
        success_rate=col["success_rate"],
        step=torch.round(col["progress"] * cfg.episode_steps),
    )


def ae_law_action(
    obs: torch.Tensor | np.ndarray, cfg: SchedulerConfig, law_config: AEConfig | None = None
) -> np.ndarray:
    """The AE controller's adaptive law as a policy in SchedulerGains' action space.

    From the observed signals: ``α' = next_alpha(α, f_α(Δℓ, v))``,
    ``μ' = next_momentum(μ, Δr)``, ``σ' = next_sigma(σ, plateau, v, success)``; then
    ``a = (log2(α'/α), -log2((1-μ')/(1-μ)), log4(σ'/σ), ±1)`` clipped to [-1, 1], with
    the local test (+1) every ``law.test_every`` gradient steps (rounded up to env
    steps; never when the policy's ``n_probes`` is 0 — the env runs the probes with its
    own constants). Returns ``[B, 4]`` float32.

    :param cfg: the env's settings (they decode the observation: its signals were
        filtered by ``cfg.law``).
    :param law_config: the policy's law constants (ε, u, d, λ, α bounds, μ and σ
        rules, test period); None: ``cfg.law``. The signal filters (β, k, relative,
        plateau tolerance) are the env's and cannot be changed by a policy.
    """
    d = decode_observation(obs, cfg)
    c = cfg.law if law_config is None else law_config
    rows = d.alpha.shape[0]
    a_new = law.next_alpha(
        d.alpha,
        law.alpha_factor(d.delta_loss, d.variance, c),
        torch.full_like(d.alpha, cfg.alpha0),
        c,
        torch.zeros(rows, dtype=torch.long),
    )
    mu_new = law.next_momentum(d.momentum, d.delta_reward, c).clamp_max(cfg.momentum_max)
    pending = torch.ones(rows, dtype=torch.bool)
    s_new = law.next_sigma(d.sigma, d.plateau_count.long(), d.variance, d.success_rate, pending, c)
    test = (d.step.long() % cfg.env_steps(c.test_every) == 0) & (c.n_probes > 0)
    out = torch.stack(
        [
            torch.log2(a_new / d.alpha),
            -torch.log2((1.0 - mu_new).clamp_min(1e-6) / (1.0 - d.momentum).clamp_min(1e-6)),
            torch.log(s_new / d.sigma) / math.log(SIGMA_BASE),
            torch.where(test, 1.0, -1.0),
        ],
        -1,
    )
    return np.clip(out.numpy().astype(np.float32), -1.0, 1.0)


def draw_reset(
    rng: np.random.Generator, core: SchedulerCore, options: dict[str, Any] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One episode's random start from ``rng``: (target index, free knobs, noise seed,
    starting learning rate α0_ep = ``m·α0`` with ``m`` log-uniform in ``alpha0_range``)."""
    cfg = core.config
    idx = target_index_option(options, len(core.targets), rng)
    start = torch.from_numpy(rng.random(core.n_free).astype(np.float32))
    noise_seed = int(rng.integers(2**62))
    lo, hi = (math.log(x) for x in cfg.alpha0_range)
    alpha0_ep = cfg.alpha0 * math.exp(float(rng.uniform(lo, hi)))
    return torch.tensor(idx), start, torch.tensor(noise_seed), torch.tensor(alpha0_ep)


class EpisodeStarts(NamedTuple):
    """The random starts of N episodes (what :func:`draw_reset` draws), ``[N, ...]``."""

    target_idx: torch.Tensor
    start_free: torch.Tensor
    noise_seed: torch.Tensor
    alpha0_ep: torch.Tensor

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.target_idx.shape[0])

    def repeat(self, n: int) -> EpisodeStarts:
        """Every episode ``n`` times in a row block: ``[n·N, ...]``, block ``k`` = all N."""
        return EpisodeStarts(*(x.repeat(n, *([1] * (x.ndim - 1))) for x in self))

    def rows(self, sl: slice) -> EpisodeStarts:
        return EpisodeStarts(*(x[sl] for x in self))


def draw_starts(
    core: SchedulerCore, seeds: Sequence[int], target_index: Sequence[int] | None = None
) -> EpisodeStarts:
    """The starts of episodes ``env.reset(seed=seeds[e], options={"target_index":
    target_index[e]})`` (the env's own :func:`draw_reset` from the same RNG), batched."""
    from gymnasium.utils import seeding

    draws = []
    for e, seed in enumerate(seeds):
        rng, _ = seeding.np_random(int(seed))
        opts = None if target_index is None else {"target_index": int(target_index[e])}
        draws.append(draw_reset(rng, core, opts))
    return EpisodeStarts(*(torch.stack(list(x)) for x in zip(*draws, strict=True)))


class EpisodeResult(NamedTuple):
    """Outcome of N batched episodes, ``[N]`` each."""

    distance: torch.Tensor  # final distance (at termination or truncation)
    returns: torch.Tensor  # undiscounted return
    success: torch.Tensor
    diverged: torch.Tensor
    length: torch.Tensor  # env steps taken
    hit_step: torch.Tensor  # first env step with distance < ``hit_distance`` (-1: never)


#: The action that keeps every gain as it is and runs no local test.
HOLD_ACTION = (0.0, 0.0, 0.0, -1.0)


@torch.no_grad()
def run_episodes(
    core: SchedulerCore,
    starts: EpisodeStarts,
    policy: Any = None,
    alpha: torch.Tensor | None = None,
    hit_distance: float | None = None,
) -> EpisodeResult:
    """Run ``core.batch`` episodes from ``starts`` to their end with the env's dynamics.

    :param policy: ``obs [B, 19] -> action [B, 4]`` (tensor or array); None holds the
        gains (:data:`HOLD_ACTION` every step).
    :param alpha: if given, ``[B]`` learning rates set right after the reset in place of
        each episode's α0_ep (held constant by ``policy=None``).

    :param hit_distance: ``hit_step`` records the first step whose distance falls
        below it (default: ``success_distance``; useful when the config's success
        termination is switched off to measure the distance at the horizon).

    Each row's result is taken at its first termination or truncation (later steps of
    finished rows are computed but not counted), as a single env would end there.
    """
    b = core.batch
    if len(starts) != b:
        raise ValueError(f"starts has {len(starts)} episodes, the core batch is {b}")
    obs = core.reset(torch.ones(b, dtype=torch.bool), *starts)
    if alpha is not None:
        core.gains = core.gains._replace(alpha=alpha.to(core.device, torch.float32))
    hold = torch.tensor(HOLD_ACTION).expand(b, 4)
    live = torch.ones(b, dtype=torch.bool)
    returns = torch.zeros(b, dtype=torch.float64)
    out = EpisodeResult(
        core.distance.clone().cpu(),
        returns,
        torch.zeros(b, dtype=torch.bool),
        torch.zeros(b, dtype=torch.bool),
        torch.zeros(b, dtype=torch.long),
        torch.full((b,), -1, dtype=torch.long),
    )
    hit = core.config.success_distance if hit_distance is None else hit_distance
    for t in range(core.config.episode_steps):
        act = hold if policy is None else torch.as_tensor(np.asarray(policy(obs)))
        res = core.step(act)
        obs = res.obs
        done = (res.terminated | res.truncated).cpu()
        returns += torch.where(live, res.reward.cpu().double(), 0.0)
        out.length[live] += 1
        first = live & (out.hit_step < 0) & (res.distance.cpu() < hit)
        out.hit_step[first] = t + 1
        ended = live & done
        out.distance[ended] = res.distance.cpu()[ended]
        out.success[ended] = core.success.cpu()[ended]
        out.diverged[ended] = res.diverged.cpu()[ended]
        live &= ~done
        if not live.any():
            break
    return out


def run_constant_gains(
    config: SchedulerConfig,
    targets: TargetSet,
    starts: EpisodeStarts,
    alphas: Sequence[float] | None = None,
    *,
    max_batch: int = 256,
    device: str = "cpu",
    progress: Any = None,
    hit_distance: float | None = None,
) -> EpisodeResult:
    """Episodes from ``starts`` with constant gains, batched through :class:`SchedulerCore`.

    ``alphas=None``: each episode keeps its drawn α0_ep (the default gains). Else every
    episode runs once per value (α held for the whole episode, μ and σ at the law's
    defaults): the results are ``[G, N]`` for ``G = len(alphas)`` (``[1, N]`` for None).
    Rows (``G·N``) run in chunks of at most ``max_batch``; ``progress`` (e.g. a tqdm
    bar) gets ``update(rows)`` after each chunk. The oracle baselines build on this.
    """
    n = len(starts)
    g = 1 if alphas is None else len(alphas)
    rows = starts.repeat(g)
    alpha = (
        None if alphas is None else torch.tensor(alphas, dtype=torch.float32).repeat_interleave(n)
    )
    cores: dict[int, SchedulerCore] = {}
    parts = []
    for lo in range(0, g * n, max_batch):
        sl = slice(lo, min(lo + max_batch, g * n))
        size = sl.stop - sl.start
        core = cores.get(size) or cores.setdefault(
            size, SchedulerCore(config, targets, size, device)
        )
        a = None if alpha is None else alpha[sl]
        parts.append(run_episodes(core, rows.rows(sl), alpha=a, hit_distance=hit_distance))
        if progress is not None:
            progress.update(size)
    return EpisodeResult(*(torch.cat(x).reshape(g, n) for x in zip(*parts, strict=True)))


class SchedulerGainsEnv(CoreEnv):
    """Control the gains of gradient descent that fits a synth patch to a target.

    ## Description
    Inside the env, Adam (with β1 = μ) plus dither fits the free knobs of a
    differentiable synth to a target sound, minimising the multi-resolution spectral
    distance. Each env step runs ``inner_steps`` gradient steps; the agent sets the
    scheduler's gains between them — the role the AE controller's adaptive law plays
    (in the manner of dynamic algorithm configuration benchmarks). Each episode starts
    at its own learning rate α0_ep, drawn over two decades around the reference α0: the
    agent must find the right scale from the feedback (the observation shows where α
    is), which a constant schedule cannot (``scripts/scheduler_headroom.py``).

    ## Action Space
    ``Box(-1, 1, (4,), float32)``: multipliers on a log scale, applied each env step.

    | index | name       | effect                                               |
    |-------|------------|------------------------------------------------------|
    | 0     | lr         | ``α ← clip(α·2^a)`` within ``alpha_range·α0``         |
    | 1     | momentum   | ``(1-μ) ← clip((1-μ)·2^-a)``, μ in [0, momentum_max]  |
    | 2     | dither     | ``σ ← clip(σ·4^a)`` within ``sigma_range``            |
    | 3     | local_test | > 0: probe ``n_probes`` perturbed copies this step    |

    ``[0, 0, 0, -1]`` holds the gains. A local test runs in the last inner step: the
    probes perturb that step's θ, are compared with the distance at the same θ, and the
    best one, if better, is averaged (``law.rho``) into the stepped θ — as in
    :class:`aegym.control.AEOptimizer`. Actions outside [-1, 1] are clipped; NaN/inf or
    a wrong shape raise ``ValueError``.

    ## Observation Space
    ``Box(-50, 50, (19,), float32)``: the AE controller's feedback signals, then
    summaries of this env step's inner steps and of the render the reward reads:

    | idx | name            | transform                                         |
    |-----|-----------------|---------------------------------------------------|
    | 0   | loss_ema        | ``ln ℓ̄``                                           |
    | 1   | delta_loss      | ``symlog(Δℓ/ℓ̄, 100)`` (relative, > 0 improving)     |
    | 2   | variance        | ``symlog(v/ℓ̄², 1e4)``                              |
    | 3   | reward_ema      | ``r̄`` (the filters use r = -ℓ)                     |
    | 4   | delta_reward    | ``symlog(Δr, 100)``                                |
    | 5   | grad_norm       | ``symlog(‖g‖, 1e3)`` of the last inner step        |
    | 6   | update_norm     | ``symlog(‖u‖, 1e3)`` of the last inner step        |
    | 7   | alpha           | ``log2(α/α0)`` (reference α0, not α0_ep)           |
    | 8   | momentum        | ``-log2(1-μ)``                                     |
    | 9   | sigma           | ``log10(σ/σ0)``                                    |
    | 10  | plateau_count   | ``count / p``                                      |
    | 11  | success_rate    | local-test success rate (EMA)                      |
    | 12  | progress        | ``step / episode_steps``                           |
    | 13  | distance        | current spectral distance                          |
    | 14  | grad_norm_mean  | ``symlog(mean_k ‖g_k‖, 1e3)`` over this step's     |
    |     |                 | inner steps                                        |
    | 15  | update_norm_rms | ``symlog(sqrt(mean_k ‖u_k‖²), 1e3)``, likewise     |
    | 16  | opt_health      | mean of this step's ``opt/*`` sub-scores (1 = best)|
    | 17  | loudness        | RMS loudness of the render, dBFS / 60              |
    | 18  | audio_score     | ``S = Σ c_i·s_i`` of the audio sub-scores (the     |
    |     |                 | potential of the audio terms, in ``[0, w_aud]``)   |

    ``symlog(x, s) = sign(x)·ln(1 + |x|·s)``; :func:`decode_observation` inverts them.
    Columns 14–18 read 0, 0, 1, the start's loudness and audio score after a reset.

    ## Rewards
    The composite ``R = w_aud·R_aud + w_opt·R_opt − P`` (:class:`aegym.reward.
    CompositeReward`, improvement mode, terms :data:`SCHEDULER_TERMS`), aligned so that
    reaching the target fast earns the most. Every term reads the transition of this env
    step only (Markov), and what it reads is in the observation:

    | term                | per step                                     | reads (obs)     |
    |---------------------|----------------------------------------------|-----------------|
    | ``aud/*``           | change of each audio sub-score, success = 1  | audio_score     |
    | ``aud/success``     | ``success_bonus`` (10) on the success step   | distance        |
    | ``opt/grad_norm``   | −shortfall of the gradient-norm score of     | grad_norm_mean, |
    |                     | this step's ``inner_steps`` gradients        | opt_health      |
    | ``opt/resonance``   | −shortfall of deep resonance of this step's  | opt_health      |
    |                     | ``inner_steps`` updates                      |                 |
    | ``opt/update_norm`` | −shortfall of the small-update score, same   | update_norm_rms |
    | ``pen/loudness``    | −RMS loudness over the cap                   | loudness        |
    | ``pen/divergence``  | −``w_pen_divergence`` (1) on divergence      | (termination)   |
    | ``pen/time``        | −0.01                                        | —               |

    No ``pol/*`` terms: the agent sets gains, not a knob trajectory; no ``pen/slew``:
    each step renders a fresh note, so knob moves are not heard. The audio terms
    telescope: every successful episode collects ``w_aud·(1 − S_0)`` from them, so
    slowing down to hover near the target earns nothing, while the other terms cost at
    most ``a = 0.08`` per step (``CompositeReward.max_step_cost()``); a successful
    episode (return ≥ ``success_bonus − a·T``) always beats ``reward_threshold = 1``, a
    failed one stays below it (its audio terms sum to less than ``w_aud = 1``). Per step
    the reward lies in ``CompositeReward.bounds()`` (defaults: [-2.08, 10.99]).
    ``info["reward_terms"]`` holds every term; they sum to the reward.

    ## Starting State
    A target from the target set (env RNG, or ``options={"target_index": i}``); free
    knobs uniform in [0, 1]; ``α = α0_ep = m·α0`` with ``m`` log-uniform in
    ``alpha0_range`` (0.1–10 by default; ``info["alpha0_ep"]``), ``μ = law.momentum0``,
    ``σ = law.sigma0``. Every draw comes from the env RNG (:func:`draw_reset`, shared
    with the native vector env).

    ## Episode End
    - Termination: distance < ``success_distance`` (``info["is_success"]``; the Easy
      tier's calibrated value, ``aegym.envs.SUCCESS_DISTANCE["easy"]`` = 0.54, as the
      free knobs are the easy preset), or divergence — a non-finite loss or one above
      ``divergence_factor·ℓ̄`` in any inner step (``info["diverged"] = True``, with
      ``pen/divergence``; never a NaN).
    - Truncation: after ``episode_steps`` env steps (20 by default, also the
      registered ``max_episode_steps``).

    ## Arguments
    ``gymnasium.make("AEGym/SchedulerGains-v1", target=None, free_knobs="easy",
    inner_steps=5, episode_steps=20, duration_s=0.5, sample_rate=16000, alpha0=0.1,
    alpha0_range=(0.1, 10.0), success_distance=0.54, reward_config=None, config=None,
    target_seed=0, render_mode=None, device="cpu")`` — ``target`` as in
    SoundMatch-v1; ``inner_steps >= 4`` (the opt/* terms' window); ``alpha0_range=(1,
    1)`` starts every episode at α0; ``config`` a full :class:`SchedulerConfig`
    (overrides the other settings).

    ## Version History
    - v1: per-episode starting learning rate (v0 always started at α0, where constant
      multipliers from 1/32 to 2 all ended within 1.81–2.34 mean distance: little
      headroom); aligned reward (improvement-mode audio terms, a success bonus, costs
      otherwise — v0 paid positive terms every step, so finishing early lost return);
      the divergence penalty is the ``pen/divergence`` term (v0 subtracted it outside
      the terms, which did not sum to the reward); the opt/* terms read only this env
      step's inner steps and the observation summarizes them (v0: an 8-inner-step
      history and a knob trajectory over env steps, neither observed); no pol/* or
      pen/slew terms; observation columns 14–18; success distance 0.54 (calibrated Easy
      tier, v0: 0.3); ``info["alpha0_ep"]``.
    - v0: initial release (``AEGym/SchedulerGains-v0``, removed).
    """

    draw_reset = staticmethod(draw_reset)

    @fixed_threads
    def __init__(
        self,
        target: Any = None,
        free_knobs: str | Sequence[str] = "easy",
        inner_steps: int = 5,
        episode_steps: int = 20,
        duration_s: float = 0.5,
        sample_rate: int = 16_000,
        alpha0: float = 0.1,
        alpha0_range: tuple[float, float] = (0.1, 10.0),
        success_distance: float = SUCCESS_DISTANCE["easy"],
        reward_config: RewardConfig | None = None,
        config: SchedulerConfig | None = None,
        target_seed: int = 0,
        render_mode: str | None = None,
        device: str = "cpu",
    ) -> None:
        limit_threads_in_worker()
        self._set_render_mode(render_mode)
        self.config = config or SchedulerConfig(
            sample_rate=sample_rate,
            duration_s=duration_s,
            free_knobs=free_knobs,  # type: ignore[arg-type]
            inner_steps=inner_steps,
            episode_steps=episode_steps,
            alpha0=alpha0,
            alpha0_range=tuple(alpha0_range),  # type: ignore[arg-type]
            success_distance=success_distance,
            reward=reward_config or RewardConfig(),
        )
        cfg = self.config
        targets = resolve_targets(
            target, sample_rate=cfg.sample_rate, duration_s=cfg.duration_s, seed=target_seed
        )
        self.core = SchedulerCore(cfg, targets, 1, device)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        n = len(SIGNAL_NAMES)
        self.observation_space = spaces.Box(-OBS_CLIP, OBS_CLIP, (n,), np.float32)

    def _info(self) -> dict[str, Any]:
        core = self.core
        idx = int(core.target_idx[0])
        g = core.gains
        return {
            "distance": float(core.distance[0]),
            "is_success": bool(core.success[0]),
            "knobs": core.physical_knobs(0),
            "alpha0_ep": float(core.alpha0_ep[0]),
            "gains": {
                "alpha": float(g.alpha[0]),
                "momentum": float(g.momentum[0]),
                "sigma": float(g.sigma[0]),
            },
            "signals": core.signals(0)._asdict(),
            "target_index": idx,
            "target_name": core.targets[idx].name,
        }

    def law_action(self, obs: np.ndarray) -> np.ndarray:
        """The AE law's action for ``obs`` (see :func:`ae_law_action`)."""
        return ae_law_action(obs, self.config)[0]

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        core = self.core
        tgt = core.target_features.log_mel[0][core.target_idx[0]]
        cur = core.encoder(core.audio[:1]).log_mel[0][0]
        return spectrogram_image([tgt, cur])

    def _audio(self, which: str) -> torch.Tensor:
        if which == "current":
            return self.core.audio[0]
        return self.core.targets[int(self.core.target_idx[0])].audio
