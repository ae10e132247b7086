"""A run folder holds what a user needs to reload and rerun its agent, and
``python -m agents evaluate RUN_DIR`` evaluates it from the folder alone."""

from __future__ import annotations

import json
import platform
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import stable_baselines3
import torch

import aegym
from agents.__main__ import main as agents_main
from agents.common.cli import parse_args
from agents.common.envs import FAST_ENV_KWARGS, make_env
from agents.common.registry import algo_class
from agents.common.runs import run_model_path
from agents.evaluate import EvalArgs, evaluate
from agents.train import TrainArgs, train

SM = "AEGym/SoundMatch-Easy-v1"
HYPER = {"n_steps": 16, "batch_size": 16, "n_epochs": 1, "policy_kwargs": {"net_arch": [16]}}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A PPO run of 192 steps trained through ``python -m agents train``."""
    out = tmp_path_factory.mktemp("card")
    argv = [
        "--env-id", SM, "--algo", "ppo", "--total-timesteps", "192", "--n-envs", "2",
        "--seed", "3", "--checkpoint-every", "64", "--output-dir", str(out),
        "--env-kwargs", json.dumps(FAST_ENV_KWARGS[SM]), "--hyperparams", json.dumps(HYPER),
        "--no-progress", "--run-name", "card",
    ]  # fmt: skip
    assert agents_main(["train", *argv]) == 0
    return out / "card", argv


def _card(run: Path) -> dict:
    return json.loads((run / "model_card.json").read_text())


def test_model_card_holds_what_reload_and_rerun_need(cli_run) -> None:
    run, argv = cli_run
    card = _card(run)
    assert card["status"] == "complete"
    assert card["env_id"] == SM
    assert card["env_kwargs"] == {"target": "train", **FAST_ENV_KWARGS[SM]}
    assert card["algo"] == "ppo" and card["sb3_class"] == "stable_baselines3.ppo.ppo.PPO"
    assert card["seed"] == 3 and card["n_envs"] == 2
    assert card["hyperparameters"]["n_steps"] == 16
    assert card["hyperparameters"]["policy_kwargs"]["net_arch"] == [16]
    assert card["hyperparameters"]["gamma"] == 0.95  # from agents/hyperparams
    eff = card["effective_hyperparameters"]
    assert eff["vf_coef"] == 0.5 and eff["max_grad_norm"] == 0.5  # SB3's own defaults
    assert eff["n_steps"] == 16
    assert card["versions"]["aegym"] == aegym.__version__
    assert card["versions"]["torch"] == torch.__version__
    assert card["versions"]["stable_baselines3"] == stable_baselines3.__version__
    assert card["versions"]["gymnasium"] == gymnasium.__version__
    assert card["versions"]["python"] == platform.python_version()
    assert card["command"] == shlex.join(["python", "-m", "agents", "train", *argv])
    assert card["num_timesteps"] == card["total_timesteps"] == 192
    assert card["model"] == "model.zip"
    assert card["latest_checkpoint"] == "checkpoints/step_000000192.zip"
    assert card["usage"]["evaluate"] == f"python -m agents evaluate {shlex.quote(str(run))}"
    config = json.loads((run / "config.json").read_text())
    assert config["command"] == card["command"]
    assert config["versions"]["gymnasium"] == gymnasium.__version__

    # Reload from the card alone and act in the env it names.
    model = algo_class(card["algo"]).load(run / card["model"], device="cpu")
    assert model.num_timesteps == 192
    env = make_env(card["env_id"], **card["env_kwargs"])
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action.astype(env.action_space.dtype))
    env.close()

    # Rerun: the recorded command line parses back to the run's arguments.
    words = shlex.split(card["command"])
    assert words[:4] == ["python", "-m", "agents", "train"]
    assert asdict(parse_args(TrainArgs, words[4:])) == config["args"]


def test_run_readme_is_human_readable(cli_run) -> None:
    run, argv = cli_run
    text = (run / "README.md").read_text()
    assert text.startswith(f"# ppo on {SM} (seed 3)")
    for needle in (
        '`{"target": "train", "duration_s": 0.25}`',
        "`stable_baselines3.ppo.ppo.PPO`",
        f"aegym {aegym.__version__}",
        f"torch {torch.__version__}",
        f"gymnasium {gymnasium.__version__}",
        shlex.join(["python", "-m", "agents", "train", *argv]),
        f"python -m agents evaluate {shlex.quote(str(run))}",
        "--resume",
        "complete — 192 of 192 env steps",
    ):
        assert needle in text, needle


def test_python_call_records_an_equivalent_command(tmp_path: Path) -> None:
    args = TrainArgs(
        env_id=SM,
        algo="a2c",
        total_timesteps=8,
        seed=5,
        output_dir=str(tmp_path),
        env_kwargs=FAST_ENV_KWARGS[SM],
        n_envs=2,
        hyperparams={"n_steps": 4},
        progress=False,
        native_vec=False,
    )
    res = train(args)
    words = shlex.split(_card(res.run_dir)["command"])
    assert words[:4] == ["python", "-m", "agents", "train"]
    assert parse_args(TrainArgs, words[4:]) == args


def test_evaluate_run_dir_reads_env_and_model_from_the_folder(
    cli_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = cli_run
    argv = ["evaluate", str(run), "--agents", "static", "--n-targets", "1", "--seeds", "0",
            "--output-dir", str(tmp_path), "--n-showcase", "0"]  # fmt: skip
    assert agents_main(argv) == 0
    assert "| ppo |" in capsys.readouterr().out
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["env_id"] == SM
    assert data["env_kwargs"] == {**FAST_ENV_KWARGS[SM], "target": "test"}
    assert [a["label"] for a in data["agents"]] == ["ppo", "static"]
    assert data["agents"][0]["source"] == str(run / "model.zip")
    # The same numbers as spelling everything out.
    explicit = evaluate(
        EvalArgs(
            env_id=SM,
            agents=[str(run / "model.zip")],
            env_kwargs=FAST_ENV_KWARGS[SM],
            n_targets=1,
            seeds=[0],
        ),
        write=False,
    )
    np.testing.assert_allclose(
        data["agents"][0]["episodes"][0]["distances"], explicit.agents[0].episodes[0].distances
    )


def test_interrupted_and_resumed_runs(cli_run, tmp_path: Path) -> None:
    run = tmp_path / "card"
    shutil.copytree(cli_run[0], run)
    # Resume to more steps: the card records the resume command and the new total.
    assert agents_main(["train", "--resume", str(run), "--total-timesteps", "256",
                        "--no-progress"]) == 0  # fmt: skip
    card = _card(run)
    assert card["num_timesteps"] == card["total_timesteps"] == 256
    assert card["resumed"][0]["num_timesteps"] == 192
    assert card["resumed"][0]["command"] == (
        f"python -m agents train --resume {shlex.quote(str(run))} --total-timesteps 256 "
        "--no-progress"
    )
    assert run_model_path(run) == run / "model.zip"
    # Training killed before model.zip: evaluation picks the newest checkpoint.
    (run / "model.zip").unlink()
    assert run_model_path(run) == run / "checkpoints" / "step_000000256.zip"
    res = evaluate(EvalArgs(agents=["static"], n_targets=1, seeds=[0], run_dir=str(run)), False)
    assert res.agents[0].source == str(run / "checkpoints" / "step_000000256.zip")
    assert res.env_kwargs == {**FAST_ENV_KWARGS[SM], "target": "test"}
    # A resumed run killed past its old model.zip: the newer checkpoint wins.
    shutil.copy(cli_run[0] / "model.zip", run / "model.zip")  # 192 steps
    assert run_model_path(run) == run / "checkpoints" / "step_000000256.zip"


def test_evaluate_run_dir_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_run = tmp_path / "plain"
    not_run.mkdir()
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "config.json").write_text(
        json.dumps({"args": {"env_id": SM, "algo": "ppo"}, "env_kwargs": {}})
    )
    cases = [
        ([str(tmp_path / "nope")], f"error: run folder not found: '{tmp_path / 'nope'}'"),
        ([str(not_run)], f"error: '{not_run}' is not a run folder: no config.json"),
        ([str(empty)], f"error: agent '{empty}': the run folder holds no model.zip"),
        (["--agents", str(not_run)], f"error: agent '{not_run}' is a folder but not a run"),
    ]
    for argv, expected in cases:
        assert agents_main(["evaluate", *argv, "--output-dir", str(tmp_path / "out")]) == 2
        out = capsys.readouterr().out
        assert out.startswith(expected) and out.count("\n") == 1, out
    assert not (tmp_path / "out").exists()
