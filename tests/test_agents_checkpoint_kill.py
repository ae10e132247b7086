"""Checkpoints survive a kill at any instant: what is left always resumes.

The fast test replays one SAC run and "kills" it at every point of its second
checkpoint — in the middle of each file write (leaving the partial temp file a real
kill leaves) and between every pair of file operations — then resumes from what is
left. The slow test kills real ``python -m agents train`` processes with SIGKILL.
"""

from __future__ import annotations

import importlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch as th

from agents.common.envs import FAST_ENV_KWARGS
from agents.common.runs import latest_checkpoint, replay_path
from agents.train import TrainArgs, clean_run_dir, save_checkpoint, train

# The module (``agents.train`` as an attribute is the function that ``agents`` exports).
train_mod = importlib.import_module("agents.train")

SM = "AEGym/SoundMatch-Easy-v1"
SAC_TINY = {
    "learning_starts": 8,
    "batch_size": 8,
    "buffer_size": 200,
    "policy_kwargs": {"net_arch": [16]},
}


class _Killed(BaseException):
    """Stands for the process dying: nothing after it runs (not even ``except``)."""


def _args(out: Path, steps: int, **kw) -> TrainArgs:
    return TrainArgs(
        env_id=SM,
        algo="sac",
        total_timesteps=steps,
        output_dir=str(out),
        env_kwargs=FAST_ENV_KWARGS[SM],
        n_envs=2,
        checkpoint_every=4,
        hyperparams=SAC_TINY,
        progress=False,
        run_name="run",
        **kw,
    )


def _params(model) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def _temp_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.rglob("*.tmp"))


class _FileOps:
    """Stand-ins for agents.train's file writes and deletes in the checkpoint folder:
    they record every operation and die at ``kill`` = ``(op index, "during"|"after")``.
    A death during a write leaves a partial temp file, as ``kill -9`` in the middle of
    :func:`aegym.audio_io.atomic_write_bytes` does."""

    def __init__(self, kill: tuple[int, str] | None = None) -> None:
        self.kill = kill
        self.ops: list[tuple[str, str]] = []
        self._write = train_mod.atomic_write_bytes
        self._remove = train_mod._remove

    def write(self, path, data: bytes):
        path = Path(path)
        if path.parent.name != "checkpoints":
            return self._write(path, data)
        i = len(self.ops)
        self.ops.append(("write", path.name))
        if self.kill == (i, "during"):
            fd, _ = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.write(fd, data[: len(data) // 2])
            os.close(fd)
            raise _Killed
        out = self._write(path, data)
        if self.kill == (i, "after"):
            raise _Killed
        return out

    def remove(self, path: Path) -> None:
        i = len(self.ops)
        self.ops.append(("remove", path.name))
        self._remove(path)
        if self.kill == (i, "after"):
            raise _Killed


def _second_checkpoint_kill_points(ops: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """Every kill point from "checkpoint 4 complete" to "checkpoint 8 complete and
    tidied": after each operation, and during each write."""
    first_zip = ops.index(("write", "step_000000004.zip"))
    third = next(i for i, (_, name) in enumerate(ops) if "000000012" in name)
    points = []
    for i in range(first_zip, third):
        if i > first_zip and ops[i][0] == "write":
            points.append((i, "during"))
        points.append((i, "after"))
    return points


def test_kill_at_every_point_of_a_checkpoint_leaves_a_resumable_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = _FileOps()
    with monkeypatch.context() as m:
        m.setattr(train_mod, "atomic_write_bytes", rec.write)
        m.setattr(train_mod, "_remove", rec.remove)
        full = train(_args(tmp_path / "full", 12))
    expected = _params(full.model)
    points = _second_checkpoint_kill_points(rec.ops)
    assert len(points) >= 5, rec.ops  # replay + zip writes (during/after) and the delete
    for k, point in enumerate(points):
        out = tmp_path / f"kill{k}"
        ops = _FileOps(kill=point)
        with monkeypatch.context() as m:
            m.setattr(train_mod, "atomic_write_bytes", ops.write)
            m.setattr(train_mod, "_remove", ops.remove)
            with pytest.raises(_Killed):
                train(_args(out, 12))
        run_dir = out / "run"
        ckpt = latest_checkpoint(run_dir)
        assert ckpt is not None, (point, rec.ops)
        assert ckpt.name in ("step_000000004.zip", "step_000000008.zip"), point
        assert replay_path(ckpt).is_file(), (point, sorted(os.listdir(ckpt.parent)))
        resumed = train(TrainArgs(resume=str(run_dir), total_timesteps=12, progress=False))
        assert resumed.num_timesteps == 12
        got = _params(resumed.model)
        for name, value in expected.items():  # the same run as the uninterrupted one
            th.testing.assert_close(got[name], value, rtol=0, atol=0, msg=f"{point} {name}")
        assert _temp_files(run_dir) == [], point
        replays = sorted(p.name for p in (run_dir / "checkpoints").glob("*_replay.pkl"))
        assert replays == ["step_000000012_replay.pkl"], point


def test_save_checkpoint_writes_the_zip_before_dropping_the_old_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = train(_args(tmp_path, 4))
    ckpt_dir = res.run_dir / "checkpoints"
    seen: list[list[str]] = []
    real = train_mod._remove

    def remove(path: Path) -> None:
        seen.append(sorted(os.listdir(ckpt_dir)))
        real(path)

    monkeypatch.setattr(train_mod, "_remove", remove)
    res.model.num_timesteps = 8
    path = save_checkpoint(res.model, ckpt_dir)
    assert path.name == "step_000000008.zip"
    # When the old replay buffer goes, the new checkpoint is already complete.
    assert seen == [
        ["step_000000004.zip", "step_000000004_replay.pkl", "step_000000008.zip",
         "step_000000008_replay.pkl"]
    ]  # fmt: skip
    assert sorted(os.listdir(ckpt_dir)) == [
        "step_000000004.zip", "step_000000008.zip", "step_000000008_replay.pkl"
    ]  # fmt: skip


def _fake_run(tmp_path: Path, algo: str, files: list[str]) -> Path:
    run = tmp_path / algo
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(
        f'{{"args": {{"algo": "{algo}", "env_id": "{SM}"}}, "env_kwargs": {{}}}}'
    )
    for name in files:
        (run / name).write_bytes(b"x")
    return run


def test_latest_checkpoint_needs_the_replay_of_off_policy_runs(tmp_path: Path) -> None:
    files = ["checkpoints/step_000000004.zip", "checkpoints/step_000000004_replay.pkl",
             "checkpoints/step_000000008.zip"]  # fmt: skip
    sac = _fake_run(tmp_path, "sac", files)
    assert latest_checkpoint(sac).name == "step_000000004.zip"  # type: ignore[union-attr]
    assert latest_checkpoint(sac, resumable=False).name == "step_000000008.zip"  # type: ignore[union-attr]
    ppo = _fake_run(tmp_path, "ppo", files)
    assert latest_checkpoint(ppo).name == "step_000000008.zip"  # type: ignore[union-attr]
    with pytest.raises(FileNotFoundError, match=r"replay buffer of the checkpoint not found"):
        train(TrainArgs(resume=str(sac / "checkpoints" / "step_000000008.zip")))
    empty = _fake_run(tmp_path, "a2c", [])
    with pytest.raises(FileNotFoundError, match=r"holds no resumable checkpoint"):
        train(TrainArgs(resume=str(empty)))


def test_clean_run_dir_removes_what_a_kill_leaves(tmp_path: Path) -> None:
    run = _fake_run(
        tmp_path,
        "sac",
        [
            "checkpoints/step_000000004.zip",
            "checkpoints/step_000000004_replay.pkl",
            "checkpoints/step_000000008_replay.pkl",  # its zip was never written
            "checkpoints/.step_000000008.zip.abc123.tmp",
            "checkpoints/.step_000000012_replay.pkl.x9.tmp",
            ".model.zip.q1.tmp",
            "progress.csv",
        ],
    )
    removed = sorted(p.name for p in clean_run_dir(run))
    assert removed == [
        ".model.zip.q1.tmp", ".step_000000008.zip.abc123.tmp",
        ".step_000000012_replay.pkl.x9.tmp", "step_000000008_replay.pkl",
    ]  # fmt: skip
    assert sorted(os.listdir(run / "checkpoints")) == [
        "step_000000004.zip", "step_000000004_replay.pkl"
    ]  # fmt: skip
    assert (run / "progress.csv").is_file()


def _spawn_training(out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "agents", "train", "--env-id", SM, "--algo", "sac",
        "--total-timesteps", "100000", "--n-envs", "2", "--checkpoint-every", "4",
        "--env-kwargs", '{"duration_s": 0.25}', "--no-progress", "--output-dir", str(out),
        "--run-name", "run", "--hyperparams",
        # A big replay buffer makes every checkpoint write take a while: kills often land
        # in the middle of one.
        '{"learning_starts": 8, "batch_size": 8, "buffer_size": 20000,'
        ' "policy_kwargs": {"net_arch": [16]}}',
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_real_training_processes(tmp_path: Path) -> None:
    rng = random.Random(0)
    left_temp = 0
    for trial in range(10):
        out = tmp_path / f"t{trial}"
        proc = _spawn_training(out)
        ckpt_dir = out / "run" / "checkpoints"
        deadline = time.monotonic() + 120
        while not list(ckpt_dir.glob("step_*.zip")):
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        run_dir = out / "run"
        left_temp += bool(_temp_files(run_dir))
        ckpt = latest_checkpoint(run_dir)
        assert ckpt is not None and replay_path(ckpt).is_file(), sorted(os.listdir(ckpt_dir))
        steps = int(ckpt.stem.split("_")[1])
        resumed = train(TrainArgs(resume=str(run_dir), total_timesteps=steps + 4, progress=False))
        assert resumed.num_timesteps == steps + 4
        assert _temp_files(run_dir) == []
        replays = [p.name for p in ckpt_dir.glob("*_replay.pkl")]
        assert replays == [f"step_{steps + 4:09d}_replay.pkl"]
    print(f"kills that left a temp file behind: {left_temp} of 10")
