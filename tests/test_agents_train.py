"""Training: a smoke run per algorithm and env family, exact resume, run folder, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import fields, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from aegym.envs.live import LiveConfig
from aegym.envs.scheduler import SchedulerConfig
from aegym.envs.sound_match import SoundMatchConfig
from agents.common.envs import FAST_ENV_KWARGS
from agents.common.runs import latest_checkpoint, replay_path
from agents.hyperparams import get_settings
from agents.shaped_ppo import ShapingConfig
from agents.train import (
    TrainArgs,
    allowed_hyperparams,
    chunk_seed,
    main,
    run_dir_name,
    train,
)

SM = "AEGym/SoundMatch-Easy-v1"
SG = "AEGym/SchedulerGains-v1"
LIVE = "AEGym/SoundMatchLive-v1"

#: Tiny settings per algorithm: a couple of updates in a few dozen steps.
TINY: dict[str, dict] = {
    "ppo": {"n_steps": 8, "batch_size": 8, "n_epochs": 1},
    "shaped_ppo": {"n_steps": 8, "batch_size": 8, "n_epochs": 1},
    "a2c": {"n_steps": 4},
    "sac": {"learning_starts": 8, "batch_size": 8, "buffer_size": 200},
}


def _args(tmp_path: Path, env_id: str, algo: str, steps: int = 32, **kw) -> TrainArgs:
    return TrainArgs(
        env_id=env_id,
        algo=algo,
        total_timesteps=steps,
        output_dir=str(tmp_path),
        env_kwargs=FAST_ENV_KWARGS[env_id],
        n_envs=2,
        checkpoint_every=kw.pop("checkpoint_every", steps),
        hyperparams={**TINY[algo], "policy_kwargs": {"net_arch": [16]}},
        progress=False,
        **kw,
    )


def _params(model) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


@pytest.mark.parametrize("env_id", [SM, SG])
@pytest.mark.parametrize("algo", ["ppo", "sac", "a2c", "shaped_ppo"])
def test_smoke_train_every_algo_and_family(tmp_path: Path, env_id: str, algo: str) -> None:
    steps = 16 if env_id == SG else 32
    res = train(_args(tmp_path, env_id, algo, steps))
    assert res.num_timesteps >= steps
    assert res.model_path.is_file()
    assert res.run_dir.name.startswith(f"{env_id.replace('/', '-')}__{algo}__0__")
    cfg = json.loads((res.run_dir / "config.json").read_text())
    assert cfg["args"]["algo"] == algo and cfg["settings"]["n_envs"] == 2
    assert cfg["env_kwargs"]["target"] == "train"
    assert list(res.run_dir.glob("events.out.tfevents.*"))
    assert latest_checkpoint(res.run_dir) == res.checkpoints[-1]
    if algo == "shaped_ppo":
        assert cfg["settings"]["shaping"]["kl_coef"] > 0
    # Resolved: the env's whole config (from the built env) and every SB3 argument.
    config_cls = SchedulerConfig if env_id == SG else SoundMatchConfig
    assert set(cfg["env_config"]) == {f.name for f in fields(config_cls)}
    assert cfg["env_config"]["duration_s"] == FAST_ENV_KWARGS[env_id]["duration_s"]
    registered = gym.spec(env_id).kwargs.get("success_distance", config_cls().success_distance)
    assert cfg["env_config"]["success_distance"] == registered
    assert set(cfg["hyperparameters"]) == set(allowed_hyperparams(algo))
    assert cfg["hyperparameters"]["gamma"] == get_settings(env_id, algo).kwargs["gamma"]
    header = (res.run_dir / "progress.csv").read_text().splitlines()[0].split(",")
    if algo != "sac":  # SAC logs every 4 episodes: none end in this tiny run
        assert "reward_terms/aud/mel" in header and "charts/distance" in header
        if env_id == SG:
            assert {"gains/alpha", "gains/momentum", "gains/sigma"} <= set(header)


def test_smoke_train_live(tmp_path: Path) -> None:
    res = train(_args(tmp_path, LIVE, "ppo", 32))
    assert res.num_timesteps == 32
    cfg = json.loads((res.run_dir / "config.json").read_text())
    assert cfg["env_config"]["window_s"] == FAST_ENV_KWARGS[LIVE]["window_s"]
    assert set(cfg["env_config"]) == {f.name for f in fields(LiveConfig)}


def test_shaping_config_is_saved_resolved(tmp_path: Path) -> None:
    args = _args(tmp_path, SM, "shaped_ppo", 16, shaping={"kl_coef": 0.0})
    res = train(args)
    cfg = json.loads((res.run_dir / "config.json").read_text())
    expected = replace(get_settings(SM, "shaped_ppo").shaping, kl_coef=0.0)
    assert cfg["settings"]["shaping"] == json.loads(json.dumps(expected.to_dict()))
    assert ShapingConfig(**cfg["settings"]["shaping"]) == expected


@pytest.mark.parametrize("algo", ["ppo", "sac", "shaped_ppo"])
def test_resume_gives_the_same_continuation(tmp_path: Path, algo: str) -> None:
    full = train(_args(tmp_path / "a", SM, algo, 64, checkpoint_every=32))
    assert [p.name for p in full.checkpoints] == ["step_000000032.zip", "step_000000064.zip"]
    if algo == "sac":
        assert replay_path(full.checkpoints[-1]).is_file()
        assert not replay_path(full.checkpoints[0]).exists()  # only the newest is kept
    expected = _params(full.model)
    # An interrupted run: same settings, stopped after the first checkpoint.
    half = train(_args(tmp_path / "b", SM, algo, 32, checkpoint_every=32))
    half_params = _params(half.model)
    for k, v in _params(
        train(_args(tmp_path / "c", SM, algo, 32, checkpoint_every=32)).model
    ).items():
        th.testing.assert_close(v, half_params[k], rtol=0, atol=0)  # deterministic
    resumed = train(TrainArgs(resume=str(half.checkpoints[-1]), total_timesteps=64, progress=False))
    assert resumed.run_dir == half.run_dir and resumed.num_timesteps == 64
    got = _params(resumed.model)
    assert any(not th.equal(got[k], half_params[k]) for k in got)  # it did train on
    for k, v in expected.items():
        th.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)
    cfg = json.loads((half.run_dir / "config.json").read_text())
    assert cfg["resumed"][0]["num_timesteps"] == 32
    assert (half.run_dir / "progress_000000032.csv").is_file()


def test_checkpoints_are_written_atomically(tmp_path: Path) -> None:
    res = train(_args(tmp_path, SM, "ppo", 32, checkpoint_every=16))
    names = sorted(p.name for p in (res.run_dir / "checkpoints").iterdir())
    assert names == ["step_000000016.zip", "step_000000032.zip"]  # no temp files left


def test_helpers() -> None:
    assert run_dir_name(SM, "ppo", 3, 17) == "AEGym-SoundMatch-Easy-v1__ppo__3__17"
    assert chunk_seed(0, 0) == chunk_seed(0, 0) != chunk_seed(0, 16)
    assert isinstance(chunk_seed(1, 2), int)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        (
            {"env_id": "AEGym/Nope-v0"},
            ValueError,
            r"unknown env id 'AEGym/Nope-v0'; allowed: AEGym/",
        ),
        (
            {"algo": "dqn"},
            ValueError,
            r"unknown algorithm 'dqn'; allowed: ppo, sac, a2c, shaped_ppo",
        ),
        ({"total_timesteps": 0}, ValueError, r"total_timesteps must be a positive integer, got 0"),
        (
            {"total_timesteps": -5},
            ValueError,
            r"total_timesteps must be a positive integer, got -5",
        ),
        ({"checkpoint_every": 0}, ValueError, r"checkpoint_every must be a positive integer"),
        ({"n_envs": 0}, ValueError, r"n_envs must be a positive integer"),
        ({"resume": "/no/such/ckpt.zip"}, FileNotFoundError, r"'/no/such/ckpt.zip'"),
        ({"shaping": {"kl_coef": 0}}, ValueError, r"only apply to algo 'shaped_ppo'"),
        ({"algo": "shaped_ppo", "shaping": {"bogus": 1}}, ValueError, r"unknown shaping fields"),
    ],
)
def test_bad_arguments(tmp_path: Path, changes: dict, error: type, match: str) -> None:
    args = TrainArgs(output_dir=str(tmp_path), progress=False)
    for k, v in changes.items():
        setattr(args, k, v)
    with pytest.raises(error, match=match):
        train(args)


def test_cli_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--algo", "dqn", "--output-dir", str(tmp_path)]) == 2
    assert "unknown algorithm 'dqn'" in capsys.readouterr().out
    assert main(["--total-timesteps", "-1", "--output-dir", str(tmp_path)]) == 2
    assert "total_timesteps must be a positive integer, got -1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--env-kwargs", "not json"])


def test_cli_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--env-id", SM, "--algo", "a2c", "--total-timesteps", "8", "--n-envs", "2",
        "--output-dir", str(tmp_path), "--env-kwargs", json.dumps(FAST_ENV_KWARGS[SM]),
        "--hyperparams", '{"n_steps": 4}', "--no-progress", "--run-name", "cli",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "trained 8 steps" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.zip").is_file()
    assert np.isfinite(json.loads((tmp_path / "cli" / "config.json").read_text())["args"]["seed"])


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        (
            {"env_kwargs": {"duration_s": 0.25, "bogus": 1}},
            ValueError,
            r"^unknown env_kwargs 'bogus' for AEGym/SoundMatch-Easy-v1; allowed: target, "
            r"free_knobs, .*duration_s",
        ),
        (
            {"env_kwargs": {"duration_s": -1}},
            ValueError,
            r"^env_kwargs \{'duration_s': -1\} rejected by AEGym/SoundMatch-Easy-v1: ValueError: "
            r"duration_s must be",
        ),
        (
            {"hyperparams": {"n_steps": 8, "learning_rat": 1e-3}},
            ValueError,
            r"^unknown hyperparams 'learning_rat' for algo 'ppo'; allowed: batch_size, "
            r".*learning_rate",
        ),
        (
            {"hyperparams": {"n_steps": 8, "batch_size": 8, "policy_kwargs": {"bogus_arch": 1}}},
            ValueError,
            r"^hyperparams .*'bogus_arch'.* rejected by PPO: TypeError: .*bogus_arch",
        ),
        ({"hyperparams": {"policy_kwargs": 3}}, ValueError, r"policy_kwargs must be a JSON"),
        ({"env_kwargs": [1]}, ValueError, r"^env_kwargs must be a JSON object, got \[1\]"),
        ({"output_dir": "FILE"}, NotADirectoryError, r"^output_dir '.*FILE' is a file"),
        (
            {"output_dir": "FILE/sub"},
            NotADirectoryError,
            r"^output_dir '.*FILE/sub' is inside '.*FILE', which is a file",
        ),
        ({"run_name": "FILE"}, NotADirectoryError, r"^run_name 'FILE': '.*FILE' is a file"),
    ],
)
def test_bad_arguments_name_the_value_and_leave_no_run_folder(
    tmp_path: Path, changes: dict, error: type, match: str
) -> None:
    (tmp_path / "FILE").write_text("not a folder")
    args = _args(tmp_path, SM, "ppo", 16)
    for k, v in changes.items():
        setattr(args, k, v.replace("FILE", str(tmp_path / "FILE")) if k == "output_dir" else v)
    before = _files(tmp_path)
    with pytest.raises(error, match=match) as info:
        train(args)
    assert "\n" not in str(info.value)  # one line
    assert _files(tmp_path) == before  # no (empty) run folder left behind


def test_read_only_output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            # root ignores permission bits: make the folder creation fail as it would
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(tempfile, "mkdtemp", refuse)
        with pytest.raises(PermissionError, match=r"^output_dir '.*ro/runs' is not writable: "
                           r"cannot create folders in '.*ro' \(Permission denied\)$"):  # fmt: skip
            train(_args(ro / "runs", SM, "ppo", 16))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_allowed_hyperparams_follow_the_sb3_classes() -> None:
    assert {"n_steps", "clip_range", "learning_rate"} <= set(allowed_hyperparams("ppo"))
    assert set(allowed_hyperparams("shaped_ppo")) == set(allowed_hyperparams("ppo"))
    assert {"tau", "buffer_size"} <= set(allowed_hyperparams("sac"))
    assert "clip_range" not in allowed_hyperparams("a2c")
    for reserved in ("policy", "env", "seed", "device", "shaping", "reference"):
        assert reserved not in allowed_hyperparams("shaped_ppo")


def test_cli_reports_bad_env_kwargs_hyperparams_and_output_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "FILE").write_text("x")
    base = ["--n-envs", "2", "--no-progress", "--output-dir", str(tmp_path)]
    cases = [
        (["--env-kwargs", '{"bogus": 1}'], "error: unknown env_kwargs 'bogus'"),
        (["--hyperparams", '{"bogus": 1}'], "error: unknown hyperparams 'bogus' for algo 'ppo'"),
        (["--output-dir", str(tmp_path / "FILE")], f"error: output_dir '{tmp_path / 'FILE'}'"),
        (["--resume", str(tmp_path)], "error: resume '"),
    ]
    for extra, expected in cases:
        assert main(base + extra) == 2, extra
        out = capsys.readouterr().out
        assert out.startswith(expected) and out.count("\n") == 1, out
    assert _files(tmp_path) == ["FILE"]


def test_python_m_agents_train_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "agents", "train", "--output-dir", str(tmp_path / "FILE")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout.startswith(f"error: output_dir '{tmp_path / 'FILE'}' is a file")
    assert "Traceback" not in proc.stderr + proc.stdout
