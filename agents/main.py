"""The one-command benchmark: train a small agent, evaluate it against the baselines.

``python -m agents.main`` (or ``aegym-bench``) trains the default agent on the default
env, evaluates it with the AE baseline and the other baselines on a subset of the test
targets (the same episodes for every agent), prints the tier's table in the leaderboard's
format (:func:`agents.leaderboard.format_tier_table`: budgets, privileged access,
normalized-score IQM, success with exact CIs, final distance), the computed "who wins"
sentence and the paired comparisons, and writes the report (``report.html`` with the
table, plots and audio). Sized for a 2-core CPU: the
defaults (shaped PPO, 30k steps on SoundMatch-Easy-v1, 24 in-domain test targets × 2
seeds) took 3 min 30 s on one (training 178 s; the KL reference costs an AE gradient per
step); every size is an argument.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.common.cli import keep_freed_memory, parse_args
from agents.common.envs import check_env_id
from agents.common.registry import check_algo
from agents.evaluate import NORMALIZATION, EvalArgs, EvalResult, evaluate
from agents.leaderboard import summarize, tier_for
from agents.report import format_comparisons
from agents.train import TrainArgs, TrainResult, train


@dataclass
class BenchArgs:
    """Train a small agent and evaluate it against the AE baseline and the others."""

    env_id: str = "AEGym/SoundMatch-Easy-v1"
    """environment id"""
    algo: str = "shaped_ppo"
    """algorithm to train: ppo, sac, a2c or shaped_ppo"""
    total_timesteps: int = 30_000
    """training steps"""
    seed: int = 0
    """training seed"""
    baselines: list[str] = field(default_factory=lambda: ["ae", "adam", "static", "random"])
    """baselines to compare with (on in-domain tiers the oracle joins as the normalized
    score's reference)"""
    n_targets: int = 24
    """test targets, spread evenly over the env's part of the test set (Easy: 64 in-domain)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """evaluation seeds (each target once per seed)"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env keyword arguments as a JSON object (training and evaluation)"""
    output_dir: str = "bench"
    """folder for the training run (runs/) and the report (report/)"""
    checkpoint_every: int = 10_000
    """training steps between checkpoints"""
    n_showcase: int = 2
    """episodes rendered to spectrograms and audio"""
    native_vec: bool = True
    """use aegym's native batched vector env when available"""
    progress: bool = True
    """show a progress bar while training"""


@dataclass(frozen=True)
class BenchResult:
    """Outcome of :func:`bench`.

    :param train: the training run.
    :param evaluation: the evaluation.
    :param report: path of ``report.html``.
    :param wall_s: total seconds.
    """

    train: TrainResult
    evaluation: EvalResult
    report: Path
    wall_s: float


def bench(args: BenchArgs) -> BenchResult:
    """Train, evaluate against the baselines, write the report.

    :param args: the arguments.
    :raises ValueError: bad env id, algorithm or counts.
    """
    t0 = time.perf_counter()
    check_env_id(args.env_id)
    check_algo(args.algo)
    out = Path(args.output_dir)
    trained = train(
        TrainArgs(
            env_id=args.env_id,
            algo=args.algo,
            total_timesteps=args.total_timesteps,
            seed=args.seed,
            output_dir=str(out / "runs"),
            env_kwargs=args.env_kwargs,
            checkpoint_every=args.checkpoint_every,
            native_vec=args.native_vec,
            progress=args.progress,
        )
    )
    tier = tier_for(args.env_id, args.env_kwargs)
    evaluation = evaluate(
        EvalArgs(
            env_id=args.env_id,
            agents=[f"{args.algo}:{trained.model_path}", *args.baselines],
            target_set="test",
            n_targets=args.n_targets,
            seeds=args.seeds,
            env_kwargs=args.env_kwargs,
            output_dir=str(out / "report"),
            n_showcase=args.n_showcase,
            native_vec=args.native_vec,
            normalize=tier.in_domain and args.env_id in NORMALIZATION,
        )
    )
    report = out / "report" / "report.html"
    return BenchResult(trained, evaluation, report, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.main``: run the benchmark, print the table and wall time.

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(BenchArgs, argv, prog="python -m agents.main")
    keep_freed_memory()
    try:
        result = bench(args)
    except (ValueError, OSError) as err:  # OSError: an output folder that is a file, ...
        print(f"error: {err}")
        return 2
    ev = result.evaluation
    _, table, sentence = summarize(ev, args.env_kwargs)
    print()
    print(
        f"{ev.env_id}: {len(ev.target_indices)} test targets x {len(ev.seeds)} seeds; "
        f"{args.algo} trained {result.train.num_timesteps} steps in {result.train.wall_s:.0f}s"
    )
    print(table)
    print()
    print(sentence)
    if ev.comparisons:
        print()
        print(format_comparisons(ev))
    print(f"report: {result.report}")
    print(f"wall time: {result.wall_s:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
