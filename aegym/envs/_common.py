"""Pieces shared by every env family: observation summaries, action checks, images."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from aegym.features import Features
from aegym.synth import KnobSpace


class CoreStep(NamedTuple):
    """What every batched core's ``step`` returns (tensors with leading dim B).

    ``reward_terms`` maps each composite-reward term to ``[B]``; ``diverged`` is all
    False for the knob envs.
    """

    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    distance: torch.Tensor
    reward_terms: dict[str, torch.Tensor]
    diverged: torch.Tensor


#: Named sets of free knobs (difficulty levels of the knob-control envs).
KNOB_PRESETS: dict[str, tuple[str, ...]] = {
    "easy": ("cutoff_hz", "resonance", "osc1_shape", "gain_db"),
    "medium": (
        "pitch_midi",
        "osc1_shape",
        "osc2_shape",
        "osc_mix",
        "drive_db",
        "cutoff_hz",
        "resonance",
        "filter_env_octaves",
        "amp_decay_s",
        "gain_db",
    ),
    "all": KnobSpace().names,
}

#: Mel bands of the compact spectral profile in observations (64 mels pooled by 4).
PROFILE_BANDS = 16
#: Length of the stats vector (see :meth:`aegym.features.Features.stats`).
N_STATS = 5
#: Observation entries other than knobs are clipped to [-OBS_LIMIT, OBS_LIMIT].
OBS_LIMIT = 10.0


def resolve_free_knobs(free_knobs: str | Sequence[str], space: KnobSpace) -> tuple[str, ...]:
    """Turn a preset name or a list of knob names into a validated tuple of names."""
    if isinstance(free_knobs, str):
        if free_knobs not in KNOB_PRESETS:
            raise ValueError(
                f"free_knobs must be one of {sorted(KNOB_PRESETS)} or a list of knob names, "
                f"got {free_knobs!r}"
            )
        return KNOB_PRESETS[free_knobs]
    names = tuple(free_knobs)
    if not names:
        raise ValueError("free_knobs must name at least one knob")
    if len(set(names)) != len(names):
        raise ValueError(f"free_knobs has duplicates: {names}")
    space.indices(names)  # raises on unknown names
    return names


def spectral_profile(features: Features) -> torch.Tensor:
    """Time-averaged log-mel of resolution 0 pooled to 16 bands, scaled to ~[-1, 1].

    ``(mean_t log S - (-5)) / 5`` per band: log-mel of audible sounds spans about
    [-11, 4], so the profile is O(1). ``[B, 16]``.
    """
    prof = features.mel_profile()  # [B, n_mels]
    pooled = prof.reshape(prof.shape[0], PROFILE_BANDS, -1).mean(-1)
    return (pooled + 5.0) / 5.0


def check_action(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Validate an action: array-like of ``shape``, finite. Returns float32, *unclipped*.

    :raises ValueError: wrong shape or NaN/inf, naming what was expected.
    """
    try:
        arr = np.asarray(action, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(
            f"action must be a float array of shape {shape}, got {type(action).__name__}"
        ) from None
    if arr.shape != shape:
        raise ValueError(f"action must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"action must be finite, got {arr.tolist()}")
    return arr


def target_index_option(
    options: dict[str, Any] | None, n_targets: int, rng: np.random.Generator
) -> int:
    """``options["target_index"]`` if given (validated), else a uniform draw from ``rng``."""
    idx = (options or {}).get("target_index")
    if idx is None:
        return int(rng.integers(n_targets))
    if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or not 0 <= idx < n_targets:
        raise ValueError(f"options['target_index'] must be an int in [0, {n_targets}), got {idx!r}")
    return int(idx)


def limit_threads_in_worker() -> None:
    """Use one torch thread inside subprocess workers (AsyncVectorEnv).

    torch's intra-op pool inherited through ``fork`` can deadlock, and N workers with
    all-core pools oversubscribe the CPU anyway.
    """
    if multiprocessing.current_process().name != "MainProcess":
        torch.set_num_threads(1)


def _colormap() -> np.ndarray:
    """A 256-entry dark-blue -> magenta -> yellow map (perceptually ordered), uint8 [256, 3]."""
    x = np.linspace(0.0, 1.0, 256)
    r = np.clip(1.6 * x - 0.1, 0, 1) ** 0.9
    g = np.clip(1.8 * x - 0.8, 0, 1) ** 1.2
    b = np.clip(0.4 + 1.2 * x * (1 - x) * 2 - 0.6 * x**3, 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


_CMAP = _colormap()


def spectrogram_image(
    panels: Sequence[torch.Tensor], scale: int = 2, min_width: int = 256
) -> np.ndarray:
    """Stack log-mel panels ``[n_mels, frames]`` vertically into a uint8 RGB image.

    Low frequencies at the bottom of each panel; panels share one range (the top ~52 dB)
    so they compare; a 2-pixel white line separates them. Rows are repeated ``scale``
    times and frames stretched to at least ``min_width`` pixels. Returns ``[H, W, 3]``.
    """
    arrays = [p.detach().float().cpu().numpy()[::-1] for p in panels]
    hi = max(float(a.max()) for a in arrays)
    lo = hi - 12.0  # natural-log power: 12 nepers ~ 52 dB
    x_scale = max(scale, -(-min_width // max(a.shape[1] for a in arrays)))
    rows = []
    for i, a in enumerate(arrays):
        idx = np.clip((a - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
        img = np.repeat(np.repeat(_CMAP[idx], scale, 0), x_scale, 1)
        rows.append(img)
        if i < len(arrays) - 1:
            rows.append(np.full((2, img.shape[1], 3), 255, np.uint8))
    return np.ascontiguousarray(np.concatenate(rows, 0))
