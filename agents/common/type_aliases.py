"""Types shared across agents/ (one definition each)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class PredictPolicy(Protocol):
    """Anything with SB3's ``predict``: models, baselines, KL reference policies."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]: ...
