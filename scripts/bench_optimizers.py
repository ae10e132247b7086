"""Sound-matching benchmark: the AE optimizer vs tuned Adam, SGD-momentum and ablations.

Every method runs through the same :func:`aegym.controller.fit_patch` loop (same loss,
windows, clamping, best-knob tracking, one target per run so each has its own law);
only the AE configuration differs:

* ``ae``              the full law (adaptive α/μ/σ, dither, local tests), Adam updates
* ``adam``            law frozen (u = d = 1, constant μ = β1 = 0.9), σ = 0, no tests
* ``sgd_momentum``    as ``adam`` with EMA-momentum SGD updates
* ``ae_no_dither``    ``ae`` with σ = 0
* ``ae_no_tests``     ``ae`` without local tests
* ``ae_no_var_damp``  ``ae`` with λ = 0 (no variance damping of α or σ)

Learning rates (α0 for the AE variants) are tuned per family on train-set targets,
then every method is scored on the test set. Seeded; prints a table; ``--json``.

    python scripts/bench_optimizers.py --json bench_optimizers.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from aegym.calibration import SUCCESS_DISTANCE
from aegym.controller import AEConfig, fit_patch
from aegym.envs._common import resolve_free_knobs
from aegym.synth import KnobSpace, SynthConfig, Voice
from aegym.targets import Target, make_target_set

FROZEN = dict(
    up=1.0,
    down=1.0,
    var_damping=0.0,
    momentum_step=0.0,
    momentum_decay=0.0,
    sigma_min=0.0,
    sigma0=0.0,
    n_probes=0,
)

METHODS: dict[str, tuple[str, AEConfig]] = {
    "ae": ("ae", AEConfig(update_rule="adam")),
    "adam": ("adam", AEConfig(update_rule="adam", **FROZEN)),
    "sgd_momentum": ("sgd", AEConfig(update_rule="sgd", **FROZEN)),
    "ae_no_dither": ("ae", AEConfig(update_rule="adam", sigma_min=0.0, sigma0=0.0)),
    "ae_no_tests": ("ae", AEConfig(update_rule="adam", n_probes=0)),
    "ae_no_var_damp": (
        "ae",
        AEConfig(update_rule="adam", var_damping=0.0, sigma_var_damping=0.0),
    ),
}


def initial_knobs(target: Target, free_idx: list[int], space: KnobSpace, seed: int) -> torch.Tensor:
    """Non-free knobs at the truth (in-domain) or defaults; free knobs seeded uniform."""
    base = target.unit_knobs.clone() if target.unit_knobs is not None else space.default_unit()
    gen = torch.Generator().manual_seed(seed)
    base[free_idx] = torch.rand(len(free_idx), generator=gen)
    return base


def run_method(
    config: AEConfig,
    lr: float,
    targets: list[Target],
    voice: Voice,
    free: tuple[str, ...],
    steps: int,
    success_distance: float,
    progress: Callable[[], None] | None = None,
) -> list[dict]:
    space = voice.knob_space
    free_idx = space.indices(free)
    rows = []
    for i, t in enumerate(targets):
        init = initial_knobs(t, free_idx, space, seed=1000 + i)
        start = time.perf_counter()
        res = fit_patch(
            t.audio, voice, steps=steps, lr=lr, init_unit=init, free_knobs=free, config=config
        )
        wall = time.perf_counter() - start
        losses = res.item_losses[:, 0]
        below = torch.nonzero(losses < success_distance).flatten()
        row = {
            "target": t.name,
            "kind": t.kind,
            "initial": float(res.initial_loss[0]),
            "distance": float(res.best_loss[0]),
            "success": bool(res.best_loss[0] < success_distance),
            "steps_to_threshold": int(below[0]) + 1 if below.numel() else None,
            "divergences": sum(1 for s in res.log if s.diverged),
            "wall_s": wall,
        }
        if t.unit_knobs is not None:
            row["knob_error"] = float((res.unit[0, free_idx] - t.unit_knobs[free_idx]).abs().mean())
        rows.append(row)
        if progress:
            progress()
    return rows


def summarize(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    d = sorted(r["distance"] for r in rows)
    q = statistics.quantiles(d, n=4) if len(d) > 1 else [d[0]] * 3
    steps = [r["steps_to_threshold"] for r in rows if r["steps_to_threshold"] is not None]
    knob = [r["knob_error"] for r in rows if "knob_error" in r]
    return {
        "n": len(rows),
        "median_distance": statistics.median(d),
        "iqr": [q[0], q[2]],
        "success_rate": sum(r["success"] for r in rows) / len(rows),
        "halved_rate": sum(r["distance"] <= 0.5 * r["initial"] for r in rows) / len(rows),
        "median_relative": statistics.median(r["distance"] / r["initial"] for r in rows),
        "median_steps_to_threshold": statistics.median(steps) if steps else None,
        "divergences": sum(r["divergences"] for r in rows),
        "knob_error": statistics.mean(knob) if knob else None,
        "wall_s": sum(r["wall_s"] for r in rows),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per target")
    parser.add_argument("--duration-s", type=float, default=0.5)
    parser.add_argument("--free-knobs", default="medium")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--tune-targets", type=int, default=12, help="train targets for tuning")
    parser.add_argument("--limit", type=int, default=None, help="use only N test targets")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    free = resolve_free_knobs(args.free_knobs, KnobSpace())
    # The calibrated threshold of the preset's tier (custom knob lists: the Full tier's).
    success_distance = SUCCESS_DISTANCE.get(args.free_knobs, SUCCESS_DISTANCE["all"])
    voice = Voice(SynthConfig(duration_s=args.duration_s))
    test = list(make_target_set("test", duration_s=args.duration_s))[: args.limit]
    train_set = make_target_set("train", duration_s=args.duration_s)
    n_in = (2 * args.tune_targets) // 3
    tune = list(train_set.subset("in_domain"))[:n_in]
    tune += list(train_set.subset("out_of_domain"))[: args.tune_targets - n_in]

    families = sorted({fam for fam, _ in METHODS.values()})
    family_config = {
        "ae": METHODS["ae"][1],
        "adam": METHODS["adam"][1],
        "sgd": METHODS["sgd_momentum"][1],
    }
    total = len(families) * len(args.lrs) * len(tune) + len(METHODS) * len(test)
    bar = tqdm(total=total, desc="fits", unit="target")
    tuned: dict[str, dict] = {}
    for fam in families:
        scores = {}
        for lr in args.lrs:
            rows = run_method(
                family_config[fam], lr, tune, voice, free, args.steps, success_distance, bar.update
            )
            scores[lr] = statistics.median(r["distance"] for r in rows)
        best = min(scores, key=scores.get)
        tuned[fam] = {"lr": best, "train_median_distance": scores}
    results = {}
    for name, (fam, cfg) in METHODS.items():
        rows = run_method(
            cfg, tuned[fam]["lr"], test, voice, free, args.steps, success_distance, bar.update
        )
        results[name] = {
            "lr": tuned[fam]["lr"],
            "all": summarize(rows),
            "in_domain": summarize([r for r in rows if r["kind"] == "in_domain"]),
            "out_of_domain": summarize([r for r in rows if r["kind"] != "in_domain"]),
            "rows": rows,
        }
    bar.close()
    meta = {
        "steps": args.steps,
        "duration_s": args.duration_s,
        "free_knobs": list(free),
        "success_distance": success_distance,
        "tuning": tuned,
        "n_test": len(test),
        "torch_threads": torch.get_num_threads(),
        "configs": {k: dataclasses.asdict(c) for k, (_, c) in METHODS.items()},
    }
    print(f"\nTest set: {len(test)} targets, {args.steps} steps, free knobs: {args.free_knobs}")
    header = f"{'method':<16}{'lr':>6} {'subset':<8}{'median d':>9}{'IQR':>15}{'success':>8}"
    print(header + f"{'halved':>7}{'d/d0':>6}{'steps':>7}{'div':>5}{'knob err':>9}{'wall s':>8}")
    for name, res in results.items():
        for subset in ("in_domain", "out_of_domain"):
            s = res[subset]
            if s is None:
                continue
            steps = (
                "-"
                if s["median_steps_to_threshold"] is None
                else f"{s['median_steps_to_threshold']:.0f}"
            )
            knob = "-" if s["knob_error"] is None else f"{s['knob_error']:.3f}"
            iqr = f"[{s['iqr'][0]:.2f}, {s['iqr'][1]:.2f}]"
            print(
                f"{name:<16}{res['lr']:>6.2f} {subset[:7]:<8}{s['median_distance']:>9.3f}"
                f"{iqr:>15}{s['success_rate']:>8.0%}"
                f"{s['halved_rate']:>7.0%}{s['median_relative']:>6.2f}"
                f"{steps:>7}{s['divergences']:>5}{knob:>9}{s['wall_s']:>8.1f}"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
