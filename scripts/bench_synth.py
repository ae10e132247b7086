"""Synth throughput benchmark: render, render+features, forward+backward.

Reports "seconds of audio per wall second" (x real time) and peak memory for batches
of 1-second voices. Seeded; prints a table, or JSON with ``--json``.

    python scripts/bench_synth.py --batch-sizes 1 16 64 256 --json bench_synth.json

``--torchsynth`` instead measures this voice side by side with torchsynth's ``Voice``
(same batch, sample rate and duration; ``pip install -e ".[bench]"``), interleaving
the two in one process so that load from other processes hits both alike, and prints
the ratios (> 1: aegym is faster)::

    python scripts/bench_synth.py --torchsynth --threads 2 --batch-sizes 64 256
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import time
import types
from collections.abc import Callable

import torch

from aegym.features import FeatureConfig, FeatureEncoder, spectral_distance
from aegym.memory import retain_freed_memory
from aegym.synth import SynthConfig, Voice
from aegym.synth._compiled import compiled_kernels


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


# The side-by-side's callables, in table order (keys of compare_torchsynth's rows).
COMPARED = ("render", "forward_backward", "voice_fwd_bwd")

TORCHSYNTH_HINT = 'torchsynth is not installed; for the side-by-side run: pip install -e ".[bench]"'


def import_torchsynth():
    """``(Voice, SynthConfig)`` of torchsynth 1.0.2, or ``None`` if it is not installed.

    torchsynth 1.0.2 imports ``pkg_resources`` (gone from setuptools >= 81) and
    ``pytorch_lightning.core.lightning`` (``core.module`` since Lightning 1.7); when
    either is missing, a minimal stand-in is registered first. Nothing else changes.
    """
    try:
        import pytorch_lightning.core
    except ImportError:
        return None
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_string(module: str, name: str) -> bytes:
            base = os.path.dirname(sys.modules[module].__file__ or "")
            with open(os.path.join(base, name), "rb") as fh:
                return fh.read()

        shim.resource_string = resource_string  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        import pytorch_lightning.core.lightning  # noqa: F401
    except ImportError:
        import pytorch_lightning.core.module as lightning_module

        sys.modules["pytorch_lightning.core.lightning"] = lightning_module
    try:
        from torchsynth.config import SynthConfig as TSConfig
        from torchsynth.synth import Voice as TSVoice
    except ImportError:
        return None
    return TSVoice, TSConfig


def _measure(fn: Callable[[], object]) -> tuple[float, int]:
    """Wall seconds and minor page faults of one call."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    fn()
    sec = time.perf_counter() - t0
    return sec, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def compare_torchsynth(
    batch_sizes: list[int], sample_rate: int, duration_s: float, rounds: int, device: str
) -> list[dict]:
    """aegym's Voice vs torchsynth's Voice, interleaved call by call in this process.

    Render is one batch under ``no_grad``; forward+backward is the gradient of the
    spectral distance (to a fixed target, same encoder for both) w.r.t. every knob:
    aegym's ``[B, 20]`` unit knobs, torchsynth's 78 ``[B]`` parameters; voice
    forward+backward is the same gradient of a fixed random projection of the audio
    (the synths alone, without the shared encoder). torchsynth's
    ``Signal`` output is viewed as a plain tensor before the encoder so that both
    encoders run the same ops. Reports medians over ``rounds`` and the median of the
    per-round time ratios (torchsynth / aegym: > 1 when aegym is faster).
    """
    found = import_torchsynth()
    if found is None:
        raise SystemExit(TORCHSYNTH_HINT)
    ts_voice_cls, ts_config_cls = found
    voice = Voice(SynthConfig(sample_rate=sample_rate, duration_s=duration_s)).to(device)
    enc = FeatureEncoder(FeatureConfig(sample_rate=sample_rate)).to(device)
    gen = torch.Generator().manual_seed(0)
    target = enc(voice(torch.rand(1, voice.n_knobs, generator=gen).to(device)).detach())
    rows = []
    for bsz in batch_sizes:
        torch.manual_seed(bsz)  # torchsynth draws its random patch from the global RNG
        ts_cfg = ts_config_cls(
            batch_size=bsz,
            sample_rate=sample_rate,
            buffer_size_seconds=duration_s,
            reproducible=False,
        )
        ts_voice = ts_voice_cls(ts_cfg).to(device)
        knobs = voice.knob_space.random_unit(bsz, gen).to(device)
        ts_params = list(ts_voice.parameters())

        def aegym_render(knobs=knobs):
            with torch.no_grad():
                voice(knobs)

        def ts_render(ts_voice=ts_voice):
            ts_voice.synthconfig.no_grad = True
            ts_voice()

        def aegym_fwd_bwd(knobs=knobs):
            u = knobs.clone().requires_grad_(True)
            spectral_distance(enc(voice(u)), target).sum().backward()

        def ts_audio_with_grad(ts_voice=ts_voice, ts_params=ts_params) -> torch.Tensor:
            # torchsynth refuses no_grad=False at construction ("not explicitly
            # tested"); its graph is differentiable, so it is switched off here.
            ts_voice.synthconfig.no_grad = False
            for p in ts_params:
                p.grad = None
            return ts_voice()[0].as_subclass(torch.Tensor)

        def ts_fwd_bwd(audio_with_grad=ts_audio_with_grad) -> None:
            spectral_distance(enc(audio_with_grad()), target).sum().backward()

        # The synths alone: the gradient of a fixed projection of the audio, no encoder.
        weights = torch.randn(bsz, round(duration_s * sample_rate), generator=gen).to(device)

        def aegym_voice_fwd_bwd(knobs=knobs, weights=weights):
            u = knobs.clone().requires_grad_(True)
            (voice(u) * weights).sum().backward()

        def ts_voice_fwd_bwd(audio_with_grad=ts_audio_with_grad, weights=weights) -> None:
            (audio_with_grad() * weights).sum().backward()

        def torch_path(fn: Callable[[], object]) -> Callable[[], object]:
            def call() -> None:
                with compiled_kernels(False):
                    fn()

            return call

        candidates: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "render": (aegym_render, ts_render),
            "forward_backward": (aegym_fwd_bwd, ts_fwd_bwd),
            "voice_fwd_bwd": (aegym_voice_fwd_bwd, ts_voice_fwd_bwd),
        }
        row: dict = {"batch": bsz}
        audio_s = bsz * duration_s
        for name, (ours, theirs) in candidates.items():
            # "aegym_torch": the same voice with the ladder's PyTorch loops (what the
            # compiled CPU kernels replaced), interleaved as a before/after.
            fns = (("aegym", ours), ("aegym_torch", torch_path(ours)), ("torchsynth", theirs))
            for _, fn in fns:
                fn()  # warm-up
            times: dict[str, list[float]] = {key: [] for key, _ in fns}
            faults: dict[str, list[int]] = {key: [] for key, _ in fns}
            for _ in range(rounds):
                for key, fn in fns:
                    sec, flt = _measure(fn)
                    times[key].append(sec)
                    faults[key].append(flt)
            for key in times:
                med = statistics.median(times[key])
                row[f"{name}_{key}_ms"] = med * 1e3
                row[f"{name}_{key}_x_realtime"] = audio_s / med
                row[f"{name}_{key}_page_faults"] = statistics.median(faults[key])
            row[f"{name}_ratio"] = statistics.median(
                t / a for a, t in zip(times["aegym"], times["torchsynth"], strict=True)
            )
            row[f"{name}_ratio_torch_path"] = statistics.median(
                t / a for a, t in zip(times["aegym_torch"], times["torchsynth"], strict=True)
            )
        rows.append(row)
    return rows


def print_comparison(rows: list[dict]) -> None:
    print(
        f"{'B':>5} {'':>16} {'aegym xRT':>10} {'torchsynth xRT':>15} {'ratio':>7} "
        f"{'torch-path xRT':>15} {'ratio':>7} {'aegym faults':>13} {'ts faults':>10}"
    )
    for r in rows:
        for name in COMPARED:
            print(
                f"{r['batch']:>5} {name:>16} {r[f'{name}_aegym_x_realtime']:>10.0f} "
                f"{r[f'{name}_torchsynth_x_realtime']:>15.0f} {r[f'{name}_ratio']:>6.2f}x "
                f"{r[f'{name}_aegym_torch_x_realtime']:>15.0f} "
                f"{r[f'{name}_ratio_torch_path']:>6.2f}x "
                f"{r[f'{name}_aegym_page_faults']:>13.0f} "
                f"{r[f'{name}_torchsynth_page_faults']:>10.0f}"
            )
    print(
        "ratio = torchsynth time / aegym time (> 1: aegym faster); torch-path = aegym with "
        "the ladder's PyTorch loops (AEGYM_COMPILED_KERNELS=0), the path before the kernels"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--sample-rate", type=int, default=16_000)
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--torchsynth",
        action="store_true",
        help='side by side with torchsynth\'s Voice (pip install -e ".[bench]")',
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds of --torchsynth")
    parser.add_argument(
        "--retain-freed-memory",
        action="store_true",
        help="keep freed memory in the process first (aegym.memory.retain_freed_memory; "
        "both synths benefit)",
    )
    args = parser.parse_args(argv)
    if args.retain_freed_memory and not retain_freed_memory():
        raise SystemExit("--retain-freed-memory needs glibc's mallopt")
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # before the run: the benchmark itself adds its threads
    if args.torchsynth:
        rows = compare_torchsynth(
            args.batch_sizes, args.sample_rate, args.duration_s, args.rounds, args.device
        )
    else:
        rows = run(args.batch_sizes, args.sample_rate, args.duration_s, args.repeats, args.device)
    meta = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "retain_freed_memory": args.retain_freed_memory,
        "sample_rate": args.sample_rate,
        "duration_s": args.duration_s,
        # Other processes skew CPU timings (intra-op threads wait for each other).
        "load_avg_1m_before": round(load, 2),
    }
    print(f"synth throughput (x real time), {meta}")
    if load > 0.5:
        print("warning: the machine was busy before the run; timings are likely pessimistic")
    if args.torchsynth:
        print_comparison(rows)
    else:
        print(f"{'B':>5} {'render':>10} {'render+feat':>12} {'fwd+bwd':>10} {'peak MB':>9}")
        for r in rows:
            print(
                f"{r['batch']:>5} {r['render_x_realtime']:>10.0f} "
                f"{r['render_features_x_realtime']:>12.0f} "
                f"{r['forward_backward_x_realtime']:>10.0f} {r['peak_rss_mb']:>9.0f}"
            )
        if importlib.util.find_spec("torchsynth") is None:
            print(f"(no side-by-side: {TORCHSYNTH_HINT})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
