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
