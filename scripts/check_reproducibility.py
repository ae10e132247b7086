"""How exactly aegym's envs reproduce across process layouts, per id.

For each id, the same seed and the same actions are run through:

* the single env with torch at 1 and at 2 intra-op threads (the caller's setting);
* ``AsyncVectorEnv`` (1 thread per worker) vs ``SyncVectorEnv`` (the main process);
* the native vector env (``vectorization_mode="vector_entry_point"``, one batched core
  at the caller's thread count) vs ``SyncVectorEnv``.

It prints the largest absolute difference of observations and rewards over the run
(0 = bit-identical) and, with ``--json PATH``, writes them.

    python scripts/check_reproducibility.py --steps 12 --num-envs 4 --json repro.json
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

import aegym
from aegym.envs import ENV_SPECS

Rollout = tuple[np.ndarray, np.ndarray]


def _run(make: Callable[[], gym.vector.VectorEnv], steps: int, seed: int) -> Rollout:
    envs = make()
    try:
        obs, _ = envs.reset(seed=seed)
        rng = np.random.default_rng(seed)
        all_obs, rewards = [obs], []
        for _ in range(steps):
            act = rng.uniform(-1, 1, envs.action_space.shape).astype(np.float32)
            obs, reward, *_ = envs.step(act)
            all_obs.append(obs)
            rewards.append(reward)
        return np.stack(all_obs), np.stack(rewards)
    finally:
        envs.close()


def _gap(a: Rollout, b: Rollout) -> dict[str, float]:
    return {
        "obs_max_abs_diff": float(np.abs(a[0] - b[0]).max()),
        "reward_max_abs_diff": float(np.abs(a[1] - b[1]).max()),
    }


def check(env_id: str, num_envs: int, steps: int, seed: int) -> dict[str, dict[str, float]]:
    def sync() -> gym.vector.VectorEnv:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")

    def with_threads(n: int) -> Rollout:
        torch.set_num_threads(n)
        return _run(sync, steps, seed)

    torch.set_num_threads(2)
    fns = [lambda: gym.make(env_id)] * num_envs
    asy = _run(lambda: gym.vector.AsyncVectorEnv(fns), steps, seed)
    base = _run(sync, steps, seed)
    native = _run(
        lambda: gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point"),
        steps,
        seed,
    )
    return {
        "single_1_vs_2_threads": _gap(with_threads(1), with_threads(2)),
        "async_vs_sync": _gap(asy, base),
        "native_vs_sync": _gap(native, base),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    results = {spec.id: check(spec.id, args.num_envs, args.steps, args.seed) for spec in ENV_SPECS}
    print(f"max |difference| over {args.steps} steps x {args.num_envs} envs (0 = bit-identical)")
    print(f"{'id':28} {'comparison':24} {'obs':>10} {'reward':>10}")
    for env_id, rows in results.items():
        for name, gap in rows.items():
            print(
                f"{env_id:28} {name:24} {gap['obs_max_abs_diff']:10.3g} "
                f"{gap['reward_max_abs_diff']:10.3g}"
            )
    if args.json:
        meta = {
            "aegym": aegym.__version__,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "steps": args.steps,
            "num_envs": args.num_envs,
            "seed": args.seed,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
