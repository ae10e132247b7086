"""Leaderboard sweeps on Ray (:mod:`agents.sweep`).

One tiny grid (static + random + a 256-step PPO, 2 training seeds, 3 targets, 0.25 s
sounds) runs once under a local Ray (module fixture), with the worker of one PPO cell
killed right after its first checkpoint; it is checked against the same grid run
sequentially with ``train``/``evaluate``. Ray's start-up is ~5-10 s per sweep (two
sweeps start Ray); the module took 87 s on the shared 2-core box (load average ~8).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents.common.envs import FAST_ENV_KWARGS
from agents.leaderboard import TIERS, format_tier_table, who_wins
from agents.report import format_comparisons, format_table
from agents.sweep import (
    CRASH_ENV,
    DONE,
    RAY_INSTALL,
    AgentSpec,
    SweepArgs,
    SweepGrid,
    grid_from_args,
    load_grid,
    parse_sweep_args,
    run_sequential,
    sweep,
)

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason=f"Ray is not installed ({RAY_INSTALL})"
)

ROOT = Path(__file__).resolve().parents[1]
SM = "AEGym/SoundMatch-Easy-v1"
PPO = {"agent": "ppo", "n_envs": 4, "hyperparams": {"n_steps": 32, "batch_size": 64}}
GRID = SweepGrid(
    env_ids=(SM,),
    agents=("static", "random", PPO),
    seeds=(0, 1),
    total_timesteps=256,
    n_targets=3,
    eval_seeds=(0,),
    env_kwargs=dict(FAST_ENV_KWARGS[SM]),
    checkpoint_every=128,
)
CRASHED = "AEGym-SoundMatch-Easy-v1__ppo__1"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory):
    """The sequential reference and the sweep (one PPO worker killed once)."""
    root = tmp_path_factory.mktemp("sweep")
    reference = run_sequential(GRID, root / "sequential")
    os.environ[CRASH_ENV] = CRASHED  # read by the Ray workers, which inherit it
    try:
        result = sweep(GRID, root / "sweep", num_cpus=2, max_retries=1, progress=False)
    finally:
        del os.environ[CRASH_ENV]
    return reference, result


@needs_ray
def test_sweep_table_equals_sequential_train_and_evaluate(ran) -> None:
    reference, result = ran
    assert result.missing == [] and result.failed == {}
    assert list(result.boards) == [(SM, "test")]
    seq, swept = reference[(SM, "test")], result.boards[(SM, "test")]
    assert [a.label for a in swept.agents] == ["static", "random", "ppo"]
    assert swept.agents[2].n_runs == 2
    assert format_table(swept) == format_table(seq)
    assert format_comparisons(swept) == format_comparisons(seq)
    for a, b in zip(swept.agents, seq.agents, strict=True):
        assert [e.final_distance for e in a.episodes] == [e.final_distance for e in b.episodes]


@needs_ray
def test_sweep_writes_run_folders_and_the_leaderboard(ran) -> None:
    _, result = ran
    root = result.output_dir
    assert SweepGrid.from_dict(json.loads((root / "grid.json").read_text())) == GRID
    for cell in GRID.cells():
        folder = root / "cells" / cell.cell_id
        assert (folder / DONE).is_file()
        assert (folder / "eval" / "test" / "results.json").is_file()
        if cell.spec.trainable:
            for name in ("config.json", "model.zip", "model_card.json", "README.md"):
                assert (folder / name).is_file(), name
            assert sorted(p.name for p in (folder / "checkpoints").glob("step_*.zip")) == [
                "step_000000128.zip",
                "step_000000256.zip",
            ]
            assert list(folder.glob("events.out.tfevents.*"))
    board = root / "leaderboard" / "AEGym-SoundMatch-Easy-v1__test"
    for name in ("results.json", "results.md", "report.html"):
        assert (board / name).is_file(), name
    data = json.loads((root / "leaderboard.json").read_text())
    assert data["missing"] == [] and len(data["finished"]) == 4
    board_result = result.boards[(SM, "test")]
    tier = TIERS["easy"]
    # The leaderboard's format: its tier table and computed sentence, then the pairs.
    assert data["boards"][0]["table"] == format_tier_table(board_result, tier)
    assert data["boards"][0]["sentence"] == who_wins(board_result, tier.title)[0]
    assert data["boards"][0]["comparisons"] == format_comparisons(board_result)
    text = (root / "leaderboard.md").read_text()
    assert "## Easy (4 knobs, in-domain) — AEGym/SoundMatch-Easy-v1 on test" in text
    assert "| ppo | 2 |" in text and data["boards"][0]["sentence"] in text


@needs_ray
def test_a_killed_worker_is_retried_from_its_checkpoint(ran) -> None:
    _, result = ran
    folder = result.output_dir / "cells" / CRASHED
    assert (folder / ".crash-hook-fired").is_file()  # the first attempt died
    done = json.loads((folder / DONE).read_text())
    assert done["training"]["trained"] == "resumed"
    assert done["training"]["from"].endswith("step_000000128.zip")
    resumed = json.loads((folder / "config.json").read_text())["resumed"]
    assert [r["num_timesteps"] for r in resumed] == [128]
    other = result.output_dir / "cells" / "AEGym-SoundMatch-Easy-v1__ppo__0" / DONE
    other = json.loads(other.read_text())
    assert other["training"]["trained"] == "fresh"


@needs_ray
def test_restart_runs_nothing_when_every_cell_finished(ran, monkeypatch) -> None:
    _, result = ran
    module = sys.modules["agents.sweep"]  # the module (agents.sweep is the function)

    def no_ray():
        raise AssertionError("a finished sweep must not start Ray")

    monkeypatch.setattr(module, "import_ray", no_ray)
    again = sweep(GRID, result.output_dir, progress=False)
    assert again.ran == [] and again.skipped == result.cells
    assert format_table(again.boards[(SM, "test")]) == format_table(result.boards[(SM, "test")])


@needs_ray
def test_restart_reruns_only_unfinished_cells_and_lists_missing_ones(ran, tmp_path) -> None:
    _, result = ran
    copy = tmp_path / "sweep"
    shutil.copytree(result.output_dir, copy)
    random_cell = "AEGym-SoundMatch-Easy-v1__random"
    lost = "AEGym-SoundMatch-Easy-v1__ppo__0"
    (copy / "cells" / random_cell / DONE).unlink()
    shutil.rmtree(copy / "cells" / lost)
    os.environ[CRASH_ENV] = lost  # dies after its first checkpoint, and no retry is allowed
    try:
        again = sweep(GRID, copy, num_cpus=2, max_retries=0, progress=False)
    finally:
        del os.environ[CRASH_ENV]
    assert sorted(again.ran) == sorted([random_cell, lost])
    assert sorted(again.skipped) == sorted(["AEGym-SoundMatch-Easy-v1__static", CRASHED])
    assert again.missing == [lost] and list(again.failed) == [lost]
    board = again.boards[(SM, "test")]
    assert [(a.label, a.n_runs) for a in board.agents] == [("static", 1), ("random", 1), ("ppo", 1)]
    full = result.boards[(SM, "test")]
    assert [a.metrics for a in board.agents[:2]] == [a.metrics for a in full.agents[:2]]
    # The remaining PPO row is seed 1 alone: the full board's second training run.
    seed1 = [e.final_distance for e in full.agents[2].episodes if e.run == 1]
    assert [e.final_distance for e in board.agents[2].episodes] == seed1
    data = json.loads((copy / "leaderboard.json").read_text())
    assert data["missing"] == [lost] and data["boards"][0]["missing_cells"] == [lost]
    assert f"Missing cells: {lost}" in (copy / "leaderboard.md").read_text()


def test_missing_ray_names_the_install_command(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        sweep(GRID, tmp_path / "s", progress=False)
    from agents.sweep import main

    code = main(["--agents", "static", "--n-targets", "1", "--output-dir", str(tmp_path / "c")])
    assert code == 2
    assert RAY_INSTALL in capsys.readouterr().out


def test_nothing_but_agents_sweep_imports_ray() -> None:
    importers = []
    for path in [*ROOT.joinpath("aegym").rglob("*.py"), *ROOT.joinpath("agents").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert importers == ["agents/sweep.py"]
    code = "import sys, aegym, agents; print('ray' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"agents": ("static", "nope")}, r"agent 'nope' is neither a baseline"),
        ({"agents": ("static", "static")}, r"agent names must be distinct"),
        ({"agents": ({"agent": "static", "hyperparams": {"x": 1}},)}, r"only apply to trainable"),
        ({"agents": ({"agent": "ppo", "hyperparams": {"bogus": 1}},)}, r"unknown hyperparams"),
        ({"agents": ({"agent": "ppo", "name": "a/b"},)}, r"agent name 'a/b'"),
        ({"seeds": ()}, r"seeds must be a non-empty list"),
        ({"seeds": (0, 0)}, r"seeds must not repeat"),
        ({"total_timesteps": 0}, r"total_timesteps must be a positive integer"),
        ({"env_ids": ("AEGym/Nope-v1",)}, r"Nope"),
        ({"env_kwargs": {"duraton_s": 1}}, r"unknown env_kwargs 'duraton_s'"),
        ({"n_targets": 0}, r"n_targets must be a positive integer"),
    ],
)
def test_grid_is_validated(change, match) -> None:
    values = {**GRID.to_dict(), **change}
    with pytest.raises(ValueError, match=match):
        SweepGrid.from_dict(values)


def test_grid_files_and_command_line_overrides(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown grid fields \['bogus'\]"):
        SweepGrid.from_dict({"bogus": 1})
    yml = tmp_path / "grid.yml"
    yml.write_text(
        "env_ids: [AEGym/SoundMatch-Easy-v1]\n"
        "agents:\n  - static\n  - agent: ppo\n    name: ppo-small\n"
        "    hyperparams: {n_steps: 32, batch_size: 64}\n    n_envs: 4\n"
        "seeds: [3, 4]\ntotal_timesteps: 512\nn_targets: 2\n"
    )
    grid = load_grid(yml)
    assert grid.agents[1] == AgentSpec("ppo", "ppo-small", {"n_steps": 32, "batch_size": 64}, {}, 4)
    assert [c.cell_id for c in grid.cells()] == [
        "AEGym-SoundMatch-Easy-v1__static",
        "AEGym-SoundMatch-Easy-v1__ppo-small__3",
        "AEGym-SoundMatch-Easy-v1__ppo-small__4",
    ]
    js = tmp_path / "grid.json"
    js.write_text(json.dumps(grid.to_dict()))
    assert load_grid(js) == grid
    args, given = parse_sweep_args(["--grid", str(yml), "--seeds", "7", "--output-dir", "x"])
    assert given == {"grid", "seeds", "output_dir"}
    over = grid_from_args(args, given)
    assert over.seeds == (7,) and over.total_timesteps == 512 and over.agents == grid.agents
    plain = grid_from_args(SweepArgs(agents=["static", json.dumps(PPO)], seeds=[1]))
    assert plain.agents[1].hyperparams == PPO["hyperparams"] and plain.seeds == (1,)
    with pytest.raises(FileNotFoundError, match="grid file not found"):
        load_grid(tmp_path / "nope.yml")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cpus_per_cell": 0}, r"cpus_per_cell must be > 0, got 0"),
        ({"gpus_per_cell": -0.5}, r"gpus_per_cell must be >= 0, got -0.5"),
        ({"max_retries": -1}, r"max_retries must be an integer >= 0, got -1"),
        ({"num_cpus": 0}, r"num_cpus must be a positive integer, got 0"),
    ],
)
def test_sweep_resources_are_validated_before_anything_runs(kwargs, match, tmp_path) -> None:
    with pytest.raises(ValueError, match=match):
        sweep(GRID, tmp_path / "s", progress=False, **kwargs)
    assert not (tmp_path / "s").exists()
