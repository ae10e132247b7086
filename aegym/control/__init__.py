"""The AE controller: config, the batched law, the batched plant and the optimizer.

* :mod:`aegym.control.config` — :class:`AEConfig`, every constant, validated.
* :mod:`aegym.control.law` — the adaptive law as pure functions on ``[B]`` tensors and
  the batched controller state :class:`~aegym.control.law.LawState`.
* :mod:`aegym.control.plant` — Adam(β1 = μ)/EMA-momentum step, shaped dither and local
  tests on ``θ [B, D]`` with per-row gains.
* :mod:`aegym.control.noise` — counter-based per-row Gaussian noise.
* :mod:`aegym.control.controller` — the scalar law (:class:`AEController`, B = 1).
* :mod:`aegym.control.optimizer` — :class:`AEOptimizer` on top of the law and the plant.
"""

from aegym.control.config import AEConfig, UpdateRule
from aegym.control.controller import AEController, Gains
from aegym.control.law import AESignals, LawState
from aegym.control.optimizer import AEOptimizer, AEStepLog
from aegym.control.plant import PlantState, PlantStep, ProbeResult

__all__ = [
    "AEConfig",
    "AEController",
    "AEOptimizer",
    "AESignals",
    "AEStepLog",
    "Gains",
    "LawState",
    "PlantState",
    "PlantStep",
    "ProbeResult",
    "UpdateRule",
]
