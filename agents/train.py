"""Train an SB3 agent (PPO, SAC, A2C or shaped PPO) on an aegym env.

``python -m agents train --env-id AEGym/SoundMatch-Easy-v1 --algo ppo --total-timesteps 20000``

A run lives in ``{output_dir}/{env}__{algo}__{seed}__{unix time}`` (``/`` in the env id
becomes ``-``): ``config.json`` (arguments; everything resolved: the env's config with
its defaults, the algorithm's settings and every SB3 constructor argument, the shaping
switches; versions, the command line; what resume reads), ``model_card.json`` and
``README.md`` (what a user needs to reload and rerun the agent: env id and kwargs,
algorithm and resolved hyperparameters, seed, package versions, the exact command
line), TensorBoard events and ``progress*.csv`` (SB3's losses plus every reward term,
the distance and, on SchedulerGains, α/μ/σ — see
:class:`agents.common.callbacks.EnvSignalsCallback`),
``checkpoints/step_XXXXXXXXX.zip`` (+ ``_replay.pkl`` for SAC) and ``model.zip``.
``python -m agents evaluate RUN_DIR`` evaluates a run from its folder alone.

Training runs in chunks of ``checkpoint_every`` steps. At the start of every chunk the
envs are reset and every generator (python, numpy, torch, envs, action space) is seeded
from ``(seed, steps so far)``; at its end a checkpoint is written atomically (temp file
+ ``os.replace``). Resuming from a checkpoint therefore continues exactly as the
uninterrupted run does — same parameters after the same number of steps.

Checkpoints survive a kill at any instant (``kill -9`` included): checkpoint N's replay
buffer is written first, then ``step_N.zip``, and only then is checkpoint N−1's replay
buffer deleted, so the newest zip that has its replay buffer is always complete and
resumable (:func:`agents.common.runs.latest_checkpoint` only returns such a zip). Temp
files a kill left behind, and replay buffers without their zip, are removed when the run
starts or resumes.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import save_to_pkl
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

import aegym
from aegym.audio_io import atomic_write_bytes
from agents.baselines import BaselinePolicy, make_baseline
from agents.common.callbacks import EnvSignalsCallback, TqdmCallback
from agents.common.checks import check_count
from agents.common.cli import parse_args
from agents.common.envs import (
    check_env_id,
    check_env_kwargs,
    env_config,
    make_vec_env,
    native_vec_available,
)
from agents.common.registry import ALGOS, algo_class, check_algo, get_algo, is_off_policy
from agents.common.runs import (
    MODEL_CARD,
    REPLAY,
    RUN_CONFIG,
    RUN_README,
    config_to_dict,
    json_ready,
    latest_checkpoint,
    read_run_config,
    replay_path,
    run_algo,
)
from agents.hyperparams import TRAIN_ENV_KWARGS, AlgoSettings, get_settings
from agents.shaped_ppo import KL_REFERENCES, ShapedPPO, ShapingConfig

#: Temp files of :func:`atomic_write_bytes` (``.{name}.{random}.tmp``).
_TEMP_GLOB = ".*.tmp"

#: SB3 constructor arguments that :func:`build_model` sets itself.
_RESERVED_KWARGS = frozenset(
    {"policy", "env", "seed", "device", "verbose", "_init_setup_model", "shaping", "reference",
     "potential_fn"}
)  # fmt: skip


@dataclass
class TrainArgs:
    """Train an agent on an aegym env (hyperparameters from agents/hyperparams.py)."""

    env_id: str = "AEGym/SoundMatch-Easy-v1"
    """environment id (AEGym/SoundMatch-{Easy,Medium,Full}-v1, SoundMatchLive-v1, ...)"""
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
    """checkpoint .zip or run folder to resume from (a folder: its newest resumable
    checkpoint); the run's config.json supplies every other setting"""
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


def allowed_hyperparams(algo: str) -> tuple[str, ...]:
    """SB3 constructor arguments ``hyperparams`` may set for ``algo`` (sorted).

    :param algo: algorithm name.
    :raises ValueError: unknown algorithm.
    """
    names: set[str] = set()
    for klass in algo_class(algo).__mro__:
        if not issubclass(klass, BaseAlgorithm) or klass is BaseAlgorithm:
            break
        params = inspect.signature(klass).parameters
        names |= {
            n
            for n, p in params.items()
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break  # the parent's arguments are not forwarded
    return tuple(sorted(names - _RESERVED_KWARGS))


def check_hyperparams(algo: str, hyperparams: Any) -> dict[str, Any]:
    """Return ``hyperparams`` if ``algo``'s SB3 class takes every key.

    :param algo: algorithm name.
    :param hyperparams: overrides of the SB3 constructor arguments.
    :raises ValueError: not a dict, unknown keys (naming them and the allowed ones), or a
        ``policy_kwargs`` that is not a dict.
    """
    if not isinstance(hyperparams, dict):
        raise ValueError(f"hyperparams must be a JSON object, got {hyperparams!r}")
    allowed = allowed_hyperparams(algo)
    unknown = sorted(set(hyperparams) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown hyperparams {', '.join(map(repr, unknown))} for algo {algo!r}; "
            f"allowed: {', '.join(allowed)}"
        )
    policy_kwargs = hyperparams.get("policy_kwargs", {})
    if not isinstance(policy_kwargs, dict):
        raise ValueError(f"hyperparams policy_kwargs must be a JSON object, got {policy_kwargs!r}")
    return hyperparams


def check_output_dir(output_dir: str, run_name: str | None = None) -> None:
    """Check that run folders can be created in ``output_dir`` (without creating any).

    The nearest existing folder on the way is probed by creating and removing a temp
    folder in it, which also catches read-only mounts and root-squashed shares.

    :param output_dir: the folder that receives run folders (created if missing).
    :param run_name: the run folder's name, if fixed.
    :raises NotADirectoryError: ``output_dir`` (or a folder above it, or the run folder)
        is a file.
    :raises PermissionError: no folder can be created there.
    """
    out = Path(output_dir)
    if run_name is not None and (out / run_name).exists() and not (out / run_name).is_dir():
        raise NotADirectoryError(
            f"run_name {run_name!r}: {str(out / run_name)!r} is a file, not a run folder"
        )
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == out else f"is inside {str(probe)!r}, which is a file"
        raise NotADirectoryError(
            f"output_dir {output_dir!r} {what}; it must be a folder (or not exist yet)"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".aegym-write-check-", dir=probe))
    except OSError as err:
        raise PermissionError(
            f"output_dir {output_dir!r} is not writable: cannot create folders in "
            f"{str(probe)!r} ({err.strerror or err})"
        ) from None


def resolve_resume(resume: str) -> Path:
    """The checkpoint that ``resume`` (a checkpoint ``.zip`` or a run folder) names.

    :param resume: checkpoint or run folder.
    :raises FileNotFoundError: no such checkpoint, not inside a run folder, a run folder
        without a resumable checkpoint, or an off-policy checkpoint without its replay
        buffer.
    """
    path = Path(resume)
    if path.is_dir():
        if not (path / RUN_CONFIG).is_file():
            raise FileNotFoundError(
                f"resume {resume!r} is a folder but not a run folder (no config.json in it)"
            )
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            replay = ", with its _replay.pkl" if is_off_policy(run_algo(path)) else ""
            raise FileNotFoundError(
                f"resume {resume!r}: the run folder holds no resumable checkpoint "
                f"(checkpoints/step_*.zip{replay})"
            )
        return ckpt
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {resume!r}")
    run_dir = path.parent.parent
    if not (run_dir / RUN_CONFIG).is_file():
        raise FileNotFoundError(
            f"{resume!r} is not inside a run folder (expected {run_dir / 'config.json'})"
        )
    if is_off_policy(run_algo(run_dir)) and not replay_path(path).is_file():
        raise FileNotFoundError(
            f"replay buffer of the checkpoint not found: {str(replay_path(path))!r} "
            f"(resume from the run folder to pick its newest resumable checkpoint)"
        )
    return path


def validate_args(args: TrainArgs) -> None:
    """Check the arguments, naming the bad value and what is allowed.

    Nothing is created: a run that fails here leaves no run folder behind.

    :param args: the arguments.
    :raises ValueError: unknown env id, algorithm, env kwarg or hyperparameter,
        non-positive counts, bad overrides.
    :raises FileNotFoundError: a resume checkpoint that does not exist.
    :raises NotADirectoryError: an output folder that is a file.
    :raises PermissionError: an output folder that cannot be written.
    """
    if args.resume is not None:
        resolve_resume(args.resume)
    check_settings(args)
    if args.resume is None:
        check_output_dir(args.output_dir, args.run_name)


def check_settings(args: TrainArgs) -> None:
    """Check what a run trains (env, algorithm, counts, env kwargs, hyperparameters,
    shaping) without touching the file system; :func:`validate_args` adds the resume
    checkpoint and the output folder.

    :param args: the arguments.
    :raises ValueError: unknown env id, algorithm, env kwarg or hyperparameter,
        non-positive counts, bad overrides.
    """
    check_env_id(args.env_id)
    check_algo(args.algo)
    check_count("total_timesteps", args.total_timesteps)
    check_count("checkpoint_every", args.checkpoint_every)
    check_count("torch_threads", args.torch_threads)
    if args.n_envs is not None:
        check_count("n_envs", args.n_envs)
    check_env_kwargs(args.env_id, args.env_kwargs)
    check_hyperparams(args.algo, args.hyperparams)
    if not isinstance(args.shaping, dict):
        raise ValueError(f"shaping must be a JSON object, got {args.shaping!r}")
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


def _remove(path: Path) -> None:
    """Delete a file of a run folder (one place, so tests can interrupt it)."""
    path.unlink(missing_ok=True)


def save_checkpoint(model: BaseAlgorithm, ckpt_dir: Path) -> Path:
    """Write ``step_{num_timesteps:09d}.zip`` (and the replay buffer of off-policy
    models, keeping only the newest) atomically, in an order that survives a kill at
    any instant: replay buffer N, then ``step_N.zip``, then delete the older replay
    buffers. Until ``step_N.zip`` exists the previous checkpoint keeps its replay buffer.

    :param model: the model.
    :param ckpt_dir: the run's checkpoint folder.
    """
    path = ckpt_dir / f"step_{model.num_timesteps:09d}.zip"
    off_policy = isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None
    if off_policy:
        buf = io.BytesIO()
        save_to_pkl(buf, model.replay_buffer)  # type: ignore[union-attr]
        atomic_write_bytes(replay_path(path), buf.getvalue())
        del buf
    save_model_atomic(model, path)
    if off_policy:
        for old in sorted(ckpt_dir.glob("step_*_replay.pkl")):
            if old != replay_path(path):
                _remove(old)
    return path


def clean_run_dir(run_dir: Path) -> list[Path]:
    """Remove what a kill can leave in a run folder: temp files of interrupted atomic
    writes, and replay buffers whose checkpoint zip was never written.

    :param run_dir: a run folder (nothing else may be writing to it).
    :return: the removed files.
    """
    removed: list[Path] = []
    ckpt_dir = run_dir / "checkpoints"
    for folder in (run_dir, ckpt_dir):
        for tmp in sorted(folder.glob(_TEMP_GLOB)):
            if tmp.is_file():
                _remove(tmp)
                removed.append(tmp)
    for rp in sorted(ckpt_dir.glob("step_*_replay.pkl")):
        m = REPLAY.match(rp.name)
        if m and not (ckpt_dir / f"step_{m.group(1)}.zip").is_file():
            _remove(rp)
            removed.append(rp)
    return removed


def _versions() -> dict[str, str]:
    return {
        "aegym": aegym.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def equivalent_command(args: TrainArgs) -> list[str]:
    """A ``python -m agents train`` command line that trains with ``args``.

    :param args: the arguments.
    """
    words = ["python", "-m", "agents", "train"]
    defaults = TrainArgs()
    for f in fields(TrainArgs):
        value = getattr(args, f.name)
        if value == getattr(defaults, f.name) and f.name not in ("env_id", "algo", "seed"):
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(value, bool):
            words.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        elif isinstance(value, dict):
            words += [flag, json.dumps(value)]
        elif value is not None:
            words += [flag, str(value)]
    return words


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def model_card(
    run_dir: Path,
    config: dict[str, Any],
    args: TrainArgs,
    num_timesteps: int,
    model_file: Path | None,
) -> dict[str, Any]:
    """What a user needs to reload and rerun the run's agent (``model_card.json``).

    :param run_dir: the run folder.
    :param config: the run's config.json content.
    :param args: the arguments of this call (after resume: the new total).
    :param num_timesteps: env steps trained so far.
    :param model_file: the final model, or None while training / if interrupted.
    """
    settings = config["settings"]
    latest = latest_checkpoint(run_dir)
    folder = shlex.quote(str(run_dir))
    model_name = model_file.name if model_file is not None else "checkpoints/step_*.zip"
    return {
        "model_card_version": 1,
        "status": "complete" if model_file is not None else "interrupted or in progress",
        "env_id": args.env_id,
        "env_kwargs": config["env_kwargs"],
        "env_config": config.get("env_config"),
        "algo": args.algo,
        "sb3_class": get_algo(args.algo).type_name,
        "policy": "MlpPolicy",
        "seed": args.seed,
        "n_envs": settings["n_envs"],
        "hyperparameters": settings["kwargs"],
        "effective_hyperparameters": effective_hyperparams(args.algo, settings["kwargs"]),
        "shaping": settings.get("shaping"),
        "total_timesteps": args.total_timesteps,
        "num_timesteps": num_timesteps,
        "checkpoint_every": args.checkpoint_every,
        "native_vec": config.get("native_vec"),
        "model": model_file.name if model_file is not None else None,
        "latest_checkpoint": str(latest.relative_to(run_dir)) if latest is not None else None,
        "versions": config["versions"],
        "command": config["command"],
        "resumed": config.get("resumed", []),
        "created": config.get("created"),
        "usage": {
            "evaluate": f"python -m agents evaluate {folder}",
            "load": (
                f"from agents import algo_class; "
                f"model = algo_class({args.algo!r}).load({str(run_dir / model_name)!r})"
            ),
            "resume": f"python -m agents train --resume {folder} --total-timesteps N",
        },
    }


def effective_hyperparams(algo: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every SB3 constructor argument of ``algo``: ``kwargs`` over SB3's defaults
    (values JSON cannot hold are given as their ``repr``).

    :param algo: algorithm name.
    :param kwargs: the run's resolved constructor keyword arguments.
    """
    registered = {spec.cls for spec in ALGOS.values()}
    defaults: dict[str, Any] = {}
    for klass in reversed([k for k in algo_class(algo).__mro__ if k in registered]):
        for name, p in inspect.signature(klass).parameters.items():
            if p.default is not inspect.Parameter.empty:
                defaults[name] = p.default
    out = {n: defaults.get(n) for n in allowed_hyperparams(algo)}
    out.update(kwargs)
    return {k: json_ready(v) for k, v in sorted(out.items())}


def model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable form of a model card (the run folder's ``README.md``).

    :param card: a :func:`model_card`.
    """
    v = card["versions"]
    rows = [
        ("status", f"{card['status']} — {card['num_timesteps']} of {card['total_timesteps']} "
                   f"env steps"),
        ("model", f"`{card['model']}`" if card["model"] else
                  f"none yet (latest checkpoint: `{card['latest_checkpoint']}`)"),
        ("env", f"`{card['env_id']}`"),
        ("env kwargs", f"`{json.dumps(card['env_kwargs'])}`"),
        ("algorithm", f"{card['algo']} (`{card['sb3_class']}`, `{card['policy']}`)"),
        ("seed", str(card["seed"])),
        ("parallel envs", str(card["n_envs"])),
        ("hyperparameters", f"`{json.dumps(card['hyperparameters'])}`"),
    ]  # fmt: skip
    if card["shaping"] is not None:
        rows.append(("shaping", f"`{json.dumps(card['shaping'])}`"))
    rows.append(("versions", ", ".join(f"{k} {val}" for k, val in v.items())))
    lines = [
        f"# {card['algo']} on {card['env_id']} (seed {card['seed']})",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {val} |" for k, val in rows),
        "",
        "Trained with:",
        "",
        f"    {card['command']}",
        "",
    ]
    for entry in card["resumed"]:
        lines += [
            f"Resumed at {entry['num_timesteps']} steps with:",
            "",
            f"    {entry['command']}",
            "",
        ]
    lines += [
        "Evaluate (env id, env kwargs and algorithm are read from this folder):",
        "",
        f"    {card['usage']['evaluate']}",
        "",
        "Load in Python:",
        "",
        f"    {card['usage']['load']}",
        "",
        "Resume or extend training (picks the newest resumable checkpoint):",
        "",
        f"    {card['usage']['resume']}",
        "",
        "Everything above, machine-readable: `model_card.json`; the run's arguments: "
        "`config.json`.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(
    run_dir: Path,
    config: dict[str, Any],
    args: TrainArgs,
    num_timesteps: int,
    model_file: Path | None,
) -> dict[str, Any]:
    """Write ``model_card.json`` and ``README.md`` into the run folder (atomically).

    :param run_dir: the run folder.
    :param config: the run's config.json content.
    :param args: the arguments of this call.
    :param num_timesteps: env steps trained so far.
    :param model_file: the final model, or None.
    """
    card = model_card(run_dir, config, args, num_timesteps, model_file)
    atomic_write_bytes(run_dir / MODEL_CARD, json.dumps(card, indent=2).encode())
    atomic_write_bytes(run_dir / RUN_README, model_card_markdown(card).encode())
    return card


def _round_up(n: int, unit: int) -> int:
    return max(unit, -(-n // unit) * unit)


def _chunk_unit(algo: str, settings: AlgoSettings, n_envs: int) -> int:
    if get_algo(algo).off_policy:
        return n_envs
    # n_steps as the SB3 class will use it (its own default when the settings omit it).
    return int(effective_hyperparams(algo, settings.kwargs)["n_steps"]) * n_envs


def _make_logger(run_dir: Path, num_timesteps: int) -> Logger:
    csv_name = "progress.csv" if num_timesteps == 0 else f"progress_{num_timesteps:09d}.csv"
    return Logger(
        str(run_dir),
        [TensorBoardOutputFormat(str(run_dir)), CSVOutputFormat(str(run_dir / csv_name))],
    )


class ReferenceUnavailableError(ValueError):
    """The named KL reference does not exist for the env."""


def make_reference(name: str, venv: VecEnv, env_id: str | None = None) -> BaselinePolicy | None:
    """The KL reference of shaped PPO by name (``ShapingConfig.kl_reference``).

    :param name: ``"ae"`` or ``"adam"`` (a baseline of
        :func:`agents.baselines.make_baseline`, built on the training env) or ``"none"``.
    :param venv: the training env.
    :param env_id: the env's id (for the error message).
    :raises ValueError: unknown name.
    :raises ReferenceUnavailableError: no such baseline for the env.
    """
    if name not in KL_REFERENCES:
        raise ValueError(f"kl_reference must be one of {list(KL_REFERENCES)}, got {name!r}")
    if name == "none":
        return None
    try:
        return make_baseline(name, venv)
    except ValueError as err:
        env = env_id or type(venv.unwrapped).__name__
        raise ReferenceUnavailableError(
            f"kl_reference {name!r} is not available for {env}: {_one_line(err)}"
        ) from err


def _reference(
    algo: str, settings: AlgoSettings, venv: VecEnv, env_id: str | None = None
) -> BaselinePolicy | None:
    shaping = settings.shaping
    if algo == "shaped_ppo" and shaping is not None and shaping.kl_active:
        return make_reference(shaping.kl_reference, venv, env_id)
    return None


def build_model(
    algo: str,
    venv: VecEnv,
    settings: AlgoSettings,
    seed: int,
    device: str = "cpu",
    env_id: str | None = None,
) -> BaseAlgorithm:
    """A fresh SB3 model with the run's settings.

    :param algo: algorithm name.
    :param venv: the training env.
    :param settings: resolved settings.
    :param seed: run seed.
    :param device: torch device.
    :param env_id: the env's id (names it in errors).
    :raises ValueError: e.g. a ``kl_reference`` the env has no baseline for.
    """
    cls = algo_class(algo)
    kwargs = copy.deepcopy(settings.kwargs)
    if algo == "shaped_ppo":
        kwargs["shaping"] = settings.shaping
        kwargs["reference"] = _reference(algo, settings, venv, env_id)
    return cls("MlpPolicy", venv, seed=seed, device=device, verbose=0, **kwargs)


def _load_resume_args(args: TrainArgs, ckpt: Path) -> tuple[TrainArgs, Path, dict[str, Any]]:
    run_dir = ckpt.parent.parent
    config = read_run_config(run_dir)
    saved = {k: v for k, v in config["args"].items() if k in TrainArgs.__dataclass_fields__}
    saved.update(
        total_timesteps=args.total_timesteps,
        progress=args.progress,
        torch_threads=args.torch_threads,
        resume=str(ckpt),
    )
    return TrainArgs(**saved), run_dir, config


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _make_train_env(args: TrainArgs, n_envs: int, env_kwargs: dict[str, Any]) -> VecEnv:
    try:
        return make_vec_env(
            args.env_id, n_envs, seed=args.seed, native=args.native_vec, **env_kwargs
        )
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"env_kwargs {args.env_kwargs!r} rejected by {args.env_id}: {_one_line(err)}"
        ) from err


def _build_checked(args: TrainArgs, venv: VecEnv, settings: AlgoSettings) -> BaseAlgorithm:
    try:
        return build_model(args.algo, venv, settings, args.seed, env_id=args.env_id)
    except ReferenceUnavailableError:
        raise  # its own message, not "hyperparams rejected"
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(
            f"hyperparams {args.hyperparams!r} rejected by {algo_class(args.algo).__name__}: "
            f"{_one_line(err)}"
        ) from err


def _load_checkpoint(
    args: TrainArgs, ckpt: Path, venv: VecEnv, settings: AlgoSettings
) -> BaseAlgorithm:
    try:
        model = algo_class(args.algo).load(ckpt, env=venv, device="cpu")
    except Exception as err:
        raise ValueError(
            f"cannot resume from {str(ckpt)!r} (not a readable {args.algo} checkpoint): "
            f"{_one_line(err)}"
        ) from err
    if isinstance(model, OffPolicyAlgorithm):
        rp = replay_path(ckpt)
        if not rp.is_file():
            raise FileNotFoundError(f"replay buffer of the checkpoint not found: {str(rp)!r}")
        model.load_replay_buffer(rp)
    if isinstance(model, ShapedPPO):
        model.set_reference(_reference(args.algo, settings, venv, args.env_id))
    return model


def train(args: TrainArgs, command: Sequence[str] | None = None) -> TrainResult:
    """Train (or resume) one agent; see the module docstring for the run folder.

    Every argument is checked, and the env and model are built, before the run folder
    is created: a bad argument leaves nothing behind.

    :param args: the arguments (validated here).
    :param command: the command line that asked for this (recorded in the run folder;
        None: an equivalent ``python -m agents train`` command).
    :raises ValueError: bad arguments (env kwargs and hyperparameters included).
    :raises FileNotFoundError: missing resume checkpoint.
    :raises FileExistsError: the run folder already holds a run.
    :raises NotADirectoryError: ``output_dir`` is a file.
    :raises PermissionError: ``output_dir`` is not writable.
    """
    validate_args(args)
    t0 = time.perf_counter()
    config: dict[str, Any]
    ckpt: Path | None = None
    if args.resume is not None:
        ckpt = resolve_resume(args.resume)
        args, run_dir, config = _load_resume_args(args, ckpt)
        validate_args(args)
    else:
        run_dir = Path(args.output_dir) / (
            args.run_name or run_dir_name(args.env_id, args.algo, args.seed)
        )
        if (run_dir / RUN_CONFIG).exists():
            raise FileExistsError(f"run folder {str(run_dir)!r} already holds a run")
        config = {}
    command_line = shlex.join(command if command is not None else equivalent_command(args))
    torch.set_num_threads(args.torch_threads)
    settings = resolve_settings(args)
    env_kwargs = {**TRAIN_ENV_KWARGS, **args.env_kwargs}
    venv = _make_train_env(args, settings.n_envs, env_kwargs)
    ckpt_dir = run_dir / "checkpoints"
    try:
        if ckpt is not None:
            model = _load_checkpoint(args, ckpt, venv, settings)
        else:
            model = _build_checked(args, venv, settings)
        try:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise type(err)(
                f"cannot create the run folder {str(run_dir)!r} (output_dir "
                f"{args.output_dir!r}): {err.strerror or err}"
            ) from None
    except BaseException:
        venv.close()
        raise
    clean_run_dir(run_dir)
    if ckpt is not None:
        config.setdefault("resumed", []).append(
            {
                "checkpoint": str(ckpt),
                "num_timesteps": model.num_timesteps,
                "total_timesteps": args.total_timesteps,
                "command": command_line,
                "time": _now(),
                "versions": _versions(),
            }
        )
    else:
        config = {
            "args": asdict(args),
            "settings": settings.to_dict(),
            "env_kwargs": env_kwargs,
            "native_vec": native_vec_available() and args.native_vec,
            "versions": _versions(),
            "command": command_line,
            "created": _now(),
        }
    # Resolved, for runs from before they were recorded too: every env setting (defaults
    # included, read from the built env) and every SB3 constructor argument.
    config.setdefault("env_config", config_to_dict(env_config(venv)))
    config.setdefault("hyperparameters", effective_hyperparams(args.algo, settings.kwargs))
    config.setdefault("command", None)  # runs from before command lines were recorded
    atomic_write_bytes(run_dir / RUN_CONFIG, json.dumps(config, indent=2).encode())
    write_model_card(run_dir, config, args, model.num_timesteps, None)
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
    write_model_card(run_dir, config, args, model.num_timesteps, model_path)
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

    Bad arguments print one ``error: ...`` line and return 2 (no traceback).

    :param argv: command-line words (None: ``sys.argv[1:]``).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(TrainArgs, words, prog="python -m agents train")
    try:
        result = train(args, command=["python", "-m", "agents", "train", *words])
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    print(f"trained {result.num_timesteps} steps in {result.wall_s:.1f}s -> {result.model_path}")
    return 0
