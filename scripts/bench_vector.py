"""Vector-env throughput: single env, Sync/Async vector envs, the native vector env.

Measures env steps per second and seconds of audio per wall second for
``AEGym/SoundMatch-Easy-v1`` with 0.25 s notes (one 0.25 s window per step) at several
numbers of sub-envs, the raw batched render+features cost at the same batch (the floor
a vector env can reach), and Stable-Baselines3 PPO training frames per second on the
native vector env vs SB3's DummyVecEnv with the same number of envs. All in one run.

    python scripts/bench_vector.py --num-envs 1 16 64 256 --json bench_vector.json

AsyncVectorEnv starts one process per sub-env (about 0.5 GB of imports each), so it
is measured only up to ``--max-async`` sub-envs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import aegym  # noqa: F401  (registers the ids)
from aegym.features import spectral_distance
from aegym.vector import make_sb3_vec_env

ENV_ID = "AEGym/SoundMatch-Easy-v1"


def steps_per_second(step: Callable[[], None], n_envs: int, min_time_s: float) -> float:
    step()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time_s or count < 3:
        step()
        count += 1
    return count * n_envs / (time.perf_counter() - start)


def bench_vector(kind: str, n: int, kwargs: dict, min_time_s: float) -> float:
    if kind == "single":
        env = gym.make(ENV_ID, **kwargs)
        env.reset(seed=0)
        act = np.zeros(env.action_space.shape, np.float32)

        def step() -> None:
            _, _, term, trunc, _ = env.step(act)
            if term or trunc:
                env.reset()

        return steps_per_second(step, 1, min_time_s)
    mode = {"sync": "sync", "async": "async", "native": "vector_entry_point"}[kind]
    envs = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode=mode, **kwargs)
    envs.reset(seed=0)
    act = np.zeros(envs.action_space.shape, np.float32)
    try:
        return steps_per_second(lambda: envs.step(act), n, min_time_s)
    finally:
        envs.close()


def bench_raw(n: int, kwargs: dict, min_time_s: float) -> float:
    """Render + features + distance for n voices, the core of one vector step."""
    env = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    env.reset(seed=0)
    core = env.core
    target = core.target_feats()

    def step() -> None:
        with torch.no_grad():
            spectral_distance(core.encoder(core.voice(core.knobs)), target)

    return steps_per_second(step, n, min_time_s)


def bench_ppo(n: int, kwargs: dict, timesteps: int) -> dict[str, float]:
    out = {}
    for name in ("native", "dummy"):
        if name == "native":
            venv = make_sb3_vec_env(ENV_ID, n, seed=0, **kwargs)
        else:
            venv = make_vec_env(ENV_ID, n_envs=n, seed=0, env_kwargs=kwargs)
        model = PPO("MlpPolicy", venv, n_steps=32, batch_size=128, n_epochs=2, seed=0, device="cpu")
        start = time.perf_counter()
        model.learn(total_timesteps=timesteps)
        out[name] = model.num_timesteps / (time.perf_counter() - start)
        venv.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--duration-s", type=float, default=0.25)
    parser.add_argument("--min-time-s", type=float, default=3.0)
    parser.add_argument("--max-async", type=int, default=8)
    parser.add_argument("--ppo-envs", type=int, default=64)
    parser.add_argument("--ppo-timesteps", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {"duration_s": args.duration_s}
    single = bench_vector("single", 1, kwargs, args.min_time_s)
    rows = []
    for n in args.num_envs:
        row: dict[str, float | int | None] = {"num_envs": n, "single": single}
        row["sync"] = bench_vector("sync", n, kwargs, args.min_time_s)
        row["async"] = (
            bench_vector("async", n, kwargs, args.min_time_s) if n <= args.max_async else None
        )
        row["native"] = bench_vector("native", n, kwargs, args.min_time_s)
        row["raw_render_features"] = bench_raw(n, kwargs, args.min_time_s)
        row["native_vs_sync"] = row["native"] / row["sync"]
        row["native_overhead"] = row["raw_render_features"] / row["native"] - 1.0
        rows.append(row)
        print(
            f"N={n:4d}  single {single:8.0f}  sync {row['sync']:8.0f}  "
            f"async {row['async'] or float('nan'):8.0f}  native {row['native']:8.0f}  "
            f"raw {row['raw_render_features']:8.0f} steps/s  "
            f"native/sync {row['native_vs_sync']:.1f}x  overhead {row['native_overhead']:+.0%}",
            flush=True,
        )
    ppo = bench_ppo(args.ppo_envs, kwargs, args.ppo_timesteps)
    ppo["ratio"] = ppo["native"] / ppo["dummy"]
    print(
        f"PPO with {args.ppo_envs} envs: native {ppo['native']:.0f} fps, DummyVecEnv "
        f"{ppo['dummy']:.0f} fps ({ppo['ratio']:.1f}x)"
    )
    meta = {
        "env": ENV_ID,
        "window_s": args.duration_s,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": torch.get_num_threads(),
        "torch": torch.__version__,
        "note": "audio seconds per second = steps/s x window_s",
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows, "ppo": ppo}, fh, indent=2)


if __name__ == "__main__":
    main()
