"""ADSR envelopes, differentiable in attack, decay and release times and sustain level.

Linear segments, so segment times are exact: the level rises 0 -> 1 over ``attack_s``,
falls 1 -> ``sustain`` over ``decay_s``, holds until note-off, then falls from its
note-off level to 0 over ``release_s``::

    on(t)  = min(t/A, 1)                              for t < A
           = 1 - (1 - S)·min((t - A)/D, 1)            for t >= A
    env(t) = on(t)                                    for t < t_off
           = on(t_off)·max(1 - (t - t_off)/R, 0)      for t >= t_off
"""

from __future__ import annotations

import torch


def adsr(
    times_s: torch.Tensor,
    attack_s: torch.Tensor,
    decay_s: torch.Tensor,
    sustain: torch.Tensor,
    release_s: torch.Tensor,
    note_off_s: float,
) -> torch.Tensor:
    """Evaluate the ADSR at ``times_s`` (``[T]`` or ``[B, T]``) for ``[B]`` knobs -> ``[B, T]``."""
    t = times_s if times_s.ndim == 2 else times_s[None]
    a, d, s, r = (v[:, None] for v in (attack_s, decay_s, sustain, release_s))

    def held(tt: torch.Tensor) -> torch.Tensor:
        rise = (tt / a).clamp(0.0, 1.0)
        fall = ((tt - a) / d).clamp(0.0, 1.0)
        return torch.where(tt < a, rise, 1.0 - (1.0 - s) * fall)

    off_level = held(torch.full_like(a, note_off_s))
    release = off_level * (1.0 - (t - note_off_s) / r).clamp(0.0, 1.0)
    return torch.where(t < note_off_s, held(t), release)
