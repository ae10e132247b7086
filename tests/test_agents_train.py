"""Training: a smoke run per algorithm and env family, exact resume, run folder, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch as th

from agents.envs import FAST_ENV_KWARGS
from agents.train import (
    TrainArgs,
    chunk_seed,
    latest_checkpoint,
    main,
    replay_path,
    run_dir_name,
    train,
)

SM = "AEGym/SoundMatch-v0"
SG = "AEGym/SchedulerGains-v0"
LIVE = "AEGym/SoundMatchLive-v0"

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
    header = (res.run_dir / "progress.csv").read_text().splitlines()[0].split(",")
    if algo != "sac":  # SAC logs every 4 episodes: none end in this tiny run
        assert "reward_terms/aud/mel" in header and "charts/distance" in header
        if env_id == SG:
            assert {"gains/alpha", "gains/momentum", "gains/sigma"} <= set(header)


def test_smoke_train_live(tmp_path: Path) -> None:
    res = train(_args(tmp_path, LIVE, "ppo", 32))
    assert res.num_timesteps == 32


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
    assert run_dir_name(SM, "ppo", 3, 17) == "AEGym-SoundMatch-v0__ppo__3__17"
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
