"""Every benchmark and check in scripts/ still runs (tiny sizes) and writes its JSON.

A script that broke silently after a refactor (bench_scheduler did) is caught here.
The cheap ones run in the default suite; the rest are marked ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "bench_scheduler.py": (
        [
            "--num-envs",
            "1",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--profile-steps",
            "1",
            "--torch-loops",
        ],
        False,
    ),
    "bench_step.py": (["--num-envs", "2", "--steps", "1"], False),
    "bench_synth.py": (["--batch-sizes", "1", "--repeats", "1", "--duration-s", "0.25"], False),
    "check_reproducibility.py": (["--steps", "2", "--num-envs", "2"], True),
    "bench_vector.py": (
        [
            "--num-envs",
            "2",
            "--min-time-s",
            "0.2",
            "--max-async",
            "1",
            "--ppo-envs",
            "2",
            "--ppo-timesteps",
            "64",
        ],
        True,
    ),
    "bench_optimizers.py": (
        ["--steps", "2", "--lrs", "0.03", "--tune-targets", "1", "--limit", "1"],
        True,
    ),
    "scheduler_headroom.py": (["--episodes", "2"], True),
    "calibrate_success.py": (["--n-signs", "1"], True),
    "ablate_shaped_ppo.py": (
        [
            "--seeds",
            "0",
            "--total-timesteps",
            "64",
            "--n-targets",
            "1",
            "--eval-seeds",
            "0",
            "--baselines",
            "static",
            "--variants",
            "ppo",
            "kl",
        ],
        True,
    ),
    "bench_sweep.py": (
        ["--agents", "static", "--n-targets", "1", "--duration-s", "0.25", "--num-cpus", "1"],
        True,
    ),
    "ae_ablation.py": (["--n-targets", "1", "--duration-s", "0.25"], True),
}


def _param(name: str):
    args, slow = CASES[name]
    return pytest.param(name, args, marks=[pytest.mark.slow] if slow else [], id=name)


@pytest.mark.parametrize(("script", "args"), [_param(n) for n in CASES])
def test_script_runs_and_writes_json(script, args, tmp_path):
    out = tmp_path / "out.json"
    json_args = ["--json"] if script == "calibrate_success.py" else ["--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args, *json_args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text() if out.exists() else proc.stdout)
    assert data


def test_every_script_is_covered():
    assert {p.name for p in (ROOT / "scripts").glob("*.py")} == set(CASES)


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_step_op_classes():
    """The floor's parts: matrix products and FFTs recorded for replay, every other
    non-view op's bytes (inputs and outputs, a broadcast dimension once), views free."""
    import torch

    bench_step = _load_script("bench_step")
    a, b = torch.ones(8, 4), torch.ones(4, 3)
    row, signal = torch.ones(1, 3), torch.ones(2, 16)
    with bench_step.OpClassCounter() as counter:
        product = a @ b  # recorded, no bytes
        torch.fft.rfft(signal)  # recorded, no bytes
        _ = product.T[1:]  # views: nothing
        product + row.expand(8, 3)  # 96 + 12 + 96 bytes
    names = [func.overloadpacket.__name__ for func, _, _ in counter.replay]
    assert names == ["mm", "_fft_r2c"]
    assert counter.elementwise_bytes == 96 + 12 + 96
    assert bench_step.replay_ms(counter.replay, repeats=1) > 0
    assert bench_step._tensor_bytes(torch.ones(5, 1).expand(5, 7)) == 20


def test_bench_synth_side_by_side_with_torchsynth():
    """The torchsynth comparison times render, forward+backward through the encoder and
    the synths alone, each with a positive ratio (skipped without the bench extra)."""
    bench_synth = _load_script("bench_synth")
    if bench_synth.import_torchsynth() is None:
        pytest.skip(bench_synth.TORCHSYNTH_HINT)
    (row,) = bench_synth.compare_torchsynth([2], 16_000, 0.25, rounds=1, device="cpu")
    for name in ("render", "forward_backward", "voice_fwd_bwd"):
        assert row[f"{name}_ratio"] > 0
        assert row[f"{name}_aegym_ms"] > 0 and row[f"{name}_torchsynth_ms"] > 0
