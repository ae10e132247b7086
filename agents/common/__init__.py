"""What every part of ``agents`` shares, below all of it (as SB3's ``common/``).

* :mod:`agents.common.registry` — the one algorithm registry (name -> SB3 class).
* :mod:`agents.common.envs` — env ids and families, env construction.
* :mod:`agents.common.callbacks`, :mod:`agents.common.cli`,
  :mod:`agents.common.type_aliases`.

Modules here import aegym, Stable-Baselines3 and gymnasium, never the rest of
``agents``.
"""
