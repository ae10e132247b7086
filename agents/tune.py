"""``python -m agents tune-adam``: pick the Adam baseline's constant learning rate.

Runs :func:`agents.baselines.tune_adam_lr` on SchedulerGains' *train* targets and
prints the mean final distance per multiplier and the winner (copy it into
``agents/hyperparams.py``: ``ADAM_LR_MULTIPLIER`` and ``ADAM_TUNING_RESULT``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.baselines import tune_adam_lr
from agents.common.cli import parse_args
from agents.hyperparams import ADAM_LR_GRID


@dataclass
class TuneArgs:
    """Pick AdamBaseline's constant learning rate on SchedulerGains' train targets."""

    multipliers: list[float] = field(default_factory=lambda: list(ADAM_LR_GRID))
    """candidate learning rates in units of α0"""
    n_targets: int = 16
    """train targets, spread evenly over the set"""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """episode seeds"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """SchedulerGains keyword arguments as a JSON object"""
    native_vec: bool = True
    """use aegym's native batched vector env when available"""
    torch_threads: int = 1
    """torch intra-op threads"""


def main(argv: list[str] | None = None) -> int:
    """Run the tuning and print the results as JSON.

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(TuneArgs, argv, prog="python -m agents tune-adam")
    if any(not m > 0 for m in args.multipliers):
        print(f"error: multipliers must be > 0, got {args.multipliers}")
        return 2
    torch.set_num_threads(args.torch_threads)
    t0 = time.perf_counter()
    res = tune_adam_lr(
        args.multipliers, args.n_targets, args.seeds, args.native_vec, **args.env_kwargs
    )
    print(
        json.dumps(
            {
                "best": res.best,
                "mean_final_distance": res.mean_final_distance,
                "n_episodes": res.n_episodes,
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )
    return 0
