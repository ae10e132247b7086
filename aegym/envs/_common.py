"""Pieces shared by every env family: observation summaries, action checks, images."""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from aegym._checks import check_range
from aegym.features import Features
from aegym.synth import KnobSpace


class CoreStep(NamedTuple):
    """What every batched core's ``step`` returns (tensors with leading dim B).

    ``reward_terms`` maps each composite-reward term the family uses to ``[B]``;
    ``diverged`` is all False for the knob envs; ``violation`` marks steps whose safety
    penalty exceeded the reward's ``violation_tolerance``.
    """

    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    distance: torch.Tensor
    reward_terms: dict[str, torch.Tensor]
    diverged: torch.Tensor
    violation: torch.Tensor


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
#: Allowed ``max_move`` (largest normalized knob change per step) of every knob env.
MAX_MOVE_RANGE = (1e-4, 1.0)


def check_max_move(value: Any) -> float:
    """``max_move`` validated against :data:`MAX_MOVE_RANGE` (the same in every knob env)."""
    return check_range("max_move", value, *MAX_MOVE_RANGE)


def resolve_target_kinds(value: Any) -> tuple[str, ...] | None:
    """``target_kinds`` validated: None (every kind) or a non-empty tuple of
    :data:`aegym.targets.TARGET_KINDS`."""
    from aegym.targets import TARGET_KINDS

    if value is None:
        return None
    kinds = tuple(value) if isinstance(value, (list, tuple)) else None
    if not kinds or any(k not in TARGET_KINDS for k in kinds):
        raise ValueError(
            f"target_kinds must be None or a non-empty list of {list(TARGET_KINDS)}, got {value!r}"
        )
    return kinds


def resolve_free_knobs(free_knobs: str | Sequence[str], space: KnobSpace) -> tuple[str, ...]:
    """Turn a preset name or a list of knob names into a validated tuple of names."""
    if not isinstance(free_knobs, (str, Sequence)):
        raise TypeError(
            f"free_knobs must be one of {sorted(KNOB_PRESETS)} or a list of knob names, "
            f"got {free_knobs!r}"
        )
    if isinstance(free_knobs, str):
        if free_knobs not in KNOB_PRESETS:
            raise ValueError(
                f"free_knobs must be one of {sorted(KNOB_PRESETS)} or a list of knob names, "
                f"got {free_knobs!r}"
            )
        return KNOB_PRESETS[free_knobs]
    names = tuple(free_knobs)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"free_knobs must hold knob names (str), got {bad[0]!r} in {names!r}")
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


def check_action(action: Any, shape: tuple[int, ...], name: str = "action") -> np.ndarray:
    """Validate an action: array-like of ``shape``, finite. Returns float32, *unclipped*.

    Accepts numpy arrays, sequences and torch tensors (CPU or not, without grad).

    :raises ValueError: not numeric, wrong shape or NaN/inf, naming what was expected.
    """
    what = f"{name} must be a finite float array of shape {shape}"
    if isinstance(action, torch.Tensor):
        if action.requires_grad:
            raise ValueError(
                f"{what}, got a tensor with requires_grad=True (the env does not "
                "differentiate through actions: pass action.detach())"
            )
        action = action.cpu().numpy()
    if isinstance(action, (str, bytes, dict)):
        raise ValueError(f"{what}, got {type(action).__name__} {action!r}")
    try:
        arr = np.asarray(action, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{what}, got {type(action).__name__} {action!r}") from None
    if arr.shape != shape:
        raise ValueError(f"{what}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}, got non-finite values {arr.tolist()}")
    return arr


def check_target_index(value: Any, n_targets: int, name: str = "options['target_index']") -> int:
    """``value`` as a target index: a (numpy) int in ``[0, n_targets)``, never a bool,
    a float or a string (no silent rounding)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or not 0 <= value < n_targets:
        raise ValueError(f"{name} must be an int in [0, {n_targets}), got {value!r}")
    return int(value)


def target_index_option(
    options: dict[str, Any] | None, n_targets: int, rng: np.random.Generator
) -> int:
    """``options["target_index"]`` if given (validated), else a uniform draw from ``rng``."""
    idx = (options or {}).get("target_index")
    if idx is None:
        return int(rng.integers(n_targets))
    return check_target_index(idx, n_targets)


def limit_threads_in_worker() -> None:
    """Use one torch thread inside subprocess workers (AsyncVectorEnv).

    torch's intra-op pool inherited through ``fork`` can deadlock, and N workers with
    all-core pools oversubscribe the CPU anyway.
    """
    if multiprocessing.current_process().name != "MainProcess":
        torch.set_num_threads(1)


_F = TypeVar("_F", bound=Callable[..., Any])

#: torch intra-op threads of every single-env computation (see :func:`fixed_threads`).
SINGLE_ENV_THREADS = 1


def fixed_threads(fn: _F) -> _F:
    """Run ``fn`` with torch at :data:`SINGLE_ENV_THREADS` intra-op threads.

    Float reductions split across threads sum in a different order, so the same
    seed would give results that differ in the last bits between a process with 2
    threads and an ``AsyncVectorEnv`` worker with 1. Pinning the single env's torch
    work to one thread makes it bit-for-bit reproducible whatever the process layout
    (B = 1 work gains little from more threads). The caller's setting is restored.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = torch.get_num_threads()
        if before == SINGLE_ENV_THREADS:
            return fn(*args, **kwargs)
        torch.set_num_threads(SINGLE_ENV_THREADS)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]


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
