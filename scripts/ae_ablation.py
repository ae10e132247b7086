"""The AE controller on a knob env's *test* targets: default vs tuned constants and the
ablations at the tuned setting (:func:`agents.tune.ae_ablations`), with plain Adam at its
tuned rate for reference. Every variant plays the same episodes (targets spread evenly
over the test set × seeds); the tuned constants come from ``agents/hyperparams/ae_law.json``
(``python -m agents tune-ae --write``).

    python scripts/ae_ablation.py --env-id AEGym/SoundMatch-Easy-v1 --n-targets 24 \\
        --json ae_ablation.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from aegym.audio_io import atomic_write_bytes
from aegym.control.config import AEConfig
from agents.baselines import AdamKnobBaseline, AEBaseline, EpisodeSet
from agents.common.statistics import compare
from agents.hyperparams import AE_ALPHA0, ae_law_settings
from agents.tune import ae_ablations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env-id", default="AEGym/SoundMatch-Easy-v1")
    p.add_argument("--n-targets", type=int, default=24)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--duration-s", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kwargs = {} if args.duration_s is None else {"duration_s": args.duration_s}
    tuned = ae_law_settings("sound_match")
    alpha0 = tuned.alpha0 or AE_ALPHA0
    variants = {"default constants": (AEConfig(), AE_ALPHA0, True)}
    for name, (cfg, adapt) in ae_ablations(tuned.config).items():
        variants[f"tuned {name}"] = (cfg, alpha0, adapt)
    out: dict = {"env_id": args.env_id, "tuned": tuned.search is not None, "variants": {}}
    t0 = time.perf_counter()
    with EpisodeSet(args.env_id, args.n_targets, args.seeds, target_set="test", **kwargs) as ep:
        runs = {
            name: (lambda v, c=cfg, a=a0, ad=adapt: AEBaseline(v, alpha0=a, config=c, adapt=ad))
            for name, (cfg, a0, adapt) in variants.items()
        }
        runs["adam (tuned lr)"] = lambda v: AdamKnobBaseline(v)
        for name, make in runs.items():
            res = ep.score(make)
            dist = [e.final_distance for e in ep.episodes]
            renders = [e.spend.get("renders", 0) for e in ep.episodes]
            out["variants"][name] = {
                "mean_final_distance": res.mean_final_distance,
                "median_final_distance": float(np.median(dist)),
                "success": res.success_rate,
                "renders_per_episode": float(np.mean(renders)),
                "final_distance": dist,
            }
            print(
                f"{name:32s} mean {res.mean_final_distance:.3f} median {np.median(dist):.3f} "
                f"success {res.success_rate:.1%} renders/ep {np.mean(renders):.0f}",
                flush=True,
            )
        out["episodes"] = len(ep.specs)
    targets = [spec.target_index for spec in ep.specs]
    full = out["variants"]["tuned full"]["final_distance"]
    print(
        "\n| variant | mean final distance | success | renders/episode "
        "| Δ vs tuned full [95 % CI] | verdict |"
    )
    print("|---|---|---|---|---|---|")
    for name, v in out["variants"].items():
        # paired on the same episodes, CI resampling targets (lower distance is better)
        c = compare(v["final_distance"], full, targets, "final_distance", higher_is_better=False)
        v["vs_tuned_full"] = asdict(c)
        print(
            f"| {name} | {v['mean_final_distance']:.3f} | {v['success']:.1%} | "
            f"{v['renders_per_episode']:.0f} | {c.diff:+.3f} [{c.diff_low:+.3f}, "
            f"{c.diff_high:+.3f}] | {c.verdict} |"
        )
    out["wall_s"] = time.perf_counter() - t0
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(out, indent=2).encode())


if __name__ == "__main__":
    main()
