"""SchedulerGains-v1 headroom: how much better than the default gains can a scheduler do?

On the in-domain targets of the test set, from the same episode starts (the env's own
``draw_reset``, so episode ``e`` is ``env.reset(seed=seed + e)`` with target ``e``), it
measures the final distance of

(a) the default gains (every step ``[0, 0, 0, -1]``: α stays at the episode's α0_ep),
(b) the best single constant α of a grid ``α0·2^k`` (the same for every episode, the
    best mean),
(c) the best constant α per episode in hindsight (the grid's best per episode),
(b') the best single *reachable* schedule: ramp α toward ``α0·2^k`` at the env's top
    speed (×2 per step) from each episode's α0_ep, then hold (the same k for every
    episode) — (b) sets α before the first step, which no policy can,
(d) the AE law policy (:func:`aegym.envs.scheduler.ae_law_action`) with the env's
    default constants and the ablations of the law the ``ae`` baseline uses — the tuned
    one when ``python -m agents tune-ae`` has stored it in
    ``agents/hyperparams/ae_law.json``, else the defaults
    (:func:`agents.tune.ae_ablations`; the frozen law is row (a)).

Headroom = (a − c) / a. The grid runs batched through ``SchedulerCore`` (the env's
dynamics, :func:`aegym.envs.scheduler.run_constant_gains`). By default the success
termination is off so every episode runs the full horizon and "final distance" is the
distance after ``episode_steps``; ``hit`` is the share of episodes that got below the
calibrated success distance (where the env would terminate) and ``hit_step`` their mean
step. ``--terminate`` keeps the env's success termination (the distance at the end).

    python scripts/scheduler_headroom.py --episodes 16 --json scheduler_headroom.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from aegym.control.config import AEConfig
from aegym.envs.scheduler import (
    EpisodeResult,
    SchedulerConfig,
    SchedulerCore,
    ae_law_action,
    decode_observation,
    draw_starts,
    run_constant_gains,
    run_episodes,
)
from aegym.targets import resolve_targets
from agents.hyperparams import ae_law_settings
from agents.tune import ae_ablations


def ramp_action(obs: torch.Tensor, cfg: SchedulerConfig, alpha: float) -> np.ndarray:
    """Actions moving α toward ``alpha`` as fast as the env allows (×2 per step), then
    holding it; μ, σ held, no local tests."""
    now = decode_observation(obs, cfg).alpha
    act = np.zeros((now.shape[0], 4), dtype=np.float32)
    act[:, 0] = np.clip(np.log2(alpha / now.numpy()), -1.0, 1.0)
    act[:, 3] = -1.0
    return act


def summary(r: EpisodeResult) -> dict[str, float]:
    hit = r.hit_step >= 0
    return {
        "mean_distance": float(r.distance.mean()),
        "median_distance": float(r.distance.median()),
        "hit": float(hit.float().mean()),
        "hit_step": float(r.hit_step[hit].float().mean()) if hit.any() else float("nan"),
        "diverged": float(r.diverged.float().mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k-min", type=int, default=-6, help="grid α0·2^k from k-min")
    p.add_argument("--k-max", type=int, default=3, help="... to k-max")
    p.add_argument("--duration-s", type=float, default=0.5)
    p.add_argument("--episode-steps", type=int, default=20)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ramp-k-min", type=int, default=-3, help="ramps to α0·2^k from k")
    p.add_argument("--ramp-k-max", type=int, default=1, help="... to k")
    p.add_argument("--no-tuned", action="store_true", help="skip the law's ablation rows")
    p.add_argument("--terminate", action="store_true", help="keep the success termination")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg = SchedulerConfig(duration_s=args.duration_s, episode_steps=args.episode_steps)
    threshold = cfg.success_distance
    if not args.terminate:
        cfg = replace(cfg, success_distance=1e-9)
    targets = resolve_targets(
        "test", sample_rate=cfg.sample_rate, duration_s=cfg.duration_s, kinds=("in_domain",)
    )
    n = args.episodes
    law_core = SchedulerCore(cfg, targets, n)
    starts = draw_starts(
        law_core, [args.seed + e for e in range(n)], [e % len(targets) for e in range(n)]
    )
    ks = list(range(args.k_min, args.k_max + 1))
    grid = [cfg.alpha0 * 2.0**k for k in ks]
    t0 = time.perf_counter()
    ramp_ks = list(range(args.ramp_k_min, args.ramp_k_max + 1))
    law_variants = {"ae_law_default": cfg.law}
    tuned = ae_law_settings("scheduler")
    # Ablations of the law the ae baseline uses: the tuned one where stored, else the
    # defaults (whose "full" row is ae_law_default).
    in_use = "default" if tuned.search is None else "tuned"
    if not args.no_tuned:
        for name, (law_config, adapt) in ae_ablations(tuned.config).items():
            if adapt and not (in_use == "default" and name == "full"):  # frozen: row (a)
                law_variants[f"ae_law_{in_use}_{name}"] = law_config
    total = n * (len(grid) + 1 + len(ramp_ks) + len(law_variants))
    with tqdm(total=total, unit="episode") as bar:
        default = run_constant_gains(
            cfg, targets, starts, None, max_batch=args.max_batch, hit_distance=threshold
        )
        bar.update(n)
        const = run_constant_gains(
            cfg,
            targets,
            starts,
            grid,
            max_batch=args.max_batch,
            progress=bar,
            hit_distance=threshold,
        )

        def ramp_policy(k: int):
            def policy(obs: torch.Tensor) -> np.ndarray:
                return ramp_action(obs, cfg, cfg.alpha0 * 2.0**k)

            return policy

        ramps = {}
        for k in ramp_ks:
            ramps[k] = run_episodes(law_core, starts, ramp_policy(k), hit_distance=threshold)
            bar.update(n)

        def law_policy(law_config: AEConfig):
            def policy(obs: torch.Tensor) -> np.ndarray:
                return ae_law_action(obs.cpu().numpy(), cfg, law_config)

            return policy

        laws = {}
        for name, law_config in law_variants.items():
            laws[name] = run_episodes(
                law_core, starts, law_policy(law_config), hit_distance=threshold
            )
            bar.update(n)
        law_res = laws["ae_law_default"]
    wall = time.perf_counter() - t0

    d = const.distance  # [G, N]
    means = d.mean(1)
    best_k = int(means.argmin())
    per_ep = d.min(0)
    ramp_means = {k: float(r.distance.mean()) for k, r in ramps.items()}
    best_ramp = min(ramp_means, key=ramp_means.__getitem__)
    a = float(default.distance[0].mean())
    b = float(means[best_k])
    c = float(per_ep.values.mean())
    out = {
        "config": {
            "episodes": n,
            "seed": args.seed,
            "duration_s": cfg.duration_s,
            "episode_steps": cfg.episode_steps,
            "inner_steps": cfg.inner_steps,
            "alpha0": cfg.alpha0,
            "alpha0_range": list(cfg.alpha0_range),
            "success_distance": threshold,
            "terminate_on_success": args.terminate,
            "targets": "test (in_domain)",
        },
        "alpha0_ep": starts.alpha0_ep.tolist(),
        "default": summary(EpisodeResult(*(x[0] for x in default))),
        "grid": {
            f"2^{k}": {"alpha": alpha, **summary(EpisodeResult(*(x[i] for x in const)))}
            for i, (k, alpha) in enumerate(zip(ks, grid, strict=True))
        },
        "best_constant": {"k": ks[best_k], "alpha": grid[best_k], "mean_distance": b},
        "per_episode_best": {
            "mean_distance": c,
            "k": [ks[int(i)] for i in per_ep.indices],
        },
        "ae_law": summary(law_res),
        "laws": {name: summary(r) for name, r in laws.items()},
        "ramps": {f"2^{k}": summary(r) for k, r in ramps.items()},
        "best_ramp": {"k": best_ramp, "mean_distance": ramp_means[best_ramp]},
        "law_config_tuned": None if tuned.search is None else tuned.config.to_dict(),
        "headroom": (a - c) / a,
        "best_constant_gain": (a - b) / a,
        "per_episode_over_best_constant": (b - c) / a,
        "wall_s": wall,
    }
    print(f"(a) default gains        mean final distance {a:.3f}")
    print(
        f"(b) best constant α=α0·2^{ks[best_k]}  {b:.3f}  ({out['best_constant_gain']:+.1%} of a)"
    )
    print(f"(c) per-episode best α    {c:.3f}  headroom (a-c)/a = {out['headroom']:.1%}")
    print(
        f"(b') best ramp to α0·2^{best_ramp} then hold (reachable by actions) "
        f"{ramp_means[best_ramp]:.3f}"
    )
    for name, r in out["laws"].items():
        print(f"(d) {name:38s} {r['mean_distance']:.3f}  median {r['median_distance']:.3f}")
    print(f"wall {wall:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
