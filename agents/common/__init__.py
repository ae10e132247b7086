"""What every part of ``agents`` shares, below all of it (as SB3's ``common/``).

* :mod:`agents.common.registry` — the one algorithm registry (name -> SB3 class).
* :mod:`agents.common.envs` — env ids and families, env construction, env settings read
  from the created env's config.
* :mod:`agents.common.episodes` — evaluation episodes: specs, seeds, running them.
* :mod:`agents.common.statistics` — means and confidence intervals.
* :mod:`agents.common.runs` — reading run folders and saved models.
* :mod:`agents.common.callbacks`, :mod:`agents.common.cli`,
  :mod:`agents.common.type_aliases`.

Modules here import aegym, Stable-Baselines3 and gymnasium, never the rest of
``agents`` (``tests/test_agents_imports.py`` checks it).
"""
