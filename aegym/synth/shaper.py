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


class _NoisyDrive(torch.autograd.Function):
    """``tanh(g · (x + level · noise))`` in one node: the voice's noise mix and shaper
    without the ``1 / tanh(g)`` of :func:`soft_clip` (the voice folds that into the
    filter's input gain, the filter being linear). All arguments broadcast against
    ``x``; ``level`` and ``g`` are per voice. Backward: with ``d = g (1 - y²)``,
    ``dx = grad·d``, ``dlevel = Σ dx·noise``, ``dg = Σ grad (1 - y²) u``."""

    @staticmethod
    def forward(ctx, x, noise, level, g):  # type: ignore[override]
        u = torch.addcmul(x, level, noise)
        y = torch.mul(u, g).tanh_()
        ctx.save_for_backward(u, y, noise, level, g)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        u, y, noise, level, g = ctx.saved_tensors
        slope = torch.mul(y, y).neg_().add_(1.0).mul_(grad)  # grad (1 - y²)

        def reduce_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            dims = [i for i, n in enumerate(like.shape) if n == 1 and t.shape[i] != 1]
            return t.sum(dims, keepdim=True) if dims else t

        grad_g = reduce_to(slope * u, g) if ctx.needs_input_grad[3] else None
        grad_x = slope.mul_(g)
        grad_level = reduce_to(grad_x * noise, level) if ctx.needs_input_grad[2] else None
        grad_noise = reduce_to(grad_x * level, noise) if ctx.needs_input_grad[1] else None
        return grad_x, grad_noise, grad_level, grad_g


def noisy_drive(
    x: torch.Tensor,
    noise: torch.Tensor,
    level: torch.Tensor,
    gain: torch.Tensor,
    overwrite: bool = False,
) -> torch.Tensor:
    """``tanh(gain · (x + level · noise))``: ``soft_clip(x + level·noise)`` times
    ``tanh(gain)`` (see :class:`_NoisyDrive`).

    ``overwrite=True`` lets it compute in ``x``'s memory and return ``x`` when no
    gradient is needed (same ops, same values): for a caller that owns ``x``.
    """
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (x, noise, level, gain))
    if (
        overwrite
        and not grads
        and x.shape == torch.broadcast_shapes(x.shape, noise.shape, level.shape, gain.shape)
    ):
        return x.addcmul_(level, noise).mul_(gain).tanh_()
    return _NoisyDrive.apply(x, noise, level, gain)
