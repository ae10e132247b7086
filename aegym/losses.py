"""Distance modules on audio: small ``nn.Module`` wrappers around the feature encoder."""

from __future__ import annotations

import torch
from torch import nn

from aegym.features import FeatureConfig, FeatureEncoder, Features, spectral_distance


class MultiResolutionSpectralDistance(nn.Module):
    """Multi-resolution log-mel L1 + spectral convergence between two sounds.

    ``d(x, y) = (1/R) Σ_r [ mean|log S_r(x) - log S_r(y)| + ‖√S_r(y) - √S_r(x)‖ / ‖√S_r(y)‖ ]``

    Shape: ``forward(input [B, T], target [B, T] or [1, T]) -> [B]``. The target's
    features can be encoded once with :meth:`encode` and passed to
    :meth:`from_features` to avoid recomputing them every step.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.encoder = FeatureEncoder(config)

    def encode(self, audio: torch.Tensor) -> Features:
        return self.encoder(audio)

    def from_features(self, input_audio: torch.Tensor, target: Features) -> torch.Tensor:
        return spectral_distance(self.encoder(input_audio), target)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape[-1] != target.shape[-1]:
            raise ValueError(
                f"input and target lengths differ: {input.shape[-1]} vs {target.shape[-1]}"
            )
        return spectral_distance(self.encoder(input), self.encoder(target))
