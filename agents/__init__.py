"""Agents for aegym: baselines as policies, SB3 training, shaped PPO, evaluation.

Layering goes one way: ``agents`` uses ``aegym``, never the reverse; inside ``agents``,
:mod:`agents.common` (episode running, statistics, the algorithm registry, env and
run-folder helpers) is below everything else, and no import cycle exists, not even
through imports inside functions (``tests/test_agents_imports.py``).

* Baselines with SB3's ``predict``: :class:`AEBaseline`, :class:`RandomBaseline`,
  :class:`StaticBaseline`, :class:`AdamBaseline` (:func:`make_baseline` by name).
* :class:`ShapedPPO` — PPO with per-term advantages, potential shaping and a KL pull
  toward a reference policy (:class:`ShapingConfig`).
* Commands (``python -m agents train|evaluate|bench|tune-adam|sweep``) as functions:
  :func:`train`, :func:`evaluate`, :func:`bench`, :func:`sweep` (a leaderboard grid as
  Ray tasks, :class:`SweepGrid`; Ray is optional: ``pip install -e ".[ray]"``).
* :func:`make_vec_env` — native batched vector env when available, else DummyVecEnv.
* :data:`ALGOS` — the algorithm registry (name -> :class:`agents.common.registry.AlgoSpec`);
  :func:`algo_class` loads a saved model: ``algo_class("ppo").load(path)``.
"""

from agents.baselines import (
    BASELINE_NAMES,
    AdamBaseline,
    AEBaseline,
    RandomBaseline,
    StaticBaseline,
    make_baseline,
    tune_adam_lr,
)
from agents.common.envs import ENV_IDS, make_env, make_vec_env
from agents.common.registry import ALGOS, algo_class
from agents.evaluate import EvalArgs, EvalResult, evaluate
from agents.hyperparams import HYPERPARAMS, get_settings
from agents.report import format_comparisons, format_table
from agents.shaped_ppo import ShapedPPO, ShapingConfig
from agents.sweep import AgentSpec, SweepGrid, SweepResult, load_grid, sweep
from agents.train import TrainArgs, TrainResult, train

_LAZY = {"BenchArgs", "BenchResult", "bench"}


def __getattr__(name: str) -> object:
    # agents.main is imported lazily so `python -m agents.main` runs it fresh.
    if name in _LAZY:
        from agents import main

        return getattr(main, name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


__all__ = [
    "ALGOS",
    "BASELINE_NAMES",
    "ENV_IDS",
    "HYPERPARAMS",
    "AEBaseline",
    "AdamBaseline",
    "AgentSpec",
    "BenchArgs",
    "BenchResult",
    "EvalArgs",
    "EvalResult",
    "RandomBaseline",
    "ShapedPPO",
    "ShapingConfig",
    "StaticBaseline",
    "SweepGrid",
    "SweepResult",
    "TrainArgs",
    "TrainResult",
    "algo_class",
    "bench",
    "evaluate",
    "format_comparisons",
    "format_table",
    "get_settings",
    "load_grid",
    "make_baseline",
    "make_env",
    "make_vec_env",
    "sweep",
    "train",
    "tune_adam_lr",
]
