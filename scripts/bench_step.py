"""SoundMatch native vector-env step against its FLOP ideal, page faults and aten calls.

One ``envs.step`` of a native ``AEGym/SoundMatch-Easy-v1`` vector env (N sub-envs,
0.25 s notes) is timed, and compared with its *FLOP ideal*: the step's floating-point
work divided by this machine's matrix-multiply rate (a 2048² float32 ``mm`` timed in
the same process, at the same thread count), i.e. the time the step would take if
every FLOP ran as fast as a large GEMM. FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matrix products, plus FFTs at
``2.5·n·log2(n)`` per real transform of length n, registered here), plus an analytic
count of the synth's own recursions, which run outside aten (per voice and sample:
the ladder's binomial FIR 9, two all-pole sections × two passes at 4 each, two
wavetable reads at 8 each). Elementwise ops are not counted (memory-bound).

Because FFTs and small matrix products never run at the large-GEMM rate, and most of a
step is elementwise, the script also measures the step's *op-class floor*: the step's
own FFT and matrix-product calls replayed alone (same shapes, same process), plus the
bytes its other (non-view) aten ops read and write, at this machine's copy bandwidth,
plus the recursion kernels' traffic. ``x floor`` = step time / that floor: how far the
step is from what its current op mix allows here (1x = every op at its class's speed,
nothing else), whereas ``x ideal`` is against the GEMM rate.

Also per step: minor page faults (``getrusage``: fresh pages the allocator took from
the kernel) and aten calls (``torch.profiler``). Both the compiled ladder kernels (the
CPU default) and the PyTorch loops are timed, interleaved step by step.

    python scripts/bench_step.py --num-envs 64 --threads 2 --json bench_step.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import aegym  # noqa: F401  (registers the ids)
from aegym.memory import retain_freed_memory
from aegym.synth._compiled import compiled_kernels

ENV_ID = "AEGym/SoundMatch-Easy-v1"
# Analytic FLOPs per voice and audio sample of the synth's recursions (not aten ops).
RECURSION_FLOPS_PER_SAMPLE = 9 + 2 * 2 * 4 + 2 * 8


def _fft_flops(per_point: float, on_output: bool):
    """FlopCounterMode formula for an FFT op: ``per_point·n·log2(n)`` per transform of
    n points (the real side's shape: the input of r2c, the output of c2r)."""

    def count(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
        shape = out_shape if on_output else x_shape
        n = math.prod(shape[d] for d in dim)
        return int(per_point * math.log2(max(n, 2)) * math.prod(shape))

    return count


CUSTOM_FLOPS = {
    torch.ops.aten._fft_r2c: _fft_flops(2.5, on_output=False),
    torch.ops.aten._fft_c2r: _fft_flops(2.5, on_output=True),
    torch.ops.aten._fft_c2c: _fft_flops(5.0, on_output=False),
}


def gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-multiply rate (GFLOP/s), best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


MATMUL_OPS = {"mm", "bmm", "addmm", "baddbmm", "mv", "addmv", "dot", "_scaled_mm"}
FFT_OPS = {"_fft_r2c", "_fft_c2r", "_fft_c2c"}
# Recursion kernels (outside aten) per voice and sample: four all-pole passes, each
# reading and writing one float32.
RECURSION_BYTES_PER_SAMPLE = 4 * 2 * 4


def _tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements of ``t`` (a broadcast dimension counts once)."""
    n = math.prod(size for size, stride in zip(t.shape, t.stride(), strict=True) if stride)
    return n * t.element_size()


class OpClassCounter(TorchDispatchMode):
    """Records one step's FFT and matrix-product calls (to replay alone) and the bytes
    every other non-view aten op reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.replay: list[tuple[Any, tuple, dict]] = []
        self.elementwise_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in MATMUL_OPS or name in FFT_OPS:
            self.replay.append((func, *_like((args, kwargs))))
        elif not func.is_view:
            tensors = [
                t
                for t in pytree.tree_leaves((args, kwargs, out))
                if isinstance(t, torch.Tensor) and t.device.type == "cpu"
            ]
            self.elementwise_bytes += sum(_tensor_bytes(t) for t in tensors)
        return out


def _like(tree: Any) -> Any:
    """``tree`` with every tensor replaced by a fresh random one of its shape and dtype."""

    def fresh(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if t.is_complex():
            return torch.randn(t.shape, dtype=t.dtype)
        return torch.randn(t.shape, dtype=t.dtype) if t.is_floating_point() else t.clone()

    return pytree.tree_map(fresh, tree)


def copy_bandwidth_gbs(n_bytes: int = 64 << 20, repeats: int = 5) -> float:
    """This machine's copy bandwidth (GB/s of bytes read + written), best of ``repeats``."""
    src = torch.rand(n_bytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * n_bytes / best / 1e9


def replay_ms(calls: list[tuple[Any, tuple, dict]], repeats: int = 5) -> float:
    """Wall ms of ``calls`` run back to back, best of ``repeats`` (after a warm-up)."""
    best = math.inf
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        for func, args, kwargs in calls:
            func(*args, **kwargs)
        if i:
            best = min(best, time.perf_counter() - t0)
    return best * 1e3


def make_env(n: int, duration_s: float, seed: int) -> Any:
    envs = gym.make_vec(
        ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", duration_s=duration_s
    )
    envs.reset(seed=seed)
    return envs


def count_step(envs: Any, action: np.ndarray, duration_s: float) -> dict[str, float]:
    """FLOPs (counted + analytic) and aten calls of one step."""
    with FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        envs.step(action)
    counted = counter.get_total_flops()
    core = envs.unwrapped.core
    samples = envs.num_envs * round(duration_s * core.voice.config.sample_rate)
    analytic = RECURSION_FLOPS_PER_SAMPLE * samples
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        envs.step(action)
    aten = sum(1 for e in prof.events() if e.name.startswith("aten::"))
    with OpClassCounter() as classes:
        envs.step(action)
    fft = [c for c in classes.replay if c[0].overloadpacket.__name__ in FFT_OPS]
    matmul = [c for c in classes.replay if c[0].overloadpacket.__name__ not in FFT_OPS]
    return {
        "flops_counted": counted,
        "flops_recursions": analytic,
        "aten_calls": aten,
        "fft_calls": len(fft),
        "fft_replay_ms": replay_ms(fft),
        "matmul_calls": len(matmul),
        "matmul_replay_ms": replay_ms(matmul),
        "elementwise_bytes": classes.elementwise_bytes,
        "recursion_bytes": RECURSION_BYTES_PER_SAMPLE * samples,
    }


def bench(n: int, duration_s: float, steps: int, seed: int) -> dict[str, Any]:
    envs = make_env(n, duration_s, seed)
    rng = np.random.default_rng(seed)
    shape = envs.action_space.shape
    try:
        counts = count_step(envs, np.zeros(shape, np.float32), duration_s)
        times: dict[str, list[float]] = {"compiled": [], "torch": []}
        faults: dict[str, list[int]] = {"compiled": [], "torch": []}
        for name in times:  # warm-up
            with compiled_kernels(name == "compiled"):
                envs.step(rng.uniform(-1, 1, size=shape).astype(np.float32))
        for _ in range(steps):
            for name in times:
                action = rng.uniform(-1, 1, size=shape).astype(np.float32)
                with compiled_kernels(name == "compiled"):
                    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    t0 = time.perf_counter()
                    envs.step(action)
                    times[name].append(time.perf_counter() - t0)
                    faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    finally:
        envs.close()
    row: dict[str, Any] = {"num_envs": n, **counts}
    for name in times:
        row[f"step_ms_{name}"] = statistics.median(times[name]) * 1e3
        row[f"page_faults_per_step_{name}"] = statistics.median(faults[name])
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64])
    parser.add_argument("--duration-s", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=9, help="timed steps per kernel path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
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
    gflops = gemm_gflops()
    bandwidth = copy_bandwidth_gbs()
    rows = []
    print(
        f"machine GEMM rate: {gflops:.1f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s, "
        f"at {torch.get_num_threads()} threads"
    )
    print(
        f"{'N':>5} {'GFLOP/step':>11} {'ideal ms':>9} {'step ms':>8} {'x ideal':>8} "
        f"{'torch-loops ms':>15} {'x ideal':>8} {'faults/step':>12} {'aten/step':>10} "
        f"{'floor ms':>9} {'x floor':>8}"
    )
    for n in args.num_envs:
        row = bench(n, args.duration_s, args.steps, args.seed)
        flops = row["flops_counted"] + row["flops_recursions"]
        row["gflop_per_step"] = flops / 1e9
        row["ideal_ms"] = flops / (gflops * 1e9) * 1e3
        row["x_ideal"] = row["step_ms_compiled"] / row["ideal_ms"]
        row["x_ideal_torch_loops"] = row["step_ms_torch"] / row["ideal_ms"]
        row["elementwise_ms"] = row["elementwise_bytes"] / (bandwidth * 1e9) * 1e3
        row["recursion_ms"] = row["recursion_bytes"] / (bandwidth * 1e9) * 1e3
        row["floor_ms"] = (
            row["fft_replay_ms"]
            + row["matmul_replay_ms"]
            + row["elementwise_ms"]
            + row["recursion_ms"]
        )
        row["x_floor"] = row["step_ms_compiled"] / row["floor_ms"]
        rows.append(row)
        print(
            f"{n:>5} {row['gflop_per_step']:>11.3f} {row['ideal_ms']:>9.2f} "
            f"{row['step_ms_compiled']:>8.1f} {row['x_ideal']:>7.1f}x "
            f"{row['step_ms_torch']:>15.1f} {row['x_ideal_torch_loops']:>7.1f}x "
            f"{row['page_faults_per_step_compiled']:>12.0f} {row['aten_calls']:>10.0f} "
            f"{row['floor_ms']:>9.2f} {row['x_floor']:>7.1f}x",
            flush=True,
        )
        print(
            f"      floor = FFTs {row['fft_replay_ms']:.2f} ms ({row['fft_calls']} calls) "
            f"+ matrix products {row['matmul_replay_ms']:.2f} ms ({row['matmul_calls']}) "
            f"+ elementwise {row['elementwise_bytes'] / 1e6:.0f} MB "
            f"({row['elementwise_ms']:.2f} ms) + recursions {row['recursion_ms']:.2f} ms"
        )
    result = {
        "meta": {
            "env": ENV_ID,
            "window_s": args.duration_s,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gemm_gflops": gflops,
            "copy_bandwidth_gbs": bandwidth,
        },
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
