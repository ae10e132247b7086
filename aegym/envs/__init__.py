"""aegym's Gymnasium environments and their registration under the ``AEGym`` namespace."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gymnasium.envs.registration import register, registry

from aegym.calibration import SUCCESS_DISTANCE


@dataclass(frozen=True)
class EnvSpec:
    """One registered id: where it lives, its horizon, its fixed arguments (a tier) and a
    one-line description.

    :param reward_threshold: Gymnasium's "solved" return, where one makes sense: for
        the episodic knob and scheduler ids, any episode whose return exceeds it has
        succeeded (failed episodes collect less than ``w_aud = 1``; successful ones at
        least ``success_bonus − a·T``).
    """

    id: str
    entry_point: str
    max_episode_steps: int
    description: str
    vector_entry_point: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    reward_threshold: float | None = None


_SOUND_MATCH = "aegym.envs.sound_match:SoundMatchEnv"
_SOUND_MATCH_VECTOR = "aegym.vector.env:sound_match_vector"

ENV_SPECS: tuple[EnvSpec, ...] = (
    EnvSpec(
        "AEGym/SoundMatch-Easy-v1",
        _SOUND_MATCH,
        50,
        "knob control, 4 knobs (cutoff, resonance, shape, gain) on reachable synth targets",
        _SOUND_MATCH_VECTOR,
        {"free_knobs": "easy", "success_distance": SUCCESS_DISTANCE["easy"]},
        1.0,
    ),
    EnvSpec(
        "AEGym/SoundMatch-Medium-v1",
        _SOUND_MATCH,
        100,
        "knob control, 10 knobs (pitch, oscillators, drive, filter, decay, gain), reachable",
        _SOUND_MATCH_VECTOR,
        {"free_knobs": "medium", "success_distance": SUCCESS_DISTANCE["medium"]},
        1.0,
    ),
    EnvSpec(
        "AEGym/SoundMatch-Full-v1",
        _SOUND_MATCH,
        100,
        "knob control, all 20 knobs; any target: synth patches, other sounds, recordings",
        _SOUND_MATCH_VECTOR,
        {
            "free_knobs": "all",
            "success_distance": SUCCESS_DISTANCE["all"],
            "target_kinds": None,
        },
        1.0,
    ),
    EnvSpec(
        "AEGym/SoundMatchLive-v1",
        "aegym.envs.live:SoundMatchLiveEnv",
        64,
        "knob control on a continuous stream, window by window, tracking a moving target",
        "aegym.vector.env:live_vector",
        {"free_knobs": "easy", "success_distance": SUCCESS_DISTANCE["live_easy"]},
    ),
    EnvSpec(
        "AEGym/SchedulerGains-v1",
        "aegym.envs.scheduler:SchedulerGainsEnv",
        20,
        "scheduler control: set lr/momentum/dither gains of gradient descent on the synth",
        "aegym.vector.env:scheduler_vector",
        reward_threshold=1.0,
    ),
)


def register_envs() -> None:
    """Register every aegym id (idempotent).

    Gymnasium's passive env checker is off by default for these ids: its wrapper marks
    the first reset as checked *before* calling it, so one first reset that raises
    (bad ``options``) leaves it holding ``None`` and every later ``step`` fails with a
    ``TypeError``. aegym's envs pass Gymnasium's full ``check_env`` (and SB3's) in
    the test suite instead; ``gymnasium.make(id, disable_env_checker=False)`` still
    turns the passive checker on.
    """
    for spec in ENV_SPECS:
        if spec.id in registry:
            continue
        register(
            id=spec.id,
            entry_point=spec.entry_point,
            vector_entry_point=spec.vector_entry_point,
            max_episode_steps=spec.max_episode_steps,
            reward_threshold=spec.reward_threshold,
            kwargs=dict(spec.kwargs),
            disable_env_checker=True,
        )


def list_envs() -> list[tuple[str, str]]:
    """``(id, one-line description)`` for every aegym environment."""
    return [(s.id, s.description) for s in ENV_SPECS]


__all__ = ["ENV_SPECS", "SUCCESS_DISTANCE", "EnvSpec", "list_envs", "register_envs"]
