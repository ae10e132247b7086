"""SchedulerGains native vector env: steps per second and aten calls per step.

For each number of sub-envs N, a native ``AEGym/SchedulerGains-v1`` vector env takes
seeded random actions (local tests on about half of the episodes). Reported per env
step (one ``envs.step`` of all N episodes, ``inner_steps`` gradient steps each):

* wall seconds and env steps per second (``N / seconds``), the fastest of
  ``--repeats`` (the least disturbed by other load on the machine);
* aten calls, counted with ``torch.profiler``, split into *render* (synth, features,
  distance and reward, forward and backward) and *control* (everything else: the
  plant, the law, the env's bookkeeping);
* minor page faults per step (fresh pages taken from the kernel: allocator churn);
* wall seconds of the control part alone: the same steps with the synth and features
  replaced by a quadratic stand-in (cached features feed the reward), minus the time
  spent in that stand-in and the reward.

    python scripts/bench_scheduler.py --num-envs 1 16 64 --json bench_scheduler.json

``--torch-loops`` also times each N with the ladder's PyTorch loops (the path before
the compiled CPU kernels), for a before/after in one process. Run it in two
checkouts (``PYTHONPATH=...``) to compare versions of the same code.
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
from torch.profiler import ProfilerActivity, profile, record_function

import aegym
from aegym.synth._compiled import compiled_kernels

ENV_ID = "AEGym/SchedulerGains-v1"
RENDER = "bench::render"


class _Timed:
    """``fn`` timed into ``clock`` and named for the profiler; other attributes are the
    wrapped object's (the reward's coefficients stay readable)."""

    def __init__(self, fn: Callable[..., Any], clock: RenderClock) -> None:
        self._fn, self._clock = fn, clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with record_function(RENDER):
            out = self._fn(*args, **kwargs)
        self._clock.seconds += time.perf_counter() - start
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


class RenderClock:
    """Wraps the core's render, backward and reward calls: names them for the profiler
    and adds up their wall time."""

    def __init__(self, core: Any) -> None:
        self.seconds = 0.0
        core.render_distance = self.wrap(core.render_distance)
        core.reward_fn = self.wrap(core.reward_fn)
        self._grad = torch.autograd.grad
        torch.autograd.grad = self.wrap(self._grad)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return _Timed(fn, self)

    def close(self) -> None:
        torch.autograd.grad = self._grad


def count_aten(events: Any) -> tuple[int, int]:
    """(render, control) aten calls among profiler ``events`` (nested calls included)."""
    render = control = 0
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        inside = False
        while parent is not None:
            if parent.name == RENDER or parent.name.startswith("autograd::engine"):
                inside = True
                break
            parent = parent.cpu_parent
        render += inside
        control += not inside
    return render, control


def stub_render(core: Any) -> None:
    """Replace the core's render by ``1 + ‖θ − 0.3‖²`` (cached audio and features)."""
    with torch.no_grad():
        _, audio, feats = core.render_distance(core.free_knobs)

    def render_distance(free: torch.Tensor, rows: torch.Tensor | None = None):
        value = 1.0 + (free - 0.3).pow(2).sum(-1)
        n = free.shape[0]
        if n == audio.shape[0]:
            return value, audio, feats
        idx = torch.arange(n) % audio.shape[0]
        return value, audio[idx], feats.index(idx)

    core.render_distance = render_distance


def timed_steps(envs: Any, clock: RenderClock, actions: Any, steps: int, repeats: int):
    """Wall seconds per step, per step inside the clock, and minor page faults per
    step, of the fastest repeat."""
    times, inside, faults = [], [], []
    for _ in range(repeats):
        clock.seconds = 0.0
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(steps):
            envs.step(next(actions))
        times.append((time.perf_counter() - start) / steps)
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps)
        inside.append(clock.seconds / steps)
    best = min(range(repeats), key=times.__getitem__)
    return times[best], inside[best], faults[best]


def bench(n: int, steps: int, repeats: int, seed: int, profile_steps: int) -> dict[str, Any]:
    envs = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point")
    core = envs.unwrapped.core  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    total = 4 + profile_steps + steps * repeats + 10 * steps * repeats
    actions = iter(rng.uniform(-1, 1, size=(total, n, 4)).astype(np.float32))
    envs.reset(seed=seed)
    try:
        stub_render(core)  # control only: a cheap render, same control work
        clock = RenderClock(core)
        for _ in range(2):  # warm-up
            envs.step(next(actions))
        stub_s, stub_inside_s, _ = timed_steps(envs, clock, actions, 10 * steps, repeats)
        clock.close()
    finally:
        envs.close()
    envs = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point")
    core = envs.unwrapped.core  # type: ignore[attr-defined]
    envs.reset(seed=seed)
    clock = RenderClock(core)
    try:
        for _ in range(2):  # warm-up
            envs.step(next(actions))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(profile_steps):
                envs.step(next(actions))
        render_calls, control_calls = count_aten(prof.events())
        step_s, render_s, faults = timed_steps(envs, clock, actions, steps, repeats)
    finally:
        clock.close()
        envs.close()
    return {
        "num_envs": n,
        "step_s": step_s,
        "env_steps_per_s": n / step_s,
        "render_s": render_s,
        "control_s": stub_s - stub_inside_s,
        "aten_calls": (render_calls + control_calls) / profile_steps,
        "aten_render": render_calls / profile_steps,
        "aten_control": control_calls / profile_steps,
        "page_faults_per_step": faults,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--steps", type=int, default=4, help="timed env steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--torch-loops",
        action="store_true",
        help="also time each N with the ladder's PyTorch loops (compiled kernels off)",
    )
    parser.add_argument("--json", type=str, default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rows = []
    for n in args.num_envs:
        for compiled in (True, False) if args.torch_loops else (True,):
            with compiled_kernels(compiled):
                row = bench(n, args.steps, args.repeats, args.seed, args.profile_steps)
            rows.append({**row, "kernels": "compiled" if compiled else "torch"})
    header = (
        f"{'N':>4} {'kernels':>8} {'step s':>8} {'steps/s':>8} {'render s':>9} "
        f"{'control s':>9} {'aten':>8} {'render':>8} {'control':>8} {'faults':>8}"
    )
    print(f"{ENV_ID} native, aegym at {aegym.__file__}")
    print(header)
    for r in rows:
        print(
            f"{r['num_envs']:>4} {r['kernels']:>8} {r['step_s']:>8.4f} "
            f"{r['env_steps_per_s']:>8.1f} {r['render_s']:>9.4f} {r['control_s']:>9.4f} "
            f"{r['aten_calls']:>8.0f} {r['aten_render']:>8.0f} {r['aten_control']:>8.0f} "
            f"{r['page_faults_per_step']:>8.0f}"
        )
    result = {
        "env_id": ENV_ID,
        "aegym": aegym.__file__,
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "seed": args.seed,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
