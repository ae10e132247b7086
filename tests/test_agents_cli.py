"""Command lines: dataclass arguments, `python -m agents` dispatch, the one-command bench."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agents.__main__ import main as agents_main
from agents.common.cli import build_parser, field_docs, parse_args
from agents.common.envs import FAST_ENV_KWARGS
from agents.evaluate import EvalArgs
from agents.main import BenchArgs, bench
from agents.main import main as bench_main
from agents.train import TrainArgs


@dataclass
class _Demo:
    """Demo arguments."""

    env_id: str = "x"
    """the env"""
    steps: int = 3
    """how many"""
    rate: float | None = None
    """optional rate"""
    flag: bool = True
    """a switch"""
    seeds: list[int] = field(default_factory=lambda: [0])
    """several seeds"""
    extra: dict[str, Any] = field(default_factory=dict)
    """a JSON object"""


@dataclass
class _WithPositional:
    """Demo with a positional."""

    count: int = 1
    """a count"""
    folder: str | None = field(default=None, metadata={"positional": True})
    """a folder"""


def test_positional_field() -> None:
    assert parse_args(_WithPositional, []) == _WithPositional(1, None)
    assert parse_args(_WithPositional, ["runs/x", "--count", "2"]) == _WithPositional(2, "runs/x")
    assert parse_args(_WithPositional, ["--count", "3", "runs/y"]) == _WithPositional(3, "runs/y")
    text = build_parser(_WithPositional).format_help()
    assert "[FOLDER]" in text and "a folder" in text
    with pytest.raises(SystemExit):
        parse_args(_WithPositional, ["a", "b"])


def test_dataclass_parser() -> None:
    assert field_docs(_Demo) == {
        "env_id": "the env",
        "steps": "how many",
        "rate": "optional rate",
        "flag": "a switch",
        "seeds": "several seeds",
        "extra": "a JSON object",
    }
    args = parse_args(
        _Demo,
        ["--env-id", "y", "--steps", "5", "--rate", "0.5", "--no-flag", "--seeds", "1", "2",
         "--extra", '{"a": 1}'],
    )  # fmt: skip
    assert args == _Demo("y", 5, 0.5, False, [1, 2], {"a": 1})
    assert parse_args(_Demo, ["--env_id", "z"]).env_id == "z"
    assert parse_args(_Demo, []) == _Demo()
    with pytest.raises(SystemExit):
        parse_args(_Demo, ["--extra", "[1, 2]"])
    with pytest.raises(SystemExit):
        parse_args(_Demo, ["--steps", "many"])


@pytest.mark.parametrize("cls", [TrainArgs, EvalArgs, BenchArgs])
def test_every_command_field_has_a_docstring(cls: type) -> None:
    docs = field_docs(cls)
    assert set(docs) == set(cls.__dataclass_fields__)
    assert all(docs.values())
    assert "--env-id" in build_parser(cls).format_help()


def test_python_m_agents_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    assert agents_main([]) == 2
    assert "commands:" in capsys.readouterr().out
    assert agents_main(["--help"]) == 0
    assert agents_main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().out
    assert agents_main(["train", "--algo", "nope"]) == 2
    assert "unknown algorithm 'nope'" in capsys.readouterr().out


def test_bench_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--algo", "dqn"]) == 2
    assert "unknown algorithm 'dqn'" in capsys.readouterr().out
    assert bench_main(["--env-id", "CartPole-v1"]) == 2
    assert "unknown env id 'CartPole-v1'" in capsys.readouterr().out
    assert bench_main(["--total-timesteps", "0"]) == 2
    assert "total_timesteps must be a positive integer, got 0" in capsys.readouterr().out


def test_bench_output_dir_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "FILE").write_text("x")
    out = str(tmp_path / "FILE")
    assert bench_main(["--output-dir", out, "--no-progress"]) == 2
    assert capsys.readouterr().out.startswith(f"error: output_dir '{out}/runs' is inside '{out}'")


def test_bench_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--algo", "a2c", "--total-timesteps", "16", "--n-targets", "1", "--seeds", "0",
        "--env-kwargs", json.dumps(FAST_ENV_KWARGS["AEGym/SoundMatch-Easy-v1"]),
        "--output-dir", str(tmp_path), "--n-showcase", "1", "--no-progress",
    ]  # fmt: skip
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    assert "| a2c |" in out and "| ae |" in out and "| adam |" in out and "wall time:" in out
    # the leaderboard's format: its columns and the computed who-wins sentence
    assert "| agent | training seeds | privileged | budget per episode |" in out
    assert "normalized score IQM ↑ | success ↑ | final distance ↓ |" in out
    assert "\nEasy (4 knobs, in-domain): " in out
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<audio" in page and "<img" in page


@pytest.mark.slow
def test_bench_scheduler_compares_with_adam_and_the_oracle(tmp_path: Path) -> None:
    res = bench(
        BenchArgs(
            env_id="AEGym/SchedulerGains-v1",
            algo="ppo",
            total_timesteps=16,
            n_targets=1,
            seeds=[0],
            env_kwargs=FAST_ENV_KWARGS["AEGym/SchedulerGains-v1"],
            output_dir=str(tmp_path),
            n_showcase=0,
            progress=False,
        )
    )
    labels = [a.label for a in res.evaluation.agents]
    assert labels[:5] == ["ppo", "ae", "adam", "static", "random"]
    assert "oracle" in labels  # the normalized score's reference joins
    assert "normalized_score" in res.evaluation.agents[0].metrics


def test_commands_keep_freed_memory_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    import aegym.memory
    from agents.common.cli import RETAIN_MEMORY_ENV, keep_freed_memory

    calls: list[int] = []
    monkeypatch.setattr(aegym.memory, "retain_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv(RETAIN_MEMORY_ENV, raising=False)
    assert keep_freed_memory() is True and calls == [1]
    monkeypatch.setenv(RETAIN_MEMORY_ENV, "0")
    assert keep_freed_memory() is False and calls == [1]
    # the dispatcher asks for it before running a command
    monkeypatch.delenv(RETAIN_MEMORY_ENV)
    assert agents_main(["train", "--algo", "nope"]) == 2
    assert calls == [1, 1]
