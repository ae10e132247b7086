"""Vector-env throughput: single env, Sync/Async vector envs, the native vector env.

Measures env steps per second and seconds of audio per wall second for
``AEGym/SoundMatch-Easy-v1`` with 0.25 s notes (one 0.25 s window per step) at several
numbers of sub-envs, the raw batched render+features cost at the same batch (the floor
a vector env can reach), and Stable-Baselines3 PPO training frames per second on the
native vector env vs SB3's DummyVecEnv with the same number of envs. All in one run.

    python scripts/bench_vector.py --num-envs 1 16 64 256 --json bench_vector.json

``--ppo-only`` runs just the PPO part: frames per second on the native env, the env's
share of PPO's wall time (time inside the vec env's ``step``/``reset``), minor page
faults per env step, and PPO on CartPole-v1 with the same settings in the same process
(the reference for PPO's own cost); DummyVecEnv is skipped unless ``--ppo-dummy``::

    python scripts/bench_vector.py --ppo-only --ppo-envs 64 --threads 2

AsyncVectorEnv starts one process per sub-env (about 0.5 GB of imports each), so it
is measured only up to ``--max-async`` sub-envs.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import aegym  # noqa: F401  (registers the ids)
from aegym.features import spectral_distance
from aegym.memory import retain_freed_memory
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


class EnvClock:
    """Wall seconds and minor page faults spent inside a VecEnv's step and reset."""

    def __init__(self, venv: Any) -> None:
        self.seconds, self.faults, self.steps = 0.0, 0, 0
        for name in ("step_wait", "reset"):
            setattr(venv, name, self._timed(getattr(venv, name), name == "step_wait"))

    def _timed(self, fn: Callable[..., Any], is_step: bool) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
                self.steps += is_step

        return call


def bench_ppo_share(n: int, kwargs: dict, timesteps: int) -> dict[str, float]:
    """PPO on the native env (fps, env share of wall time, page faults per env step)
    and on CartPole-v1 with the same settings, in this process."""
    out: dict[str, float] = {}
    for name in ("native", "cartpole"):
        if name == "native":
            venv = make_sb3_vec_env(ENV_ID, n, seed=0, **kwargs)
        else:
            venv = make_vec_env("CartPole-v1", n_envs=n, seed=0)
        clock = EnvClock(venv)
        model = PPO("MlpPolicy", venv, n_steps=32, batch_size=128, n_epochs=2, seed=0, device="cpu")
        start = time.perf_counter()
        model.learn(total_timesteps=timesteps)
        wall = time.perf_counter() - start
        out[f"{name}_fps"] = model.num_timesteps / wall
        out[f"{name}_env_share"] = clock.seconds / wall
        out[f"{name}_page_faults_per_env_step"] = clock.faults / max(clock.steps, 1)
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
    parser.add_argument("--ppo-only", action="store_true", help="only the PPO measurements")
    parser.add_argument("--ppo-dummy", action="store_true", help="with --ppo-only: DummyVecEnv too")
    parser.add_argument(
        "--retain-freed-memory",
        action="store_true",
        help="keep freed memory in the process first (aegym.memory.retain_freed_memory)",
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.retain_freed_memory and not retain_freed_memory():
        raise SystemExit("--retain-freed-memory needs glibc's mallopt")
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {"duration_s": args.duration_s}
    if args.ppo_only:
        share = bench_ppo_share(args.ppo_envs, kwargs, args.ppo_timesteps)
        if args.ppo_dummy:
            share["dummy_fps"] = bench_ppo(args.ppo_envs, kwargs, args.ppo_timesteps)["dummy"]
        print(
            f"PPO with {args.ppo_envs} envs: native {share['native_fps']:.0f} fps, env "
            f"{share['native_env_share']:.0%} of PPO's time, "
            f"{share['native_page_faults_per_env_step']:.0f} page faults per env step; "
            f"CartPole-v1 {share['cartpole_fps']:.0f} fps (env "
            f"{share['cartpole_env_share']:.0%})"
            + (f"; DummyVecEnv {share['dummy_fps']:.0f} fps" if args.ppo_dummy else "")
        )
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(
                    {"meta": {"env": ENV_ID, "threads": torch.get_num_threads()}, "ppo": share},
                    fh,
                    indent=2,
                )
        return
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
