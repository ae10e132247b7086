"""Sound matching: :func:`fit_patch`, the seed's windowed AE loop (§7) on synth knobs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from aegym.control.config import AEConfig
from aegym.control.optimizer import AEOptimizer, AEStepLog
from aegym.features import FeatureConfig, FeatureEncoder, spectral_distance
from aegym.synth import Patch, SynthConfig, Voice


class FitResult(NamedTuple):
    """Outcome of :func:`fit_patch` for ``B`` targets and ``K`` knobs.

    :param unit: best normalized knobs found per target, ``[B, K]``.
    :param physical: the same in physical units, ``[B, K]`` (order of ``knob_names``).
    :param best_loss: windowed spectral distance of ``unit`` per target, ``[B]``.
    :param initial_loss: distance of the starting knobs, ``[B]``.
    :param final_unit: knobs after the last step, ``[B, K]``.
    :param final_loss: distance of ``final_unit``, ``[B]``.
    :param item_losses: distance per target at each step's θ_t, ``[steps, B]``.
    :param log: one :class:`AEStepLog` per step (the law sees the summed loss).
    :param knob_names: names of the K knobs.
    :param free_knobs: names of the knobs that were optimized.
    """

    unit: torch.Tensor
    physical: torch.Tensor
    best_loss: torch.Tensor
    initial_loss: torch.Tensor
    final_unit: torch.Tensor
    final_loss: torch.Tensor
    item_losses: torch.Tensor
    log: list[AEStepLog]
    knob_names: tuple[str, ...]
    free_knobs: tuple[str, ...]

    def patches(self) -> list[Patch]:
        """The best knobs as one :class:`~aegym.synth.Patch` per target."""
        return [
            Patch(dict(zip(self.knob_names, row.tolist(), strict=True))) for row in self.physical
        ]


def _windows(audio: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """``[B, T] -> [B·W, window]`` overlapping frames (``W = 1 + (T − window)//hop``)."""
    return audio.unfold(-1, window, hop).reshape(-1, window)


def fit_patch(
    target: torch.Tensor,
    voice: Voice | None = None,
    *,
    steps: int = 100,
    lr: float = 0.02,
    init_unit: torch.Tensor | None = None,
    free_knobs: Sequence[str] | None = None,
    config: AEConfig | None = None,
    encoder: FeatureEncoder | None = None,
    window_s: float = 0.25,
    hop_s: float | None = None,
    reward_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Fit synth knobs to target sounds with the AE optimizer (sound matching).

    Each step renders the note from the current normalized knobs θ, slices it (and
    the target) into overlapping windows of ``window_s`` with hop ``hop_s``, and uses
    the windowed spectral distance ``d_b = mean_w spectral_distance(x_{b,w}, y_{b,w})``.
    The law sees the sum ``L = Σ_b d_b`` (so each target's knob gradient is ``∇d_b``
    whatever B): **one scalar law drives all B targets** — α, μ, σ are shared, while
    the knobs, gradients and best-so-far tracking are per target. Knobs are clamped to
    [0, 1]; local-test probes of all targets are rendered in ONE batched call
    (``[n_probes·B, K]``).

    :param target: target audio ``[T]`` or ``[B, T]``, ``T = voice.config.n_samples``.
    :param voice: the synth; ``Voice(SynthConfig(duration_s=T/16000))`` by default.
    :param steps: optimizer steps, >= 1.
    :param lr: α0 on normalized knobs.
    :param init_unit: starting knobs ``[K]`` or ``[B, K]``; the knob defaults if None.
    :param free_knobs: names of the knobs to optimize (others keep ``init_unit``);
        all knobs if None.
    :param config: AE constants; ``AEConfig(update_rule="adam")`` by default (Adam's
        per-knob normalization suits knobs whose gradients differ by decades).
    :param encoder: feature encoder; one at the voice's sample rate if None.
    :param window_s: analysis window in seconds (shortened to T if the note is shorter).
    :param hop_s: hop between windows in seconds; ``window_s / 2`` if None.
    :param reward_fn: optional ``audio [B, T] -> [B]`` reward; its mean is r_t
        (the momentum law's reward). Without it ``r_t = −L``.
    :returns: a :class:`FitResult` with best/final knobs, losses and the full step log.
    """
    if not isinstance(target, torch.Tensor) or not target.is_floating_point():
        raise TypeError("target must be a floating-point torch.Tensor of audio")
    if target.ndim == 1:
        target = target[None]
    if target.ndim != 2:
        raise ValueError(f"target must be [T] or [B, T] audio, got shape {tuple(target.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    batch, n_samples = target.shape
    if voice is None:
        voice = Voice(SynthConfig(duration_s=n_samples / SynthConfig().sample_rate))
    if voice.config.n_samples != n_samples:
        raise ValueError(
            f"target has {n_samples} samples but the voice renders {voice.config.n_samples}; "
            "match SynthConfig.duration_s to the target"
        )
    sr = voice.config.sample_rate
    device = voice.noise.device
    target = target.to(device)
    encoder = (encoder or FeatureEncoder(FeatureConfig(sample_rate=sr))).to(device)
    if encoder.config.sample_rate != sr:
        raise ValueError(
            f"encoder sample_rate {encoder.config.sample_rate} != voice sample_rate {sr}"
        )
    if window_s <= 0 or (hop_s is not None and hop_s <= 0):
        raise ValueError(f"window_s and hop_s must be > 0, got {window_s!r}, {hop_s!r}")
    window = min(n_samples, max(1, round(window_s * sr)))
    hop = max(1, round((window_s / 2 if hop_s is None else hop_s) * sr))

    space = voice.knob_space
    names = space.names
    free = tuple(names) if free_knobs is None else tuple(free_knobs)
    if not free:
        raise ValueError("free_knobs must name at least one knob")
    free_idx = torch.tensor(space.indices(free), device=device)
    if init_unit is None:
        base = space.default_unit(batch).to(device)
    else:
        base = init_unit.detach().to(device=device, dtype=torch.float32)
        base = base.expand(batch, -1).clone() if base.ndim == 1 else base.clone()
        if base.shape != (batch, len(space)):
            raise ValueError(
                f"init_unit must be [K] or [B, K] = [{batch}, {len(space)}], "
                f"got {tuple(init_unit.shape)}"
            )
    base = base.clamp(0.0, 1.0)
    theta = base[:, free_idx].clone().requires_grad_(True)

    with torch.no_grad():
        target_feat = encoder(_windows(target, window, hop))
    n_windows = target_feat.loudness_db.shape[0] // batch

    def knobs(free_values: torch.Tensor) -> torch.Tensor:
        rows = free_values.shape[0]
        full = base.repeat(rows // batch, 1)
        return full.index_copy(1, free_idx, free_values)

    def distances(free_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[R·B, F]`` free knobs -> (per-row windowed distance ``[R·B]``, audio)."""
        audio = voice(knobs(free_values))
        feats = encoder(_windows(audio, window, hop))
        rows = free_values.shape[0] // batch
        tf = type(target_feat)(*(_repeat_feature(x, rows) for x in target_feat))
        d = spectral_distance(feats, tf).reshape(-1, n_windows).mean(-1)
        return d, audio

    item_loss = torch.zeros(batch)

    def closure() -> tuple[torch.Tensor, float | None]:
        nonlocal item_loss
        optimizer.zero_grad()
        d, audio = distances(theta)
        total = d.sum()
        total.backward()
        item_loss = d.detach().cpu()
        reward = None
        if reward_fn is not None:
            with torch.no_grad():
                reward = float(reward_fn(audio.detach()).mean())
        return total, reward

    def batched_eval(candidates: list[list[torch.Tensor]]) -> torch.Tensor:
        stacked = torch.cat([c[0] for c in candidates], 0)
        with torch.no_grad():
            d, _ = distances(stacked)
        return d.reshape(len(candidates), batch).sum(-1)

    cfg = config or AEConfig(update_rule="adam")
    optimizer = AEOptimizer(
        [theta], lr=lr, config=cfg, bounds=(0.0, 1.0), batched_eval=batched_eval
    )

    best_loss = torch.full((batch,), math.inf)
    best_free = theta.detach().clone()
    history: list[torch.Tensor] = []
    log: list[AEStepLog] = []
    for _ in range(steps):
        evaluated = theta.detach().clone()
        optimizer.step(closure)
        assert optimizer.last_log is not None
        log.append(optimizer.last_log)
        if optimizer.last_log.diverged:
            history.append(torch.full((batch,), math.nan))
            continue
        history.append(item_loss.clone())
        better = item_loss < best_loss
        best_loss = torch.where(better, item_loss, best_loss)
        best_free[better.to(device)] = evaluated[better.to(device)]

    with torch.no_grad():
        final_free = theta.detach().clone()
        final_loss = distances(final_free)[0].cpu()
    better = final_loss < best_loss
    best_loss = torch.where(better, final_loss, best_loss)
    best_free[better.to(device)] = final_free[better.to(device)]
    item_losses = torch.stack(history)
    best_unit = knobs(best_free).detach()
    return FitResult(
        unit=best_unit,
        physical=space.to_physical(best_unit.cpu()),
        best_loss=best_loss,
        initial_loss=item_losses[0],
        final_unit=knobs(final_free).detach(),
        final_loss=final_loss,
        item_losses=item_losses,
        log=log,
        knob_names=names,
        free_knobs=free,
    )


def _repeat_feature(x: Any, rows: int) -> Any:
    """Tile a feature field (tensor or tuple of tensors) ``rows`` times along batch."""
    if isinstance(x, tuple):
        return tuple(_repeat_feature(t, rows) for t in x)
    return x if rows == 1 else x.repeat(rows, *([1] * (x.ndim - 1)))


__all__ = ["FitResult", "fit_patch"]
