"""aegym: Gymnasium environments for synthesizer control.

``import aegym`` registers ``AEGym/SoundMatch-v0``, ``AEGym/SoundMatchLive-v0`` and
``AEGym/SchedulerGains-v0``; create them with ``gymnasium.make``.
"""

from aegym.envs import list_envs, register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "list_envs", "register_envs"]
