"""Synth throughput benchmark: render, render+features, forward+backward.

Reports "seconds of audio per wall second" (x real time) and peak memory for batches
of 1-second voices. Seeded; prints a table, or JSON with ``--json``.

    python scripts/bench_synth.py --batch-sizes 1 16 64 256 --json bench_synth.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from collections.abc import Callable

import torch

from aegym.features import FeatureConfig, FeatureEncoder, spectral_distance
from aegym.synth import SynthConfig, Voice


def timeit(fn: Callable[[], object], repeats: int, min_time_s: float = 0.5) -> float:
    """Median wall seconds of ``fn`` after one warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    times.sort()
    return times[len(times) // 2]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(batch_sizes: list[int], sample_rate: int, duration_s: float, repeats: int, device: str):
    voice = Voice(SynthConfig(sample_rate=sample_rate, duration_s=duration_s)).to(device)
    enc = FeatureEncoder(FeatureConfig(sample_rate=sample_rate)).to(device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for bsz in batch_sizes:
        knobs = voice.knob_space.random_unit(bsz, gen).to(device)
        target = enc(voice(torch.rand(1, voice.n_knobs, generator=gen).to(device)).detach())
        audio_s = bsz * duration_s

        def render(knobs=knobs):
            with torch.no_grad():
                voice(knobs)

        def render_features(knobs=knobs):
            with torch.no_grad():
                enc(voice(knobs))

        def forward_backward(knobs=knobs, target=target):
            u = knobs.clone().requires_grad_(True)
            spectral_distance(enc(voice(u)), target).sum().backward()

        row = {"batch": bsz}
        for name, fn in (
            ("render", render),
            ("render_features", render_features),
            ("forward_backward", forward_backward),
        ):
            sec = timeit(fn, repeats)
            row[f"{name}_ms"] = sec * 1e3
            row[f"{name}_x_realtime"] = audio_s / sec
        row["peak_rss_mb"] = peak_rss_mb()
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--sample-rate", type=int, default=16_000)
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # before the run: the benchmark itself adds its threads
    rows = run(args.batch_sizes, args.sample_rate, args.duration_s, args.repeats, args.device)
    meta = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "sample_rate": args.sample_rate,
        "duration_s": args.duration_s,
        # Other processes skew CPU timings (intra-op threads wait for each other).
        "load_avg_1m_before": round(load, 2),
    }
    print(f"synth throughput (x real time), {meta}")
    if load > 0.5:
        print("warning: the machine was busy before the run; timings are likely pessimistic")
    print(f"{'B':>5} {'render':>10} {'render+feat':>12} {'fwd+bwd':>10} {'peak MB':>9}")
    for r in rows:
        print(
            f"{r['batch']:>5} {r['render_x_realtime']:>10.0f} "
            f"{r['render_features_x_realtime']:>12.0f} "
            f"{r['forward_backward_x_realtime']:>10.0f} {r['peak_rss_mb']:>9.0f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
