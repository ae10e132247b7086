"""Compatibility names for the AE controller (its code lives in :mod:`aegym.control`).

``from aegym.controller import AEConfig, AEOptimizer, fit_patch, ...`` keeps working:

* :mod:`aegym.control.config` — :class:`AEConfig`;
* :mod:`aegym.control.controller` — :class:`AEController` and the scalar law
  (:func:`ema`, :func:`window_variance`, :func:`alpha_factor`, :func:`cosine_envelope`,
  :func:`next_alpha`, :func:`next_momentum`, :func:`next_plateau_count`,
  :func:`success_factor`, :func:`next_sigma`), thin calls of the batched
  :mod:`aegym.control.law`;
* :mod:`aegym.control.optimizer` — :class:`AEOptimizer`, :class:`AEStepLog`;
* :mod:`aegym.fit` — :func:`fit_patch`, :class:`FitResult`.
"""

from aegym.control.config import AEConfig
from aegym.control.controller import (
    AEController,
    AESignals,
    Gains,
    alpha_factor,
    cosine_envelope,
    ema,
    next_alpha,
    next_momentum,
    next_plateau_count,
    next_sigma,
    success_factor,
    window_variance,
)
from aegym.control.optimizer import AEOptimizer, AEStepLog
from aegym.fit import FitResult, fit_patch

__all__ = [
    "AEConfig",
    "AEController",
    "AEOptimizer",
    "AESignals",
    "AEStepLog",
    "FitResult",
    "Gains",
    "alpha_factor",
    "cosine_envelope",
    "ema",
    "fit_patch",
    "next_alpha",
    "next_momentum",
    "next_plateau_count",
    "next_sigma",
    "success_factor",
    "window_variance",
]
