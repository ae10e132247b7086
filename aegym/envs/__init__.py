"""aegym's Gymnasium environments and their registration under the ``AEGym`` namespace."""

from __future__ import annotations

from dataclasses import dataclass

from gymnasium.envs.registration import register, registry


@dataclass(frozen=True)
class EnvSpec:
    """One registered id: where it lives, its horizon and a one-line description."""

    id: str
    entry_point: str
    max_episode_steps: int
    description: str
    vector_entry_point: str | None = None


ENV_SPECS: tuple[EnvSpec, ...] = (
    EnvSpec(
        "AEGym/SoundMatch-v0",
        "aegym.envs.sound_match:SoundMatchEnv",
        50,
        "knob control: move the synth's knobs until the note matches a target sound",
        "aegym.vector.env:sound_match_vector",
    ),
    EnvSpec(
        "AEGym/SoundMatchLive-v0",
        "aegym.envs.live:SoundMatchLiveEnv",
        64,
        "knob control on a continuous stream, window by window, tracking a moving target",
        "aegym.vector.env:live_vector",
    ),
    EnvSpec(
        "AEGym/SchedulerGains-v0",
        "aegym.envs.scheduler:SchedulerGainsEnv",
        20,
        "scheduler control: set lr/momentum/dither gains of gradient descent on the synth",
        "aegym.vector.env:scheduler_vector",
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
            disable_env_checker=True,
        )


def list_envs() -> list[tuple[str, str]]:
    """``(id, one-line description)`` for every aegym environment."""
    return [(s.id, s.description) for s in ENV_SPECS]


__all__ = ["ENV_SPECS", "EnvSpec", "list_envs", "register_envs"]
