"""Gradient-preserving clamps for the synth's differentiable path."""

from __future__ import annotations

import torch


def straight_through_clamp(
    x: torch.Tensor, minimum: float | None = 0.0, maximum: float | None = 1.0
) -> torch.Tensor:
    """``x.clamp(minimum, maximum)`` in the forward pass, the identity in the backward pass.

    Forward values equal ``clamp`` exactly for finite ``x`` (``clamp(x) + 0``; a
    non-finite entry is clamped and gets no gradient). A plain clamp has gradient 0 on
    and beyond its bounds, so a knob sitting on the edge of its range never learns that
    moving inwards would help; here it gets its one-sided gradient at the bound (and,
    beyond it, the gradient of the bound value, pointing back into the range for a
    descent step that needs it).
    """
    clamped = x.detach().clamp(minimum, maximum)
    delta = x - x.detach()  # zero, carrying x's gradient
    return clamped + torch.where(torch.isfinite(x), delta, torch.zeros_like(delta))
