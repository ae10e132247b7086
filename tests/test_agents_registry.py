"""The one algorithm registry: names, classes, Zoo and off-policy flags, errors."""

from __future__ import annotations

import pytest
from stable_baselines3 import A2C, PPO, SAC

from agents.common.registry import (
    ALGOS,
    algo_class,
    check_algo,
    get_algo,
    is_off_policy,
    register_algo,
)
from agents.shaped_ppo import ShapedPPO


def test_registered_algorithms_in_order() -> None:
    assert tuple(ALGOS) == ("ppo", "sac", "a2c", "shaped_ppo")
    assert [ALGOS[a].cls for a in ALGOS] == [PPO, SAC, A2C, ShapedPPO]
    assert algo_class("shaped_ppo") is ShapedPPO
    assert get_algo("ppo").type_name == "stable_baselines3.ppo.ppo.PPO"


def test_zoo_and_off_policy_flags() -> None:
    assert [a for a, spec in ALGOS.items() if spec.zoo] == ["ppo", "sac", "a2c"]
    assert [a for a, spec in ALGOS.items() if spec.off_policy] == ["sac"]
    assert is_off_policy("sac") and not is_off_policy("shaped_ppo")
    assert not is_off_policy(None) and not is_off_policy("nope")


def test_errors_name_the_allowed_algorithms() -> None:
    with pytest.raises(
        ValueError, match=r"unknown algorithm 'dqn'; allowed: ppo, sac, a2c, shaped"
    ):
        check_algo("dqn")
    with pytest.raises(ValueError, match="unknown algorithm"):
        algo_class("dqn")
    with pytest.raises(ValueError, match=r"already registered as stable_baselines3\.ppo\.ppo\.PPO"):
        register_algo("ppo", SAC)
    with pytest.raises(ValueError, match="must be an SB3 BaseAlgorithm class"):
        register_algo("thing", dict)  # type: ignore[arg-type]
    assert register_algo("ppo", PPO, zoo=True) == ALGOS["ppo"]  # the same again: a no-op
    with pytest.raises(TypeError):
        ALGOS["x"] = ALGOS["ppo"]  # type: ignore[index]
    assert "thing" not in ALGOS
