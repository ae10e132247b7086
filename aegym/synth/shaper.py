"""Waveshaper: drive-controlled soft clipping with level compensation."""

from __future__ import annotations

import torch


def soft_clip(x: torch.Tensor, drive_db: torch.Tensor) -> torch.Tensor:
    """``y = tanh(g·x) / tanh(g)``, ``g = 10^(drive_db/20)``; ``drive_db [B]``, ``x [B, T]``.

    Dividing by ``tanh(g)`` keeps a full-scale input at full scale whatever the drive,
    so more drive adds harmonics rather than loudness.
    """
    g = torch.pow(10.0, drive_db / 20.0)[:, None]
    return torch.tanh(g * x) / torch.tanh(g)
