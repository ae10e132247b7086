"""aegym: Gymnasium environments for synthesizer control.

``import aegym`` registers ``AEGym/SoundMatch-Easy-v1``, ``-Medium-v1``, ``-Full-v1``,
``AEGym/SoundMatchLive-v1`` and ``AEGym/SchedulerGains-v1`` (each with a native vector
entry point; ``aegym list`` prints them); create them with
``gymnasium.make`` / ``gymnasium.make_vec``. The building blocks are importable too:

* :mod:`aegym.synth` — the differentiable synth (``Voice``, ``SynthConfig``, ``Patch``)
* :mod:`aegym.features`, :mod:`aegym.losses` — feature encoder and spectral distance
* :mod:`aegym.reward` — the composite reward ``R`` (aligned: improvement, bonus, costs)
* :mod:`aegym.calibration` — success thresholds from an acceptable knob error
* :mod:`aegym.analysis` — pitch, level and attack of a recording (starting knobs)
* :mod:`aegym.control` — the AE controller: config, batched law and plant, ``AEOptimizer``
* :mod:`aegym.fit` — ``fit_patch``, sound matching with the AE optimizer
* :mod:`aegym.targets`, :mod:`aegym.audio_io` — target sets and WAV I/O
* :mod:`aegym.vector` — native vector envs and the Stable-Baselines3 adapter
"""

from aegym.audio_io import load_audio, read_wav, write_wav
from aegym.control import AEConfig, AEController, AEOptimizer
from aegym.envs import list_envs, register_envs
from aegym.features import FeatureConfig, FeatureEncoder, spectral_distance
from aegym.fit import fit_patch
from aegym.reward import CompositeReward, RewardConfig
from aegym.synth import KnobSpace, Patch, SynthConfig, Voice
from aegym.targets import make_target_set, resolve_targets

__version__ = "0.1.0"

register_envs()

__all__ = [
    "AEConfig",
    "AEController",
    "AEOptimizer",
    "CompositeReward",
    "FeatureConfig",
    "FeatureEncoder",
    "KnobSpace",
    "Patch",
    "RewardConfig",
    "SynthConfig",
    "Voice",
    "__version__",
    "fit_patch",
    "list_envs",
    "load_audio",
    "make_target_set",
    "read_wav",
    "register_envs",
    "resolve_targets",
    "spectral_distance",
    "write_wav",
]
