"""Speed-up of a leaderboard sweep on Ray over running the same cells one by one.

Runs one grid twice on this machine: sequentially with ``train``/``evaluate``
(:func:`agents.sweep.run_sequential`: every training seed one after another, then one
``evaluate`` per target set) and as a Ray sweep (:func:`agents.sweep.sweep`, a local Ray
with ``--num-cpus`` CPUs, one CPU per cell; Ray's start-up included). Checks that both
give the same leaderboard table and prints the wall times, the speed-up and the load
average (the machine may be shared).

    python scripts/bench_sweep.py --agents ae static random random_search ppo \
        --seeds 0 1 2 3 --total-timesteps 4096 --n-targets 12 --json bench_sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from agents.report import format_table
from agents.sweep import SweepGrid, run_sequential, sweep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="AEGym/SoundMatch-Easy-v1")
    p.add_argument("--agents", nargs="+", default=["ae", "static", "random", "ppo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--total-timesteps", type=int, default=1024)
    p.add_argument("--n-targets", type=int, default=6)
    p.add_argument("--eval-seeds", nargs="+", type=int, default=[0])
    p.add_argument("--duration-s", type=float, default=None, help="note length (env kwarg)")
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs (None: all)")
    p.add_argument("--out", default=None, help="work folder (default: a temp folder)")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args()

    env_kwargs = {} if a.duration_s is None else {"duration_s": a.duration_s}
    grid = SweepGrid(
        env_ids=(a.env_id,),
        agents=tuple(a.agents),
        seeds=tuple(a.seeds),
        total_timesteps=a.total_timesteps,
        n_targets=a.n_targets,
        eval_seeds=tuple(a.eval_seeds),
        env_kwargs=env_kwargs,
        checkpoint_every=a.total_timesteps,
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.out or tmp)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        reference = run_sequential(grid, work / "sequential")
        seq_s = time.perf_counter() - t0
        load1 = os.getloadavg()
        t0 = time.perf_counter()
        result = sweep(grid, work / "sweep", num_cpus=a.num_cpus, progress=False)
        sweep_s = time.perf_counter() - t0
        load2 = os.getloadavg()
    same = all(format_table(reference[k]) == format_table(b) for k, b in result.boards.items())
    out = {
        "grid": grid.to_dict(),
        "cells": len(result.cells),
        "sequential_s": seq_s,
        "sweep_s": sweep_s,
        "speedup": seq_s / sweep_s,
        "tables_equal": same,
        "missing": result.missing,
        "num_cpus": a.num_cpus or len(os.sched_getaffinity(0)),
        "loadavg_1min": {"start": load0[0], "after_sequential": load1[0], "end": load2[0]},
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
    }
    print(f"{len(result.cells)} cells; tables equal: {same}")
    print("| run | wall s |\n|---|---|")
    print(f"| sequential train/evaluate | {seq_s:.1f} |")
    print(f"| Ray sweep ({out['num_cpus']} CPUs, start-up included) | {sweep_s:.1f} |")
    print(f"speed-up {seq_s / sweep_s:.2f}x; 1-min load average {load0[0]:.1f} / {load2[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
