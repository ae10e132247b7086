"""Success thresholds from a stated criterion: the distance of an acceptable knob error.

A success rate means something only if its threshold does. aegym's criterion: *a match
is a success when it sounds as close to the target as a render whose every free knob is
off by an error a listener would accept* (:data:`ACCEPTABLE_KNOB_ERROR`, one tolerance
per knob in physical units: 10 cents of pitch, 1 dB of level or drive, 1/6 octave of
cutoff, 0.15 octave of an envelope time, 3 % of a mix or shape).

:func:`calibrate_success_distance` measures it on in-domain targets of the train set
(their true knobs are known): each target's free knobs are moved by exactly their
tolerance, each in a random direction (``n_signs`` draws per target; inward at a range
edge), the distance of that render to the target is taken, and the threshold is the
``quantile`` (median by default) of those distances. The fixed knobs stay at the
truth, as in the envs. Every registered tier stores its threshold; ``tests/
test_calibration.py`` recomputes them, and ``python scripts/calibrate_success.py``
prints the table in the README.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from aegym._checks import check_int, check_range
from aegym.features import FeatureConfig, FeatureEncoder, spectral_distance
from aegym.synth import SynthConfig, Voice

__all__ = [
    "ACCEPTABLE_KNOB_ERROR",
    "SUCCESS_DISTANCE",
    "Calibration",
    "calibrate_success_distance",
    "perturb_knobs",
]

#: The error of each knob a listener would accept: physical units for linear knobs,
#: octaves for log-scale knobs (cutoff, envelope times).
ACCEPTABLE_KNOB_ERROR: Mapping[str, float] = MappingProxyType(
    {
        "pitch_midi": 0.1,  # semitones: 10 cents, near the pitch JND of complex tones
        "osc1_shape": 0.03,
        "osc2_shape": 0.03,
        "osc2_detune_cents": 3.0,
        "osc_mix": 0.03,
        "pulse_width": 0.03,
        "noise_level": 0.03,
        "drive_db": 1.0,
        "cutoff_hz": 1.0 / 6.0,  # octaves
        "resonance": 0.03,
        "filter_env_octaves": 0.2,
        "filter_attack_s": 0.15,  # octaves (≈ 11 %)
        "filter_decay_s": 0.15,
        "filter_sustain": 0.03,
        "filter_release_s": 0.15,
        "amp_attack_s": 0.15,
        "amp_decay_s": 0.15,
        "amp_sustain": 0.03,
        "amp_release_s": 0.15,
        "gain_db": 1.0,  # dB, about the level JND
    }
)


#: Calibrated success distances of the registered tiers, by free-knob preset
#: (``python scripts/calibrate_success.py``; tests/test_calibration.py recomputes them):
#: the median distance of a render whose every free knob is off by its acceptable error,
#: on the train set's in-domain targets (target sets v1).
SUCCESS_DISTANCE: Mapping[str, float] = MappingProxyType(
    {"easy": 0.54, "medium": 0.65, "all": 0.79, "live_easy": 0.56}
)


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_success_distance`.

    :param threshold: the ``quantile`` of the distances: the success distance.
    :param quantiles: distance at the 10/25/50/75/90 % quantiles.
    :param free_knobs: the knobs perturbed.
    :param n_targets: in-domain targets used.
    :param n_renders: renders measured (targets × sign draws).
    :param quantile: which quantile is the threshold.
    :param duration_s: render length.
    :param sample_rate: audio rate.
    """

    threshold: float
    quantiles: dict[str, float]
    free_knobs: tuple[str, ...]
    n_targets: int
    n_renders: int
    quantile: float
    duration_s: float
    sample_rate: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def perturb_knobs(
    unit_knobs: torch.Tensor, free_idx: Sequence[int], signs: torch.Tensor, voice: Voice
) -> torch.Tensor:
    """Move knobs ``[N, K]`` (normalized) at ``free_idx`` by their acceptable error in
    the directions ``signs [N, F]`` (±1); a move that would leave the range goes the
    other way. Returns normalized knobs ``[N, K]``."""
    space = voice.knob_space
    out = unit_knobs.clone()
    for j, k in enumerate(free_idx):
        spec = space[k]
        tol = ACCEPTABLE_KNOB_ERROR[spec.name]
        if spec.scale == "log":
            step = tol / math.log2(spec.maximum / spec.minimum)  # octaves -> unit
        else:
            step = tol / (spec.maximum - spec.minimum)
        u = unit_knobs[:, k]
        s = signs[:, j]
        s = torch.where((u + s * step > 1.0) | (u + s * step < 0.0), -s, s)
        out[:, k] = (u + s * step).clamp(0.0, 1.0)
    return out


@torch.no_grad()
def calibrate_success_distance(
    free_knobs: Sequence[str],
    *,
    sample_rate: int = 16_000,
    duration_s: float = 0.5,
    target: str = "train",
    n_signs: int = 8,
    quantile: float = 0.5,
    seed: int = 0,
    batch: int = 256,
) -> Calibration:
    """The success distance of a tier under the acceptable-error criterion (see the
    module docstring).

    :param free_knobs: the tier's free knobs (names, or a preset via
        :func:`aegym.envs._common.resolve_free_knobs`).
    :param target: named set whose in-domain targets are used (``"train"``: never
        calibrate on the test set).
    :param n_signs: random sign patterns per target.
    :param quantile: the quantile of the distances taken as the threshold, in (0, 1).
    :param seed: seed of the sign draws.
    :param batch: renders per call.
    """
    from aegym.envs._common import resolve_free_knobs
    from aegym.targets import make_target_set

    check_int("n_signs", n_signs, 1)
    check_int("batch", batch, 1)
    check_range("quantile", quantile, 1e-6, 1 - 1e-6)
    voice = Voice(SynthConfig(sample_rate, duration_s=duration_s))
    names = resolve_free_knobs(free_knobs, voice.knob_space)
    free_idx = voice.knob_space.indices(names)
    targets = make_target_set(target, sample_rate=sample_rate, duration_s=duration_s)
    targets = targets.subset("in_domain")
    encoder = FeatureEncoder(FeatureConfig(sample_rate=sample_rate))
    knobs = targets.knobs_batch().repeat_interleave(n_signs, 0)
    audio = targets.audio_batch().repeat_interleave(n_signs, 0)
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (knobs.shape[0], len(free_idx)), generator=gen) * 2.0 - 1.0
    perturbed = perturb_knobs(knobs, free_idx, signs, voice)
    dists = []
    for i in range(0, knobs.shape[0], batch):
        feats = encoder(voice(perturbed[i : i + batch]))
        dists.append(spectral_distance(feats, encoder(audio[i : i + batch])))
    d = torch.cat(dists).double().numpy()
    qs = {f"q{int(q * 100)}": float(np.quantile(d, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
    return Calibration(
        threshold=float(np.quantile(d, quantile)),
        quantiles=qs,
        free_knobs=tuple(names),
        n_targets=len(targets),
        n_renders=int(d.size),
        quantile=quantile,
        duration_s=duration_s,
        sample_rate=sample_rate,
    )
