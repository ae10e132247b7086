"""The algorithm registry: every algorithm agents can train, evaluate and load.

One entry per name: the SB3 class, whether RL Baselines3 Zoo knows the name (so a Zoo
hyperparameter file can be generated for it) and, read from the class, whether it is
off-policy (replay buffer saved beside checkpoints). SB3's own algorithms are
registered here; algorithms defined elsewhere in agents register themselves when their
package is imported (:mod:`agents.shaped_ppo` does, and ``import agents`` imports it),
so this module stays below them — as gymnasium's registry is filled by the packages
that define envs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm


@dataclass(frozen=True)
class AlgoSpec:
    """One registered algorithm.

    :param name: its name in commands, configs and run folders (``"ppo"``).
    :param cls: the SB3 class.
    :param zoo: RL Baselines3 Zoo has an algorithm of this name
        (``rl_zoo3.utils.ALGOS``).
    """

    name: str
    cls: type[BaseAlgorithm]
    zoo: bool = False

    @property
    def off_policy(self) -> bool:
        """Whether the algorithm learns from a replay buffer (SAC)."""
        return issubclass(self.cls, OffPolicyAlgorithm)

    @property
    def type_name(self) -> str:
        """``module.Class`` of the SB3 class."""
        return f"{self.cls.__module__}.{self.cls.__qualname__}"


_SPECS: dict[str, AlgoSpec] = {}

#: Name -> :class:`AlgoSpec`, in registration order (a live, read-only view).
ALGOS: Mapping[str, AlgoSpec] = MappingProxyType(_SPECS)


def register_algo(name: str, cls: type[BaseAlgorithm], zoo: bool = False) -> AlgoSpec:
    """Add an algorithm (registering the same class again is a no-op).

    :param name: its name.
    :param cls: an SB3 algorithm class.
    :param zoo: RL Baselines3 Zoo knows the name.
    :raises ValueError: the name is taken by another class, or ``cls`` is no SB3
        algorithm.
    """
    if not (isinstance(cls, type) and issubclass(cls, BaseAlgorithm)):
        raise ValueError(f"algorithm {name!r} must be an SB3 BaseAlgorithm class, got {cls!r}")
    spec = AlgoSpec(name, cls, zoo)
    old = _SPECS.get(name)
    if old is not None and old != spec:
        raise ValueError(f"algorithm {name!r} is already registered as {old.type_name}")
    _SPECS[name] = spec
    return spec


def check_algo(algo: str) -> str:
    """Return ``algo`` if registered.

    :param algo: an algorithm name.
    :raises ValueError: unknown name, naming the allowed ones.
    """
    if algo not in _SPECS:
        raise ValueError(f"unknown algorithm {algo!r}; allowed: {', '.join(_SPECS)}")
    return algo


def get_algo(algo: str) -> AlgoSpec:
    """The registry entry of ``algo``.

    :param algo: an algorithm name.
    :raises ValueError: unknown name, naming the allowed ones.
    """
    return _SPECS[check_algo(algo)]


def algo_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class of ``algo`` (e.g. ``algo_class("ppo").load(path)``).

    :param algo: an algorithm name.
    :raises ValueError: unknown name, naming the allowed ones.
    """
    return get_algo(algo).cls


def is_off_policy(algo: str | None) -> bool:
    """Whether ``algo`` is a registered off-policy algorithm (False for None or unknown).

    :param algo: an algorithm name, or None.
    """
    spec = _SPECS.get(algo or "")
    return spec is not None and spec.off_policy


register_algo("ppo", PPO, zoo=True)
register_algo("sac", SAC, zoo=True)
register_algo("a2c", A2C, zoo=True)
