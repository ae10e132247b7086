"""Shaped-PPO ablation: what each of its parts adds, over several training seeds.

Variants (each one adds a part to the one before it; every other setting is the env's
shaped-PPO entry in :data:`agents.hyperparams.HYPERPARAMS`):

- ``ppo``: SB3 PPO on the total reward (the same network, rollouts and optimizer);
- ``per_term``: per-term advantages on the env's own reward terms (normalized per term),
  no potential, no KL;
- ``potential``: + potential-based shaping on the env's distance;
- ``kl``: + the KL pull toward the reference policy (the full shaped PPO, the default).

Every (variant, seed) trains on the *train* targets (``python -m agents train``'s code,
run folders under ``OUT/runs``; a run whose ``model.zip`` exists is not trained again, so
an interrupted ablation resumes), then one ``evaluate`` plays every variant (its seeds
pooled, so the intervals cluster by target and training run) and the baselines on the
same test episodes and writes ``OUT/eval`` (results.json, report.html). Prints the
results table and the paired comparisons; ``--json`` writes both.

    python scripts/ablate_shaped_ppo.py --seeds 0 1 2 --total-timesteps 30000 \\
        --n-targets 32 --eval-seeds 0 1 --out bench/ablation --json ablation.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from agents.evaluate import EvalArgs, evaluate
from agents.report import format_comparisons, format_table
from agents.train import TrainArgs, train

#: Variant name -> (algorithm, shaped-PPO overrides).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ppo": ("ppo", {}),
    "per_term": ("shaped_ppo", {"potential_coef": 0.0, "kl_coef": 0.0}),
    "potential": ("shaped_ppo", {"kl_coef": 0.0}),
    "kl": ("shaped_ppo", {}),
}


def train_variant(
    variant: str, seed: int, args: argparse.Namespace, runs_dir: Path
) -> tuple[Path, float]:
    """Train one (variant, seed) unless its model exists; return its run folder and the
    training seconds (0 when it was already there)."""
    algo, shaping = VARIANTS[variant]
    name = f"{variant}__s{seed}"
    run_dir = runs_dir / name
    if (run_dir / "model.zip").exists():
        return run_dir, 0.0
    if run_dir.exists():  # an interrupted run: continue from its newest checkpoint
        result = train(
            TrainArgs(resume=str(run_dir), total_timesteps=args.total_timesteps, progress=False)
        )
    else:
        result = train(
            TrainArgs(
                env_id=args.env_id,
                algo=algo,
                total_timesteps=args.total_timesteps,
                seed=seed,
                output_dir=str(runs_dir),
                shaping=shaping,
                hyperparams=json.loads(args.hyperparams),
                checkpoint_every=args.checkpoint_every,
                progress=False,
                torch_threads=args.torch_threads,
                run_name=name,
            )
        )
    return run_dir, result.wall_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env-id", default="AEGym/SoundMatch-Easy-v1")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--total-timesteps", type=int, default=30_000)
    p.add_argument("--checkpoint-every", type=int, default=10_000)
    p.add_argument(
        "--hyperparams",
        default="{}",
        help="SB3 overrides for every variant as a JSON object (e.g. tune-rl's best)",
    )
    p.add_argument("--baselines", nargs="*", default=["ae", "adam", "static"])
    p.add_argument("--n-targets", type=int, default=32, help="test targets, spread evenly")
    p.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--out", default="bench/ablation")
    p.add_argument("--json", default=None, help="write the tables and timings here")
    args = p.parse_args(argv)
    if len(args.seeds) < 1 or args.total_timesteps < 1:
        p.error("--seeds needs at least one seed and --total-timesteps must be >= 1")
    out = Path(args.out)
    runs_dir = out / "runs"
    t0 = time.perf_counter()
    pooled: dict[str, list[Path]] = {}
    train_s: dict[str, float] = {}
    for variant in args.variants:
        for seed in args.seeds:
            run_dir, wall = train_variant(variant, seed, args, runs_dir)
            pooled.setdefault(variant, []).append(run_dir)
            train_s[f"{variant}__s{seed}"] = round(wall, 1)
            print(f"trained {variant} seed {seed} ({wall:.0f} s)", flush=True)
    specs = [",".join(str(r) for r in pooled[v]) for v in args.variants]
    result = evaluate(
        EvalArgs(
            env_id=args.env_id,
            agents=[*specs, *args.baselines],
            target_set="test",
            n_targets=args.n_targets,
            seeds=args.eval_seeds,
            output_dir=str(out / "eval"),
            n_showcase=0,
            torch_threads=args.torch_threads,
        )
    )
    # Name the pooled agents by variant (evaluate labels them by algorithm and run folder).
    relabel = {a.label: v for a, v in zip(result.agents, args.variants, strict=False)}
    for agent in result.agents:
        agent.label = relabel.get(agent.label, agent.label)
    for comp in result.comparisons:
        comp["a"] = relabel.get(comp["a"], comp["a"])
        comp["b"] = relabel.get(comp["b"], comp["b"])
    table, comparisons = format_table(result), format_comparisons(result)
    wall = time.perf_counter() - t0
    print(
        f"\n{args.env_id}: {len(result.target_indices)} test targets x "
        f"{len(result.seeds)} seeds; {len(args.seeds)} training seeds x "
        f"{args.total_timesteps} steps per variant; {wall:.0f} s"
    )
    print(table)
    print()
    print(comparisons)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "train_s": train_s,
                    "wall_s": round(wall, 1),
                    "table": table,
                    "comparisons": comparisons,
                    "results": result.to_dict(),
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
