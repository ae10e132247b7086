"""Train an SB3 agent (PPO, SAC, A2C or shaped PPO) on an aegym env.

``python -m agents train --env-id AEGym/SoundMatch-v0 --algo ppo --total-timesteps 20000``

A run lives in ``{output_dir}/{env}__{algo}__{seed}__{unix time}`` (``/`` in the env id
becomes ``-``): ``config.json`` (arguments, resolved hyperparameters, versions),
TensorBoard events and ``progress*.csv`` (SB3's losses plus every reward term, the
distance and, on SchedulerGains, α/μ/σ — see :class:`agents.callbacks.EnvSignalsCallback`),
``checkpoints/step_XXXXXXXXX.zip`` (+ ``_replay.pkl`` for SAC) and ``model.zip``.

Training runs in chunks of ``checkpoint_every`` steps. At the start of every chunk the
envs are reset and every generator (python, numpy, torch, envs, action space) is seeded
from ``(seed, steps so far)``; at its end a checkpoint is written atomically (temp file
+ ``os.replace``). Resuming from a checkpoint therefore continues exactly as the
uninterrupted run does — same parameters after the same number of steps.
"""

from __future__ import annotations

import copy
import io
import json
import platform
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import save_to_pkl
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

import aegym
from aegym.audio_io import atomic_write_bytes
from agents.baselines import AEBaseline
from agents.callbacks import EnvSignalsCallback, TqdmCallback
from agents.cli import parse_args
from agents.envs import check_env_id, make_vec_env, native_vec_available
from agents.hyperparams import AE_ALPHA0, AlgoSettings, check_algo, get_settings
from agents.shaped_ppo import ShapedPPO, ShapingConfig

#: Algorithm name -> SB3 class.
ALGO_CLASSES: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "sac": SAC,
    "a2c": A2C,
    "shaped_ppo": ShapedPPO,
}

_CKPT = re.compile(r"^step_(\d+)\.zip$")


@dataclass
class TrainArgs:
    """Train an agent on an aegym env (hyperparameters from agents/hyperparams.py)."""

    env_id: str = "AEGym/SoundMatch-v0"
    """environment id (AEGym/SoundMatch-v0, AEGym/SoundMatchLive-v0, AEGym/SchedulerGains-v0)"""
    algo: str = "ppo"
    """algorithm: ppo, sac, a2c or shaped_ppo"""
    total_timesteps: int = 20_000
    """env steps to train for (summed over parallel envs); on resume, the new total"""
    seed: int = 0
    """seed of the run (networks, envs, exploration)"""
    output_dir: str = "runs"
    """folder that receives the run folder"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env keyword arguments as a JSON object, e.g. '{"duration_s": 0.25}'
    (target defaults to "train")"""
    n_envs: int | None = None
    """parallel envs (None: the algorithm's setting for the env)"""
    checkpoint_every: int = 10_000
    """env steps between checkpoints (rounded up to whole rollouts)"""
    resume: str | None = None
    """checkpoint .zip to resume from (its run's config.json supplies every other setting)"""
    native_vec: bool = True
    """use aegym's native batched vector env when available (else DummyVecEnv)"""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """overrides of the SB3 constructor arguments as a JSON object,
    e.g. '{"learning_rate": 1e-3}'"""
    shaping: dict[str, Any] = field(default_factory=dict)
    """overrides of shaped PPO's switches as a JSON object, e.g. '{"kl_coef": 0}'"""
    progress: bool = True
    """show a tqdm progress bar"""
    torch_threads: int = 1
    """torch intra-op threads"""
    run_name: str | None = None
    """run folder name (None: {env}__{algo}__{seed}__{time})"""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    :param run_dir: the run folder.
    :param model_path: the final model (``model.zip``).
    :param model: the trained model (its env closed).
    :param num_timesteps: env steps trained in total.
    :param wall_s: wall time of this call in seconds.
    :param checkpoints: checkpoints written by this call, in order.
    """

    run_dir: Path
    model_path: Path
    model: BaseAlgorithm
    num_timesteps: int
    wall_s: float
    checkpoints: tuple[Path, ...]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def validate_args(args: TrainArgs) -> None:
    """Check the arguments, naming the bad value and what is allowed.

    :param args: the arguments.
    :raises ValueError: unknown env id or algorithm, non-positive counts, bad overrides.
    :raises FileNotFoundError: a resume checkpoint that does not exist.
    """
    if args.resume is not None:
        path = Path(args.resume)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint to resume from not found: {args.resume!r}")
        if not (path.parent.parent / "config.json").is_file():
            raise FileNotFoundError(
                f"{args.resume!r} is not inside a run folder (expected "
                f"{path.parent.parent / 'config.json'})"
            )
    check_env_id(args.env_id)
    check_algo(args.algo)
    _positive_int("total_timesteps", args.total_timesteps)
    _positive_int("checkpoint_every", args.checkpoint_every)
    _positive_int("torch_threads", args.torch_threads)
    if args.n_envs is not None:
        _positive_int("n_envs", args.n_envs)
    if args.shaping and args.algo != "shaped_ppo":
        raise ValueError(f"shaping overrides only apply to algo 'shaped_ppo', not {args.algo!r}")
    if args.shaping:
        allowed = set(ShapingConfig.__dataclass_fields__)
        unknown = sorted(set(args.shaping) - allowed)
        if unknown:
            raise ValueError(f"unknown shaping fields {unknown}; allowed: {sorted(allowed)}")


def resolve_settings(args: TrainArgs) -> AlgoSettings:
    """The algorithm's settings for the env with the run's overrides applied.

    :param args: validated arguments.
    """
    base = get_settings(args.env_id, args.algo)
    kwargs = copy.deepcopy(base.kwargs)
    for key, value in args.hyperparams.items():
        if key == "policy_kwargs" and isinstance(value, dict):
            kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **value}
        else:
            kwargs[key] = value
    shaping = base.shaping
    if args.algo == "shaped_ppo":
        shaping = replace(shaping or ShapingConfig(), **args.shaping)
    return AlgoSettings(args.n_envs or base.n_envs, kwargs, shaping)


def run_dir_name(env_id: str, algo: str, seed: int, stamp: int | None = None) -> str:
    """``{env}__{algo}__{seed}__{time}`` with ``/`` in the env id replaced by ``-``.

    :param env_id: env id.
    :param algo: algorithm name.
    :param seed: run seed.
    :param stamp: unix time (None: now).
    """
    stamp = int(time.time()) if stamp is None else stamp
    return f"{env_id.replace('/', '-')}__{algo}__{seed}__{stamp}"


def chunk_seed(seed: int, num_timesteps: int) -> int:
    """Seed of the chunk that starts after ``num_timesteps`` steps of run ``seed``.

    :param seed: run seed.
    :param num_timesteps: steps trained so far.
    """
    return int(np.random.SeedSequence([seed, num_timesteps]).generate_state(1)[0])


def save_model_atomic(model: BaseAlgorithm, path: Path) -> Path:
    """``model.save`` into memory, then :func:`atomic_write_bytes`.

    :param model: the model.
    :param path: destination ``.zip``.
    """
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def replay_path(checkpoint: Path) -> Path:
    """Replay-buffer file that goes with an off-policy checkpoint.

    :param checkpoint: a ``step_*.zip`` checkpoint.
    """
    return checkpoint.with_name(checkpoint.stem + "_replay.pkl")


def save_checkpoint(model: BaseAlgorithm, ckpt_dir: Path) -> Path:
    """Write ``step_{num_timesteps:09d}.zip`` (and the replay buffer of off-policy
    models, keeping only the newest) atomically.

    :param model: the model.
    :param ckpt_dir: the run's checkpoint folder.
    """
    path = ckpt_dir / f"step_{model.num_timesteps:09d}.zip"
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        buf = io.BytesIO()
        save_to_pkl(buf, model.replay_buffer)
        atomic_write_bytes(replay_path(path), buf.getvalue())
        for old in ckpt_dir.glob("step_*_replay.pkl"):
            if old != replay_path(path):
                old.unlink()
    save_model_atomic(model, path)
    return path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the most steps in a run folder, or None.

    :param run_dir: a run folder.
    """
    found = []
    for p in (Path(run_dir) / "checkpoints").glob("step_*.zip"):
        m = _CKPT.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def _versions() -> dict[str, str]:
    return {
        "aegym": aegym.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _round_up(n: int, unit: int) -> int:
    return max(unit, -(-n // unit) * unit)


def _chunk_unit(algo: str, settings: AlgoSettings, n_envs: int) -> int:
    if algo == "sac":
        return n_envs
    return int(settings.kwargs.get("n_steps", 2048)) * n_envs


def _make_logger(run_dir: Path, num_timesteps: int) -> Logger:
    csv_name = "progress.csv" if num_timesteps == 0 else f"progress_{num_timesteps:09d}.csv"
    return Logger(
        str(run_dir),
        [TensorBoardOutputFormat(str(run_dir)), CSVOutputFormat(str(run_dir / csv_name))],
    )


def _reference(algo: str, settings: AlgoSettings, venv: VecEnv) -> AEBaseline | None:
    if algo == "shaped_ppo" and settings.shaping is not None and settings.shaping.kl_coef > 0:
        return AEBaseline(venv, alpha0=AE_ALPHA0)
    return None


def build_model(
    algo: str, venv: VecEnv, settings: AlgoSettings, seed: int, device: str = "cpu"
) -> BaseAlgorithm:
    """A fresh SB3 model with the run's settings.

    :param algo: algorithm name.
    :param venv: the training env.
    :param settings: resolved settings.
    :param seed: run seed.
    :param device: torch device.
    """
    cls = ALGO_CLASSES[check_algo(algo)]
    kwargs = copy.deepcopy(settings.kwargs)
    if algo == "shaped_ppo":
        kwargs["shaping"] = settings.shaping
        kwargs["reference"] = _reference(algo, settings, venv)
    return cls("MlpPolicy", venv, seed=seed, device=device, verbose=0, **kwargs)


def _load_resume_args(args: TrainArgs) -> tuple[TrainArgs, Path, dict[str, Any]]:
    ckpt = Path(args.resume)  # type: ignore[arg-type]
    run_dir = ckpt.parent.parent
    config = json.loads((run_dir / "config.json").read_text())
    saved = {k: v for k, v in config["args"].items() if k in TrainArgs.__dataclass_fields__}
    saved.update(
        total_timesteps=args.total_timesteps,
        progress=args.progress,
        torch_threads=args.torch_threads,
        resume=str(ckpt),
    )
    return TrainArgs(**saved), run_dir, config


def train(args: TrainArgs) -> TrainResult:
    """Train (or resume) one agent; see the module docstring for the run folder.

    :param args: the arguments (validated here).
    :raises ValueError: bad arguments.
    :raises FileNotFoundError: missing resume checkpoint.
    """
    validate_args(args)
    t0 = time.perf_counter()
    config: dict[str, Any]
    if args.resume is not None:
        args, run_dir, config = _load_resume_args(args)
        validate_args(args)
    else:
        run_dir = Path(args.output_dir) / (
            args.run_name or run_dir_name(args.env_id, args.algo, args.seed)
        )
        if (run_dir / "config.json").exists():
            raise FileExistsError(f"run folder {str(run_dir)!r} already holds a run")
        config = {}
    torch.set_num_threads(args.torch_threads)
    settings = resolve_settings(args)
    env_kwargs = {"target": "train", **args.env_kwargs}
    venv = make_vec_env(
        args.env_id, settings.n_envs, seed=args.seed, native=args.native_vec, **env_kwargs
    )
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if args.resume is not None:
        ckpt = Path(args.resume)
        model = ALGO_CLASSES[args.algo].load(ckpt, env=venv, device="cpu")
        if isinstance(model, OffPolicyAlgorithm):
            rp = replay_path(ckpt)
            if not rp.is_file():
                raise FileNotFoundError(f"replay buffer of the checkpoint not found: {str(rp)!r}")
            model.load_replay_buffer(rp)
        if isinstance(model, ShapedPPO):
            model.set_reference(_reference(args.algo, settings, venv))
        config.setdefault("resumed", []).append(
            {"checkpoint": str(ckpt), "num_timesteps": model.num_timesteps}
        )
    else:
        model = build_model(args.algo, venv, settings, args.seed)
        config = {
            "args": asdict(args),
            "settings": settings.to_dict(),
            "env_kwargs": env_kwargs,
            "native_vec": native_vec_available() and args.native_vec,
            "versions": _versions(),
        }
    atomic_write_bytes(run_dir / "config.json", json.dumps(config, indent=2).encode())
    model.set_logger(_make_logger(run_dir, model.num_timesteps))

    chunk = _round_up(args.checkpoint_every, _chunk_unit(args.algo, settings, settings.n_envs))
    bar = tqdm(
        total=args.total_timesteps,
        initial=min(model.num_timesteps, args.total_timesteps),
        disable=not args.progress,
        desc=f"{args.algo} {args.env_id}",
        unit="step",
    )
    callbacks = [EnvSignalsCallback(), TqdmCallback(bar)]
    log_interval = 4 if isinstance(model, OffPolicyAlgorithm) else 1
    written: list[Path] = []
    try:
        while model.num_timesteps < args.total_timesteps:
            steps = min(chunk, args.total_timesteps - model.num_timesteps)
            model.set_random_seed(chunk_seed(args.seed, model.num_timesteps))
            model._last_obs = None  # type: ignore[assignment]  # reset envs: exact resume
            if isinstance(model, ShapedPPO) and model.reference is not None:
                model.reference.reset()  # type: ignore[attr-defined]
            model.learn(
                steps, callback=callbacks, reset_num_timesteps=False, log_interval=log_interval
            )
            # Write what SB3 recorded after its last dump (its final update's losses).
            model.logger.record("time/total_timesteps", model.num_timesteps)
            model.logger.dump(step=model.num_timesteps)
            written.append(save_checkpoint(model, ckpt_dir))
    finally:
        bar.close()
        venv.close()
    model_path = save_model_atomic(model, run_dir / "model.zip")
    return TrainResult(
        run_dir,
        model_path,
        model,
        model.num_timesteps,
        time.perf_counter() - t0,
        tuple(written),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m agents train ...``: train and print where the run went.

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(TrainArgs, argv, prog="python -m agents train")
    try:
        result = train(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}")
        return 2
    print(f"trained {result.num_timesteps} steps in {result.wall_s:.1f}s -> {result.model_path}")
    return 0
