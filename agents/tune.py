"""``python -m agents tune-adam``: pick the Adam baseline's constant learning rate.

Runs :func:`agents.baselines.tune_adam_lr` on SchedulerGains' *train* targets and
prints the mean final distance per multiplier and the winner (copy it into
``agents/hyperparams/__init__.py``: ``ADAM_LR_MULTIPLIER`` and ``ADAM_TUNING_RESULT``).
With a knob env (``--env-id AEGym/SoundMatch-Easy-v1``) it runs
:func:`agents.baselines.tune_adam_knob_lr` over ``--lrs`` instead (``ADAM_KNOB_LR``,
``ADAM_KNOB_TUNING_RESULT``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.baselines import tune_adam_knob_lr, tune_adam_lr
from agents.common.cli import parse_args
from agents.common.envs import env_family
from agents.hyperparams import ADAM_KNOB_LR_GRID, ADAM_LR_GRID


@dataclass
class TuneArgs:
    """Pick the Adam baseline's constant learning rate on an env's train targets."""

    env_id: str = "AEGym/SchedulerGains-v1"
    """env to tune on: SchedulerGains (multipliers of α0) or a knob env (--lrs)"""
    multipliers: list[float] = field(default_factory=lambda: list(ADAM_LR_GRID))
    """SchedulerGains: candidate learning rates in units of α0"""
    lrs: list[float] = field(default_factory=lambda: list(ADAM_KNOB_LR_GRID))
    """knob envs: candidate step sizes in normalized knob units"""
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
    if env_family(args.env_id) == "knob":
        if any(not lr > 0 for lr in args.lrs):
            print(f"error: lrs must be > 0, got {args.lrs}")
            return 2
        knob = tune_adam_knob_lr(
            args.lrs, args.env_id, args.n_targets, args.seeds, args.native_vec, **args.env_kwargs
        )
        out = {
            "env_id": args.env_id,
            "best": knob.best,
            "mean_final_distance": knob.mean_final_distance,
            "success_rate": knob.success_rate,
            "n_episodes": knob.n_episodes,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(out, indent=2))
        return 0
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
