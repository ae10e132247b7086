"""Counter-based Gaussian noise for batches of independent streams.

``normal(key, counter, shape)`` gives row b a draw that depends only on
``(key[b], counter[b], stream)``: a batch of B episodes draws exactly what B separate
episodes would, in one call, without per-row ``torch.Generator`` objects (which
cannot be batched) and without a host sync. Bits come from the splitmix64 sequence
(wrapping int64 arithmetic, the same on every device), Gaussians from Box–Muller.
"""

from __future__ import annotations

import math

import torch

# splitmix64 constants as signed int64.
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB
# Counter values are spaced so that streams 0.._STREAMS-1 of one key never meet.
_STREAMS = 1 << 20


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (``>>`` on int64 tensors is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finalizer: a bijection of 64-bit words that scrambles every bit."""
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def normal(
    key: torch.Tensor,
    counter: torch.Tensor,
    shape: tuple[int, ...],
    *,
    stream: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise ``[B, *shape]``, row b a function of ``(key[b], counter[b])``.

    :param key: ``[B]`` int64 seed of each row's stream.
    :param counter: ``[B]`` int64 draw index (advance it between draws).
    :param shape: shape of one row's draw.
    :param stream: separates draws that share a key and counter (e.g. dither, probes),
        in [0, 2**20).
    :param dtype: floating dtype of the result (computed in float64).
    """
    if not 0 <= stream < _STREAMS:
        raise ValueError(f"stream must be in [0, {_STREAMS}), got {stream!r}")
    n = math.prod(shape)
    # Row b's stream starts at a scrambled (key, counter, stream) and walks splitmix64's
    # Weyl sequence; each element takes two words (Box–Muller).
    start = _mix(key.long() + (counter.long() * _STREAMS + stream) * _GOLDEN)
    steps = torch.arange(1, 2 * n + 1, device=key.device, dtype=torch.long) * _GOLDEN
    bits = _mix(start[:, None] + steps)
    # 53 random bits -> uniform in (0, 1), never 0 (log) or 1.
    u = (_shr(bits, 11).to(torch.float64) + 0.5) * 2.0**-53
    radius = torch.sqrt(-2.0 * torch.log(u[:, 0::2]))
    out = radius * torch.cos((2.0 * math.pi) * u[:, 1::2])
    return out.to(dtype).reshape(key.shape[0], *shape)


__all__ = ["normal"]
